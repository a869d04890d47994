"""The console's execution-graph API: ``GET /_smlocal/console/api/execution-graph?arn=<execution ARN>``.

One answer with what the graph page draws: the execution (status, parameters), its steps as nodes and
their dependencies as edges (:func:`smlocal.pipelines.graph.execution_graph`), read through the same
SageMaker operations a client calls, so the page shows what the API shows.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from werkzeug.wrappers import Response

from smlocal.errors import ServiceError, ValidationError
from smlocal.gateway.console import json_answer
from smlocal.pipelines.definition import parse_definition
from smlocal.pipelines.graph import execution_graph, iso_time

log = logging.getLogger(__name__)


def _all(service, operation: str, request: dict[str, Any], key: str) -> list[dict]:
    items, token = [], None
    while True:
        answer = service.call(operation, {**request, **({"NextToken": token} if token else {})})
        items += answer.get(key, [])
        token = answer.get("NextToken")
        if not token:
            return items


def _processing_outputs(service, definition, records: list[dict]) -> dict[str, dict[str, str]]:
    """Step name → output name → S3 URI, for the processing steps that declare property files."""
    wanted = {step.name for step in definition.all_steps() if step.property_files}
    outputs: dict[str, dict[str, str]] = {}
    for record in records:
        arn = ((record.get("Metadata") or {}).get("ProcessingJob") or {}).get("Arn")
        if record["StepName"] not in wanted or not arn:
            continue
        try:
            job = service.call("DescribeProcessingJob", {"ProcessingJobName": arn.rsplit("/", 1)[-1]})
        except ServiceError:
            continue  # the job record is gone (e.g. after a reset): the node simply has no URI
        outputs[record["StepName"]] = {
            out["OutputName"]: (out.get("S3Output") or {}).get("S3Uri", "")
            for out in (job.get("ProcessingOutputConfig") or {}).get("Outputs", []) if out.get("OutputName")}
    return outputs


def execution_graph_answer(console, params: dict[str, str]) -> Response:
    """The execution-graph answer of ``params["arn"]`` (the service's own errors for an unknown ARN)."""
    service = console.service
    arn = params.get("arn", "")
    if not arn:
        raise ValidationError("1 validation error detected: Value null at 'arn' failed to satisfy constraint: "
                              "Member must not be null")
    execution = service.call("DescribePipelineExecution", {"PipelineExecutionArn": arn})
    source = service.call("DescribePipelineDefinitionForExecution", {"PipelineExecutionArn": arn})
    records = _all(service, "ListPipelineExecutionSteps", {"PipelineExecutionArn": arn}, "PipelineExecutionSteps")
    parameters = _all(service, "ListPipelineParametersForExecution", {"PipelineExecutionArn": arn},
                      "PipelineParameters")
    definition = parse_definition(source["PipelineDefinition"])
    graph = execution_graph(definition, records, _processing_outputs(service, definition, records), now=time.time())
    pipeline_arn = execution.get("PipelineArn", "")
    return json_answer({
        "execution": {
            "arn": execution.get("PipelineExecutionArn"), "pipelineArn": pipeline_arn,
            "pipelineName": pipeline_arn.rsplit("/", 1)[-1] if pipeline_arn else None,
            "displayName": execution.get("PipelineExecutionDisplayName"),
            "status": execution.get("PipelineExecutionStatus"), "created": iso_time(execution.get("CreationTime")),
            "lastModified": iso_time(execution.get("LastModifiedTime")),
            "failureReason": execution.get("FailureReason"),
            "parameters": [{"Name": p["Name"], "Value": p["Value"]} for p in parameters]},
        **graph})


HANDLERS = {"execution-graph": execution_graph_answer}
