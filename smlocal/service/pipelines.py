"""SageMaker Pipelines: pipelines, executions and their steps.

Executions run on their own threads (:class:`~smlocal.pipelines.executor.ExecutionRun`); each step
calls this same SageMaker service (``CreateTrainingJob`` …) through :meth:`Pipelines.call_operation`,
validated against the botocore model like a client request. State lives in the store: one
``Pipeline`` document per pipeline and one ``PipelineExecution`` document per execution (its steps
inside, newest attempt of each).
"""

from __future__ import annotations

import logging
import secrets
import string
import threading
import time
from typing import Any, Callable

import botocore.session

from smlocal.errors import ConflictError, ResourceNotFound, ServiceError, ValidationError
from smlocal.service.validation import validate_input
from smlocal.pipelines.definition import PipelineDefinition, parse_definition, resolve_parameters
from smlocal.pipelines.executor import DEFAULT_MAX_PARALLEL, ExecutionInfo, ExecutionRun, execution_variables
from smlocal.pipelines.expressions import EvaluationContext, ExpressionError, evaluate, render_string
from smlocal.pipelines.steps import CallbackBox, StepServices
from smlocal.service import pipeline_versions as versions
from smlocal.service.common import Account, list_page, naming, now, pick
from smlocal.service.pipeline_records import ExecutionRecorder, coerce_to_shape, public
from smlocal.service.pipeline_selective import plan as selective_plan
from smlocal.service.store import Store

log = logging.getLogger(__name__)

PIPELINE, EXECUTION, TOKEN = "Pipeline", "PipelineExecution", "PipelineCallbackToken"
START, STOP = "PipelineStartToken", "PipelineStopToken"  # ClientRequestToken → the answer given to it
#: AWS's answer to StopPipelineExecution on an execution that is not Executing (the Airflow amazon
#: provider's SageMakerHook.stop_pipeline matches on this text).
NOT_EXECUTING = "Only pipelines with 'Executing' status can be stopped"
SHUTDOWN_REASON = "InternalServerError: the smlocal server shut down while this pipeline execution was running."
RECOVERED_REASON = "InternalServerError: the smlocal server stopped while this pipeline execution was running."
_ID_CHARS = string.ascii_lowercase + string.digits
_PIPELINE_SUMMARY = ("PipelineArn", "PipelineName", "PipelineDisplayName", "PipelineDescription", "RoleArn",
                     "CreationTime", "LastModifiedTime", "LastExecutionTime")


class Pipelines:
    """The pipelines family of operations and the executions it runs."""

    def __init__(self, store: Store, account: Account, *, service, read_s3: Callable[[str], bytes],
                 client_factory: Callable[..., Any], experiments=None, poll_seconds: float = 0.05):
        self._store = store
        self._account = account
        self._service = service
        self._read_s3 = read_s3
        self._client_factory = client_factory
        self._experiments = experiments
        self._poll = poll_seconds
        self._model = botocore.session.get_session().get_service_model("sagemaker")
        self._runs: dict[str, ExecutionRun] = {}
        self._boxes: dict[str, CallbackBox] = {}
        self._lock = threading.Lock()
        self._sqs = None

    def operations(self) -> dict:
        return {
            "CreatePipeline": self.create, "UpdatePipeline": self.update, "DescribePipeline": self.describe,
            "DeletePipeline": self.delete, "ListPipelines": self.list,
            "ListPipelineVersions": self.list_versions, "UpdatePipelineVersion": self.update_version,
            "StartPipelineExecution": self.start_execution, "DescribePipelineExecution": self.describe_execution,
            "ListPipelineExecutions": self.list_executions, "ListPipelineExecutionSteps": self.list_steps,
            "DescribePipelineDefinitionForExecution": self.describe_definition_for_execution,
            "ListPipelineParametersForExecution": self.list_parameters,
            "StopPipelineExecution": self.stop_execution, "RetryPipelineExecution": self.retry_execution,
            "SendPipelineExecutionStepSuccess": self.send_success,
            "SendPipelineExecutionStepFailure": self.send_failure,
        }  # fmt: skip

    # ---- lifecycle
    def recover(self) -> int:
        """Executions a dead server left Executing/Stopping become Failed."""
        count = 0
        for doc in self._store.all(EXECUTION):
            if doc["PipelineExecutionStatus"] in ("Executing", "Stopping"):
                self._store.update(EXECUTION, doc["PipelineExecutionArn"], _fail_everything(RECOVERED_REASON))
                count += 1
        return count

    def close(self) -> None:
        """Ends every running execution Failed (the server is going away)."""
        with self._lock:
            runs, boxes = list(self._runs.values()), list(self._boxes.values())
        for run in runs:
            run.abort(SHUTDOWN_REASON)
        for box in boxes:
            box.fail(SHUTDOWN_REASON)
        deadline = time.time() + 15
        for run in runs:
            run.thread.join(timeout=max(0.1, deadline - time.time()))

    # ---- what steps use
    def call_operation(self, operation: str, request: dict) -> dict:
        """A SageMaker call made by a pipeline step: typed like the API, validated, then served."""
        model = self._model.operation_model(operation)
        request = coerce_to_shape(request, model.input_shape)
        validate_input(model, request)
        return self._service.call(operation, request)

    def _sqs_send(self, queue_url: str, body: str) -> None:
        if self._sqs is None:
            self._sqs = self._client_factory("sqs")
        self._sqs.send_message(QueueUrl=queue_url, MessageBody=body)

    def register(self, token: str, execution_arn: str, step_name: str) -> CallbackBox:
        """A Callback step starts waiting for ``token`` (SendPipelineExecutionStep* answers it)."""
        box = CallbackBox(token)
        with self._lock:
            self._boxes[token] = box
        self._store.put(TOKEN, token, {"PipelineExecutionArn": execution_arn, "StepName": step_name})
        return box

    def unregister(self, token: str) -> None:
        """The Callback step stopped waiting (answered, or the execution ended)."""
        with self._lock:
            self._boxes.pop(token, None)

    # ---- pipelines
    def create(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["PipelineName"]
        text = self._definition_text(request, required=True)
        parse_definition(text)
        arn = self._account.arn("pipeline", name)
        stamp = now()
        doc = {
            "PipelineArn": arn, "PipelineName": name, "PipelineDisplayName": request.get("PipelineDisplayName") or name,
            "PipelineDefinition": text, "PipelineDescription": request.get("PipelineDescription"),
            "RoleArn": request["RoleArn"], "PipelineStatus": "Active", "CreationTime": stamp,
            "LastModifiedTime": stamp, "ParallelismConfiguration": request.get("ParallelismConfiguration"),
            "_VersionId": 1, "_Versions": versions.first_version(text, stamp), "_Tags": request.get("Tags") or [],
        }  # fmt: skip
        if not self._store.insert(PIPELINE, name, {k: v for k, v in doc.items() if v is not None}):
            raise ValidationError(f"Pipeline names must be unique within an AWS account and region. "
                                  f"Pipeline with name ({name}) already exists.")
        return {"PipelineArn": arn}

    def _definition_text(self, request: dict, *, required: bool) -> str | None:
        text, location = request.get("PipelineDefinition"), request.get("PipelineDefinitionS3Location")
        if text is not None and location is not None:
            raise ValidationError("Only one of PipelineDefinition or PipelineDefinitionS3Location can be specified.")
        if location is not None:
            uri = f"s3://{location['Bucket']}/{location['ObjectKey']}"
            try:
                return self._read_s3(uri).decode("utf-8")
            except Exception as exc:  # noqa: BLE001 - any read failure is the caller's bad location
                raise ValidationError(f"Unable to read the pipeline definition from {uri}: {exc}") from exc
        if text is None and required:
            raise ValidationError("Either PipelineDefinition or PipelineDefinitionS3Location must be specified.")
        return text

    def _pipeline(self, value: str) -> dict:
        name = naming(PIPELINE).name_of(value)  # a name (any case) or the pipeline's ARN
        doc = self._store.get(PIPELINE, name)
        if doc is None:
            raise ResourceNotFound(f"Pipeline '{self._account.arn('pipeline', name)}' does not exist.")
        return doc

    def update(self, request: dict[str, Any]) -> dict[str, Any]:
        doc = self._pipeline(request["PipelineName"])
        text = self._definition_text(request, required=False)
        if text is not None:
            parse_definition(text)

        def change(d: dict) -> None:
            for key in ("PipelineDisplayName", "PipelineDescription", "RoleArn", "ParallelismConfiguration"):
                if request.get(key) is not None:
                    d[key] = request[key]
            stamp = now()
            # every update is a new version; one without a definition keeps the latest definition
            if text is not None:
                d["PipelineDefinition"] = text
            versions.add_version(d, d["PipelineDefinition"], stamp)
            d["LastModifiedTime"] = stamp

        updated = self._store.update(PIPELINE, doc["PipelineName"], change)
        return {"PipelineArn": doc["PipelineArn"], "PipelineVersionId": updated["_VersionId"]}

    def describe(self, request: dict[str, Any]) -> dict[str, Any]:
        doc = self._pipeline(request["PipelineName"])
        _, record = versions.version(doc, request.get("PipelineVersionId"))
        return {**public(doc), **versions.describe_fields(record)}

    def list_versions(self, request: dict[str, Any]) -> dict[str, Any]:
        doc = self._pipeline(request["PipelineName"])
        query = {**request, "SortBy": "CreationTime", "CreationTimeAfter": request.get("CreatedAfter"),
                 "CreationTimeBefore": request.get("CreatedBefore")}
        page, token = list_page(versions.summaries(doc), query, name_key="PipelineArn",
                                sort_keys={"CreationTime": "PipelineVersionId"})
        result: dict[str, Any] = {"PipelineVersionSummaries": page}
        if token:
            result["NextToken"] = token
        return result

    def update_version(self, request: dict[str, Any]) -> dict[str, Any]:
        doc = self._pipeline(request["PipelineArn"])
        version_id, _ = versions.version(doc, request["PipelineVersionId"])

        def change(d: dict) -> None:
            versions.migrate(d)
            record = d["_Versions"][str(version_id)]
            for key in ("PipelineVersionDisplayName", "PipelineVersionDescription"):
                if request.get(key) is not None:
                    record[key] = request[key]
            record["LastModifiedTime"] = now()

        self._store.update(PIPELINE, doc["PipelineName"], change)
        return {"PipelineArn": doc["PipelineArn"], "PipelineVersionId": version_id}

    def delete(self, request: dict[str, Any]) -> dict[str, Any]:
        doc = self._pipeline(request["PipelineName"])
        self._store.delete(PIPELINE, doc["PipelineName"])
        return {"PipelineArn": doc["PipelineArn"]}

    def list(self, request: dict[str, Any]) -> dict[str, Any]:
        items = self._store.all(PIPELINE)
        if request.get("PipelineNamePrefix"):
            items = [d for d in items if d["PipelineName"].startswith(request["PipelineNamePrefix"])]
        for d in items:
            if d.get("LastRunTime"):
                d["LastExecutionTime"] = d["LastRunTime"]
        query = {**request, "CreationTimeAfter": request.get("CreatedAfter"),
                 "CreationTimeBefore": request.get("CreatedBefore")}
        page, token = list_page(items, query, name_key="PipelineName")
        result: dict[str, Any] = {"PipelineSummaries": [pick(d, _PIPELINE_SUMMARY) for d in page]}
        if token:
            result["NextToken"] = token
        return result

    # ---- executions
    def start_execution(self, request: dict[str, Any]) -> dict[str, Any]:
        pipeline = self._pipeline(request["PipelineName"])
        idempotency = f"{pipeline['PipelineArn']}|{request.get('ClientRequestToken')}"
        if request.get("ClientRequestToken"):
            earlier = self._store.get(START, idempotency)
            if earlier is not None:
                return {"PipelineExecutionArn": earlier["PipelineExecutionArn"]}
        version, record = versions.version(pipeline, request.get("PipelineVersionId"))
        text = record["PipelineDefinition"]
        definition = parse_definition(text)
        values = resolve_parameters(definition, request.get("PipelineParameters"))
        execution_id = "".join(secrets.choice(_ID_CHARS) for _ in range(12))
        arn = f"{pipeline['PipelineArn']}/execution/{execution_id}"
        stamp = now()
        info = ExecutionInfo(arn, execution_id, pipeline["PipelineName"], pipeline["PipelineArn"], stamp)
        experiment = self._experiment_config(definition, info, values)
        info = ExecutionInfo(arn, execution_id, pipeline["PipelineName"], pipeline["PipelineArn"], stamp, experiment)
        reuse, only, selective = self._selective(request.get("SelectiveExecutionConfig"), pipeline, definition)
        parallelism = request.get("ParallelismConfiguration") or pipeline.get("ParallelismConfiguration")
        doc = {
            "PipelineArn": pipeline["PipelineArn"], "PipelineExecutionArn": arn,
            "PipelineExecutionDisplayName": request.get("PipelineExecutionDisplayName")
            or f"execution-{int(stamp * 1000)}",
            "PipelineExecutionStatus": "Executing",
            "PipelineExecutionDescription": request.get("PipelineExecutionDescription"),
            "PipelineExperimentConfig": experiment, "CreationTime": stamp, "LastModifiedTime": stamp,
            "ParallelismConfiguration": request.get("ParallelismConfiguration"),
            "SelectiveExecutionConfig": selective, "PipelineVersionId": int(version),
            "_PipelineName": pipeline["PipelineName"], "_Definition": text, "_Steps": reuse,
            "_Parameters": [{"Name": p.name, "Value": render_string(values[p.name])} for p in definition.parameters],
        }  # fmt: skip
        self._store.insert(EXECUTION, arn, {k: v for k, v in doc.items() if v is not None})
        if request.get("ClientRequestToken"):
            self._store.put(START, idempotency, {"PipelineExecutionArn": arn})

        def ran(d: dict) -> None:
            versions.migrate(d)
            d["LastRunTime"] = stamp
            d["_Versions"][str(version)]["LastExecutionPipelineExecutionArn"] = arn

        self._store.update(PIPELINE, pipeline["PipelineName"], ran)
        max_parallel = (parallelism or {}).get("MaxParallelExecutionSteps") or DEFAULT_MAX_PARALLEL
        self._launch(definition, info, values, max_parallel, reuse=reuse, only=only)
        return {"PipelineExecutionArn": arn}

    def _experiment_config(self, definition: PipelineDefinition, info: ExecutionInfo, values: dict):
        if not definition.experiment_config:
            return None
        ctx = EvaluationContext(parameters=values, execution_variables=execution_variables(info))
        try:
            config = evaluate(dict(definition.experiment_config), ctx)
        except ExpressionError as exc:
            raise ValidationError(f"Invalid PipelineExperimentConfig: {exc}") from exc
        return {k: render_string(v) for k, v in config.items() if v is not None}

    def _selective(self, config: dict | None, pipeline: dict, definition: PipelineDefinition):
        """(steps reused, steps allowed to run, config to record) of a SelectiveExecutionConfig."""
        if not config:
            return {}, None, None
        source_arn = config.get("SourcePipelineExecutionArn")
        source = self._store.get(EXECUTION, source_arn) if source_arn else None
        chosen = selective_plan(config, pipeline["PipelineArn"], definition, source)
        return chosen.reuse, set(chosen.selected), chosen.config

    def _launch(self, definition, info: ExecutionInfo, values: dict, max_parallel: int, *, reuse=None,
                only=None) -> None:
        trial = (info.experiment_config or {}).get("TrialName")
        on_job = None
        if self._experiments is not None and trial:
            try:
                self._experiments.ensure_trial(info.experiment_config.get("ExperimentName") or info.pipeline_name,
                                               trial)
                on_job = lambda kind, name, arn: self._experiments.record_job(trial, kind, name)  # noqa: E731
            except ServiceError as exc:
                log.warning("could not create the experiment/trial of %s: %s", info.arn, exc)
        services = StepServices(call=self.call_operation, read_s3=self._read_s3, sqs_send=self._sqs_send,
                                callbacks=self, on_job=on_job, poll_seconds=self._poll)
        started: list[ExecutionRun] = []
        recorder = ExecutionRecorder(self._store, EXECUTION, info.arn, info.pipeline_arn,
                                     on_finish=lambda: self._forget(info.arn, started[0]))
        run = ExecutionRun(definition, info, values, services, recorder, max_parallel=max_parallel,
                           reuse=reuse, only=only)
        started.append(run)
        with self._lock:
            self._runs[info.arn] = run
        run.start()

    def _forget(self, arn: str, run: ExecutionRun) -> None:
        """``run`` has ended; a retry of the same execution may already have registered its own run."""
        with self._lock:
            if self._runs.get(arn) is run:
                del self._runs[arn]

    def _execution(self, arn: str | None) -> dict:
        doc = self._store.get(EXECUTION, arn) if arn else None
        if doc is None:
            raise ResourceNotFound(f"Pipeline execution '{arn}' does not exist.")
        return doc

    def describe_execution(self, request: dict[str, Any]) -> dict[str, Any]:
        return public(self._execution(request["PipelineExecutionArn"]))

    def list_executions(self, request: dict[str, Any]) -> dict[str, Any]:
        pipeline = self._pipeline(request["PipelineName"])
        items = [d for d in self._store.all(EXECUTION) if d["PipelineArn"] == pipeline["PipelineArn"]]
        query = {**request, "CreationTimeAfter": request.get("CreatedAfter"),
                 "CreationTimeBefore": request.get("CreatedBefore")}
        page, token = list_page(items, query, name_key="PipelineExecutionArn",
                                sort_keys={"CreationTime": "CreationTime", "PipelineExecutionArn": "PipelineExecutionArn"})
        summaries = []
        for d in page:
            summary = pick(d, ("PipelineExecutionArn", "PipelineExecutionStatus", "PipelineExecutionDescription",
                               "PipelineExecutionDisplayName"))
            summary["StartTime"] = d["CreationTime"]
            if d.get("FailureReason"):
                summary["PipelineExecutionFailureReason"] = d["FailureReason"]
            summaries.append(summary)
        result: dict[str, Any] = {"PipelineExecutionSummaries": summaries}
        if token:
            result["NextToken"] = token
        return result

    def list_steps(self, request: dict[str, Any]) -> dict[str, Any]:
        if not request.get("PipelineExecutionArn"):
            raise ValidationError("PipelineExecutionArn is required.")
        doc = self._execution(request["PipelineExecutionArn"])
        steps = [public(record) for record in doc["_Steps"].values()]
        for step in steps:
            if not step.get("Metadata"):
                step.pop("Metadata", None)
        query = {**request, "SortBy": "StartTime"}
        page, token = list_page(steps, query, name_key="StepName", sort_keys={"StartTime": "StartTime"},
                                default_sort="StartTime", default_max=100)
        result: dict[str, Any] = {"PipelineExecutionSteps": page}
        if token:
            result["NextToken"] = token
        return result

    def describe_definition_for_execution(self, request: dict[str, Any]) -> dict[str, Any]:
        doc = self._execution(request["PipelineExecutionArn"])
        return {"PipelineDefinition": doc["_Definition"], "CreationTime": doc["CreationTime"]}

    def list_parameters(self, request: dict[str, Any]) -> dict[str, Any]:
        doc = self._execution(request["PipelineExecutionArn"])
        items = [dict(p, CreationTime=i) for i, p in enumerate(doc["_Parameters"])]
        page, token = list_page(items, {**request, "SortOrder": "Ascending"}, name_key="Name", default_max=50)
        result: dict[str, Any] = {"PipelineParameters": [pick(p, ("Name", "Value")) for p in page]}
        if token:
            result["NextToken"] = token
        return result

    def stop_execution(self, request: dict[str, Any]) -> dict[str, Any]:
        """Stops an Executing execution; a repeat of a call with the same ``ClientRequestToken`` (an
        idempotency token: botocore's retries resend it) gets the first call's answer again."""
        arn = self._execution(request["PipelineExecutionArn"])["PipelineExecutionArn"]
        idempotency = f"{arn}|{request.get('ClientRequestToken')}"
        if request.get("ClientRequestToken"):
            earlier = self._store.get(STOP, idempotency)
            if earlier is not None:
                return {"PipelineExecutionArn": earlier["PipelineExecutionArn"]}

        def stopping(d: dict) -> None:  # checked and changed in one store transaction: no race with the run's end
            if d["PipelineExecutionStatus"] != "Executing":
                raise ValidationError(NOT_EXECUTING)
            d.update(PipelineExecutionStatus="Stopping", LastModifiedTime=now())

        self._store.update(EXECUTION, arn, stopping)
        if request.get("ClientRequestToken"):
            self._store.put(STOP, idempotency, {"PipelineExecutionArn": arn})
        with self._lock:
            run = self._runs.get(arn)
        if run is not None:
            run.request_stop()
        else:
            self._store.update(EXECUTION, arn, lambda d: d.update(PipelineExecutionStatus="Stopped"))
        return {"PipelineExecutionArn": arn}

    def retry_execution(self, request: dict[str, Any]) -> dict[str, Any]:
        arn = request["PipelineExecutionArn"]
        doc = self._execution(arn)
        status = doc["PipelineExecutionStatus"]
        if status not in ("Failed", "Stopped"):
            raise ConflictError(f"Pipeline execution {arn} is in status {status}; only Failed or Stopped "
                                "executions can be retried.")
        definition = parse_definition(doc["_Definition"])
        values = resolve_parameters(definition, doc["_Parameters"])
        reuse = {name: record for name, record in doc["_Steps"].items() if record["StepStatus"] == "Succeeded"}

        def change(d: dict) -> None:
            d.update(PipelineExecutionStatus="Executing", LastModifiedTime=now(), _Steps=reuse)
            d.pop("FailureReason", None)
            if request.get("ParallelismConfiguration"):
                d["ParallelismConfiguration"] = request["ParallelismConfiguration"]

        updated = self._store.update(EXECUTION, arn, change)
        pipeline = self._store.get(PIPELINE, doc["_PipelineName"]) or {}
        parallelism = updated.get("ParallelismConfiguration") or pipeline.get("ParallelismConfiguration") or {}
        info = ExecutionInfo(arn, arn.rsplit("/", 1)[-1], doc["_PipelineName"], doc["PipelineArn"],
                             doc["CreationTime"], doc.get("PipelineExperimentConfig"))
        selective = doc.get("SelectiveExecutionConfig")  # a retried selective execution runs its selection only
        only = {item["StepName"] for item in selective["SelectedSteps"]} if selective else None
        self._launch(definition, info, values, parallelism.get("MaxParallelExecutionSteps") or DEFAULT_MAX_PARALLEL,
                     reuse=reuse, only=only)
        return {"PipelineExecutionArn": arn}

    # ---- callback answers
    def _callback(self, request: dict) -> tuple[dict, CallbackBox | None]:
        token = request["CallbackToken"]
        record = self._store.get(TOKEN, token)
        if record is None:
            raise ResourceNotFound(f"Callback token {token} does not exist.")
        with self._lock:
            box = self._boxes.get(token)
        if box is None or box.done.is_set():
            raise ConflictError(f"Step {record['StepName']} of pipeline execution {record['PipelineExecutionArn']} "
                                "is not waiting for a callback (it already ended).")
        return record, box

    def send_success(self, request: dict[str, Any]) -> dict[str, Any]:
        record, box = self._callback(request)
        box.succeed(request.get("OutputParameters") or [])
        return {"PipelineExecutionArn": record["PipelineExecutionArn"]}

    def send_failure(self, request: dict[str, Any]) -> dict[str, Any]:
        record, box = self._callback(request)
        box.fail(request.get("FailureReason"))
        return {"PipelineExecutionArn": record["PipelineExecutionArn"]}


def _fail_everything(reason: str) -> Callable[[dict], None]:
    def change(doc: dict) -> None:
        stamp = now()
        for record in doc.get("_Steps", {}).values():
            if record["StepStatus"] in ("Starting", "Executing", "Stopping"):
                record.update(StepStatus="Failed", FailureReason=reason, EndTime=stamp)
        doc.update(PipelineExecutionStatus="Failed", FailureReason=reason, LastModifiedTime=stamp)

    return change
