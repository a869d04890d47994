"""The gateway WSGI application.

Routing, in order:
1. ``X-Amz-Target: SageMaker.<Op>`` (JSON 1.1) → the smlocal SageMaker service;
2. ``POST /endpoints/<name>/invocations`` → the SageMaker runtime (real-time endpoints);
3. ``/_smlocal/...`` → smlocal's own admin calls (health, reset);
4. STS ``GetCallerIdentity`` from smlocal's client credentials → the execution role's identity;
5. everything else (S3, STS, IAM, CloudWatch Logs, SQS ...) → moto, in process.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs

import botocore.session
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from smlocal.errors import ServiceError, UnknownOperation
from smlocal.gateway.validation import validate_input

log = logging.getLogger(__name__)

_INVOKE = re.compile(r"^/endpoints/(?P<name>[^/]+)/(?P<kind>invocations|async-invocations|invocations-response-stream)$")
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")

StartResponse = Callable[..., Any]
RuntimeHandler = Callable[[str, dict[str, Any], bytes], tuple[int, dict[str, str], bytes]]


class Gateway:
    """WSGI app. ``service`` answers SageMaker calls; ``runtime`` answers endpoint invocations."""

    def __init__(self, service, identity_arn: str, account_id: str, admin: dict[str, Callable[[], dict]] | None = None):
        self.service = service
        self.runtime: RuntimeHandler | None = None
        self._model = botocore.session.get_session().get_service_model("sagemaker")
        self._operations = set(self._model.operation_names)
        self._moto = DomainDispatcherApplication(create_backend_app)
        self._identity_arn = identity_arn
        self._account_id = account_id
        self._admin = admin or {}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        path = environ.get("PATH_INFO", "")
        if target.startswith("SageMaker."):
            return self._sagemaker(target[len("SageMaker."):], environ, start_response)
        match = _INVOKE.match(path)
        if match and environ.get("REQUEST_METHOD") == "POST":
            return self._invoke(match["name"], environ, start_response)
        if path.startswith("/_smlocal/"):
            return self._admin_call(path[len("/_smlocal/"):], start_response)
        if self._is_own_caller_identity(environ):
            return self._caller_identity(start_response)
        return self._moto(environ, start_response)

    # ---- SageMaker control plane (JSON 1.1)
    def _sagemaker(self, operation: str, environ, start_response) -> Iterable[bytes]:
        request_id = str(uuid.uuid4())
        try:
            if operation not in self._operations:
                raise UnknownOperation(f"Operation {operation} is not a SageMaker operation.")
            body = _read_body(environ)
            try:
                params = json.loads(body) if body else {}
            except ValueError as exc:
                raise ServiceError("Request body is not valid JSON", code="SerializationException", status=400) from exc
            if not isinstance(params, dict):
                raise ServiceError("Request body must be a JSON object", code="SerializationException", status=400)
            validate_input(self._model.operation_model(operation), params)
            result = self.service.call(operation, params)
            return _json(start_response, 200, result, request_id)
        except ServiceError as exc:
            return _json(start_response, exc.status, {"__type": exc.code, "message": exc.message}, request_id,
                         error_type=exc.code)
        except Exception as exc:  # noqa: BLE001 - never a stack trace to the client
            log.exception("SageMaker.%s failed", operation)
            return _json(start_response, 500, {"__type": "InternalFailure",
                                               "message": f"smlocal internal error in {operation}: {exc}"},
                         request_id, error_type="InternalFailure")

    # ---- SageMaker runtime
    def _invoke(self, name: str, environ, start_response) -> Iterable[bytes]:
        body = _read_body(environ)
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        if self.runtime is None:
            status, out_headers, payload = 400, {"Content-Type": "application/json"}, json.dumps(
                {"__type": "ValidationError", "message": f"Endpoint {name} of account {self._account_id} not found."}
            ).encode()
            out_headers["x-amzn-ErrorType"] = "ValidationError"
        else:
            status, out_headers, payload = self.runtime(name, headers, body)
        start_response(_status_line(status), list(out_headers.items()) + [("Content-Length", str(len(payload)))])
        return [payload]

    # ---- admin
    def _admin_call(self, name: str, start_response) -> Iterable[bytes]:
        handler = self._admin.get(name)
        if handler is None:
            return _json(start_response, 404, {"message": f"unknown smlocal admin call {name}"}, "")
        return _json(start_response, 200, handler(), "")

    # ---- STS identity
    def _is_own_caller_identity(self, environ) -> bool:
        if environ.get("REQUEST_METHOD") != "POST":
            return False
        auth = environ.get("HTTP_AUTHORIZATION", "")
        if "/sts/aws4_request" not in auth:
            return False
        key = _CREDENTIAL.search(auth)
        if key and key.group(1).startswith("ASIA"):
            return False  # credentials moto issued through AssumeRole: moto knows them
        body = _peek_body(environ)
        return parse_qs(body.decode("utf-8", "replace")).get("Action") == ["GetCallerIdentity"]

    def _caller_identity(self, start_response) -> Iterable[bytes]:
        xml = (
            '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            "<GetCallerIdentityResult>"
            f"<Arn>{self._identity_arn}</Arn><UserId>AROASMLOCAL000000000:smlocal</UserId>"
            f"<Account>{self._account_id}</Account>"
            "</GetCallerIdentityResult>"
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
            "</GetCallerIdentityResponse>"
        ).encode()
        start_response("200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(len(xml)))])
        return [xml]


def _read_body(environ) -> bytes:
    if "smlocal.body" in environ:
        return environ["smlocal.body"]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["smlocal.body"] = body
    return body


def _peek_body(environ) -> bytes:
    """Reads the body once and puts it back for whoever handles the request next."""
    import io

    body = _read_body(environ)
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _json(start_response, status: int, payload: dict, request_id: str, error_type: str | None = None):
    data = json.dumps(payload, separators=(",", ":")).encode()
    headers = [
        ("Content-Type", "application/x-amz-json-1.1"),
        ("Content-Length", str(len(data))),
        ("x-amzn-RequestId", request_id),
    ]
    if error_type:
        headers.append(("x-amzn-ErrorType", error_type))
    start_response(_status_line(status), headers)
    return [data]


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 415: "Unsupported Media Type",
            424: "Failed Dependency", 500: "Internal Server Error", 501: "Not Implemented",
            503: "Service Unavailable"}


def _status_line(status: int) -> str:
    return f"{status} {_REASONS.get(status, 'Error')}"
