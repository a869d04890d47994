"""Credentials, at the bottom of the layers: smlocal's key pair, S3 credentials and the client environment.

Everything that needs to know which keys smlocal answers to (the server, the runtime that gives a
job its environment, the CLI, the pytest plugin) imports them from here; this module imports only
:mod:`smlocal.config`, so the runtime never reaches the client or server side for a key.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import quote, unquote_to_bytes

from smlocal.config import DEFAULT_ROLE_NAME, Settings

# smlocal's own key pair: what its clients sign with (on loopback any key pair is accepted)
CLIENT_ACCESS_KEY = "smlocal"
CLIENT_SECRET_KEY = "smlocal-secret"
MINIO_DEFAULT_CREDENTIALS = ("minioadmin", "minioadmin")
HOOKS_DIR = Path(__file__).parent / "_hooks"


def s3_credentials(settings: Settings) -> tuple[str, str]:
    """Credentials for S3: smlocal's own for the embedded moto, the store's for an external one."""
    if not settings.s3_endpoint:
        return CLIENT_ACCESS_KEY, client_secret_key()
    if settings.s3_access_key_id and settings.s3_secret_access_key:
        return settings.s3_access_key_id, settings.s3_secret_access_key
    return (
        os.environ.get("SMLOCAL_S3_ACCESS_KEY_ID", MINIO_DEFAULT_CREDENTIALS[0]),
        os.environ.get("SMLOCAL_S3_SECRET_ACCESS_KEY", MINIO_DEFAULT_CREDENTIALS[1]),
    )


def client_environment(endpoint: str, settings: Settings) -> dict[str, str]:
    """Environment variables that send every AWS client to smlocal.

    * ``AWS_ENDPOINT_URL`` for every service (botocore ≥ 1.31 honours it), and
      ``AWS_ENDPOINT_URL_S3`` only when S3 is an external store (``--s3-endpoint``): the in-memory S3
      and smlocal's own durable store (``smlocal up --data-dir``, reached through the gateway's S3
      proxy) are on the gateway's port, with smlocal's key pair;
    * region and credentials (with an external store, its credentials: moto accepts any);
    * ``PYTHONPATH`` gains smlocal's site hook, which redirects SDK clients built with explicit
      ``*.amazonaws.com`` endpoints (the SDK's regional STS client) to smlocal and, unless
      ``SMLOCAL_FAST_POLL=0``, shortens SDK/boto3 waiter sleeps so local jobs are seen finishing at once.
    """
    key, secret = s3_credentials(settings)
    role_arn = f"arn:aws:iam::{settings.account_id}:role/{DEFAULT_ROLE_NAME}"
    env = {
        "SMLOCAL_ENDPOINT": endpoint,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": settings.region,
        "AWS_REGION": settings.region,
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "SMLOCAL_ROLE_ARN": role_arn,
        "SAGEMAKER_ROLE_ARN": role_arn,
    }
    if settings.s3_endpoint:
        env["AWS_ENDPOINT_URL_S3"] = settings.s3_client_endpoint or settings.s3_endpoint
    existing = os.environ.get("PYTHONPATH")
    env["PYTHONPATH"] = str(HOOKS_DIR) + (os.pathsep + existing if existing else "")
    return env


def runtime_dir() -> Path:
    """Where running servers record their endpoint and admin secret (created mode 0700 on use).

    ``SMLOCAL_RUNTIME_DIR``, else ``$XDG_RUNTIME_DIR/smlocal``, else ``~/.smlocal/run``. Job
    sandboxes never see this folder (the process backend mounts an empty one over it).
    """
    explicit = os.environ.get("SMLOCAL_RUNTIME_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "smlocal"
    return Path.home() / ".smlocal" / "run"


# ---- smlocal's secret, the admin secret and the server record

def client_secret_key() -> str:
    """The secret of smlocal's own key pair: ``SMLOCAL_SECRET_ACCESS_KEY``, else :data:`CLIENT_SECRET_KEY`."""
    return os.environ.get("SMLOCAL_SECRET_ACCESS_KEY") or CLIENT_SECRET_KEY


def accepted_keys(settings: Settings) -> dict[str, str]:
    """Access key → secret of every key pair a non-loopback server verifies signatures against.

    smlocal's own pair, and with an external S3 store the store's pair too (the client environment
    hands that one to clients). Temporary credentials moto issues (``ASIA...``) are not in here.
    """
    keys = {CLIENT_ACCESS_KEY: client_secret_key()}
    if settings.s3_endpoint:
        key, secret = s3_credentials(settings)
        keys.setdefault(key, secret)
    return keys


def container_key_pair() -> tuple[str, str]:
    """A fresh random key pair for one server's containers: the only pair its listener for
    containers accepts (besides an external S3 store's, which jobs need for the store itself), so a
    container that is not one of its jobs cannot sign with the well-known default pair."""
    return "SMLC" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30)


def container_keys(settings: Settings, pair: tuple[str, str]) -> dict[str, str]:
    """Access key → secret the containers' listener verifies against: ``pair``, and with an external
    S3 store that store's pair (the one jobs are given for it)."""
    keys = {pair[0]: pair[1]}
    if settings.s3_endpoint:
        key, secret = s3_credentials(settings)
        keys.setdefault(key, secret)
    return keys


def server_record_path(port: int) -> Path:
    """The record file of the server listening on ``port``: endpoint, pid and admin token."""
    return runtime_dir() / f"server-{int(port)}.json"


def write_server_record(port: int, record: dict) -> Path:
    """Writes the record (mode 0600, in a 0700 folder) atomically; returns its path."""
    import json

    folder = runtime_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    path = server_record_path(port)
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(record, out)
    os.replace(temp, path)
    return path


def remove_server_record(port: int, token: str) -> None:
    """Removes the record of ``port`` if it is still this server's (same token)."""
    path = server_record_path(port)
    record = read_server_record(port)
    if record is not None and record.get("adminToken") == token:
        path.unlink(missing_ok=True)


def read_server_record(port: int) -> dict | None:
    import json

    try:
        data = json.loads(server_record_path(port).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_loopback(host: str) -> bool:
    """Whether an address or name reaches only this machine (127.0.0.0/8, ::1, ``localhost``)."""
    import ipaddress

    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def admin_token_for(endpoint: str) -> str | None:
    """The admin token for the server at ``endpoint``: ``SMLOCAL_ADMIN_TOKEN``, else its record file."""
    from urllib.parse import urlsplit

    explicit = os.environ.get("SMLOCAL_ADMIN_TOKEN")
    if explicit:
        return explicit
    try:
        parts = urlsplit(endpoint)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    if not is_loopback(parts.hostname or ""):
        return None  # the records are of servers on this machine: never send one's token elsewhere
    record = read_server_record(port) or {}
    token = record.get("adminToken")
    return token if isinstance(token, str) and token else None


# ---- AWS Signature Version 4, verified (the server side of what every AWS SDK signs)

SIGV4_ALGORITHM = "AWS4-HMAC-SHA256"
MAX_CLOCK_SKEW_SECONDS = 15 * 60  # what AWS tolerates between a request's X-Amz-Date and its clock
MAX_PRESIGN_EXPIRES = 7 * 24 * 3600
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_UNRESERVED = "-_.~"  # RFC 3986 unreserved characters besides letters and digits


@dataclass(frozen=True)
class SignatureFailure:
    """Why a request's signature was not accepted.

    ``kind`` is one of ``missing`` (no signature at all), ``malformed`` (an Authorization header or
    presigned query that is not SigV4), ``unknown-key`` (an access key smlocal does not hold),
    ``mismatch`` (the signature is not the one the secret gives), ``skewed`` (X-Amz-Date more than
    15 minutes off) or ``expired`` (a presigned URL past its X-Amz-Expires).
    """

    kind: str
    message: str
    access_key: str = ""
    service: str = ""


@dataclass(frozen=True)
class _Signed:
    access_key: str
    date: str  # YYYYMMDD of the credential scope
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str  # YYYYMMDDTHHMMSSZ
    expires: int | None  # presigned URLs only
    presigned: bool


def credential_scope_service(headers: Mapping[str, str], query_string: str) -> str:
    """The service named in a request's SigV4 credential scope ('' if none can be read)."""
    credential = ""
    match = re.search(r"Credential=([^,\s]+)", headers.get("authorization", ""))
    if match:
        credential = match.group(1)
    else:
        for name, value in _query_pairs(query_string):
            if name.lower() == b"x-amz-credential":
                credential = unquote_to_bytes(value).decode("utf-8", "replace")
    parts = credential.split("/")
    return parts[3] if len(parts) == 5 else ""


def verify_sigv4(method: str, raw_path: str, query_string: str, headers: Mapping[str, str],
                 body_sha256: Callable[[], str], secret_lookup: Callable[[str], str | None],
                 now: float | None = None) -> SignatureFailure | None:
    """Checks a request's SigV4 signature (Authorization header or presigned query); None when valid.

    Args:
        method: the HTTP method.
        raw_path: the path as sent on the wire (still percent-encoded), without the query.
        query_string: the raw query string (percent-encoded, without ``?``).
        headers: the request headers, names in lower case (repeated headers joined by ``,``).
        body_sha256: gives the hex SHA-256 of the body; called for every service but S3, and for S3
            only when neither an ``x-amz-content-sha256`` header nor a presigned URL gives the hash.
        secret_lookup: access key → secret, None for a key smlocal does not hold.
        now: the current time (epoch seconds), for tests.

    The canonical request follows the SigV4 specification: the path URI-encoded twice except for
    S3 (once), dot segments and repeated slashes removed except for S3; query parameters decoded,
    re-encoded with RFC 3986 rules and sorted; signed headers trimmed with inner spaces collapsed;
    the payload hash, for S3, from ``x-amz-content-sha256`` when sent (a hex digest, ``UNSIGNED-PAYLOAD``
    or a ``STREAMING-*`` value), ``UNSIGNED-PAYLOAD`` for presigned URLs, else the body's SHA-256; for
    every other service always the body's SHA-256, whatever the headers say (as AWS computes it).
    """
    parsed = _parse_signed(headers, query_string)
    if isinstance(parsed, SignatureFailure):
        return parsed
    secret = secret_lookup(parsed.access_key)
    if secret is None:
        return SignatureFailure("unknown-key", f"The access key {parsed.access_key} is not one smlocal holds.",
                                parsed.access_key, parsed.service)
    moment = _parse_amz_date(parsed.amz_date)
    if moment is None or parsed.amz_date[:8] != parsed.date:
        return SignatureFailure("malformed", f"X-Amz-Date {parsed.amz_date!r} is not a valid date of the "
                                f"credential scope {parsed.date}.", parsed.access_key, parsed.service)
    current = time.time() if now is None else now
    if parsed.presigned and parsed.expires is not None and current > moment + parsed.expires:
        return SignatureFailure("expired", "Request has expired", parsed.access_key, parsed.service)
    if moment - current > MAX_CLOCK_SKEW_SECONDS or (not parsed.presigned
                                                      and current - moment > MAX_CLOCK_SKEW_SECONDS):
        return SignatureFailure("skewed", f"Signature expired: {parsed.amz_date} is more than 15 minutes away "
                                "from the server's time.", parsed.access_key, parsed.service)
    if parsed.service == "s3":
        payload = headers.get("x-amz-content-sha256", "").strip() or (UNSIGNED_PAYLOAD if parsed.presigned
                                                                       else body_sha256())
    else:  # only S3 lets the client declare the payload hash (UNSIGNED-PAYLOAD would sign no body at all)
        payload = body_sha256()
    canonical = canonical_request(method, raw_path, query_string, headers, parsed.signed_headers, payload,
                                  service=parsed.service, presigned=parsed.presigned)
    expected = sigv4_signature(secret, parsed.amz_date, parsed.region, parsed.service, canonical)
    if not hmac.compare_digest(expected, parsed.signature.lower()):
        return SignatureFailure("mismatch", "The request signature we calculated does not match the signature "
                                "you provided. Check your AWS Secret Access Key and signing method.",
                                parsed.access_key, parsed.service)
    return None


def sign_sigv4(method: str, raw_path: str, query_string: str, headers: Mapping[str, str], access_key: str,
               secret: str, region: str, service: str, payload_hash: str = UNSIGNED_PAYLOAD,
               now: float | None = None) -> dict[str, str]:
    """The headers that sign a request with SigV4 (Authorization header form): the inverse of :func:`verify_sigv4`.

    Args:
        method: the HTTP method.
        raw_path: the path exactly as it will be sent (percent-encoded), without the query.
        query_string: the query exactly as it will be sent (without ``?``).
        headers: the headers that will be sent, names in lower case; ``host`` is required. Every
            ``x-amz-*`` header, ``host``, ``content-md5`` and ``content-type`` among them are signed.
        access_key: the key pair's access key id.
        secret: the key pair's secret.
        region: the region of the credential scope.
        service: the service of the credential scope (``s3``).
        payload_hash: the ``x-amz-content-sha256`` value: a hex digest or ``UNSIGNED-PAYLOAD``.
        now: the signing time (epoch seconds), for tests.

    Returns:
        ``x-amz-date``, ``x-amz-content-sha256`` and ``authorization``, to add to ``headers``.
    """
    moment = datetime.datetime.fromtimestamp(time.time() if now is None else now, datetime.timezone.utc)
    amz_date = moment.strftime("%Y%m%dT%H%M%SZ")
    added = {"x-amz-date": amz_date, "x-amz-content-sha256": payload_hash}
    every = {name.lower(): value for name, value in headers.items()}
    every.update(added)
    if "host" not in every:
        raise ValueError("a SigV4 request must carry a host header")
    signed = tuple(sorted(name for name in every
                          if name.startswith("x-amz-") or name in ("host", "content-md5", "content-type")))
    canonical = canonical_request(method, raw_path, query_string, every, signed, payload_hash, service=service)
    signature = sigv4_signature(secret, amz_date, region, service, canonical)
    added["authorization"] = (f"{SIGV4_ALGORITHM} Credential={access_key}/{amz_date[:8]}/{region}/{service}/"
                              f"aws4_request, SignedHeaders={';'.join(signed)}, Signature={signature}")
    return added


def canonical_request(method: str, raw_path: str, query_string: str, headers: Mapping[str, str],
                      signed_headers: tuple[str, ...], payload_hash: str, *, service: str,
                      presigned: bool = False) -> str:
    """The SigV4 canonical request (see :func:`verify_sigv4` for the rules)."""
    lines = [method.upper(), canonical_uri(raw_path, service), canonical_query(query_string, presigned)]
    lines.append("".join(f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in signed_headers))
    lines.append(";".join(signed_headers))
    lines.append(payload_hash)
    return "\n".join(lines)


def canonical_uri(raw_path: str, service: str) -> str:
    if service == "s3":
        return raw_path or "/"
    return quote(_remove_dot_segments(raw_path or "/"), safe="/~")


def canonical_query(query_string: str, presigned: bool = False) -> str:
    pairs = []
    for name, value in _query_pairs(query_string):
        decoded = unquote_to_bytes(name)
        if presigned and decoded.lower() == b"x-amz-signature":
            continue
        pairs.append((quote(decoded, safe=_UNRESERVED), quote(unquote_to_bytes(value), safe=_UNRESERVED)))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def sigv4_signature(secret: str, amz_date: str, region: str, service: str, canonical: str) -> str:
    """The hex signature of a canonical request with the key derived from ``secret``."""
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join((SIGV4_ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()))
    key = f"AWS4{secret}".encode()
    for part in (amz_date[:8], region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def _parse_signed(headers: Mapping[str, str], query_string: str) -> _Signed | SignatureFailure:
    authorization = headers.get("authorization", "").strip()
    if authorization:
        algorithm, _, rest = authorization.partition(" ")
        if algorithm != SIGV4_ALGORITHM:
            return SignatureFailure("malformed", f"Authorization uses {algorithm!r}; only {SIGV4_ALGORITHM} "
                                    "(Signature Version 4) is accepted.")
        fields = {}
        for item in rest.split(","):
            key, sep, value = item.strip().partition("=")
            if sep:
                fields[key] = value.strip()
        missing = [key for key in ("Credential", "SignedHeaders", "Signature") if not fields.get(key)]
        if missing:
            return SignatureFailure("malformed", f"Authorization header requires {', '.join(missing)}.")
        return _signed(fields["Credential"], fields["SignedHeaders"], fields["Signature"],
                       headers.get("x-amz-date", "").strip(), None, presigned=False)
    params = {unquote_to_bytes(k).decode("utf-8", "replace").lower(): unquote_to_bytes(v).decode("utf-8", "replace")
              for k, v in _query_pairs(query_string)}
    if "x-amz-signature" not in params and "x-amz-credential" not in params:
        return SignatureFailure("missing", "Request is missing Authentication Token")
    missing = [name for name in ("x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-expires",
                                 "x-amz-signedheaders", "x-amz-signature") if not params.get(name)]
    if missing:
        return SignatureFailure("malformed", f"Presigned query requires {', '.join(missing)}.")
    if params["x-amz-algorithm"] != SIGV4_ALGORITHM:
        return SignatureFailure("malformed", f"X-Amz-Algorithm must be {SIGV4_ALGORITHM}.")
    expires = params["x-amz-expires"]
    if not expires.isdigit() or not 0 < int(expires) <= MAX_PRESIGN_EXPIRES:
        return SignatureFailure("malformed", "X-Amz-Expires must be between 1 and 604800 seconds.")
    return _signed(params["x-amz-credential"], params["x-amz-signedheaders"], params["x-amz-signature"],
                   params["x-amz-date"], int(expires), presigned=True)


def _signed(credential: str, signed_headers: str, signature: str, amz_date: str, expires: int | None,
            *, presigned: bool) -> _Signed | SignatureFailure:
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not all(parts):
        return SignatureFailure("malformed", f"Credential {credential!r} is not ACCESS_KEY/DATE/REGION/SERVICE/"
                                "aws4_request.")
    names = tuple(signed_headers.lower().split(";"))
    if "host" not in names or any(not name for name in names):
        return SignatureFailure("malformed", "SignedHeaders must name the host header.", parts[0], parts[3])
    if not re.fullmatch(r"[0-9a-fA-F]{64}", signature):
        return SignatureFailure("malformed", "Signature must be 64 hexadecimal digits.", parts[0], parts[3])
    if not amz_date:
        return SignatureFailure("malformed", "Request must carry X-Amz-Date.", parts[0], parts[3])
    return _Signed(parts[0], parts[1], parts[2], parts[3], names, signature, amz_date, expires, presigned)


def _parse_amz_date(value: str) -> float | None:
    try:
        moment = datetime.datetime.strptime(value, "%Y%m%dT%H%M%SZ")
    except ValueError:
        return None
    return moment.replace(tzinfo=datetime.timezone.utc).timestamp()


def _query_pairs(query_string: str) -> list[tuple[bytes, bytes]]:
    pairs = []
    for piece in query_string.encode("latin-1", "replace").split(b"&"):
        if piece:
            name, _, value = piece.partition(b"=")
            pairs.append((name, value))
    return pairs


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 dot-segment removal, with empty segments dropped as AWS services expect."""
    kept: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if kept:
                kept.pop()
        else:
            kept.append(segment)
    leading = "/" if path.startswith("/") else ""
    trailing = "/" if path.endswith("/") and kept else ""
    return leading + "/".join(kept) + trailing
