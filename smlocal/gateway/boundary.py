"""Who may talk to the gateway: browser Origins, Host names, the admin secret and the SigV4 rule.

Pure decisions over a WSGI environ and a :class:`BoundaryPolicy`; the gateway does the I/O (reading a
body to hash it, calling the verifier in :mod:`smlocal.auth`) and sends what is decided here.

* A request with an ``Origin`` header that is not allow-listed is refused (403) before anything runs;
  ``Origin: null`` (sandboxed frames, ``file://`` pages) is never allowed. CORS preflights are answered
  only for allow-listed Origins, with exactly that Origin echoed; every other ``Access-Control-*``
  header (moto's permissive CORS) is stripped from responses.
* A browser request from another site that carries no signature (``Sec-Fetch-Site: cross-site`` or
  ``same-site`` without an allowed Origin: ``<img>``, links, forms) is refused too: that is how a page
  would reach moto's query APIs with a plain GET.
* The ``Host`` header must name the server (DNS rebinding): an IP literal, ``localhost``, the bound
  address, the machine's names when bound to all interfaces, a configured name, or a subdomain of a
  name (S3 virtual-hosted buckets), each with or without a port.
* Admin calls (``/_smlocal/*`` except ``health``, and moto's ``/moto-api/*``) need the per-server
  ``X-Smlocal-Admin-Token``; state-changing ones are POST only.
* Bound beyond loopback, every other request must carry a valid SigV4 signature.
* The console (``/_smlocal/console/``) is no admin call. A browser request whose Origin is the server's
  own (``scheme://Host``, the Host having passed its check) is accepted only with this server's console
  token header (``X-Smlocal-Console-Token``, not the admin token), and only for what the console's
  pages call (:func:`console_operation`): SageMaker reads (``Describe*``, ``List*``), the writes
  StopPipelineExecution, RetryPipelineExecution and UpdateModelPackage, and InvokeEndpoint. Such a
  request needs no signature; every other rule still applies to it. No S3, IAM, STS, Logs (or any other
  moto) request, and no admin call, is ever a console call: those keep needing a signature (beyond
  loopback) and stay refused with the server's Origin.
"""

from __future__ import annotations

import hmac
import http
import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable
from xml.sax.saxutils import escape

from smlocal.auth import is_loopback

ADMIN_PREFIX = "/_smlocal/"
MOTO_API_PREFIX = "/moto-api"
ADMIN_TOKEN_HEADER = "X-Smlocal-Admin-Token"
CONSOLE_PREFIX = "/_smlocal/console/"
CONSOLE_TOKEN_HEADER = "X-Smlocal-Console-Token"
READ_ONLY_ADMIN = frozenset({"health"})
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
CORS_METHODS = "GET, HEAD, PUT, POST, DELETE"
CORS_DEFAULT_HEADERS = ("authorization, content-type, content-md5, x-amz-content-sha256, x-amz-date, "
                        "x-amz-security-token, x-amz-target, x-amz-user-agent, amz-sdk-invocation-id, "
                        "amz-sdk-request")
CORS_EXPOSE = ("ETag, x-amz-request-id, x-amz-id-2, x-amz-version-id, x-amz-delete-marker, "
               "x-amzn-RequestId, x-amzn-ErrorType, x-amz-checksum-crc32, x-amz-checksum-crc32c")
CORS_MAX_AGE = "600"
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
CONSOLE_WRITES = frozenset({"StopPipelineExecution", "RetryPipelineExecution", "UpdateModelPackage"})
"""The SageMaker operations that change state which the console's pages call (its stop, retry and
approve/reject buttons); every other console call is a read."""
_CONSOLE_READ = re.compile(r"^(Describe|List)[A-Za-z]+$")
_CONSOLE_INVOKE = re.compile(r"^/endpoints/[^/]+/invocations$")
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")


@dataclass(frozen=True)
class BoundaryPolicy:
    """What the gateway accepts.

    Attributes:
        allowed_origins: browser Origins (``scheme://host[:port]``, lower case) allowed to call.
        allowed_hosts: Host names (no port, lower case) accepted besides IP literals; their
            subdomains are accepted too.
        require_signature: every request (but the health check, preflights of allowed Origins and
            admin calls, which carry the admin token) must be SigV4-signed with a key smlocal holds.
    """

    allowed_origins: frozenset[str] = frozenset()
    allowed_hosts: tuple[str, ...] = LOOPBACK_NAMES
    require_signature: bool = False


@dataclass(frozen=True)
class Refusal:
    """An answer that ends a request before anything runs."""

    status: int
    code: str
    message: str
    headers: tuple[tuple[str, str], ...] = field(default=())


def is_wildcard(host: str) -> bool:
    """Whether a bind address means every interface (``0.0.0.0``, ``::``, empty)."""
    return host.strip().strip("[]") in ("", "0.0.0.0", "::")


def policy_for(bind_host: str, allow_origins: Iterable[str] = (), allowed_hosts: Iterable[str] = (),
               machine_names: Iterable[str] = ()) -> BoundaryPolicy:
    """The policy of a server bound to ``bind_host``.

    Args:
        bind_host: the address the server listens on.
        allow_origins: configured browser Origins (``--allow-origin``).
        allowed_hosts: configured extra Host names (``--allow-host``).
        machine_names: this machine's host names; accepted when bound to every interface.
    """
    hosts = list(LOOPBACK_NAMES)
    bound = _host_literal(bind_host)
    if bound and not is_wildcard(bind_host):
        hosts.append(bound)
    if is_wildcard(bind_host):
        hosts += [name.lower() for name in machine_names if name]
    hosts += [_host_name(name) for name in allowed_hosts]
    origins = frozenset(normalize_origin(origin) for origin in allow_origins)
    return BoundaryPolicy(allowed_origins=origins - {"null"}, allowed_hosts=tuple(dict.fromkeys(h for h in hosts if h)),
                          require_signature=not is_loopback(bind_host))


def normalize_origin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


# ---- Origin and CORS
def request_origin(environ: dict[str, Any]) -> str | None:
    """The request's Origin, normalised; None when it sends none."""
    origin = environ.get("HTTP_ORIGIN")
    return None if origin is None else normalize_origin(origin)


def origin_allowed(environ: dict[str, Any], policy: BoundaryPolicy) -> bool:
    origin = request_origin(environ)
    return origin is not None and origin != "null" and origin in policy.allowed_origins


def check_origin(environ: dict[str, Any], policy: BoundaryPolicy, console_token: str | None = None) -> Refusal | None:
    """Refuses a request carrying an Origin that is not allow-listed (nor the console's, see :func:`console_call`)."""
    origin = request_origin(environ)
    if origin is None or origin_allowed(environ, policy) or console_call(environ, console_token):
        return None
    return Refusal(403, "AccessDeniedException",
                   f"Requests from the browser origin {environ.get('HTTP_ORIGIN')!r} are not allowed; start smlocal "
                   "with --allow-origin ORIGIN (or SMLOCAL_ALLOW_ORIGINS) to allow one.")


def check_fetch_site(environ: dict[str, Any], policy: BoundaryPolicy) -> Refusal | None:
    """Refuses a browser request made by another site's page (``Sec-Fetch-Site``), e.g. an ``<img>`` GET.

    Signature parameters do not exempt it: where this applies (loopback) nothing verifies them, so a page
    could forge them. SDKs never send ``Sec-Fetch-Site``; a URL typed or pasted into the browser is ``none``.
    """
    site = environ.get("HTTP_SEC_FETCH_SITE", "").strip().lower()
    if site not in ("cross-site", "same-site") or origin_allowed(environ, policy):
        return None
    return Refusal(403, "AccessDeniedException", "Requests made by another site's page are not allowed.")


def is_preflight(environ: dict[str, Any]) -> bool:
    return environ.get("REQUEST_METHOD") == "OPTIONS" and "HTTP_ORIGIN" in environ


def preflight_headers(environ: dict[str, Any]) -> list[tuple[str, str]]:
    """The answer to an allowed Origin's preflight: that Origin, the methods and headers SDKs use."""
    requested = [name.strip() for name in environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "").split(",")
                 if name.strip()]
    allowed = ", ".join(name for name in requested if _TOKEN.match(name)) or CORS_DEFAULT_HEADERS
    return cors_headers(environ) + [
        ("Access-Control-Allow-Methods", CORS_METHODS),
        ("Access-Control-Allow-Headers", allowed),
        ("Access-Control-Max-Age", CORS_MAX_AGE),
        ("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
    ]


def cors_headers(environ: dict[str, Any]) -> list[tuple[str, str]]:
    """CORS headers of an allowed Origin's request: exactly its Origin echoed (as sent)."""
    return [("Access-Control-Allow-Origin", environ["HTTP_ORIGIN"].strip()),
            ("Access-Control-Expose-Headers", CORS_EXPOSE), ("Vary", "Origin")]


def without_cors(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``headers`` without any ``Access-Control-*`` (what moto's permissive CORS adds)."""
    return [(name, value) for name, value in headers if not name.lower().startswith("access-control-")]


# ---- the console
def is_console_path(path: str) -> bool:
    return path == CONSOLE_PREFIX.rstrip("/") or path.startswith(CONSOLE_PREFIX)


def console_token_valid(environ: dict[str, Any], token: str | None) -> bool:
    """Whether the request carries this server's console token (``token``; None accepts nothing)."""
    presented = environ.get("HTTP_X_SMLOCAL_CONSOLE_TOKEN", "")
    return bool(token and presented and hmac.compare_digest(presented.encode(), token.encode()))


def own_origins(environ: dict[str, Any]) -> set[str]:
    """The Origins a page served by this request's Host has (``scheme://host[:port]``, with and without
    the scheme's default port); empty without a Host."""
    host = environ.get("HTTP_HOST", "").strip().lower()
    if not host:
        return set()
    scheme = environ.get("wsgi.url_scheme", "http")
    default = {"http": ":80", "https": ":443"}.get(scheme, "")
    origins = {f"{scheme}://{host}"}
    if default and host.endswith(default):
        origins.add(f"{scheme}://{host[:-len(default)]}")
    return origins


def console_operation(environ: dict[str, Any]) -> bool:
    """Whether the request is one the console's pages make (see the module docstring): a POST of
    ``X-Amz-Target: SageMaker.<Describe*|List*|one of CONSOLE_WRITES>``, or ``POST
    /endpoints/<name>/invocations``, carrying no credential (an unverified Authorization header or
    presigned query would decide where the request is routed)."""
    if environ.get("REQUEST_METHOD") != "POST" or environ.get("HTTP_AUTHORIZATION") is not None:
        return False
    if "x-amz-credential=" in environ.get("QUERY_STRING", "").lower():
        return False
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target is not None:
        service, _, operation = target.partition(".")
        return service == "SageMaker" and bool(_CONSOLE_READ.match(operation) or operation in CONSOLE_WRITES)
    return bool(_CONSOLE_INVOKE.match(environ.get("PATH_INFO", "")))


def console_call(environ: dict[str, Any], token: str | None) -> bool:
    """Whether this is the console's own call: the server's own Origin, its valid console token and one of
    the operations the console makes (:func:`console_operation`)."""
    origin = request_origin(environ)
    return bool(origin and origin in own_origins(environ) and console_token_valid(environ, token)
                and console_operation(environ))


# ---- Host (DNS rebinding)
def check_host(environ: dict[str, Any], policy: BoundaryPolicy) -> Refusal | None:
    """Refuses a Host header that names neither this server nor an accepted name."""
    host = environ.get("HTTP_HOST")
    if host is None or host_allowed(host, policy):
        return None
    return Refusal(403, "AccessDeniedException",
                   f"Host {host!r} is not a name of this smlocal server; add it with --allow-host NAME "
                   "(or SMLOCAL_ALLOWED_HOSTS).")


def host_allowed(host: str, policy: BoundaryPolicy) -> bool:
    name = _host_name(host)
    if not name:
        return False
    if _is_ip_literal(name):
        return True  # an IP address cannot be rebound: the browser's origin is the address itself
    for allowed in policy.allowed_hosts:
        if name == allowed or (not _is_ip_literal(allowed) and name.endswith("." + allowed)):
            return True
    return False


def _host_name(host: str) -> str:
    """``Host`` header value → the name without port, lower case, without a trailing dot."""
    value = host.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return ""
        rest = value[end + 1:]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return ""
        return value[:end + 1]
    name, sep, port = value.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        value = name
    elif ":" in value:
        return ""
    value = value[:-1] if value.endswith(".") else value
    # a DNS name (letters, digits, '-', '_', non-empty labels): no '/', '%', ',' ... that would become
    # part of a virtual-hosted bucket's path, and no two Host headers joined by ','
    return value if _HOST_NAME.fullmatch(value) else ""


def _host_literal(bind_host: str) -> str:
    name = bind_host.strip().lower()
    if ":" in name and not name.startswith("["):
        return f"[{name}]"
    return name


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]") if name.startswith("[") else name)
    except ValueError:
        return False
    return not name.startswith("[") or name.endswith("]")


# ---- admin calls
def is_admin_path(path: str) -> bool:
    if is_console_path(path):
        return False
    return path.startswith(ADMIN_PREFIX) or path == MOTO_API_PREFIX or path.startswith(MOTO_API_PREFIX + "/")


def check_admin(environ: dict[str, Any], token: str | None) -> Refusal | None:
    """Admin calls: ``health`` is open to GET/HEAD; everything else needs POST (moto-api: any method
    moto wants) and the server's admin token."""
    path = environ.get("PATH_INFO", "")
    method = environ.get("REQUEST_METHOD", "GET")
    if path.startswith(ADMIN_PREFIX):
        name = path[len(ADMIN_PREFIX):]
        if name in READ_ONLY_ADMIN and method in ("GET", "HEAD", "POST"):
            return None
        if method != "POST":
            return Refusal(405, "MethodNotAllowed", f"smlocal admin call {name} must be a POST "
                           f"with the {ADMIN_TOKEN_HEADER} header.", (("Allow", "POST"),))
    presented = environ.get("HTTP_X_SMLOCAL_ADMIN_TOKEN", "")
    if token and presented and hmac.compare_digest(presented.encode(), token.encode()):
        return None
    return Refusal(403, "AccessDeniedException",
                   f"Admin calls need this server's {ADMIN_TOKEN_HEADER} (SMLOCAL_ADMIN_TOKEN, or the "
                   "server record smlocal writes in its runtime folder).")


# ---- signatures
_SIGNATURE_CODES = {  # kind → (status, JSON code, query code, S3 code)
    "missing": (403, "MissingAuthenticationTokenException", "MissingAuthenticationToken", "AccessDenied"),
    "malformed": (400, "IncompleteSignatureException", "IncompleteSignature", "AuthorizationHeaderMalformed"),
    "unknown-key": (403, "UnrecognizedClientException", "InvalidClientTokenId", "InvalidAccessKeyId"),
    "mismatch": (403, "InvalidSignatureException", "SignatureDoesNotMatch", "SignatureDoesNotMatch"),
    "skewed": (403, "InvalidSignatureException", "SignatureDoesNotMatch", "RequestTimeTooSkewed"),
    "expired": (403, "InvalidSignatureException", "SignatureDoesNotMatch", "AccessDenied"),
}


def needs_signature(environ: dict[str, Any], policy: BoundaryPolicy, console_token: str | None = None) -> bool:
    """Whether this request must carry a verified signature (admin calls carry the admin token, the
    console's own calls its console token)."""
    if not policy.require_signature or is_admin_path(environ.get("PATH_INFO", "")):
        return False
    if console_call(environ, console_token):
        return False
    return not (is_preflight(environ) and origin_allowed(environ, policy))


def signature_refusal(kind: str, message: str, protocol: str) -> Refusal:
    """The AWS error a service of ``protocol`` answers for a signature failure of ``kind``."""
    status, json_code, query_code, s3_code = _SIGNATURE_CODES[kind]
    code = {"json": json_code, "query": query_code}.get(protocol, s3_code)
    if kind == "unknown-key" and protocol == "json":
        message = "The security token included in the request is invalid."
    return Refusal(status, code, message)


def protocol_of(environ: dict[str, Any], scope_service: str) -> str:
    """The wire protocol a request speaks: ``json``, ``query`` (STS, IAM ...) or ``rest-xml`` (S3)."""
    if environ.get("HTTP_X_AMZ_TARGET") or environ.get("PATH_INFO", "").startswith("/endpoints/"):
        return "json"
    if scope_service == "s3":
        return "rest-xml"
    content_type = environ.get("CONTENT_TYPE", "")
    if content_type.startswith("application/x-www-form-urlencoded") or "Action=" in environ.get("QUERY_STRING", ""):
        return "query"
    if "json" in content_type:
        return "json"
    return "rest-xml"


def render(refusal: Refusal, protocol: str, request_id: str) -> tuple[str, list[tuple[str, str]], bytes]:
    """(status line, headers, body) of a refusal, shaped as the protocol's AWS errors are."""
    if protocol == "rest-xml":
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error>'
                f"<Code>{escape(refusal.code)}</Code><Message>{escape(refusal.message)}</Message>"
                f"<RequestId>{request_id}</RequestId></Error>").encode()
        headers = [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)]
    elif protocol == "query":
        body = ("<ErrorResponse><Error><Type>Sender</Type>"
                f"<Code>{escape(refusal.code)}</Code><Message>{escape(refusal.message)}</Message></Error>"
                f"<RequestId>{request_id}</RequestId></ErrorResponse>").encode()
        headers = [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)]
    else:
        body = json.dumps({"__type": refusal.code, "message": refusal.message}, separators=(",", ":")).encode()
        headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-RequestId", request_id),
                   ("x-amzn-ErrorType", refusal.code)]
    headers += list(refusal.headers) + [("Content-Length", str(len(body)))]
    return status_line(refusal.status), headers, body


def status_line(status: int) -> str:
    """The WSGI status line of an HTTP status code (``"403 Forbidden"``)."""
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Error"


def wsgi_headers(environ: dict[str, Any]) -> dict[str, str]:
    """Request headers from a WSGI environ, names in lower case (as the SigV4 verifier wants them)."""
    headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items()
               if key.startswith("HTTP_") and isinstance(value, str)}
    for key, name in (("CONTENT_TYPE", "content-type"), ("CONTENT_LENGTH", "content-length")):
        if environ.get(key):
            headers[name] = environ[key]
    return headers


def raw_path_and_query(environ: dict[str, Any]) -> tuple[str, str]:
    """The request target's path (still percent-encoded) and query, as the client sent them."""
    target = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not target:
        from urllib.parse import quote

        return quote(environ.get("PATH_INFO", "") or "/", safe="/~!$&'()*+,;=:@%"), environ.get("QUERY_STRING", "")
    if "://" in target.split("?", 1)[0]:  # absolute-form request target
        target = "/" + target.split("://", 1)[1].partition("/")[2]
    path, _, query = target.partition("?")
    return path or "/", query
