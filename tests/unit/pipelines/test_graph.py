"""The execution graph builder: edges from DependsOn, data references and condition branches; skipped branches."""

from __future__ import annotations

from smlocal.pipelines.definition import parse_definition
from smlocal.pipelines.graph import execution_graph, iso_time

JOB = "arn:aws:sagemaker:us-east-1:123456789012:processing-job/pipelines-abc-prep"


def _processing(name: str, **extra) -> dict:
    return {"Name": name, "Type": "Processing", "Arguments": {"ProcessingResources": {}}, **extra}


DEFINITION = {
    "Version": "2020-12-01",
    "Parameters": [{"Name": "Threshold", "Type": "Float", "DefaultValue": 6.0}],
    "Steps": [
        _processing("Prep"),
        _processing("Eval", DependsOn=["Prep"],
                    PropertyFiles=[{"PropertyFileName": "Report", "OutputName": "evaluation", "FilePath": "evaluation.json"}],
                    Arguments={"ProcessingResources": {}, "X": {"Get": "Steps.Prep.ProcessingJobName"}}),
        {"Name": "Check", "Type": "Condition", "Arguments": {
            "Conditions": [{"Type": "LessThanOrEqualTo",
                            "LeftValue": {"Std:JsonGet": {"PropertyFile": {"Get": "Steps.Eval.PropertyFiles.Report"},
                                                          "Path": "mse"}},
                            "RightValue": {"Get": "Parameters.Threshold"}}],
            "IfSteps": [_processing("Register"), _processing("After", Arguments={"Y": {"Get": "Steps.Register.ProcessingJobName"}})],
            "ElseSteps": [{"Name": "Fail", "Type": "Fail", "Arguments": {"ErrorMessage": "too high"}}]}},
    ],
}


def _edges(graph) -> set[tuple[str, str, str]]:
    return {(e["from"], e["to"], e["kind"]) for e in graph["edges"]}


def _records(outcome: str) -> list[dict]:
    return [
        {"StepName": "Prep", "StepStatus": "Succeeded", "StartTime": 100.0, "EndTime": 112.5, "AttemptCount": 2,
         "Metadata": {"ProcessingJob": {"Arn": JOB}}},
        {"StepName": "Eval", "StepStatus": "Succeeded", "StartTime": 113.0, "EndTime": 120.0, "AttemptCount": 1,
         "CacheHitResult": {"SourcePipelineExecutionArn": "arn:x"}},
        {"StepName": "Check", "StepStatus": "Succeeded", "StartTime": 121.0, "EndTime": 121.0, "AttemptCount": 1,
         "Metadata": {"Condition": {"Outcome": outcome}}},
    ]


def test_edges_come_from_depends_on_data_references_and_branches():
    graph = execution_graph(parse_definition(DEFINITION), [])
    assert _edges(graph) == {("Prep", "Eval", "depends"), ("Eval", "Check", "data"), ("Check", "Register", "true"),
                             ("Check", "After", "true"), ("Check", "Fail", "false"), ("Register", "After", "data")}
    assert [n["name"] for n in graph["nodes"]] == ["Prep", "Eval", "Check", "Register", "After", "Fail"]
    assert {n["status"] for n in graph["nodes"]} == {"NotStarted"}  # nothing ran, no condition decided


def test_the_branch_not_taken_is_skipped_with_what_waits_for_it():
    nodes = {n["name"]: n for n in execution_graph(parse_definition(DEFINITION), _records("False"))["nodes"]}
    assert nodes["Register"]["status"] == nodes["After"]["status"] == "Skipped"
    assert nodes["Fail"]["status"] == "NotStarted"
    assert nodes["Check"]["conditionOutcome"] is False
    taken = {n["name"]: n for n in execution_graph(parse_definition(DEFINITION), _records("True"))["nodes"]}
    assert taken["Fail"]["status"] == "Skipped" and taken["Register"]["status"] == "NotStarted"
    assert taken["Check"]["conditionOutcome"] is True


def test_node_fields_from_step_records():
    graph = execution_graph(parse_definition(DEFINITION), _records("True"),
                            outputs={"Eval": {"evaluation": "s3://b/eval/"}})
    nodes = {n["name"]: n for n in graph["nodes"]}
    prep, evaluation = nodes["Prep"], nodes["Eval"]
    assert prep["job"] == {"kind": "processing", "name": "pipelines-abc-prep", "arn": JOB}
    assert prep["attempts"] == 2 and prep["durationSeconds"] == 12.5 and prep["cacheHit"] is False
    assert prep["startTime"] == "1970-01-01T00:01:40Z" and prep["endTime"] == iso_time(112.5)
    assert evaluation["cacheHit"] is True and evaluation["job"] is None
    assert evaluation["propertyFiles"] == [{"name": "Report", "path": "evaluation.json",
                                            "s3Uri": "s3://b/eval/evaluation.json"}]
    assert nodes["Prep"]["conditionOutcome"] is None


def test_a_failed_fail_step_carries_its_message_and_a_running_step_its_duration_so_far():
    records = _records("False") + [
        {"StepName": "Fail", "StepStatus": "Failed", "StartTime": 122.0, "EndTime": 122.0,
         "Metadata": {"Fail": {"ErrorMessage": "MSE 4.2 above 3.0"}}}]
    records[1] = {"StepName": "Eval", "StepStatus": "Executing", "StartTime": 113.0}
    nodes = {n["name"]: n for n in execution_graph(parse_definition(DEFINITION), records, now=118.0)["nodes"]}
    assert nodes["Fail"]["status"] == "Failed" and nodes["Fail"]["failureReason"] == "MSE 4.2 above 3.0"
    assert nodes["Eval"]["durationSeconds"] == 5.0 and nodes["Eval"]["endTime"] is None


def test_graph_and_executor_share_one_branch_rule():
    from smlocal.pipelines import executor
    from smlocal.pipelines.definition import branch_taken

    assert [branch_taken(outcome) for outcome in (True, False, None, "True")] == ["if", "else", "else", "else"]
    assert executor.branch_taken is branch_taken  # the executor decides skips with the same function
    for outcome, skipped in (("True", {"Fail"}), ("False", {"Register", "After"})):
        nodes = execution_graph(parse_definition(DEFINITION), _records(outcome))["nodes"]
        assert {n["name"] for n in nodes if n["status"] == "Skipped"} == skipped
