"""Which S3 requests the durable store (``rclone serve s3``) gets, and what the proxy answers itself.

Pure decisions over a parsed request, used by :mod:`smlocal.gateway.s3proxy`. rclone implements
the object and bucket calls smlocal and its clients use (List*, Get/Put/Head/Delete object,
CopyObject, multipart uploads, DeleteObjects, GetBucketLocation/Versioning) but takes any other
subresource as the plain call: ``PUT ?tagging`` / ``?acl`` / ``?legal-hold`` replace the object's
body with the XML document, ``DELETE ?tagging`` deletes the object, ``PUT /bucket?versioning`` is
a CreateBucket, ``GET ?tagging`` returns the body, UploadPartCopy stores an empty part. So the
requests are matched against an allow-list of (level, method, subresources):

* allowed: forwarded as they are;
* UploadPartCopy: done by the proxy;
* the reads of configuration nobody can set here (object tags and ACLs, bucket tags, policy, CORS,
  lifecycle, website, object lock, default encryption): answered as AWS answers for a bucket or
  object that has none;
* everything else: ``400 InvalidRequest`` without reaching the store. AWS's own code for a feature it
  does not implement is ``501 NotImplemented``, but AWS implements all of these, so no AWS client
  ever gets a 501 for them; a 5xx also means "retry / server bug" to SDKs and to smlocal's rules.
  ``InvalidRequest`` (400) is what AWS answers for a call the bucket's configuration does not allow
  (e.g. PutObjectLegalHold on a bucket without Object Lock).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote

from smlocal.s3store import TEMP_PREFIX

# query parameters that only parameterise a call (lists, responses, botocore's x-id); anything else is a subresource
PLAIN = frozenset({"prefix", "delimiter", "marker", "max-keys", "continuation-token", "start-after", "fetch-owner",
                   "encoding-type", "list-type", "max-uploads", "key-marker", "upload-id-marker", "max-parts",
                   "part-number-marker", "x-id", "response-content-type", "response-content-language",
                   "response-expires", "response-cache-control", "response-content-disposition",
                   "response-content-encoding"})
AUTH_QUERY = frozenset({"x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-expires", "x-amz-signedheaders",
                        "x-amz-signature", "x-amz-security-token"})
SIGV2_QUERY = frozenset({"awsaccesskeyid", "signature", "expires"})
FORWARDED_HEADERS = frozenset({"content-type", "content-md5", "content-disposition", "content-language",
                               "cache-control", "expires", "range", "if-match", "if-none-match", "if-modified-since",
                               "if-unmodified-since"})
NOT_FORWARDED_AMZ = frozenset({"x-amz-date", "x-amz-content-sha256", "x-amz-security-token",
                               "x-amz-decoded-content-length", "x-amz-trailer", "x-amz-user-agent"})
COPY_CONDITIONS = {"x-amz-copy-source-if-match": "if-match", "x-amz-copy-source-if-none-match": "if-none-match",
                   "x-amz-copy-source-if-modified-since": "if-modified-since",
                   "x-amz-copy-source-if-unmodified-since": "if-unmodified-since"}
OWNER_ID = "75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a"
_XMLNS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'

# (level, method) -> subresource sets forwarded to the store
FORWARD = {
    ("service", "GET"): {frozenset()},
    ("bucket", "GET"): {frozenset(), frozenset({"location"}), frozenset({"versioning"}), frozenset({"uploads"})},
    ("bucket", "HEAD"): {frozenset()},
    ("bucket", "PUT"): {frozenset()},
    ("bucket", "DELETE"): {frozenset()},
    ("bucket", "POST"): {frozenset({"delete"})},
    ("object", "GET"): {frozenset(), frozenset({"uploadId"})},
    ("object", "HEAD"): {frozenset()},
    ("object", "PUT"): {frozenset(), frozenset({"partNumber", "uploadId"})},
    ("object", "DELETE"): {frozenset(), frozenset({"uploadId"})},
    ("object", "POST"): {frozenset({"uploads"}), frozenset({"uploadId"})},
}
# the calls named in refusals
_OPERATIONS = {
    ("object", "PUT", "tagging"): "PutObjectTagging", ("object", "PUT", "acl"): "PutObjectAcl",
    ("object", "PUT", "legal-hold"): "PutObjectLegalHold", ("object", "PUT", "retention"): "PutObjectRetention",
    ("object", "DELETE", "tagging"): "DeleteObjectTagging", ("object", "GET", "attributes"): "GetObjectAttributes",
    ("object", "POST", "restore"): "RestoreObject", ("object", "POST", "select"): "SelectObjectContent",
    ("bucket", "PUT", "versioning"): "PutBucketVersioning", ("bucket", "PUT", "object-lock"):
        "PutObjectLockConfiguration", ("bucket", "PUT", "tagging"): "PutBucketTagging",
    ("bucket", "PUT", "acl"): "PutBucketAcl", ("bucket", "PUT", "policy"): "PutBucketPolicy",
    ("bucket", "PUT", "cors"): "PutBucketCors", ("bucket", "PUT", "lifecycle"): "PutBucketLifecycleConfiguration",
    ("bucket", "GET", "versions"): "ListObjectVersions",
}


class S3Error(Exception):
    """An S3 error answer (status, AWS error code, message)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class S3Request:
    """An S3 request in path style, its credentials and signature removed."""

    method: str
    path: str  # decoded, /bucket/key
    bucket: str
    key: str
    query: list  # (name, value | None) forwarded to the store
    subresources: frozenset
    headers: dict  # every request header, lower case
    forward_headers: dict = field(default_factory=dict)

    @property
    def level(self) -> str:
        return "object" if self.key else ("bucket" if self.bucket else "service")

    @property
    def resource_path(self) -> str:
        return f"/{self.bucket}/{self.key}" if self.key else f"/{self.bucket}"

    @property
    def operation_hint(self) -> str:
        return f"{self.level} {self.resource_path}"


@dataclass(frozen=True)
class Plan:
    """``forward``, ``copy-part`` or ``answer`` (with ``document`` or ``error``, once the target is known to exist)."""

    kind: str
    document: str = ""
    error: S3Error | None = None


def classify(method: str, path: str, query: list, headers: dict) -> S3Request:
    """Splits a path-style request into bucket, key, forwarded query and subresources; raises :class:`S3Error`."""
    bucket, _, key = path.lstrip("/").partition("/")
    if any(segment.startswith(TEMP_PREFIX) for segment in key.split("/")):
        # rclone's own upload temp names: hidden from listings and removed at the next start
        raise S3Error(400, "InvalidArgument", f"Object keys with a part starting {TEMP_PREFIX!r} are reserved by "
                                              "smlocal's durable S3 store (rclone's upload temp files).")
    kept, subresources, forward = [], set(), {}
    sigv2 = any(name.lower() == "awsaccesskeyid" for name, _ in query)
    for name, value in query:
        lower = name.lower()
        if lower in AUTH_QUERY or (sigv2 and lower in SIGV2_QUERY):
            continue
        if lower.startswith("x-amz-"):  # a presigned URL's hoisted headers (x-amz-meta-*, x-amz-acl ...)
            forward[lower] = value or ""
            continue
        if name == "versionId":
            if value != "null":
                raise S3Error(400, "InvalidArgument", "Invalid version id specified")
            continue
        if name not in PLAIN:
            subresources.add(name)
        kept.append((name, value))
    for name, value in headers.items():
        if name in FORWARDED_HEADERS or (name.startswith("x-amz-") and name not in NOT_FORWARDED_AMZ):
            forward[name] = value
    encodings = [part.strip() for part in headers.get("content-encoding", "").split(",")
                 if part.strip() and part.strip().lower() != "aws-chunked"]
    if encodings:
        forward["content-encoding"] = ", ".join(encodings)
    return S3Request(method, "/" + path.lstrip("/"), bucket, key, kept, frozenset(subresources), headers, forward)


def plan(request: S3Request) -> Plan:
    """What to do with ``request``: forward it, copy a part, answer it here; raises :class:`S3Error` to refuse."""
    level, method, subs = request.level, request.method, request.subresources
    if subs in FORWARD.get((level, method), set()):
        if level == "object" and method == "PUT" and subs and "x-amz-copy-source" in request.headers:
            return Plan("copy-part")
        return Plan("forward")
    if method in ("GET", "HEAD") and len(subs) == 1:
        answered = _read_answer(level, next(iter(subs)))
        if answered is not None:
            return answered
    name = ", ".join(sorted(subs)) or "(none)"
    operation = _OPERATIONS.get((level, method, next(iter(subs)))) if len(subs) == 1 else None
    what = operation or f"{method} on {'an object' if level == 'object' else 'a ' + level} with ?{name}"
    if operation in ("PutObjectLegalHold", "PutObjectRetention"):
        raise S3Error(400, "InvalidRequest", "Bucket is missing Object Lock Configuration")
    raise S3Error(400, "InvalidRequest", f"{what} is not supported by smlocal's durable S3 store "
                                         "(rclone serve s3); nothing was changed.")


def _read_answer(level: str, subresource: str) -> Plan | None:
    if level == "object" and subresource == "tagging":
        return Plan("answer", f"{_HEAD}<Tagging {_XMLNS}><TagSet></TagSet></Tagging>")
    if level in ("object", "bucket") and subresource == "acl":
        return Plan("answer", _acl())
    if level == "object" and subresource in ("legal-hold", "retention"):
        return Plan("answer", error=S3Error(400, "InvalidRequest", "Bucket is missing Object Lock Configuration"))
    if level != "bucket":
        return None
    missing = {"tagging": ("NoSuchTagSet", "The TagSet does not exist"),
               "policy": ("NoSuchBucketPolicy", "The bucket policy does not exist"),
               "cors": ("NoSuchCORSConfiguration", "The CORS configuration does not exist"),
               "lifecycle": ("NoSuchLifecycleConfiguration", "The lifecycle configuration does not exist"),
               "website": ("NoSuchWebsiteConfiguration", "The specified bucket does not have a website configuration"),
               "object-lock": ("ObjectLockConfigurationNotFoundError",
                               "Object Lock configuration does not exist for this bucket")}
    if subresource in missing:
        code, message = missing[subresource]
        return Plan("answer", error=S3Error(404, code, message))
    if subresource == "encryption":  # AWS applies SSE-S3 to every bucket by default
        return Plan("answer", f"{_HEAD}<ServerSideEncryptionConfiguration {_XMLNS}><Rule><ApplyServerSideEncryptionByDefault>"
                              "<SSEAlgorithm>AES256</SSEAlgorithm></ApplyServerSideEncryptionByDefault>"
                              "<BucketKeyEnabled>false</BucketKeyEnabled></Rule></ServerSideEncryptionConfiguration>")
    return None


def _acl() -> str:
    owner = f"<ID>{OWNER_ID}</ID><DisplayName>smlocal</DisplayName>"
    return (f'{_HEAD}<AccessControlPolicy {_XMLNS}><Owner>{owner}</Owner><AccessControlList><Grant>'
            '<Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CanonicalUser">'
            f"{owner}</Grantee><Permission>FULL_CONTROL</Permission></Grant></AccessControlList>"
            "</AccessControlPolicy>")


def copy_source(value: str) -> tuple[str, str]:
    """``x-amz-copy-source`` (``bucket/key``, URL-encoded, optional leading ``/`` and ``?versionId=``)."""
    source, _, version = value.partition("?")
    if version and version not in ("versionId=null", ""):
        raise S3Error(400, "InvalidArgument", "Invalid version id specified")
    bucket, _, key = unquote(source).lstrip("/").partition("/")
    if not bucket or not key:
        raise S3Error(400, "InvalidArgument", "Copy Source must mention the source bucket and key: "
                                              "sourcebucket/sourcekey")
    return bucket, key


def check_copy_range(value: str) -> str:
    """A ``x-amz-copy-source-range`` (``bytes=first-last``) as a Range header; raises InvalidArgument."""
    unit, _, span = value.strip().partition("=")
    first, _, last = span.partition("-")
    if unit != "bytes" or not first.isdigit() or not last.isdigit() or int(first) > int(last):
        raise S3Error(400, "InvalidArgument", "The x-amz-copy-source-range value must be of the form "
                                              "bytes=first-last where first and last are the zero-based offsets "
                                              "of the first and last bytes to copy")
    return f"bytes={int(first)}-{int(last)}"
