"""The console's server side over real HTTP: token, security headers, static files, the boundary rules.

The console must not reopen what the gateway's boundary closes: its token is not the admin token, a
foreign Origin stays refused, beyond loopback the page does not carry the token, and every answer
outside the console is ``Content-Security-Policy: sandbox``.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import re
import shutil
import tarfile
from pathlib import Path

import pytest

from smlocal.auth import read_server_record
from smlocal.gateway import console_vendor
from smlocal.gateway.console import CSP, STATIC_ROOT, console_url

JSON = "application/x-amz-json-1.1"
TOKEN = "X-Smlocal-Console-Token"


def _raw(endpoint: str, method: str, path: str, body: bytes = b"", **headers) -> tuple[int, dict, bytes]:
    host, port = endpoint.split("://", 1)[1].rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.putrequest(method, path, skip_accept_encoding=True)
    for name, value in headers.items():
        connection.putheader(name.replace("_", "-"), value)
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    answer = connection.getresponse()
    result = answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    connection.close()
    return result


def _sagemaker(endpoint: str, operation: str, body: dict | None = None, **headers):
    return _raw(endpoint, "POST", "/", json.dumps(body or {}).encode(), X_Amz_Target=f"SageMaker.{operation}",
                Content_Type=JSON, **headers)


@pytest.fixture(scope="module")
def wide(tmp_path_factory, runtime_dir):
    """A server bound to every interface (signatures required)."""
    from smlocal.config import load_settings
    from smlocal.server import Emulator

    with Emulator(load_settings(data_dir=tmp_path_factory.mktemp("console-wide"), port=0, host="0.0.0.0")) as emu:
        yield emu


def test_loopback_index_carries_the_console_token_with_strict_headers(emulator):
    status, headers, body = _raw(emulator.endpoint, "GET", "/_smlocal/console/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert f'<meta name="smlocal-console-token" content="{emulator.console_token}">' in body.decode()
    assert emulator.console_token != emulator.admin_token
    assert headers["content-security-policy"] == CSP
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert "<script>" not in body.decode() and 'type="module" src="app.js"' in body.decode()  # no inline script
    assert emulator.console_url == f"{emulator.endpoint}/_smlocal/console/"
    record = read_server_record(emulator.port)
    assert record["consoleToken"] == emulator.console_token and record["adminToken"] == emulator.admin_token
    assert "console_token" not in record


def test_beyond_loopback_the_token_travels_only_in_the_fragment(wide):
    status, _, body = _raw(wide.endpoint, "GET", "/_smlocal/console/")
    assert status == 200 and wide.console_token not in body.decode()
    assert 'content=""' in body.decode()
    assert wide.console_url == f"{wide.endpoint}/_smlocal/console/#token={wide.console_token}"
    assert console_url("http://h:1", "t", loopback=True) == "http://h:1/_smlocal/console/"
    # the static files need no signature (the browser cannot sign) ...
    assert _raw(wide.endpoint, "GET", "/_smlocal/console/app.js")[0] == 200
    # ... the console's own calls need the token and the server's own Origin, and then no signature
    origin = wide.endpoint
    status, _, body = _sagemaker(wide.endpoint, "ListPipelines", Origin=origin, **{TOKEN: wide.console_token})
    assert status == 200 and "PipelineSummaries" in json.loads(body), body
    status, _, body = _sagemaker(wide.endpoint, "ListPipelines", **{TOKEN: wide.console_token})  # no Origin: unsigned
    assert status == 403 and json.loads(body)["__type"] == "MissingAuthenticationTokenException"
    status, _, _ = _sagemaker(wide.endpoint, "ListPipelines", Origin=origin, **{TOKEN: "wrong" * 8})
    assert status == 403
    status, _, body = _raw(wide.endpoint, "GET", "/_smlocal/console/api/execution-graph?arn=x",
                           **{TOKEN: wide.console_token})
    assert status == 400 and json.loads(body)["__type"] == "ResourceNotFound"


def test_the_console_api_needs_the_token(emulator):
    path = "/_smlocal/console/api/execution-graph?arn=arn%3Aaws%3Asagemaker%3Aus-east-1%3A1%3Ax"
    for headers in ({}, {TOKEN: "x" * 43}, {"X-Smlocal-Admin-Token": emulator.admin_token}):
        status, answer_headers, body = _raw(emulator.endpoint, "GET", path, **headers)
        assert status == 403 and json.loads(body)["__type"] == "AccessDeniedException", (headers, body)
        assert answer_headers["content-security-policy"] == CSP
    status, _, body = _raw(emulator.endpoint, "GET", path, **{TOKEN: emulator.console_token})
    assert status == 400 and json.loads(body)["__type"] == "ResourceNotFound"
    status, _, body = _raw(emulator.endpoint, "GET", "/_smlocal/console/api/nope", **{TOKEN: emulator.console_token})
    assert status == 404
    status, _, _ = _raw(emulator.endpoint, "POST", path, b"{}", **{TOKEN: emulator.console_token})
    assert status == 405
    # another site's page cannot read it with the token either (Sec-Fetch-Site)
    status, _, _ = _raw(emulator.endpoint, "GET", path, Sec_Fetch_Site="cross-site", Sec_Fetch_Mode="cors",
                        **{TOKEN: emulator.console_token})
    assert status == 403


def test_the_console_token_opens_no_admin_call_and_a_foreign_origin_stays_refused(emulator, sm):
    token = {TOKEN: emulator.console_token}
    for path in ("/_smlocal/reset", "/_smlocal/reset-all", "/moto-api/reset"):
        status, _, _ = _raw(emulator.endpoint, "POST", path, Origin=emulator.endpoint, **token)
        assert status == 403, path
    status, _, body = _sagemaker(emulator.endpoint, "ListPipelines", Origin="http://attacker.localhost:8000", **token)
    assert status == 403 and json.loads(body)["__type"] == "AccessDeniedException"
    status, _, _ = _sagemaker(emulator.endpoint, "ListPipelines", Origin="null", **token)
    assert status == 403
    # the own Origin without the token: refused as before
    assert _sagemaker(emulator.endpoint, "ListPipelines", Origin=emulator.endpoint)[0] == 403
    status, _, body = _sagemaker(emulator.endpoint, "ListPipelines", Origin=emulator.endpoint, **token)
    assert status == 200, body
    # a DNS-rebound name is refused whatever it carries
    status, _, _ = _sagemaker(emulator.endpoint, "ListPipelines", Host=f"rebound.example:{emulator.port}",
                              Origin=f"http://rebound.example:{emulator.port}", **token)
    assert status == 403


def _console_headers(endpoint: str, token: str) -> dict:
    return {"Origin": endpoint, TOKEN: token}


def _not_console_calls(endpoint: str, token: str) -> list[tuple[str, tuple]]:
    """Requests the console's pages never make, each with the console token and the server's own Origin."""
    own = _console_headers(endpoint, token)
    return [
        ("S3 PUT", ("PUT", "/console-bucket/x.txt", b"hello", own)),
        ("S3 CreateBucket", ("PUT", "/console-bucket", b"", own)),
        ("IAM CreateUser", ("POST", "/", b"Action=CreateUser&UserName=mallory&Version=2010-05-08",
                            {**own, "Content-Type": "application/x-www-form-urlencoded"})),
        ("Logs CreateLogGroup", ("POST", "/", b'{"logGroupName":"/x"}',
                                 {**own, "X-Amz-Target": "Logs_20140328.CreateLogGroup", "Content-Type": JSON})),
        ("Logs GetLogEvents", ("POST", "/", b'{"logGroupName":"/aws/sagemaker/TrainingJobs","logStreamName":"x"}',
                               {**own, "X-Amz-Target": "Logs_20140328.GetLogEvents", "Content-Type": JSON})),
        ("STS GetCallerIdentity", ("POST", "/", b"Action=GetCallerIdentity&Version=2011-06-15",
                                   {**own, "Content-Type": "application/x-www-form-urlencoded"})),
        ("SageMaker CreateTrainingJob", ("POST", "/", json.dumps({"TrainingJobName": "x"}).encode(),
                                         {**own, "X-Amz-Target": "SageMaker.CreateTrainingJob", "Content-Type": JSON})),
        ("SageMaker DeletePipeline", ("POST", "/", b'{"PipelineName":"x"}',
                                      {**own, "X-Amz-Target": "SageMaker.DeletePipeline", "Content-Type": JSON})),
        ("SageMaker read as a GET", ("GET", "/", b"", {**own, "X-Amz-Target": "SageMaker.ListPipelines"})),
        # an unverified credential scope would route an invocation path to S3 (a bucket named "endpoints")
        ("S3-scoped invocations path", ("POST", "/endpoints/e/invocations", b"{}", {
            **own, "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250101/us-east-1/s3/aws4_request, "
                                    "SignedHeaders=host, Signature=00"})),
        ("admin reset", ("POST", "/_smlocal/reset", b"", own)),
        ("moto-api", ("POST", "/moto-api/reset", b"", own)),
    ]


@pytest.mark.parametrize("server", ["emulator", "wide"])
def test_the_console_token_opens_only_what_the_console_calls(request, server, s3):
    emu = request.getfixturevalue(server)
    for label, (method, path, body, headers) in _not_console_calls(emu.endpoint, emu.console_token):
        status, _, answer = _raw(emu.endpoint, method, path, body, **headers)
        assert status == 403, (server, label, status, answer[:300])
    assert "console-bucket" not in [b["Name"] for b in emu.client("s3").list_buckets()["Buckets"]]
    assert "mallory" not in [u["UserName"] for u in emu.client("iam").list_users()["Users"]]
    # what the pages call passes (answered by the service, not refused by the boundary)
    own = _console_headers(emu.endpoint, emu.console_token)
    for operation, body in (("ListPipelines", {}), ("ListTrainingJobs", {}), ("DescribeTrainingJob", {"TrainingJobName": "nope"}),
                            ("StopPipelineExecution", {"PipelineExecutionArn": "arn:aws:sagemaker:us-east-1:1:x",
                                                       "ClientRequestToken": "t" * 8}),
                            ("RetryPipelineExecution", {"PipelineExecutionArn": "arn:aws:sagemaker:us-east-1:1:x",
                                                        "ClientRequestToken": "t" * 8}),
                            ("UpdateModelPackage", {"ModelPackageArn": "arn:aws:sagemaker:us-east-1:1:model-package/g/1",
                                                    "ModelApprovalStatus": "Approved"})):
        status, _, answer = _sagemaker(emu.endpoint, operation, body, **own)
        assert status in (200, 400), (server, operation, status, answer)
        if status == 400:
            assert json.loads(answer)["__type"] not in ("AccessDeniedException", "MissingAuthenticationTokenException")
    status, _, answer = _raw(emu.endpoint, "POST", "/endpoints/no-such-endpoint/invocations", b"{}",
                             Content_Type="application/json", **own)
    assert status == 400 and b"no-such-endpoint" in answer and b"AccessDenied" not in answer, answer
    # the same writes without the token stay refused
    status, _, _ = _sagemaker(emu.endpoint, "StopPipelineExecution", {}, Origin=emu.endpoint)
    assert status == 403


@pytest.mark.parametrize("path", [
    "/_smlocal/console/../console.py", "/_smlocal/console/%2e%2e/console.py", "/_smlocal/console/pages/..%2f..%2fconsole.py",
    "/_smlocal/console/%2Fetc%2Fpasswd", "/_smlocal/console//etc/passwd", "/_smlocal/console/pages/%2e%2e/%2e%2e/app.py",
    "/_smlocal/console/..%5c..%5cconsole.py", "/_smlocal/console/.hidden", "/_smlocal/console/pages/",
    "/_smlocal/console/api", "/_smlocal/console/index.html%00.js", "/_smlocal/console/app.js/..",
])
def test_static_serving_refuses_traversal(emulator, path):
    status, _, body = _raw(emulator.endpoint, "GET", path)
    assert status in (404, 403), (path, status)
    assert b"import" not in body and b"root:" not in body


def test_static_files_are_served_with_their_types(emulator):
    for path, kind in (("app.js", "text/javascript"), ("style.css", "text/css"), ("pages/execution.js", "text/javascript")):
        status, headers, body = _raw(emulator.endpoint, "GET", f"/_smlocal/console/{path}")
        assert status == 200 and headers["content-type"].startswith(kind)
        assert body == (STATIC_ROOT / path).read_bytes()
    status, headers, _ = _raw(emulator.endpoint, "GET", "/_smlocal/console")
    assert status == 308 and headers["location"] == "/_smlocal/console/"


def test_every_answer_outside_the_console_is_sandboxed(emulator, s3, bucket):
    s3.put_object(Bucket=bucket, Key="evil.html", Body=b"<script>alert(1)</script>", ContentType="text/html")
    for method, path, body, headers in (("GET", "/_smlocal/health", b"", {}), ("GET", f"/{bucket}/evil.html", b"", {}),
                                        ("POST", "/", b"{}", {"X_Amz_Target": "SageMaker.ListPipelines",
                                                              "Content_Type": JSON}),
                                        ("POST", "/_smlocal/reset", b"", {})):
        status, answer, _ = _raw(emulator.endpoint, method, path, body, **headers)
        assert answer.get("content-security-policy") == "sandbox", (path, status, answer)


# ---- offline: nothing in the shipped files reaches another origin
_URL = re.compile(rb"""(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}[/"'\s)]""", re.I)
_LOADS = re.compile(rb"""(?:\bimport\b[^;]{0,200}?["'](?:https?:)?//|@import|url\(\s*["']?(?:https?:)?//|src\s*=\s*["']?(?:https?:)?//|"""
                    rb"""href\s*=\s*["']?(?:https?:)?//|fetch\(\s*["'](?:https?:)?//|importScripts)""", re.I)
SVG_NAMESPACE = b"http://www.w3.org/2000/svg"


def test_no_shipped_file_reaches_another_origin():
    ours = [p for p in STATIC_ROOT.rglob("*") if p.is_file() and "vendor" not in p.relative_to(STATIC_ROOT).parts]
    assert {p.name for p in ours} >= {"index.html", "app.js", "api.js", "dom.js", "style.css", "execution.js"}
    for path in ours:
        text = path.read_bytes().replace(SVG_NAMESPACE, b"")  # an XML namespace name, never fetched
        assert not _URL.search(text), (path, _URL.search(text))
    vendored = [p for p in (STATIC_ROOT / "vendor").rglob("*") if p.is_file() and p.suffix in (".js", ".css")]
    assert len(vendored) == 3, "run python -m smlocal.gateway.console_vendor"
    for path in vendored:  # their comments cite web pages; nothing loads one
        assert not _LOADS.search(path.read_bytes()), (path, _LOADS.search(path.read_bytes()))


def test_the_vendored_files_are_the_pinned_ones(tmp_path):
    """Their size is measured in benchmarks/console_paint.py; here: present, and byte for byte the pinned files."""
    assert console_vendor.missing() == [] and console_vendor.changed() == []
    assert set(console_vendor.FILE_SHA256) == {f"{lib.folder}/{name}" for lib in console_vendor.LIBRARIES
                                              for _, name in lib.files}
    copy = tmp_path / "vendor"
    shutil.copytree(STATIC_ROOT / "vendor", copy)
    (copy / "uplot" / "uPlot.min.css").write_bytes((copy / "uplot" / "uPlot.min.css").read_bytes() + b" ")
    (copy / "dagre" / "LICENSE").unlink()
    assert console_vendor.changed(copy) == ["dagre/LICENSE", "uplot/uPlot.min.css"]


# ---- bundling
def _tarball(members: dict[str, bytes], link: str | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo("package/LICENSE")
            info.type, info.linkname = tarfile.SYMTYPE, link
            archive.addfile(info)
    return out.getvalue()


def test_vendor_checks_the_pinned_digest_and_writes_only_listed_files(tmp_path):
    library = console_vendor.Library("x", "1.0.0", "", "x", (("package/dist/x.js", "x.js"), ("package/LICENSE", "LICENSE")))
    data = _tarball({"package/dist/x.js": b"export default 1;", "../../evil.js": b"boom", "package/dist/other.js": b"no"},
                    link="/etc/passwd")
    import base64

    good = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    console_vendor.verify(data, good)
    with pytest.raises(console_vendor.VendorError, match="integrity mismatch"):
        console_vendor.verify(data + b"x", good)
    with pytest.raises(console_vendor.VendorError, match="has no package/LICENSE"):  # a link is not a file
        console_vendor.extract(library, data, tmp_path / "vendor")
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["vendor/x/x.js"]
    assert console_vendor.missing(tmp_path / "vendor") == [f"{lib.folder}/{name}" for lib in console_vendor.LIBRARIES
                                                           for _, name in lib.files]
    assert console_vendor.missing() == []  # the real vendor folder is complete (./dev fetched it)
    for lib in console_vendor.LIBRARIES:
        assert lib.integrity.startswith("sha512-")
        assert lib.tarball_url("https://registry.npmjs.org/") == \
            f"https://registry.npmjs.org/{lib.name}/-/{lib.name.rsplit('/', 1)[-1]}-{lib.version}.tgz"


def test_console_api_answers_service_errors_in_aws_shape_whatever_their_status():
    """A handler's ServiceError is the answer (5xx included); the readers belong to the console object."""
    from werkzeug.test import Client

    from smlocal.gateway import console_jobs
    from smlocal.gateway.console import Console

    api = Console(None, "t" * 32, console_jobs.HANDLERS)  # a console the server has not given readers yet
    client = Client(lambda environ, start: api(environ, start, embed_token=False))
    answer = client.get("/_smlocal/console/api/s3-list?uri=s3://bucket/prefix", headers={TOKEN: "t" * 32})
    assert answer.status_code == 503 and answer.headers["x-amzn-ErrorType"] == "ServiceUnavailable"
    assert json.loads(answer.data)["__type"] == "ServiceUnavailable"
    answer = client.get("/_smlocal/console/api/s3-object?uri=http://x/y", headers={TOKEN: "t" * 32})
    assert answer.status_code == 400 and json.loads(answer.data)["__type"] == "InvalidURI"
