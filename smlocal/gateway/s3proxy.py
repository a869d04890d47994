"""S3 on the gateway's port when smlocal runs the durable store: every S3 request is forwarded to it.

With ``smlocal up --data-dir D`` the objects live in ``rclone serve s3`` (:mod:`smlocal.s3store`), a
child listening on its own loopback port. Clients only know the gateway (one port, one boundary):
the gateway runs its checks (Host, Origin, signature beyond loopback), then :func:`is_s3_request`
picks the requests moto's dispatcher would have sent to its S3 and :class:`S3Proxy` forwards them:

* **re-signed** with the store's key pair (SigV4 headers, ``UNSIGNED-PAYLOAD``): the client's own
  signature, presigned query (SigV4 or SigV2) and credentials never reach the store;
* **path style**: a virtual-hosted request (``Host: bucket.localhost``) is rewritten to ``/bucket/key``;
* **streamed** both ways in 1 MiB pieces with a known Content-Length (a body sent with
  ``Transfer-Encoding: chunked`` is spooled to disk first), so a 5 GB PutObject never sits in memory;
* **aws-chunked** bodies (``STREAMING-UNSIGNED-PAYLOAD-TRAILER``, what botocore ≥ 1.36 sends over
  TLS, and the signed ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD*`` forms) are decoded: the store gets the
  bare bytes with ``x-amz-decoded-content-length`` as Content-Length;
* **checked**: rclone verifies Content-MD5 but neither ``x-amz-content-sha256`` nor ``x-amz-checksum-*``,
  so the proxy does (CRC32, SHA-1, SHA-256, from headers or the aws-chunked trailer). It holds back
  the body's last piece until the digests are known; on a mismatch it drops the connection to the
  store, which then discards the partial upload, and answers ``BadDigest`` /
  ``XAmzContentSHA256Mismatch`` as AWS does. CRC32C and CRC64NVME are forwarded unchecked (no
  implementation without ``awscrt``).

What rclone would get wrong is answered here (:mod:`smlocal.gateway.s3rules` decides which):
UploadPartCopy is done by the proxy (a ranged GET of the source streamed into UploadPart), the
"nothing configured" answers of GetObjectTagging, Get*Acl, GetBucketTagging/Policy/Cors/Lifecycle/
Website/ObjectLockConfiguration/Encryption are given directly, and every other subresource call
(PutObjectTagging, PutObjectAcl, PutObjectLegalHold, PutObjectRetention, PutObjectLockConfiguration,
PutBucketVersioning, DeleteObjectTagging, ListObjectVersions ...) is refused with 400 InvalidRequest
before it reaches the store, which would otherwise replace the object's body with the XML document
(PUT) or delete the object (DELETE).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.client
import logging
import queue
import tempfile
import uuid
import zlib
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import quote, unquote_to_bytes, urlsplit
from xml.sax.saxutils import escape

from smlocal.auth import UNSIGNED_PAYLOAD, credential_scope_service, sign_sigv4
from smlocal.gateway import boundary, s3rules
from smlocal.gateway.s3rules import Plan, S3Error

log = logging.getLogger(__name__)

PIECE = 1 << 20  # bytes read or written at a time
SPOOL_LIMIT = 8 << 20  # a body of unknown length stays in memory up to this, then goes to disk
MAX_LINE = 8 << 10  # an aws-chunked header or trailer line
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                         "transfer-encoding", "upgrade", "content-length"})
_RESPONSE_DROPPED = _HOP_BY_HOP | {"x-amz-content-sha256", "x-amz-date", "date", "server"}
_CHECKABLE = {"crc32": "CRC32", "sha1": "SHA1", "sha256": "SHA256"}
_MOTO_PATHS = ("/moto-api", "/latest/meta-data/", "/latest/api/")


# ---- which requests are S3 (as moto's DomainDispatcherApplication decides)
def is_s3_request(environ: dict[str, Any]) -> bool:
    """Whether moto's dispatcher would hand this request to its S3 backend (S3 Control excluded).

    Signed requests name their service in the credential scope (an Authorization header that is not
    SigV4, i.e. SigV2, is S3 for moto too); a presigned query's ``X-Amz-Credential`` names it as well.
    Unsigned requests are S3 unless they carry an ``X-Amz-Target``, a form-encoded query-API body or
    one of moto's internal paths, which is moto's own fallback order.
    """
    path = environ.get("PATH_INFO", "") or "/"
    if path.startswith(_MOTO_PATHS) or path == "/favicon.ico":
        return False
    if path.startswith("/v20180820/") or "s3-control" in environ.get("HTTP_HOST", ""):
        return False  # S3 Control: moto's s3control backend
    authorization = environ.get("HTTP_AUTHORIZATION", "")
    if authorization:
        try:
            scope = authorization.split(",")[0].split()[1]
            _, _, _, service, _ = scope.split("/")
        except (IndexError, ValueError):
            return True  # moto: "not SigV4, most likely S3 (SigV2)"
        return service.lower() == "s3"
    if environ.get("HTTP_X_AMZ_TARGET"):
        return False
    service = credential_scope_service({}, environ.get("QUERY_STRING", ""))
    if service:
        return service == "s3"
    content_type = environ.get("CONTENT_TYPE", "")
    if content_type.startswith("application/x-www-form-urlencoded") and environ.get("CONTENT_LENGTH", "0") != "0":
        return False  # Action=...&Version=...: a query API (STS, IAM ...), moto's to route
    if path.rstrip("/").endswith(("/.well-known/jwks.json", "/.well-known/openid-configuration")):
        return False
    first = path[1:].split("/", 1)
    if len(first) == 2 and "_" in first[0] and first[0].count("_") == 1 and first[0].split("_")[0].isalpha():
        return False  # moto's internal "/<service>_<region>/..." requests
    return True


def virtual_bucket(host_header: str, names: Iterable[str]) -> str | None:
    """The bucket of a virtual-hosted request (``bucket.localhost:5555`` → ``bucket``), None for path style."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return None
    name, sep, port = host.rpartition(":")
    host = name if sep and port.isdigit() else host
    host = host[:-1] if host.endswith(".") else host
    for base in sorted(names, key=len, reverse=True):
        if base and not base.startswith("[") and not _is_ip(base) and host.endswith("." + base):
            return host[: -len(base) - 1] or None
    return None


def _is_ip(name: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


# ---- encoding (what we send is what we sign: strict RFC 3986 encoding, the store re-encodes the same)
def encode_path(path: str) -> str:
    return quote(path.encode("utf-8", "surrogateescape"), safe="/-_.~")


def encode_query(pairs: list[tuple[str, str | None]]) -> str:
    parts = []
    for name, value in pairs:
        encoded = quote(name.encode("utf-8", "surrogateescape"), safe="-_.~")
        parts.append(encoded if value is None else
                     f"{encoded}={quote(value.encode('utf-8', 'surrogateescape'), safe='-_.~')}")
    return "&".join(parts)


def parse_query(query_string: str) -> list[tuple[str, str | None]]:
    """Query pairs decoded (``+`` is a space, as in form encoding); a name without ``=`` has value None."""
    pairs = []
    for piece in query_string.split("&"):
        if not piece:
            continue
        name, sep, value = piece.partition("=")
        decode = lambda text: unquote_to_bytes(text.replace("+", " ")).decode("utf-8", "surrogateescape")  # noqa: E731
        pairs.append((decode(name), decode(value) if sep else None))
    return pairs


# ---- bodies
class _Bounded:
    """Reads at most ``remaining`` bytes (None: until EOF) of a WSGI input, with a small line buffer."""

    def __init__(self, source, remaining: int | None):
        self._source, self._remaining, self._buffer = source, remaining, b""

    def _fill(self, size: int) -> bytes:
        if self._source is None:
            return b""
        if self._remaining is not None:
            size = min(size, self._remaining)
            if size <= 0:
                return b""
        data = self._source.read(size)
        if self._remaining is not None:
            self._remaining -= len(data)
        return data

    def read(self, size: int) -> bytes:
        if self._buffer:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
            return data
        return self._fill(size)

    def readline(self, limit: int = MAX_LINE) -> bytes:
        while b"\n" not in self._buffer and len(self._buffer) < limit:
            data = self._fill(4096)
            if not data:
                break
            self._buffer += data
        line, sep, rest = self._buffer.partition(b"\n")
        if not sep:
            raise S3Error(400, "IncompleteBody", "The aws-chunked body ended inside a chunk header or trailer.")
        self._buffer = rest
        return line + sep

    def exactly(self, count: int) -> Iterator[bytes]:
        while count > 0:
            data = self.read(min(count, PIECE))
            if not data:
                raise S3Error(400, "IncompleteBody", "You did not provide the number of bytes specified by the "
                                                     "Content-Length HTTP header.")
            count -= len(data)
            yield data


def decode_aws_chunked(reader: _Bounded, trailers: dict[str, str]) -> Iterator[bytes]:
    """The payload of an aws-chunked body; fills ``trailers`` (lower-case names) once the body ends."""
    while True:
        header = reader.readline().strip()
        size_text = header.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise S3Error(400, "InvalidRequest", f"Malformed aws-chunked chunk header {header[:80]!r}.") from None
        if size < 0:
            raise S3Error(400, "InvalidRequest", "Negative aws-chunked chunk size.")
        if size == 0:
            break
        yield from reader.exactly(size)
        if reader.readline().strip():
            raise S3Error(400, "InvalidRequest", "An aws-chunked chunk is longer than its declared size.")
    while True:
        line = reader.readline().strip()
        if not line:
            break
        name, sep, value = line.decode("latin-1").partition(":")
        if sep:
            trailers[name.strip().lower()] = value.strip()
    if reader.read(1):
        raise S3Error(400, "InvalidRequest", "Data after the end of an aws-chunked body.")


class _Digests:
    """Digests a body must have (payload SHA-256, x-amz-checksum-*), computed as it streams.

    Args:
        payload_sha256: the hex ``x-amz-content-sha256`` the body was signed with, if any.
        checksums: algorithm (``crc32``, ``sha1``, ``sha256`` ...) → base64 value from the headers.
        announced: algorithms whose value comes in the aws-chunked trailer (``x-amz-trailer``).
    """

    def __init__(self, payload_sha256: str | None, checksums: dict[str, str], announced: Iterable[str] = ()):
        self.payload = payload_sha256
        self.expected = dict(checksums)  # trailers add theirs at the end
        wanted = (set(checksums) | set(announced)) & set(_CHECKABLE)
        self._hashes = {name: hashlib.new(name) for name in ("sha1", "sha256") if name in wanted}
        if payload_sha256:
            self._hashes.setdefault("sha256", hashlib.sha256())
        self._crc32 = 0 if "crc32" in wanted else None

    def update(self, data: bytes) -> None:
        for digest in self._hashes.values():
            digest.update(data)
        if self._crc32 is not None:
            self._crc32 = zlib.crc32(data, self._crc32)

    def check(self) -> None:
        """Raises :class:`S3Error` as AWS answers a body whose digest is not the declared one."""
        if self.payload and self._hashes["sha256"].hexdigest() != self.payload:
            raise S3Error(400, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not "
                                                            "match what was computed.")
        for algorithm, value in self.expected.items():
            if algorithm == "crc32" and self._crc32 is not None:
                computed = self._crc32.to_bytes(4, "big")
            elif algorithm in self._hashes:
                computed = self._hashes[algorithm].digest()
            else:
                continue  # crc32c, crc64nvme: not computable here, left to the client's own checks
            if base64.b64encode(computed).decode() != value.strip():
                raise S3Error(400, "BadDigest", f"The {_CHECKABLE[algorithm]} you specified did not match the "
                                                "calculated checksum.")


class _Body:
    """A request body ready to forward: its decoded length and its pieces (verified at the end)."""

    def __init__(self, length: int, pieces: Iterator[bytes], digests: _Digests, trailers: dict[str, str]):
        self.length, self._pieces, self.digests, self._trailers = length, pieces, digests, trailers

    def pieces(self) -> Iterator[bytes]:
        """Every piece but the last is yielded as read; the last only once the digests are checked."""
        sent, held = 0, None
        for piece in self._pieces:
            if held is not None:
                yield held
            self.digests.update(piece)
            sent += len(piece)
            held = piece
        if sent != self.length:
            raise S3Error(400, "IncompleteBody", f"The body has {sent} bytes; {self.length} were declared.")
        for name, value in self._trailers.items():
            if name.startswith("x-amz-checksum-"):
                self.digests.expected[name[len("x-amz-checksum-"):]] = value
        self.digests.check()
        if held is not None:
            yield held


def request_body(environ: dict[str, Any], headers: dict[str, str]) -> _Body:
    """The body of an S3 request, aws-chunked framing removed; raises :class:`S3Error` for bad framing."""
    declared = headers.get("x-amz-content-sha256", "").strip().lower()
    payload = declared if len(declared) == 64 and all(c in "0123456789abcdef" for c in declared) else None
    checksums = {name[len("x-amz-checksum-"):]: value for name, value in headers.items()
                 if name.startswith("x-amz-checksum-") and name != "x-amz-checksum-type"}
    length_text = environ.get("CONTENT_LENGTH") or ""
    wire_length = int(length_text) if length_text.isdigit() else None
    chunked = "aws-chunked" in [part.strip().lower() for part in headers.get("content-encoding", "").split(",")] \
        or declared.startswith("streaming-")
    source = environ.get("wsgi.input")
    if wire_length is None and not environ.get("wsgi.input_terminated"):
        wire_length = 0
    reader = _Bounded(source, wire_length) if source is not None else _Bounded(None, 0)
    trailers: dict[str, str] = {}
    if chunked:
        decoded = headers.get("x-amz-decoded-content-length", "")
        if not decoded.isdigit():
            raise S3Error(411, "MissingContentLength", "You must provide the x-amz-decoded-content-length header "
                                                       "with an aws-chunked body.")
        announced = [name.strip().lower()[len("x-amz-checksum-"):] for name in headers.get("x-amz-trailer", "").split(",")
                     if name.strip().lower().startswith("x-amz-checksum-")]
        return _Body(int(decoded), decode_aws_chunked(reader, trailers), _Digests(None, checksums, announced), trailers)
    if wire_length is None:  # Transfer-Encoding: chunked: spool to learn the length
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_LIMIT)
        while True:
            data = reader.read(PIECE)
            if not data:
                break
            spool.write(data)
        wire_length = spool.tell()
        spool.seek(0)
        reader = _Bounded(spool, wire_length)
    return _Body(wire_length, reader.exactly(wire_length), _Digests(payload, checksums), trailers)


# ---- the proxy
class S3Proxy:
    """Forwards S3 requests to the store at ``endpoint`` (see the module docstring).

    Args:
        endpoint: the store's ``http://host:port``.
        credentials: the store's (access key, secret).
        region: the region to sign for.
        host_names: the gateway's accepted Host names; a request to a subdomain of one is virtual-hosted.
        timeout: seconds a read from the store may take.
    """

    def __init__(self, endpoint: str, credentials: tuple[str, str], region: str, host_names: Iterable[str] = (),
                 timeout: float = 300.0):
        parts = urlsplit(endpoint)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.credentials, self.region, self.timeout = credentials, region, timeout
        self.host_names = tuple(host_names)
        self._idle: queue.LifoQueue = queue.LifoQueue(maxsize=32)

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        request_id = uuid.uuid4().hex[:16].upper()
        method = environ.get("REQUEST_METHOD", "GET").upper()
        headers = boundary.wsgi_headers(environ)
        raw_path, query = boundary.raw_path_and_query(environ)
        path = unquote_to_bytes(raw_path).decode("utf-8", "surrogateescape")
        bucket = virtual_bucket(headers.get("host", ""), self.host_names)
        if bucket:
            path = f"/{bucket}{path if path.startswith('/') else '/' + path}"
        try:
            request = s3rules.classify(method, path, parse_query(query), headers)
            plan = s3rules.plan(request)
            if plan.kind == "answer":
                return self._answer(request, plan, start_response, request_id)
            if plan.kind == "copy-part":
                return self._copy_part(request, environ, start_response, request_id)
            body = request_body(environ, headers) if method in ("PUT", "POST") else None
            return self._forward(request, body, start_response, request_id)
        except S3Error as exc:
            return _error(start_response, exc, path, request_id, method)
        except OSError as exc:
            log.warning("the durable S3 store did not answer %s %s: %s", method, path, exc)
            return _error(start_response, S3Error(503, "ServiceUnavailable", "smlocal's durable S3 store did not "
                                                  f"answer ({exc}); it is restarted with smlocal."),
                          path, request_id, method)

    # ---- forwarding
    def _forward(self, request: s3rules.S3Request, body: _Body | None, start_response, request_id: str):
        upstream = self._send(request.method, request.path, request.query, request.forward_headers, body)
        status, headers = upstream.status, _response_headers(upstream)
        if status == 200 and "range" in request.headers and upstream.getheader("Content-Range"):
            status = 206  # rclone answers a ranged GET 200; AWS 206
        if status == 206:
            headers = [(k, v) for k, v in headers if not k.lower().startswith("x-amz-checksum-")]
        start_response(boundary.status_line(status), headers)
        return _Relay(upstream, self)

    def _send(self, method: str, path: str, query: list[tuple[str, str | None]], headers: dict[str, str],
              body: _Body | None) -> http.client.HTTPResponse:
        target_path, target_query = encode_path(path), encode_query(query)
        out = {name: value for name, value in headers.items()}
        out["host"] = f"{self.host}:{self.port}"
        if body is not None or method in ("PUT", "POST"):
            out["content-length"] = str(body.length if body is not None else 0)
        out.update(sign_sigv4(method, target_path, target_query, out, *self.credentials, self.region, "s3",
                              UNSIGNED_PAYLOAD))
        conn = self._connection()
        try:
            conn.putrequest(method, target_path + (f"?{target_query}" if target_query else ""), skip_host=True,
                            skip_accept_encoding=True)
            for name, value in out.items():
                conn.putheader(name, value)
            conn.endheaders()
            if body is not None:
                for piece in body.pieces():
                    conn.send(piece)
            response = conn.getresponse()
        except BaseException:
            conn.close()  # the store sees a short body and discards it
            raise
        response.connection = conn  # returned to the pool once read
        return response

    def _connection(self) -> http.client.HTTPConnection:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def release(self, response: http.client.HTTPResponse) -> None:
        conn = getattr(response, "connection", None)
        if conn is None:
            return
        if response.isclosed() and not response.will_close:
            try:
                self._idle.put_nowait(conn)
                return
            except queue.Full:
                pass
        conn.close()

    # ---- done here
    def _answer(self, request: s3rules.S3Request, plan: Plan, start_response, request_id: str):
        """A subresource answered by the proxy: checks the bucket / object exists first (as AWS does)."""
        probe = self._send("HEAD", request.resource_path, [], {}, None)
        probe.read()
        self.release(probe)
        if probe.status == 404:
            code = "NoSuchKey" if request.key else "NoSuchBucket"
            raise S3Error(404, code, "The specified key does not exist." if request.key else
                          "The specified bucket does not exist.")
        if probe.status >= 300:
            raise S3Error(probe.status, "AccessDenied" if probe.status == 403 else "InvalidRequest",
                          f"The store answered {probe.status} for the {request.operation_hint} target.")
        if plan.error is not None:
            raise plan.error
        payload = plan.document.encode()
        start_response(boundary.status_line(200), [("Content-Type", "application/xml"), ("x-amz-request-id", request_id),
                                           ("Content-Length", str(len(payload)))])
        return [b"" if request.method == "HEAD" else payload]

    def _copy_part(self, request: s3rules.S3Request, environ, start_response, request_id: str):
        """UploadPartCopy: the source range, streamed from the store into UploadPart (rclone has no copy of parts)."""
        source_bucket, source_key = s3rules.copy_source(request.headers["x-amz-copy-source"])
        conditions = {target: request.headers[name] for name, target in s3rules.COPY_CONDITIONS.items()
                      if name in request.headers}
        copy_range = request.headers.get("x-amz-copy-source-range")
        if copy_range:
            conditions["range"] = s3rules.check_copy_range(copy_range)
        source = self._send("GET", f"/{source_bucket}/{source_key}", [], conditions, None)
        if source.status == 304:
            source.close()
            raise S3Error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold")
        if source.status == 416:
            source.close()
            raise S3Error(400, "InvalidArgument", "The x-amz-copy-source-range value is not valid for the source "
                                                  "object.")
        if source.status not in (200, 206):
            start_response(boundary.status_line(source.status), _response_headers(source))
            return _Relay(source, self)
        length = int(source.getheader("Content-Length") or "0")
        if copy_range and source.status == 200 and not source.getheader("Content-Range"):
            source.close()
            raise S3Error(400, "InvalidArgument", "The x-amz-copy-source-range value is not valid for the source "
                                                  "object.")
        pieces = iter(lambda: source.read(PIECE), b"")
        body = _Body(length, pieces, _Digests(None, {}), {})
        try:
            part = self._send("PUT", request.path, request.query,
                              {k: v for k, v in request.forward_headers.items() if not k.startswith("x-amz-copy-source")},
                              body)
        finally:
            source.close()
        if part.status != 200:
            start_response(boundary.status_line(part.status), _response_headers(part))
            return _Relay(part, self)
        etag = part.getheader("ETag") or ""
        part.read()
        self.release(part)
        moment = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        payload = ('<?xml version="1.0" encoding="UTF-8"?>\n<CopyPartResult '
                   'xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                   f"<LastModified>{moment}</LastModified><ETag>{escape(etag)}</ETag></CopyPartResult>").encode()
        start_response(boundary.status_line(200), [("Content-Type", "application/xml"), ("x-amz-request-id", request_id),
                                           ("Content-Length", str(len(payload)))])
        return [payload]


class _Relay:
    """A WSGI response body that streams the store's answer and gives the connection back when done."""

    def __init__(self, response: http.client.HTTPResponse, proxy: S3Proxy):
        self._response, self._proxy = response, proxy

    def __iter__(self) -> Iterator[bytes]:
        while True:
            data = self._response.read(PIECE)
            if not data:
                return
            yield data

    def close(self) -> None:
        if not self._response.isclosed():
            self._response.close()
            conn = getattr(self._response, "connection", None)
            if conn is not None:
                conn.close()
            return
        self._proxy.release(self._response)


def _response_headers(response: http.client.HTTPResponse) -> list[tuple[str, str]]:
    headers = [(name, value) for name, value in response.getheaders()
               if name.lower() not in _RESPONSE_DROPPED and not name.lower().startswith("access-control-")]
    length = response.getheader("Content-Length")
    if length is not None:
        headers.append(("Content-Length", length))
    return headers


def _error(start_response, error: S3Error, resource: str, request_id: str, method: str) -> Iterable[bytes]:
    payload = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error>'
               f"<Code>{escape(error.code)}</Code><Message>{escape(error.message)}</Message>"
               f"<Resource>{escape(resource)}</Resource><RequestId>{request_id}</RequestId></Error>").encode()
    start_response(boundary.status_line(error.status), [("Content-Type", "application/xml"), ("x-amz-request-id", request_id),
                                                ("Content-Length", str(len(payload)))])
    return [b"" if method == "HEAD" else payload]


__all__ = ["S3Proxy", "is_s3_request", "virtual_bucket", "decode_aws_chunked", "request_body"]
