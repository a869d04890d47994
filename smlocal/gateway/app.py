"""The gateway WSGI application.

First the boundary (:mod:`smlocal.gateway.boundary`): Host and Origin checks, CORS preflights of
allowed Origins, the admin token, and SigV4 verification when bound beyond loopback. Every answer outside the
console carries ``Content-Security-Policy: sandbox`` (an S3 object holding HTML must not run as the
console's origin). Then routing, in order:

1. ``X-Amz-Target: SageMaker.<Op>`` (JSON 1.1) → the smlocal SageMaker service;
2. ``POST /endpoints/<name>/invocations`` → the SageMaker runtime (real-time endpoints); ``PUT
   /BatchPutMetrics`` and ``POST /BatchGetMetrics`` → the SageMaker Metrics service (REST-JSON);
3. ``/_smlocal/console/...`` → the console (:mod:`smlocal.gateway.console`), checked before any admin or
   signature rule; ``/_smlocal/...`` → smlocal's own admin calls (health, reset);
4. STS ``GetCallerIdentity`` from smlocal's client credentials → the execution role's identity;
5. S3, when smlocal runs the durable store (:attr:`Gateway.s3_proxy`) → the store, re-signed
   (:mod:`smlocal.gateway.s3proxy`);
6. everything else (S3, STS, IAM, CloudWatch Logs, SQS ...) → moto, in process; an action moto
   lacks is a ``NotImplementedBySmlocal`` (501) error in the service's own protocol.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import tempfile
import uuid
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import parse_qs

import botocore.session
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from smlocal.auth import credential_scope_service, verify_sigv4
from smlocal.errors import NotImplementedBySmlocal, ServiceError, UnknownOperation
from smlocal.gateway import boundary, console, console_graph, console_jobs, s3proxy
from smlocal.gateway.boundary import BoundaryPolicy
from smlocal.service.validation import validate_input
from smlocal.gateway.wire import (MAX_CONTROL_PLANE_BODY, SerializationError, BodyTooLarge, moto_serves_target,
                                  parse_json_object, read_body)

log = logging.getLogger(__name__)

_INVOKE = re.compile(r"^/endpoints/(?P<name>[^/]+)/(?P<kind>invocations|async-invocations|invocations-response-stream)$")
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
_INVOKE_OPERATIONS = {"invocations": "InvokeEndpoint", "async-invocations": "InvokeEndpointAsync",
                      "invocations-response-stream": "InvokeEndpointWithResponseStream"}
# the SageMaker Metrics service (botocore "sagemaker-metrics", REST-JSON, signed for "sagemaker")
_METRICS = {("PUT", "/BatchPutMetrics"): "BatchPutMetrics", ("POST", "/BatchGetMetrics"): "BatchGetMetrics"}

StartResponse = Callable[..., Any]
RuntimeHandler = Callable[[str, dict[str, Any], bytes], tuple[int, dict[str, str], bytes]]


class Gateway:
    """WSGI app. ``service`` answers SageMaker calls; ``runtime`` answers endpoint invocations."""

    def __init__(self, service, identity_arn: str, account_id: str, admin: dict[str, Callable[[], dict]] | None = None,
                 policy: BoundaryPolicy | None = None, admin_token: str | None = None,
                 keys: Mapping[str, str] | None = None, console_token: str | None = None):
        """``policy``: who may call (default: a loopback server's); ``admin_token``: the secret admin calls
        carry (None: no state-changing admin call is accepted); ``keys``: access key → secret of the
        key pairs signatures are verified against when the policy requires signatures; ``console_token``:
        the secret the console's calls carry (None: the console's API and calls are refused)."""
        self.service = service
        self.runtime: RuntimeHandler | None = None
        self.s3_proxy: Callable[..., Iterable[bytes]] | None = None  # an s3proxy.S3Proxy (durable store)
        self._model = botocore.session.get_session().get_service_model("sagemaker")
        self._operations = set(self._model.operation_names)
        self._metrics_model = botocore.session.get_session().get_service_model("sagemaker-metrics")
        self._moto = DomainDispatcherApplication(create_backend_app)
        self._identity_arn = identity_arn
        self._account_id = account_id
        self._admin = admin or {}
        self.policy = policy or BoundaryPolicy()
        self._admin_token = admin_token
        self._keys = dict(keys or {})
        self.console = console.Console(service, console_token, _console_handlers())
        runtime_model = botocore.session.get_session().get_service_model("sagemaker-runtime")
        # a body member's max from the model; older botocore models have no Body for InvokeEndpointAsync
        # (it takes an S3 InputLocation there): InvokeEndpoint's limit applies to whatever is sent
        limits = {kind: runtime_model.operation_model(op).input_shape.members.get("Body")
                  for kind, op in _INVOKE_OPERATIONS.items()}
        default = limits["invocations"].metadata["max"]
        self._invoke_limits = {kind: shape.metadata.get("max", default) if shape is not None else default
                               for kind, shape in limits.items()}

    @property
    def console_token(self) -> str | None:
        """The secret the console's calls carry (the console's own)."""
        return self.console.token

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """The boundary (Host, Origin, admin token, signature; see :mod:`smlocal.gateway.boundary`), then routing."""
        path = environ.get("PATH_INFO", "")
        if boundary.is_console_path(path):
            return self._console(environ, start_response)
        return self._serve(environ, _sandboxed(start_response))

    def _console(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """The console: Host, Origin and Sec-Fetch-Site rules apply; its API checks the console token itself.
        index.html carries the token only where no signature is required (loopback; never on the
        containers' listener)."""
        policy = self.policy
        own = boundary.request_origin(environ) in boundary.own_origins(environ)  # module scripts send Origin
        refusal = (boundary.check_host(environ, policy) or (None if own else boundary.check_origin(environ, policy))
                   or _cross_site_console(environ, policy))
        if refusal is not None:
            return _refuse(start_response, refusal, "json")
        return self.console(environ, start_response, embed_token=not policy.require_signature)

    def _serve(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        policy = self.policy
        refusal = boundary.check_host(environ, policy) or boundary.check_origin(environ, policy, self.console_token)
        if refusal is not None:
            return _refuse(start_response, refusal, "json")
        allowed_origin = boundary.origin_allowed(environ, policy)
        if allowed_origin and boundary.is_preflight(environ):
            headers = boundary.preflight_headers(environ) + [("Content-Length", "0")]
            start_response(boundary.status_line(200), headers)
            return [b""]
        path = environ.get("PATH_INFO", "")
        if boundary.is_admin_path(path):
            refusal = boundary.check_admin(environ, self._admin_token)
            if refusal is not None:
                return _refuse(start_response, refusal, "json")
        else:
            refused = self._check_signature(environ)
            if refused is not None:
                return _refuse(start_response, *refused)
        extra = boundary.cors_headers(environ) if allowed_origin else []

        def cors_start_response(status, headers, exc_info=None):
            return start_response(status, boundary.without_cors(headers) + extra, exc_info)

        return self._route(environ, cors_start_response)

    def _check_signature(self, environ) -> tuple[boundary.Refusal, str] | None:
        """Refusal (and the protocol to answer in) of a request whose signature the policy wants and lacks."""
        headers = boundary.wsgi_headers(environ)
        raw_path, query = boundary.raw_path_and_query(environ)
        scope = credential_scope_service(headers, query)
        protocol = boundary.protocol_of(environ, scope)
        if not boundary.needs_signature(environ, self.policy, self.console_token):
            refusal = boundary.check_fetch_site(environ, self.policy)
            return None if refusal is None else (refusal, protocol)
        if scope and scope != "sagemaker" and self._answers_sagemaker(environ, scope):
            # e.g. a presigned S3 GET URL (its body and unsigned headers are free) sent with X-Amz-Target
            return boundary.signature_refusal("mismatch", "Credential should be scoped to correct service: "
                                              "'sagemaker'.", "json"), "json"
        failure = verify_sigv4(environ.get("REQUEST_METHOD", "GET"), raw_path, query, headers,
                               lambda: hashlib.sha256(_peek_body(environ)).hexdigest(), self._keys.get)
        if failure is not None:
            log.info("refused a request signed by %r: %s", failure.access_key, failure.message)
            return boundary.signature_refusal(failure.kind, failure.message, protocol), protocol
        if not _declared_hash_holds(environ, headers.get("x-amz-content-sha256", "")):
            return boundary.Refusal(400, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' "
                                    "header does not match what was computed."), protocol
        return None

    def _route(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        path = environ.get("PATH_INFO", "")
        if _is_sagemaker_target(target):
            return self._sagemaker(target, environ, start_response)
        if self._answers_sagemaker(environ):
            if (environ.get("REQUEST_METHOD"), path) in _METRICS:
                return self._metrics(_METRICS[environ["REQUEST_METHOD"], path], environ, start_response)
            return self._invoke(_INVOKE.match(path)["name"], environ, start_response)
        if path.startswith("/_smlocal/"):
            return self._admin_call(path[len("/_smlocal/"):], start_response)
        if self._is_own_caller_identity(environ):
            return self._caller_identity(start_response)
        if self.s3_proxy is not None and s3proxy.is_s3_request(environ):
            return self.s3_proxy(environ, start_response)
        return self._moto_call(environ, start_response)

    # ---- the other services (moto)
    def _moto_call(self, environ, start_response) -> Iterable[bytes]:
        """moto's answer; an action moto lacks (it raises NotImplementedError) or a moto failure is
        answered as an AWS error in the request's protocol (query XML, JSON or REST-XML), never a bare 500."""
        scope = credential_scope_service(boundary.wsgi_headers(environ), environ.get("QUERY_STRING", ""))
        protocol = boundary.protocol_of(environ, scope or "")
        body = _peek_body(environ) if protocol == "query" else b""  # small form bodies: the Action is in them
        try:
            return self._moto(environ, start_response)
        except NotImplementedError as exc:
            service, action = _service_name(scope), _action_of(environ, body, protocol)
            log.warning("%s %s is not implemented by moto: %s", service, action, exc)
            refusal = boundary.Refusal(NotImplementedBySmlocal.status, NotImplementedBySmlocal.code,
                                       f"The {service} operation {action} is not implemented by smlocal "
                                       f"(moto: {exc}).")
        except Exception as exc:  # noqa: BLE001 - never a stack trace (or an HTML page) to the client
            log.exception("moto failed on %s %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            refusal = boundary.Refusal(500, "InternalFailure", f"smlocal internal error in {_service_name(scope)}: "
                                       f"{type(exc).__name__}: {exc}")
        return _refuse(start_response, refusal, protocol)

    def _answers_sagemaker(self, environ, scope: str | None = None) -> bool:
        """Whether smlocal's SageMaker answers this request (control plane or runtime), not S3 or moto.

        ``POST /endpoints/<name>/invocations`` signed for S3 (``scope``, read from the request when
        None) is an S3 call on a bucket named ``endpoints`` (e.g. CompleteMultipartUpload); so is
        ``PUT /BatchPutMetrics`` (a bucket of that name) signed for S3.
        """
        if _is_sagemaker_target(environ.get("HTTP_X_AMZ_TARGET", "")):
            return True
        method, path = environ.get("REQUEST_METHOD"), environ.get("PATH_INFO", "")
        if not (method == "POST" and _INVOKE.match(path)) and (method, path) not in _METRICS:
            return False
        if scope is None:
            scope = credential_scope_service(boundary.wsgi_headers(environ), environ.get("QUERY_STRING", ""))
        return scope != "s3"

    # ---- SageMaker control plane (JSON 1.1)
    def _sagemaker(self, target: str, environ, start_response) -> Iterable[bytes]:
        """``target``: ``SageMaker.<Op>``, or any X-Amz-Target moto does not serve (an unknown operation)."""
        request_id = str(uuid.uuid4())
        operation = target[len("SageMaker."):] if target.startswith("SageMaker.") else target
        try:
            if operation not in self._operations or operation == target:
                raise UnknownOperation(f"Operation {target} is not an operation of SageMaker or of any "
                                       "service smlocal serves.")
            params = parse_json_object(_read_body(environ))
            model = self._model.operation_model(operation)
            validate_input(model, params)
            # AWS ignores members its model does not have: none reaches the service (whose internal
            # callers may pass members of their own, e.g. a tuning job's TuningJobArn on its training jobs)
            members = model.input_shape.members if model.input_shape is not None else {}
            params = {key: value for key, value in params.items() if key in members}
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

    # ---- SageMaker Metrics (REST-JSON: the error's code in x-amzn-ErrorType)
    def _metrics(self, operation: str, environ, start_response) -> Iterable[bytes]:
        request_id = str(uuid.uuid4())
        try:
            params = parse_json_object(_read_body(environ))
            validate_input(self._metrics_model.operation_model(operation), params)
            status, payload, error = 200, self.service.call(operation, params), None
        except ServiceError as exc:
            status, payload, error = exc.status, {"__type": exc.code, "message": exc.message}, exc.code
        except Exception as exc:  # noqa: BLE001 - never a stack trace to the client
            log.exception("SageMaker Metrics %s failed", operation)
            status, payload, error = 500, {"__type": "InternalFailure", "message": f"smlocal internal error in "
                                           f"{operation}: {exc}"}, "InternalFailure"
        data = json.dumps(payload, separators=(",", ":")).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                   ("x-amzn-RequestId", request_id)] + ([("x-amzn-ErrorType", error)] if error else [])
        start_response(boundary.status_line(status), headers)
        return [data]

    # ---- SageMaker runtime
    def _invoke(self, name: str, environ, start_response) -> Iterable[bytes]:
        kind = _INVOKE.match(environ.get("PATH_INFO", ""))["kind"]
        try:
            body = read_body(environ, self._invoke_limits[kind])
        except BodyTooLarge as exc:
            return _runtime_error(start_response, "1 validation error detected: Value at 'body' failed to satisfy "
                                  f"constraint: Member must have length less than or equal to {exc.limit}")
        except SerializationError as exc:
            return _runtime_error(start_response, exc.message)
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        if self.runtime is None:
            return _runtime_error(start_response, f"Endpoint {name} of account {self._account_id} not found.")
        status, out_headers, payload = self.runtime(name, headers, body)
        start_response(boundary.status_line(status), list(out_headers.items()) + [("Content-Length", str(len(payload)))])
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


def _console_handlers() -> dict[str, console.Handler]:
    """The console API of every console module."""
    return {**console_graph.HANDLERS, **console_jobs.HANDLERS}


def _sandboxed(start_response: StartResponse) -> StartResponse:
    """``start_response`` adding ``Content-Security-Policy: sandbox`` (outside the console, no answer runs as a page)."""
    def sandboxed_start_response(status, headers, exc_info=None):
        return start_response(status, list(headers) + [console.SANDBOX_HEADER], exc_info)

    return sandboxed_start_response


def _cross_site_console(environ, policy: BoundaryPolicy) -> boundary.Refusal | None:
    """Another site's page may link to the console (a top-level navigation) but not load its files or API."""
    if environ.get("HTTP_SEC_FETCH_MODE", "").lower() == "navigate" and environ.get("HTTP_SEC_FETCH_DEST", "document").lower() == "document":
        return None
    return boundary.check_fetch_site(environ, policy)


def _is_sagemaker_target(target: str) -> bool:
    """``SageMaker.<Op>``, or any X-Amz-Target moto does not serve (answered as an unknown operation)."""
    return target.startswith("SageMaker.") or bool(target and not moto_serves_target(target))


def _service_name(scope: str | None) -> str:
    """The AWS name of the service a request is signed for (``"IAM"``, ``"CloudWatch Logs"``)."""
    if not scope:
        return "AWS"
    try:
        return botocore.session.get_session().get_service_model(scope).service_id
    except Exception:  # noqa: BLE001 - a scope botocore does not know (e.g. a service alias)
        return scope


def _action_of(environ, body: bytes, protocol: str) -> str:
    """The operation a request calls: its query ``Action``, its X-Amz-Target's operation, or method and path."""
    if protocol == "query":
        fields = parse_qs(environ.get("QUERY_STRING", "")) | parse_qs(body.decode("utf-8", "replace"))
        if fields.get("Action"):
            return fields["Action"][0]
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return target.rsplit(".", 1)[-1]
    query = environ.get("QUERY_STRING", "")
    return f"{environ.get('REQUEST_METHOD', 'GET')} {environ.get('PATH_INFO', '/')}{'?' + query if query else ''}"


def _read_body(environ) -> bytes:
    """The body of a control-plane request (at most :data:`MAX_CONTROL_PLANE_BODY` bytes); raises ``SerializationError``."""
    return read_body(environ, MAX_CONTROL_PLANE_BODY)


def _peek_body(environ) -> bytes:
    """Reads the body once and puts it back for whoever handles the request next.

    A body that cannot be read within the control-plane bounds peeks as ``b""`` and is left to the
    next handler (moto) to refuse.
    """
    try:
        body = _read_body(environ)
    except BodyTooLarge:
        return b""  # nothing was read
    except SerializationError:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return body


def _refuse(start_response, refusal: boundary.Refusal, protocol: str) -> Iterable[bytes]:
    status, headers, body = boundary.render(refusal, protocol, str(uuid.uuid4()))
    start_response(status, headers)
    return [body]


def _declared_hash_holds(environ, declared: str, spool_limit: int = 8 << 20) -> bool:
    """Whether a body declared by a hex ``x-amz-content-sha256`` has that digest.

    The body is read once (spooled to disk beyond ``spool_limit``) and put back for the next handler.
    Non-hex values (``UNSIGNED-PAYLOAD``, ``STREAMING-*``) declare nothing to check.
    """
    if not re.fullmatch(r"[0-9a-f]{64}", declared.strip().lower()):
        return True
    if "smlocal.body" in environ:
        return hashlib.sha256(environ["smlocal.body"]).hexdigest() == declared.strip().lower()
    length = environ.get("CONTENT_LENGTH") or "0"
    if not length.isdigit():
        return True  # malformed framing is refused by the request handler
    remaining, digest = int(length), hashlib.sha256()
    spool = tempfile.SpooledTemporaryFile(max_size=spool_limit)
    source = environ["wsgi.input"]
    while remaining > 0:
        chunk = source.read(min(remaining, 1 << 20))
        if not chunk:
            break
        digest.update(chunk)
        spool.write(chunk)
        remaining -= len(chunk)
    spool.seek(0)
    environ["wsgi.input"] = spool
    return digest.hexdigest() == declared.strip().lower()


def _runtime_error(start_response, message: str, code: str = "ValidationError") -> Iterable[bytes]:
    """A SageMaker runtime error (REST-JSON: the code in ``x-amzn-ErrorType`` and ``__type``)."""
    payload = json.dumps({"__type": code, "message": message}).encode()
    start_response(boundary.status_line(400), [("Content-Type", "application/json"), ("x-amzn-ErrorType", code),
                                       ("Content-Length", str(len(payload)))])
    return [payload]


def _json(start_response, status: int, payload: dict, request_id: str, error_type: str | None = None):
    data = json.dumps(payload, separators=(",", ":")).encode()
    headers = [
        ("Content-Type", "application/x-amz-json-1.1"),
        ("Content-Length", str(len(data))),
        ("x-amzn-RequestId", request_id),
    ]
    if error_type:
        headers.append(("x-amzn-ErrorType", error_type))
    start_response(boundary.status_line(status), headers)
    return [data]
