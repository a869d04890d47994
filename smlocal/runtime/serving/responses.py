"""The SageMaker Runtime's InvokeEndpoint responses and errors, and endpoint failure texts (pure).

Wording follows what the service returns (seen in SDK/boto3 error reports):

* unknown endpoint: ``ValidationError`` (400) ``Endpoint <name> of account <account> not found.``;
* a container answered 4xx/5xx: ``ModelError`` (424) with ``OriginalStatusCode``,
  ``OriginalMessage``, ``LogStreamArn`` (botocore's ``sagemaker-runtime`` ModelError shape) and
  ``Received client error (415) from primary with message "<body>". See <CloudWatch console URL>
  in account <account> for more information.`` ("server error" for 5xx);
* a container that does not answer within 60 s: ``ModelError`` ``Your invocation timed out while
  waiting for a response from container primary. ...``;
* an endpoint whose container never became healthy: FailureReason ``The primary container for
  production variant AllTraffic did not pass the ping health check. Please check CloudWatch logs
  for this endpoint.``
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass

LOG_GROUP_PREFIX = "/aws/sagemaker/Endpoints"


@dataclass(frozen=True)
class RuntimeResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def log_group(endpoint: str) -> str:
    return f"{LOG_GROUP_PREFIX}/{endpoint}"


def log_stream(variant: str, instance_id: str) -> str:
    return f"{variant}/{instance_id}"


def console_url(region: str, endpoint: str) -> str:
    return (f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
            f"#logEventViewer:group={log_group(endpoint)}")


def log_group_arn(region: str, account: str, endpoint: str) -> str:
    return f"arn:aws:logs:{region}:{account}:log-group:{log_group(endpoint)}"


def _error(status: int, code: str, payload: dict) -> RuntimeResponse:
    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": code, "x-amzn-RequestId": str(uuid.uuid4())}
    return RuntimeResponse(status, headers, json.dumps(payload).encode())


def validation_error(message: str) -> RuntimeResponse:
    return _error(400, "ValidationError", {"Message": message})


def endpoint_not_found(endpoint: str, account: str) -> RuntimeResponse:
    return validation_error(f"Endpoint {endpoint} of account {account} not found.")


def model_error(*, status: int, body: bytes, container: str, endpoint: str, region: str,
                account: str) -> RuntimeResponse:
    """The 424 ModelError for a container's 4xx/5xx answer."""
    original = body.decode("utf-8", "replace")
    side = "client" if 400 <= status < 500 else "server"
    message = (f"Received {side} error ({status}) from {container} with message \"{original}\". "
               f"See {console_url(region, endpoint)} in account {account} for more information.")
    return _error(424, "ModelError", {
        "Message": message,
        "OriginalStatusCode": status,
        "OriginalMessage": original,
        "LogStreamArn": log_group_arn(region, account, endpoint),
    })


def model_timeout(*, container: str, endpoint: str, region: str, account: str) -> RuntimeResponse:
    message = (f"Your invocation timed out while waiting for a response from container {container}. Review the "
               "latency metrics for each container in Amazon CloudWatch, resolve the issue, and try again.")
    return _error(424, "ModelError", {"Message": message, "LogStreamArn": log_group_arn(region, account, endpoint)})


def model_unreachable(*, container: str, detail: str, endpoint: str, region: str, account: str) -> RuntimeResponse:
    """A container process that died after the endpoint went InService (smlocal-specific text)."""
    message = (f"Received server error (500) from {container} with message \"smlocal: the model server is not "
               f"running ({detail})\". See {console_url(region, endpoint)} in account {account} for more "
               "information.")
    return _error(424, "ModelError", {"Message": message, "OriginalStatusCode": 500,
                                      "LogStreamArn": log_group_arn(region, account, endpoint)})


def success(body: bytes, content_type: str | None, variant: str) -> RuntimeResponse:
    headers = {"Content-Type": content_type or "application/octet-stream",
               "x-Amzn-Invoked-Production-Variant": variant, "x-amzn-RequestId": str(uuid.uuid4())}
    return RuntimeResponse(200, headers, body)


def ping_failure_reason(container: str, variant: str, detail: str | None = None) -> str:
    text = (f"The {container} container for production variant {variant} did not pass the ping health check. "
            "Please check CloudWatch logs for this endpoint.")
    return f"{text} (smlocal: {detail})" if detail else text


def resolved_image(image: str) -> str:
    """A digest-pinned form of ``image`` for DeployedImages.ResolvedImage. smlocal pulls nothing, so
    the digest is a stable hash of the URI, not a registry digest."""
    repository = image.rsplit("@", 1)[0]
    last = repository.rsplit("/", 1)[-1]
    if ":" in last:
        repository = repository[: len(repository) - len(last)] + last.split(":", 1)[0]
    return f"{repository}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


def clip(text: str, limit: int = 1024) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
