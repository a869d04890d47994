"""The HTTP wire under the gateway: bounded bodies, strict framing, bounded JSON, target routing.

Everything here is about bytes and headers, not about SageMaker resources:

* :func:`framing_problem` says why a request's ``Content-Length`` / ``Transfer-Encoding`` cannot be
  trusted (``abc``, ``-5``, two different lengths); the request handler answers those with a 400
  before any application reads a byte (:func:`framing_refusal` builds that answer);
* :func:`read_body` reads at most ``limit`` bytes, never waits past the socket's read timeout and
  never blocks on a body shorter than its ``Content-Length``;
* :func:`parse_json_object` decodes an AWS JSON body with a nesting-depth bound and without the
  ``NaN``/``Infinity`` extensions of Python's decoder (string sizes are bounded by the body limit
  here and by each shape's ``max`` length in :mod:`smlocal.service.validation`);
* :func:`moto_serves_target` says whether a non-SageMaker ``X-Amz-Target`` names an operation of a
  JSON-protocol service that moto answers in process;
* :func:`request_timeout` is the read timeout of request sockets.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from typing import Any

from smlocal.errors import SerializationError

__all__ = [
    "DEFAULT_REQUEST_TIMEOUT", "MAX_CONTROL_PLANE_BODY", "MAX_JSON_DEPTH", "TIMEOUT_ENV", "SerializationError",
    "BodyTooLarge", "framing_problem", "framing_refusal", "moto_serves_target", "parse_json_object",
    "read_body", "request_timeout",
]

log = logging.getLogger(__name__)

#: Largest SageMaker control-plane request body accepted (16 MiB).
MAX_CONTROL_PLANE_BODY = 16 * 1024 * 1024
#: Deepest JSON nesting accepted. The deepest non-recursive SageMaker input shape is 10 levels deep;
#: the recursive ``SearchExpression`` gets about 30 levels of sub-expressions out of 100.
MAX_JSON_DEPTH = 100
#: Seconds a request socket may stay silent (headers or body) before the server gives up on it.
DEFAULT_REQUEST_TIMEOUT = 60.0
#: Environment variable overriding :data:`DEFAULT_REQUEST_TIMEOUT` (seconds, > 0).
TIMEOUT_ENV = "SMLOCAL_REQUEST_TIMEOUT"

_CHUNK = 1024 * 1024
_DIGITS = re.compile(r"[0-9]{1,18}")  # RFC 9110 ``1*DIGIT``; 18 digits keep it a sane int


class BodyTooLarge(SerializationError):
    """The request body is larger than the operation accepts."""

    code = "RequestEntityTooLargeException"
    status = 413

    def __init__(self, size: int | None, limit: int):
        of = "" if size is None else f" of {size} bytes"
        super().__init__(f"Request body{of} is larger than the maximum of {limit} bytes.")
        self.size, self.limit = size, limit


# --- framing ---------------------------------------------------------------------------------------

def _content_length(value: str) -> int | None:
    value = value.strip(" \t")
    return int(value) if _DIGITS.fullmatch(value) else None


def framing_problem(content_lengths: list[str], transfer_encoding: str | None = None) -> str | None:
    """Why the body's length cannot be known from these headers, or ``None`` if it can.

    Args:
        content_lengths: every ``Content-Length`` header value of the request.
        transfer_encoding: the ``Transfer-Encoding`` header, if any (``chunked`` makes the server
            find the end, and a ``Content-Length`` beside it is ignored as RFC 9112 says).
    """
    if transfer_encoding and "chunked" in transfer_encoding.lower():
        return None
    lengths = set()
    for value in content_lengths:
        length = _content_length(value)
        if length is None:
            return f"Invalid Content-Length header: {value!r} is not a non-negative integer."
        lengths.add(length)
    if len(lengths) > 1:
        return "Conflicting Content-Length headers: " + ", ".join(sorted(map(str, lengths))) + "."
    return None


def framing_refusal(problem: str, target: str | None) -> tuple[int, list[tuple[str, str]], bytes]:
    """The 400 for a request whose framing is broken, in the protocol the client spoke.

    A request with an ``X-Amz-Target`` (AWS JSON) gets ``{"__type", "message"}``; any other (S3's
    REST-XML, the query protocols of STS and IAM) gets an ``<Error>`` document.
    """
    if target:
        body = json.dumps({"__type": "SerializationException", "message": problem}).encode()
        headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", "SerializationException")]
    else:
        text = problem.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>BadRequest</Code>'
                f"<Message>{text}</Message></Error>").encode()
        headers = [("Content-Type", "application/xml")]
    return 400, headers + [("Content-Length", str(len(body))), ("Connection", "close")], body


# --- bodies ----------------------------------------------------------------------------------------

def read_body(environ: dict[str, Any], limit: int) -> bytes:
    """The request body, read once (later calls return the same bytes).

    Raises:
        BodyTooLarge: the body is longer than ``limit`` (a ``Content-Length`` over it is refused
            before anything is read).
        SerializationError: the ``Content-Length`` is malformed, the client sent fewer bytes than it
            announced, or it stayed silent past the socket's read timeout.
    """
    if "smlocal.body" in environ:
        return environ["smlocal.body"]
    stream = environ["wsgi.input"]
    if environ.get("wsgi.input_terminated"):  # chunked: the server finds the end of the body
        body = _read(stream, limit + 1, exact=False)
        if len(body) > limit:
            raise BodyTooLarge(None, limit)
    else:
        raw = environ.get("CONTENT_LENGTH") or "0"
        length = _content_length(raw)
        if length is None:
            raise SerializationError(f"Invalid Content-Length header: {raw!r} is not a non-negative integer.")
        if length > limit:
            raise BodyTooLarge(length, limit)
        body = _read(stream, length, exact=True)
    environ["smlocal.body"] = body
    return body


def _read(stream, size: int, *, exact: bool) -> bytes:
    parts, got = [], 0
    read = getattr(stream, "read1", stream.read)  # read1: what has arrived, so a timeout loses nothing
    try:
        while got < size:
            chunk = read(min(_CHUNK, size - got))
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
    except TimeoutError as exc:  # socket.timeout: the client went silent mid-body
        raise SerializationError(f"The request body was not received in time ({got} of {size} bytes).") from exc
    except OSError as exc:  # the client reset the connection
        raise SerializationError(f"The request body was cut off ({got} of {size} bytes).") from exc
    if exact and got < size:
        raise SerializationError(f"The request body is shorter than its Content-Length ({got} of {size} bytes).")
    return b"".join(parts)


# --- JSON ------------------------------------------------------------------------------------------

def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


def parse_json_object(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """Decode an AWS JSON 1.1 request body into a dict (an empty body is ``{}``).

    Raises:
        SerializationError: (``SerializationException``) not JSON, not an object, or nested deeper than
            ``max_depth`` arrays/objects.
    """
    if not body.strip():
        return {}
    try:
        value = json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        raise SerializationError(f"Request body is nested deeper than {max_depth} levels.") from None
    except ValueError as exc:  # includes UnicodeDecodeError and the 4300-digit integer limit
        raise SerializationError("Request body is not valid JSON") from exc
    if not isinstance(value, dict):
        raise SerializationError("Request body must be a JSON object")
    if _deeper_than(value, max_depth):
        raise SerializationError(f"Request body is nested deeper than {max_depth} levels.")
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays/objects nest more than ``limit`` levels (iterative: no recursion limit)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


# --- X-Amz-Target routing --------------------------------------------------------------------------

_TARGETS: dict[str, frozenset[str]] | None = None
_TARGETS_LOCK = threading.Lock()


def _moto_json_targets() -> dict[str, frozenset[str]]:
    """``targetPrefix`` → operation names, for every botocore JSON service moto has a backend for.

    Built on first use (about 1.5 s: one botocore model read per such service) and kept.
    """
    global _TARGETS
    with _TARGETS_LOCK:
        if _TARGETS is None:
            import botocore.session
            from moto import backends

            session = botocore.session.get_session()
            loader = session.get_component("data_loader")
            modules = set(backends.list_of_moto_modules())
            table: dict[str, set[str]] = {}
            for name in session.get_available_services():
                if name.replace("-", "") not in modules or name == "sagemaker":
                    continue
                model = loader.load_service_model(name, "service-2")
                prefix = model.get("metadata", {}).get("targetPrefix")
                if prefix:
                    table.setdefault(prefix, set()).update(model.get("operations", {}))
            _TARGETS = {prefix: frozenset(ops) for prefix, ops in table.items()}
        return _TARGETS


def moto_serves_target(target: str) -> bool:
    """Whether ``X-Amz-Target: <prefix>.<Operation>`` names an operation moto may answer.

    ``SageMaker.*`` is never moto's (smlocal owns that service); a prefix no moto-backed JSON
    service uses, or an operation its service does not have, is not moto's either.
    """
    prefix, dot, operation = target.rpartition(".")
    if not dot or not prefix or not operation or prefix == "SageMaker":
        return False
    return operation in _moto_json_targets().get(prefix, ())


# --- sockets ---------------------------------------------------------------------------------------

def request_timeout() -> float:
    """Seconds a request socket may stay silent: ``$SMLOCAL_REQUEST_TIMEOUT`` or 60."""
    raw = os.environ.get(TIMEOUT_ENV)
    if raw:
        try:
            value = float(raw)
            if value > 0:
                return value
        except ValueError:
            pass
        log.warning("%s=%r is not a positive number of seconds; using %s", TIMEOUT_ENV, raw,
                    DEFAULT_REQUEST_TIMEOUT)
    return DEFAULT_REQUEST_TIMEOUT
