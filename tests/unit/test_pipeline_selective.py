"""The selective-execution rules (pure): what runs, what is reused, what is refused."""

from __future__ import annotations

import pytest

from smlocal.errors import ValidationError
from smlocal.pipelines.definition import parse_definition
from smlocal.service.pipeline_selective import plan

PIPELINE = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/p"
SOURCE = f"{PIPELINE}/execution/abcdefabcdef"


def _definition():
    """A → B → C (B reads A's properties, C DependsOn B); D alone."""
    steps = [{"Name": "A", "Type": "Training", "Arguments": {}},
             {"Name": "B", "Type": "Training", "Arguments": {"X": {"Get": "Steps.A.TrainingJobName"}}},
             {"Name": "C", "Type": "Training", "Arguments": {}, "DependsOn": ["B"]},
             {"Name": "D", "Type": "Training", "Arguments": {}}]
    return parse_definition({"Version": "2020-12-01", "Parameters": [], "Steps": steps})


def _source(status="Succeeded", **step_status):
    records = {name: {"StepName": name, "StepStatus": step_status.get(name, "Succeeded"), "_Properties": {"N": name}}
               for name in "ABCD"}
    return {"PipelineArn": PIPELINE, "PipelineExecutionArn": SOURCE, "PipelineExecutionStatus": status,
            "_Steps": records}


def _config(*names, source=SOURCE):
    config = {"SelectedSteps": [{"StepName": n} for n in names]}
    if source:
        config["SourcePipelineExecutionArn"] = source
    return config


def test_upstream_steps_are_reused_from_the_source_and_nothing_else():
    chosen = plan(_config("C"), PIPELINE, _definition(), _source())
    assert chosen.selected == {"C"}
    assert set(chosen.reuse) == {"A", "B"}
    assert chosen.reuse["A"]["SelectiveExecutionResult"] == {"SourcePipelineExecutionArn": SOURCE}
    assert chosen.reuse["B"]["_Properties"] == {"N": "B"}
    assert plan(_config("A", "B", source=None), PIPELINE, _definition(), None).reuse == {}
    assert set(plan(_config("C"), PIPELINE, _definition(), _source("Failed", D="Failed")).reuse) == {"A", "B"}


@pytest.mark.parametrize("config, source, expected", [
    (_config("B", source=None), None,
     "Invalid SourcePipelineExecutionArn: null. The selected steps [B] have dependencies on [A]"),
    (_config("Z"), _source(), "[Z]"),
    (_config("A", "C"), _source(), "not connected"),
    (_config("B"), None, f"Invalid SourcePipelineExecutionArn: {SOURCE}."),
    (_config("B"), {**_source(), "PipelineArn": PIPELINE + "x"}, "must belong to the pipeline"),
    (_config("B"), _source("Executing"), "is Executing"),
    (_config("C"), _source("Failed", B="Failed"), "have dependencies on [B], which did not succeed"),
])
def test_refusals(config, source, expected):
    with pytest.raises(ValidationError) as exc:
        plan(config, PIPELINE, _definition(), source)
    assert expected in str(exc.value)
