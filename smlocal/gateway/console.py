"""The console: a browser UI served by the gateway under ``/_smlocal/console/``, same origin as the API.

What is served here:

* ``/_smlocal/console/`` → ``index.html``; when the server is bound to loopback the page carries the
  per-server console token in a ``<meta>``; otherwise the user opens ``#token=...`` (a fragment: never
  sent to the server or its logs; see :func:`console_url`);
* ``/_smlocal/console/<path>`` → a file under ``console_static`` (and nothing else: no ``..``, no
  encoded separators, no absolute paths, no symlink leaving the folder);
* ``/_smlocal/console/api/<name>?...`` → a read-only console API handler, which needs the console token
  header. A handler is called with the :class:`Console` (its SageMaker ``service`` and its
  :class:`Readers`) and the query parameters; it answers a werkzeug ``Response`` or raises a
  :class:`~smlocal.errors.ServiceError`, which is answered in AWS's JSON shape.

Every console answer carries a strict Content-Security-Policy (no inline script, nothing from another
origin) and frame/sniffing/referrer protections. The console token is not the admin token and opens no
admin call; how the boundary treats the console's own SageMaker calls is in
:func:`smlocal.gateway.boundary.console_call`.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import parse_qsl

from werkzeug.wrappers import Response

from smlocal.errors import ServiceError
from smlocal.gateway import boundary

log = logging.getLogger(__name__)

CONSOLE_PATH = boundary.CONSOLE_PREFIX  # "/_smlocal/console/"
TOKEN_HEADER = boundary.CONSOLE_TOKEN_HEADER
STATIC_ROOT = Path(__file__).resolve().with_name("console_static")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
SECURITY_HEADERS = (("Content-Security-Policy", CSP), ("X-Frame-Options", "DENY"),
                    ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"),
                    ("Cross-Origin-Resource-Policy", "same-origin"))
SANDBOX_HEADER = ("Content-Security-Policy", "sandbox")
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
          ".json": "application/json", ".txt": "text/plain; charset=utf-8", "": "text/plain; charset=utf-8"}
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]*$")
_TOKEN_META = '<meta name="smlocal-console-token" content="">'

Handler = Callable[["Console", dict[str, str]], Response]


@dataclass(frozen=True)
class Readers:
    """The server's own clients console handlers read with: ``s3`` (the training runtime's S3 client,
    the path the jobs' data takes) and ``logs`` (its CloudWatch Logs client)."""

    s3: Any
    logs: Any


def console_url(endpoint: str, token: str, loopback: bool) -> str:
    """The URL to open the console of the server at ``endpoint``.

    On loopback the page carries the token itself; otherwise the token travels in the fragment
    (``#token=``), which browsers never send to the server.
    """
    base = endpoint.rstrip("/") + CONSOLE_PATH
    return base if loopback else f"{base}#token={token}"


def json_answer(payload: Any, status: int = 200) -> Response:
    """A JSON answer of a console API handler."""
    return Response(json.dumps(payload, separators=(",", ":"), default=str), status=status,
                    content_type="application/json")


def error_answer(code: str, message: str, status: int) -> Response:
    """An AWS-shaped error (``{"__type", "message"}``) of a console API handler."""
    response = json_answer({"__type": code, "message": message}, status)
    response.headers["x-amzn-ErrorType"] = code
    return response


class Console:
    """The WSGI handler of ``/_smlocal/console/*`` (the gateway has checked Host and Origin already).

    Attributes:
        service: the SageMaker service handlers call.
        token: this server's console token (None: no API call is accepted).
        readers: the S3 and Logs clients handlers read with, set by the server once its runtime exists
            (None until then: the handlers that need them answer ``ServiceUnavailable``).
    """

    def __init__(self, service, token: str | None, handlers: Mapping[str, Handler], root: Path = STATIC_ROOT):
        """``handlers``: the API, name → handler."""
        self.service = service
        self.token = token
        self.readers: Readers | None = None
        self.handlers = dict(handlers)
        self.root = root.resolve()

    def require_readers(self) -> Readers:
        """The S3/Logs readers; raises ``ServiceUnavailable`` (503) before the server has set them."""
        if self.readers is None:
            raise ServiceError("smlocal's console has no S3/Logs readers yet (the server is starting).",
                               code="ServiceUnavailable", status=503)
        return self.readers

    def __call__(self, environ: dict[str, Any], start_response, embed_token: bool) -> Iterable[bytes]:
        """Answers a console request; ``embed_token``: whether index.html may carry the token (loopback)."""
        response = self._answer(environ, embed_token)
        for name, value in SECURITY_HEADERS:
            response.headers[name] = value
        response.headers.setdefault("Cache-Control", "no-store")
        return response(environ, start_response)

    def _answer(self, environ: dict[str, Any], embed_token: bool) -> Response:
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            response = error_answer("MethodNotAllowed", "The smlocal console answers GET only.", 405)
            response.headers["Allow"] = "GET, HEAD"
            return response
        path = environ.get("PATH_INFO", "")
        if path == CONSOLE_PATH.rstrip("/"):
            return Response("", status=308, headers={"Location": CONSOLE_PATH})
        rest = path[len(CONSOLE_PATH):]
        if rest.startswith("api/"):
            return self._api(rest[len("api/"):], environ)
        if rest in ("", "index.html"):
            return self._index(embed_token)
        return self._static(rest, environ)

    # ---- API
    def _api(self, name: str, environ: dict[str, Any]) -> Response:
        if not boundary.console_token_valid(environ, self.token):
            return error_answer("AccessDeniedException", f"Console API calls need this server's {TOKEN_HEADER} "
                                "(open the URL `smlocal console` prints).", 403)
        handler = self.handlers.get(name)
        if handler is None:
            return error_answer("UnknownOperationException", f"Unknown smlocal console API {name!r}.", 404)
        params = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        try:
            return handler(self, params)
        except ServiceError as exc:
            if exc.status >= 500:
                log.warning("console API %s answered %s: %s", name, exc.code, exc.message)
            return error_answer(exc.code, exc.message, exc.status)
        except Exception as exc:  # noqa: BLE001 - never a stack trace to the page
            log.exception("console API %s failed", name)
            return error_answer("InternalFailure", f"smlocal internal error in console API {name}: {exc}", 500)

    # ---- files
    def _index(self, embed_token: bool) -> Response:
        try:
            html = (self.root / "index.html").read_text("utf-8")
        except OSError:
            return _not_found("index.html")
        token = self.token if embed_token and self.token else ""
        html = html.replace(_TOKEN_META, f'<meta name="smlocal-console-token" content="{token}">', 1)
        return Response(html, content_type=_TYPES[".html"])

    def _static(self, rest: str, environ: dict[str, Any]) -> Response:
        file = self.resolve(rest, boundary.raw_path_and_query(environ)[0])
        if file is None:
            if rest.startswith("vendor/"):
                return Response(f"{rest} is missing: run `python -m smlocal.gateway.console_vendor` (./dev does it) "
                                "to fetch the console's libraries.\n", status=404, content_type=_TYPES[""])
            return _not_found(rest)
        response = Response(file.read_bytes(), content_type=_TYPES[file.suffix.lower()])
        response.headers["Cache-Control"] = "no-cache"
        return response

    def resolve(self, rest: str, raw_path: str = "") -> Path | None:
        """The file ``rest`` (the path after the console prefix) names under the static root, or None.

        Refuses empty, ``.``/``..`` and hidden segments, backslashes, encoded separators or dots in the
        raw path, absolute paths, unknown file types and anything resolving outside the root.
        """
        lowered = raw_path.lower()
        if "%2e" in lowered or "%2f" in lowered or "%5c" in lowered or "\\" in rest or "\x00" in rest:
            return None
        parts = rest.split("/")
        if not parts or not all(_SEGMENT.match(part) for part in parts):
            return None
        candidate = self.root.joinpath(*parts)
        if candidate.suffix.lower() not in _TYPES:
            return None
        try:
            real = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not real.is_file() or not real.is_relative_to(self.root):
            return None
        return real


def _not_found(rest: str) -> Response:
    return Response(f"{rest}: no such console file\n", status=404, content_type=_TYPES[""])

