"""Step executors: what running one attempt of each pipeline step type means.

:data:`STEP_EXECUTORS` maps a step ``Type`` to a function ``(StepRun) -> StepOutcome``. Job steps
call the SageMaker service exactly as a client would (``Create*`` then ``Describe*`` until the job
ends), so a step's properties — what ``{"Get": "Steps.X.…"}`` reads — are the ``Describe*``
response. Everything a step needs from outside (the service, S3, SQS) comes through
:class:`StepServices`; nothing here talks to the network directly.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import secrets
import string
import threading
import time
from typing import Any, Callable, Mapping, Protocol

from smlocal.errors import ServiceError
from smlocal.pipelines.conditions import condition_metadata, evaluate_conditions
from smlocal.pipelines.definition import StepDefinition
from smlocal.pipelines.expressions import EvaluationContext, ExpressionError, render_string
from smlocal.runtime.remote_function import is_function_job

log = logging.getLogger(__name__)

__all__ = [
    "CACHEABLE_KEYS", "JOB_KINDS", "STEP_EXECUTORS", "CallbackBox", "JobKind", "StepFailed",
    "StepOutcome", "StepRun", "StepServices", "function_step_failure", "generated_name", "random_token",
]  # fmt: skip

FAILURE_REASON_MAX = 1024

#: Attributes of the evaluated arguments that decide a cache hit, per step type (AWS "Default cache
#: key attributes by pipeline step type"). Types not listed here are never cached.
CACHEABLE_KEYS: dict[str, tuple[str, ...]] = {
    "Processing": ("AppSpecification", "Environment", "ProcessingInputs"),
    "Training": ("AlgorithmSpecification", "CheckpointConfig", "DebugHookConfig",
                 "DebugRuleConfigurations", "Environment", "HyperParameters", "InputDataConfig"),
    "Tuning": ("HyperParameterTuningJobConfig", "TrainingJobDefinition", "TrainingJobDefinitions"),
    "Transform": ("DataProcessing", "Environment", "ModelName", "TransformInput"),
}  # fmt: skip

_ALNUM = string.ascii_letters + string.digits


def random_token(length: int = 10) -> str:
    """A random alphanumeric string (job-name suffixes, callback tokens: ``[a-zA-Z0-9]{10}``)."""
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


def generated_name(execution_id: str, step_name: str, suffix: str | None = None, limit: int = 63) -> str:
    """The name of a resource a step creates: ``pipelines-<execution id>-<step>-<suffix>``.

    The step name is cut to fit ``limit`` and characters SageMaker names refuse become ``-``.
    """
    suffix = suffix or random_token()
    head = f"pipelines-{execution_id}-"
    room = max(1, limit - len(head) - len(suffix) - 1)
    middle = re.sub(r"[^A-Za-z0-9-]", "-", step_name)[:room].strip("-") or "step"
    return f"{head}{middle}-{suffix}"


class StepFailed(Exception):
    """A step attempt failed; ``reason`` becomes the step's FailureReason.

    ``failure_type`` is the retry ``ExceptionType`` the failure matches (``None``: not retryable).
    """

    def __init__(self, reason: str, failure_type: str | None = None):
        super().__init__(reason)
        self.reason = reason[:FAILURE_REASON_MAX]
        self.failure_type = failure_type


@dataclasses.dataclass
class StepOutcome:
    """How one attempt ended. ``status`` is Succeeded, Failed or Stopped.

    ``record`` holds extra fields for the step's record (``CacheHitResult``, the cache key).
    """

    status: str
    failure_reason: str | None = None
    failure_type: str | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    properties: dict[str, Any] | None = None
    record: dict[str, Any] = dataclasses.field(default_factory=dict)  # extra step-record fields


class CallbackBox:
    """Where SendPipelineExecutionStep{Success,Failure} leaves the answer for a waiting Callback step."""

    def __init__(self, token: str):
        self.token = token
        self.done = threading.Event()
        self.succeeded = False
        self.output_parameters: list[dict[str, str]] = []
        self.failure_reason: str | None = None

    def succeed(self, outputs: list[dict[str, str]]) -> None:
        self.succeeded, self.output_parameters = True, list(outputs)
        self.done.set()

    def fail(self, reason: str | None) -> None:
        self.succeeded, self.failure_reason = False, reason
        self.done.set()


class CallbackRegistry(Protocol):
    def register(self, token: str, execution_arn: str, step_name: str) -> CallbackBox: ...

    def unregister(self, token: str) -> None: ...


@dataclasses.dataclass
class StepServices:
    """The I/O a step may do, injected by the service layer.

    Attributes:
        call: Calls a SageMaker operation through the service (validated like a client request).
        read_s3: Reads an S3 object's bytes by URI.
        sqs_send: Sends a message body to an SQS queue URL.
        callbacks: Where Callback steps wait for their answer.
        on_job: Called with (kind, job name, job ARN) when a step has created a job.
        poll_seconds: Interval between ``Describe*`` polls.
    """

    call: Callable[[str, dict], dict]
    read_s3: Callable[[str], bytes]
    sqs_send: Callable[[str, str], None]
    callbacks: CallbackRegistry
    on_job: Callable[[str, str, str], None] | None = None
    poll_seconds: float = 0.05


@dataclasses.dataclass
class StepRun:
    """One attempt of one step.

    Attributes:
        step: The step's definition.
        arguments: Its evaluated ``Arguments`` (``None`` for Condition steps).
        resource_name: The generated name for the job/model this attempt creates.
        execution_arn: The pipeline execution's ARN.
        services: The I/O the step may do.
        eval_ctx: For expressions evaluated while the step runs (conditions).
        stop: Set when the execution is being stopped.
        report_metadata: Publishes step Metadata while the step runs (job ARNs, callback token).
    """

    step: StepDefinition
    arguments: Any
    resource_name: str
    execution_arn: str
    services: StepServices
    eval_ctx: EvaluationContext
    stop: threading.Event
    report_metadata: Callable[[dict], None]


def _service_failure(operation: str, exc: ServiceError) -> StepFailed:
    kind = None
    if exc.code in ("ThrottlingException", "Throttling"):
        kind = "Step.THROTTLING"
    elif exc.code == "ResourceLimitExceeded":
        kind = "SageMaker.RESOURCE_LIMIT"
    elif exc.status >= 500 and exc.code != "NotImplementedBySmlocal":
        kind = "Step.SERVICE_FAULT"
    return StepFailed(f"ClientError: Failed to invoke sagemaker:{operation}. Error Details: {exc.message}", kind)


def _call(run: StepRun, operation: str, request: dict) -> dict:
    try:
        return run.services.call(operation, request)
    except ServiceError as exc:
        raise _service_failure(operation, exc) from exc


def _job_failure_type(reason: str) -> str | None:
    if reason.startswith("InternalServerError"):
        return "SageMaker.JOB_INTERNAL_ERROR"
    if reason.startswith("CapacityError"):
        return "SageMaker.CAPACITY_ERROR"
    return None


@dataclasses.dataclass(frozen=True)
class JobKind:
    """The SageMaker operations and members behind a job step type."""

    create: str
    describe: str
    stop: str
    name_key: str
    arn_key: str
    status_key: str
    metadata_key: str
    experiment_kind: str | None = None


JOB_KINDS: dict[str, JobKind] = {
    "Training": JobKind("CreateTrainingJob", "DescribeTrainingJob", "StopTrainingJob", "TrainingJobName",
                        "TrainingJobArn", "TrainingJobStatus", "TrainingJob", "training-job"),
    "Processing": JobKind("CreateProcessingJob", "DescribeProcessingJob", "StopProcessingJob",
                          "ProcessingJobName", "ProcessingJobArn", "ProcessingJobStatus", "ProcessingJob",
                          "processing-job"),
    "Transform": JobKind("CreateTransformJob", "DescribeTransformJob", "StopTransformJob", "TransformJobName",
                         "TransformJobArn", "TransformJobStatus", "TransformJob", "transform-job"),
    "Tuning": JobKind("CreateHyperParameterTuningJob", "DescribeHyperParameterTuningJob",
                      "StopHyperParameterTuningJob", "HyperParameterTuningJobName",
                      "HyperParameterTuningJobArn", "HyperParameterTuningJobStatus", "TuningJob"),
}  # fmt: skip
_TERMINAL = {"Completed": "Succeeded", "Failed": "Failed", "Stopped": "Stopped"}


def run_job(run: StepRun) -> StepOutcome:
    """Create the job, follow it to its end (stopping it if the execution stops) and describe it."""
    kind = JOB_KINDS[run.step.type]
    request = {**run.arguments, kind.name_key: run.resource_name}
    arn = _call(run, kind.create, request)[kind.arn_key]
    metadata = {kind.metadata_key: {"Arn": arn}}
    run.report_metadata(metadata)
    if run.services.on_job is not None and kind.experiment_kind:
        try:
            run.services.on_job(kind.experiment_kind, run.resource_name, arn)
        except Exception:  # noqa: BLE001 - experiment bookkeeping must never fail the step
            log.exception("could not record job %s in the execution's trial", run.resource_name)
    stop_sent = False
    while True:
        described = _call(run, kind.describe, {kind.name_key: run.resource_name})
        status = described[kind.status_key]
        if status in _TERMINAL:
            break
        if run.stop.is_set() and not stop_sent:
            stop_sent = True
            try:
                run.services.call(kind.stop, {kind.name_key: run.resource_name})
            except ServiceError:
                pass  # it ended meanwhile
        time.sleep(run.services.poll_seconds)
    if run.step.type == "Tuning":
        described = {**described, **_tuning_jobs(run, described)}
    outcome = StepOutcome(_TERMINAL[status], metadata=metadata, properties=described)
    if status == "Failed":
        reason = described.get("FailureReason") or f"{kind.metadata_key} {run.resource_name} failed."
        outcome.failure_type = _job_failure_type(reason)
        if run.step.type == "Training" and is_function_job(run.arguments.get("AlgorithmSpecification")):
            reason = function_step_failure(reason)
        outcome.failure_reason = reason[:FAILURE_REASON_MAX]
    return outcome


def function_step_failure(job_reason: str) -> str:
    """A failed ``@step`` function's FailureReason from its training job's.

    AWS words it ``ClientError: AlgorithmError: <the job's failure>``, the failure being what the
    SDK's job driver wrote, the function's exception ``repr``: sagemaker-python-sdk's
    tests/integ/sagemaker/workflow/test_step_decorator.py
    (``test_with_user_and_workdir_set_in_the_image_client_error_case``) checks
    ``ClientError: AlgorithmError: RuntimeError('...')``. No AWS source shows that prefix on an
    ordinary Training/Processing step's job failure, so those keep the job's FailureReason.
    Service-side failures keep their text.
    """
    if job_reason.startswith(("ClientError", "InternalServerError", "CapacityError")):
        return job_reason
    body = job_reason if job_reason.startswith("AlgorithmError") else f"AlgorithmError: {job_reason}"
    return f"ClientError: {body}"


def _tuning_jobs(run: StepRun, described: dict) -> dict:
    """``TrainingJobSummaries``: the tuning step's second property shape, best job first."""
    summaries, token = [], None
    while True:
        request = {"HyperParameterTuningJobName": run.resource_name, "MaxResults": 100,
                   "SortBy": "FinalObjectiveMetricValue"}
        if token:
            request["NextToken"] = token
        page = _call(run, "ListTrainingJobsForHyperParameterTuningJob", request)
        summaries += page.get("TrainingJobSummaries", [])
        token = page.get("NextToken")
        if not token:
            break
    objective = described.get("HyperParameterTuningJobConfig", {}).get("HyperParameterTuningJobObjective") or {}
    summaries.sort(key=lambda s: s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"],
                   reverse=objective.get("Type") == "Maximize")
    return {"TrainingJobSummaries": summaries}


def run_model(run: StepRun) -> StepOutcome:
    """CreateModel under a generated name; the properties are DescribeModel's answer."""
    _call(run, "CreateModel", {**run.arguments, "ModelName": run.resource_name})
    described = _call(run, "DescribeModel", {"ModelName": run.resource_name})
    return StepOutcome("Succeeded", metadata={"Model": {"Arn": described["ModelArn"]}}, properties=described)


def run_register_model(run: StepRun) -> StepOutcome:
    """CreateModelPackage (creating its model package group first if there is none yet)."""
    group = run.arguments.get("ModelPackageGroupName")
    if group:
        try:
            run.services.call("DescribeModelPackageGroup", {"ModelPackageGroupName": group})
        except ServiceError:
            try:
                run.services.call("CreateModelPackageGroup", {"ModelPackageGroupName": group})
            except ServiceError as exc:
                if "already exists" not in exc.message:  # a concurrent step created it
                    raise _service_failure("CreateModelPackageGroup", exc) from exc
    arn = _call(run, "CreateModelPackage", dict(run.arguments))["ModelPackageArn"]
    described = _call(run, "DescribeModelPackage", {"ModelPackageName": arn})
    return StepOutcome("Succeeded", metadata={"RegisterModel": {"Arn": arn}}, properties=described)


def run_condition(run: StepRun) -> StepOutcome:
    """Evaluate the conditions; ``Outcome`` is the step's property and its Metadata.

    The property is a JSON boolean, rendered ``true``/``false`` where it becomes a string
    (``Std:Join``): the SDK's integration test ``test_two_step_fail_pipeline_with_join_fn``
    expects ``"Failed due to xxx == yyy returns: false"``. The Metadata keeps the API's
    ``ConditionOutcome`` enum strings (:func:`condition_metadata`).
    """
    try:
        result = evaluate_conditions(run.step.conditions, run.eval_ctx)
    except ExpressionError as exc:
        raise StepFailed(str(exc)) from exc
    return StepOutcome("Succeeded", metadata=condition_metadata(result),
                       properties={"Outcome": bool(result)})


def run_fail(run: StepRun) -> StepOutcome:
    """End the step Failed with its evaluated ErrorMessage."""
    message = run.arguments.get("ErrorMessage") if isinstance(run.arguments, Mapping) else None
    if message is None:
        return StepOutcome("Failed", metadata={"Fail": {}})
    try:
        text = render_string(message)
    except ExpressionError:
        text = json.dumps(message)
    return StepOutcome("Failed", failure_reason=text[:FAILURE_REASON_MAX], metadata={"Fail": {"ErrorMessage": text}})


def run_callback(run: StepRun) -> StepOutcome:
    """Send the token and arguments to the SQS queue, then wait for SendPipelineExecutionStep*."""
    queue = run.step.raw.get("SqsQueueUrl")
    if not isinstance(queue, str) or not queue:
        raise StepFailed("Callback step has no SqsQueueUrl.")
    token = random_token()
    box = run.services.callbacks.register(token, run.execution_arn, run.step.name)
    metadata = {"Callback": {"CallbackToken": token, "SqsQueueUrl": queue}}
    run.report_metadata(metadata)
    try:
        _send(run, queue, token, "Executing")
        stopping_sent = False
        while not box.done.wait(run.services.poll_seconds * 2):
            if run.stop.is_set() and not stopping_sent:
                stopping_sent = True
                _send(run, queue, token, "Stopping")
    finally:
        run.services.callbacks.unregister(token)
    if not box.succeeded:
        reason = box.failure_reason or "The callback step failed (SendPipelineExecutionStepFailure)."
        return StepOutcome("Failed", failure_reason=reason, metadata=metadata)
    metadata["Callback"]["OutputParameters"] = box.output_parameters
    return StepOutcome("Succeeded", metadata=metadata, properties={"OutputParameters": box.output_parameters})


def _send(run: StepRun, queue: str, token: str, status: str) -> None:
    body = {"token": token, "pipelineExecutionArn": run.execution_arn, "arguments": run.arguments or {},
            "status": status}
    try:
        run.services.sqs_send(queue, json.dumps(body))
    except Exception as exc:  # noqa: BLE001 - any SQS error fails the step with its text
        raise StepFailed(f"ClientError: Failed to send the callback message to {queue}: {exc}") from exc


def run_unsupported(run: StepRun) -> StepOutcome:
    """Step types smlocal cannot run locally fail with a reason saying so."""
    raise StepFailed(
        f"smlocal cannot run {run.step.type} steps: they need an AWS service smlocal does not emulate "
        f"(step '{run.step.name}'). Run this pipeline on AWS, or replace the step."
    )


STEP_EXECUTORS: dict[str, Callable[[StepRun], StepOutcome]] = {
    "Training": run_job,
    "Processing": run_job,
    "Transform": run_job,
    "Tuning": run_job,
    "Model": run_model,
    "RegisterModel": run_register_model,
    "Condition": run_condition,
    "Fail": run_fail,
    "Callback": run_callback,
    **{kind: run_unsupported for kind in ("Lambda", "EMR", "ClarifyCheck", "QualityCheck", "AutoML",
                                          "EndpointConfig", "Endpoint", "InferenceComponent", "Lineage")},
}
