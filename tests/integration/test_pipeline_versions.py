"""Pipeline versions as AWS keeps them: one per CreatePipeline / UpdatePipeline, listed, described,
named, and run (real boto3 and SDK v2 against the emulator)."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

import pytest
from botocore.exceptions import ClientError

from conftest import ROLE, aws_error, unique
from pipeline_support import definition, fail_step, sdk_pipeline, steps_of, wait_execution


def _versions(sm, name: str) -> list[dict]:
    return sm.list_pipeline_versions(PipelineName=name)["PipelineVersionSummaries"]


def test_versions_listed_described_named_and_run(sm, client_env):
    name = unique("versions")
    arn = sm.create_pipeline(PipelineName=name, RoleArn=ROLE,
                             PipelineDefinition=definition([fail_step("One", "ran version 1")]))["PipelineArn"]
    pipeline = sdk_pipeline(name)
    assert pipeline.latest_pipeline_version_id == 1
    updated = sm.update_pipeline(PipelineName=name, PipelineDefinition=definition([fail_step("Two", "ran version 2")]))
    assert updated == {"PipelineArn": arn, "PipelineVersionId": 2, "ResponseMetadata": updated["ResponseMetadata"]}
    assert pipeline.latest_pipeline_version_id == 2

    listed = sm.list_pipeline_versions(PipelineName=name)["PipelineVersionSummaries"]
    assert [v["PipelineVersionId"] for v in listed] == [2, 1]  # newest first
    assert all(v["PipelineArn"] == arn and isinstance(v["CreationTime"], dt.datetime) for v in listed)
    ascending = sm.list_pipeline_versions(PipelineName=arn, SortOrder="Ascending")["PipelineVersionSummaries"]
    assert [v["PipelineVersionId"] for v in ascending] == [1, 2]
    first_page = sm.list_pipeline_versions(PipelineName=name, MaxResults=1)
    assert [v["PipelineVersionId"] for v in first_page["PipelineVersionSummaries"]] == [2]
    pages = sm.get_paginator("list_pipeline_versions").paginate(PipelineName=name, PaginationConfig={"PageSize": 1})
    assert [v["PipelineVersionId"] for page in pages for v in page["PipelineVersionSummaries"]] == [2, 1]
    first_created, second_created = listed[1]["CreationTime"], listed[0]["CreationTime"]
    assert first_created < second_created
    between = first_created + (second_created - first_created) / 2
    newer = sm.list_pipeline_versions(PipelineName=name, CreatedAfter=between)["PipelineVersionSummaries"]
    assert [v["PipelineVersionId"] for v in newer] == [2]
    older = sm.list_pipeline_versions(PipelineName=name, CreatedBefore=between)["PipelineVersionSummaries"]
    assert [v["PipelineVersionId"] for v in older] == [1]

    assert json.loads(sm.describe_pipeline(PipelineName=name)["PipelineDefinition"])["Steps"][0]["Name"] == "Two"
    first = pipeline.describe(pipeline_version_id=1)
    assert json.loads(first["PipelineDefinition"])["Steps"][0]["Name"] == "One"
    named = sm.update_pipeline_version(PipelineArn=arn, PipelineVersionId=1, PipelineVersionDisplayName="baseline",
                                       PipelineVersionDescription="the first definition")
    assert (named["PipelineArn"], named["PipelineVersionId"]) == (arn, 1)
    first = sm.describe_pipeline(PipelineName=name, PipelineVersionId=1)
    assert (first["PipelineVersionDisplayName"], first["PipelineVersionDescription"]) == ("baseline",
                                                                                          "the first definition")
    assert "PipelineVersionDisplayName" not in sm.describe_pipeline(PipelineName=name)
    by_id = {v["PipelineVersionId"]: v for v in _versions(sm, name)}
    assert by_id[1]["PipelineVersionDisplayName"] == "baseline"
    assert by_id[1]["PipelineVersionDescription"] == "the first definition"

    # an execution started on version 1 runs version 1's definition; without a version, the latest
    on_first = pipeline.start(pipeline_version_id=1).arn
    latest = sm.start_pipeline_execution(PipelineName=name)["PipelineExecutionArn"]
    for execution, version, step, message in ((on_first, 1, "One", "ran version 1"),
                                              (latest, 2, "Two", "ran version 2")):
        described = wait_execution(sm, execution)
        assert described["PipelineVersionId"] == version
        found = steps_of(sm, execution)
        assert list(found) == [step] and found[step]["FailureReason"] == message
        definition_run = sm.describe_pipeline_definition_for_execution(PipelineExecutionArn=execution)
        assert json.loads(definition_run["PipelineDefinition"])["Steps"][0]["Name"] == step
    by_id = {v["PipelineVersionId"]: v for v in _versions(sm, name)}
    assert by_id[1]["LastExecutionPipelineExecutionArn"] == on_first
    assert by_id[2]["LastExecutionPipelineExecutionArn"] == latest

    for call in (lambda: sm.describe_pipeline(PipelineName=name, PipelineVersionId=9),
                 lambda: sm.update_pipeline_version(PipelineArn=arn, PipelineVersionId=9,
                                                    PipelineVersionDisplayName="x"),
                 lambda: sm.start_pipeline_execution(PipelineName=name, PipelineVersionId=9),
                 lambda: sm.list_pipeline_versions(PipelineName=unique("nosuchpipeline"))):
        with pytest.raises(ClientError) as exc:
            call()
        assert aws_error(exc)[0] == "ResourceNotFound"


def test_pipelines_from_an_older_data_dir_get_versions(tmp_path):
    """A data dir written before UpdatePipelineVersion (``_Versions``: id → definition text) keeps working."""
    from smlocal.config import load_settings
    from smlocal.server import Emulator

    name = unique("oldtexts")
    with Emulator(load_settings(data_dir=tmp_path, port=0)) as emu:
        sm = emu.client("sagemaker")
        sm.create_pipeline(PipelineName=name, RoleArn=ROLE,
                           PipelineDefinition=definition([fail_step("Old", "old definition")]))
        sm.update_pipeline(PipelineName=name, PipelineDefinition=definition([fail_step("Second", "second")]))
    # rewrite the record the way the release before version records (HEAD ba12b12) stored it
    with sqlite3.connect(next(tmp_path.rglob("state.sqlite3"))) as db:
        query = "SELECT data FROM records WHERE kind='Pipeline' AND name=?"
        (data,) = db.execute(query, (name,)).fetchone()
        doc = json.loads(data)
        assert doc["_VersionId"] == 2
        doc["_Versions"] = {key: record["PipelineDefinition"] for key, record in doc["_Versions"].items()}
        db.execute("UPDATE records SET data=? WHERE kind='Pipeline' AND name=?", (json.dumps(doc), name))
    with Emulator(load_settings(data_dir=tmp_path, port=0)) as emu:
        sm = emu.client("sagemaker")
        listed = sm.list_pipeline_versions(PipelineName=name)["PipelineVersionSummaries"]
        assert [v["PipelineVersionId"] for v in listed] == [2, 1]
        described = sm.describe_pipeline(PipelineName=name)
        assert listed[0]["CreationTime"] == described["LastModifiedTime"]  # the old record kept no times
        assert listed[1]["CreationTime"] == described["CreationTime"]
        assert sm.update_pipeline(PipelineName=name, PipelineDefinition=definition(
            [fail_step("New", "new definition")]))["PipelineVersionId"] == 3
        for version, step in ((1, "Old"), (2, "Second"), (3, "New")):
            text = sm.describe_pipeline(PipelineName=name, PipelineVersionId=version)["PipelineDefinition"]
            assert json.loads(text)["Steps"][0]["Name"] == step
        arn = sm.start_pipeline_execution(PipelineName=name, PipelineVersionId=1)["PipelineExecutionArn"]
        assert list(steps_of(sm, wait_execution(sm, arn)["PipelineExecutionArn"])) == ["Old"]
        listed = sm.list_pipeline_versions(PipelineName=name)["PipelineVersionSummaries"]
        assert [v["PipelineVersionId"] for v in listed] == [3, 2, 1]
        assert listed[2]["LastExecutionPipelineExecutionArn"] == arn
