"""Experiments, trials and trial components through real boto3."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from conftest import unique


def _code(exc_info) -> str:
    return exc_info.value.response["Error"]["Code"]


def test_experiment_trial_component_lifecycle(sm):
    experiment, trial, component = unique("exp"), unique("trial"), unique("tc")
    arn = sm.create_experiment(ExperimentName=experiment, Description="d")["ExperimentArn"]
    assert arn == f"arn:aws:sagemaker:us-east-1:123456789012:experiment/{experiment}"
    assert sm.describe_experiment(ExperimentName=experiment)["DisplayName"] == experiment
    with pytest.raises(ClientError) as exc:
        sm.create_trial(TrialName=trial, ExperimentName=unique("missing"))
    assert _code(exc) == "ResourceNotFound"
    sm.create_trial(TrialName=trial, ExperimentName=experiment)
    sm.create_trial_component(TrialComponentName=component, Parameters={"lr": {"NumberValue": 0.1}},
                              Status={"PrimaryStatus": "Completed"})
    sm.associate_trial_component(TrialComponentName=component, TrialName=trial)
    listed = sm.list_trial_components(TrialName=trial)["TrialComponentSummaries"]
    assert [c["TrialComponentName"] for c in listed] == [component]
    assert [t["TrialName"] for t in sm.list_trials(ExperimentName=experiment)["TrialSummaries"]] == [trial]
    assert [t["TrialName"] for t in sm.list_trials(TrialComponentName=component)["TrialSummaries"]] == [trial]
    assert sm.describe_trial_component(TrialComponentName=component)["Parameters"] == {"lr": {"NumberValue": 0.1}}
    with pytest.raises(ClientError) as exc:
        sm.delete_trial(TrialName=trial)  # still has a component
    assert _code(exc) == "ValidationException"
    sm.disassociate_trial_component(TrialComponentName=component, TrialName=trial)
    assert sm.list_trial_components(TrialName=trial)["TrialComponentSummaries"] == []
    sm.delete_trial_component(TrialComponentName=component)
    sm.delete_trial(TrialName=trial)
    sm.delete_experiment(ExperimentName=experiment)
    with pytest.raises(ClientError) as exc:
        sm.describe_experiment(ExperimentName=experiment)
    assert _code(exc) == "ResourceNotFound"
