"""The gateway's boundary decisions (pure): Host names, Origins, admin calls, which requests must be signed."""

from __future__ import annotations

import pytest

from smlocal.gateway import boundary
from smlocal.gateway.boundary import BoundaryPolicy, policy_for


def _environ(method="GET", path="/", **headers) -> dict:
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": ""}
    for name, value in headers.items():
        environ["HTTP_" + name.upper()] = value
    return environ


@pytest.mark.parametrize("host,allowed", [
    ("127.0.0.1:5555", True), ("localhost:5555", True), ("LOCALHOST", True), ("localhost.:5555", True),
    ("[::1]:5555", True), ("10.1.2.3:5555", True), ("[fe80::1]", True),
    ("bucket.localhost:5555", True), ("my.bucket.s3.localhost", True),
    ("attacker.example:5555", False), ("localhost.attacker.example", False), ("127.0.0.1.nip.io:5555", False),
    ("evillocalhost:5555", False), ("bucket.127.0.0.1", False), ("", False), ("localhost:abc", False),
    ("[::1", False),
])
def test_host_names_of_a_loopback_server(host, allowed):
    assert boundary.host_allowed(host, policy_for("127.0.0.1")) is allowed


def test_configured_and_machine_names():
    policy = policy_for("0.0.0.0", allowed_hosts=["smlocal", "Sm.Example.COM"], machine_names=["buildbox"])
    for host in ("smlocal:5555", "bucket.smlocal", "sm.example.com", "buildbox:5555", "0.0.0.0:5555"):
        assert boundary.host_allowed(host, policy), host
    assert not boundary.host_allowed("other:5555", policy)
    assert not boundary.host_allowed("buildbox:5555", policy_for("127.0.0.1", machine_names=["buildbox"]))
    assert boundary.host_allowed("myhost.lan:5555", policy_for("myhost.lan"))


@pytest.mark.parametrize("host,loopback", [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True),
                                           ("localhost", True), ("0.0.0.0", False), ("", False),
                                           ("192.168.1.5", False), ("::", False), ("myhost", False)])
def test_signatures_are_required_beyond_loopback(host, loopback):
    assert policy_for(host).require_signature is not loopback


def test_origins_are_refused_unless_listed_and_null_never():
    policy = policy_for("127.0.0.1", allow_origins=["https://ok.example/", "null"])
    assert policy.allowed_origins == frozenset({"https://ok.example"})
    assert boundary.check_origin(_environ(), policy) is None
    assert boundary.check_origin(_environ(origin="https://OK.example"), policy) is None
    for origin in ("https://evil.example", "null", "https://ok.example.evil", "http://ok.example", ""):
        refusal = boundary.check_origin(_environ(origin=origin), policy)
        assert refusal is not None and (refusal.status, refusal.code) == (403, "AccessDeniedException"), origin


def test_preflight_answer_echoes_the_origin_and_requested_headers():
    environ = _environ("OPTIONS", origin="https://ok.example", access_control_request_method="POST",
                       access_control_request_headers="authorization, x-amz-target, bad header")
    headers = dict(boundary.preflight_headers(environ))
    assert headers["Access-Control-Allow-Origin"] == "https://ok.example"
    assert headers["Access-Control-Allow-Headers"] == "authorization, x-amz-target"
    assert "POST" in headers["Access-Control-Allow-Methods"]


def test_moto_cors_headers_are_stripped():
    headers = [("Content-Type", "text/xml"), ("Access-Control-Allow-Origin", "*"),
               ("access-control-allow-methods", "GET")]
    assert boundary.without_cors(headers) == [("Content-Type", "text/xml")]


def test_admin_calls_need_post_and_the_token():
    token = "t" * 32
    assert boundary.check_admin(_environ("GET", "/_smlocal/health"), token) is None
    assert boundary.check_admin(_environ("GET", "/_smlocal/reset-all", x_smlocal_admin_token=token), token).status == 405
    assert boundary.check_admin(_environ("POST", "/_smlocal/reset-all"), token).status == 403
    assert boundary.check_admin(_environ("POST", "/_smlocal/reset", x_smlocal_admin_token="t" * 31), token).status == 403
    assert boundary.check_admin(_environ("POST", "/_smlocal/reset", x_smlocal_admin_token=token), token) is None
    assert boundary.check_admin(_environ("POST", "/_smlocal/reset", x_smlocal_admin_token=token), None).status == 403
    assert boundary.check_admin(_environ("GET", "/moto-api/"), token).status == 403
    assert boundary.check_admin(_environ("POST", "/moto-api/reset", x_smlocal_admin_token=token), token) is None


def test_requests_from_other_sites_pages_are_refused():
    policy = policy_for("127.0.0.1", allow_origins=["https://ok.example"])
    image = _environ("GET", "/iam_us-east-1/", sec_fetch_site="cross-site")
    assert boundary.check_fetch_site(image, policy).status == 403
    # signature parameters in the URL do not help: on loopback nothing verifies them, a page can forge them
    forged = _environ("GET", "/", sec_fetch_site="cross-site")
    forged["QUERY_STRING"] = "X-Amz-Credential=a/20250101/us-east-1/iam/aws4_request&X-Amz-Signature=00"
    assert boundary.check_fetch_site(forged, policy).status == 403
    assert boundary.check_fetch_site(_environ(sec_fetch_site="none"), policy) is None
    assert boundary.check_fetch_site(_environ(sec_fetch_site="same-origin"), policy) is None
    allowed = _environ(sec_fetch_site="cross-site", origin="https://ok.example")
    assert boundary.check_fetch_site(allowed, policy) is None


def test_which_requests_need_a_signature():
    wide = policy_for("0.0.0.0", allow_origins=["https://ok.example"])
    assert boundary.needs_signature(_environ("POST", "/"), wide)
    assert not boundary.needs_signature(_environ("POST", "/"), BoundaryPolicy())
    assert not boundary.needs_signature(_environ("GET", "/_smlocal/health"), wide)  # admin: the token rules
    assert not boundary.needs_signature(_environ("OPTIONS", "/", origin="https://ok.example"), wide)
    assert boundary.needs_signature(_environ("OPTIONS", "/"), wide)


@pytest.mark.parametrize("protocol,kind,code", [("json", "mismatch", "InvalidSignatureException"),
                                                ("query", "unknown-key", "InvalidClientTokenId"),
                                                ("rest-xml", "skewed", "RequestTimeTooSkewed"),
                                                ("rest-xml", "missing", "AccessDenied")])
def test_signature_refusals_are_shaped_per_protocol(protocol, kind, code):
    status, headers, body = boundary.render(boundary.signature_refusal(kind, "m <x>", protocol), protocol, "rid")
    assert status.startswith("403")
    assert code.encode() in body
    if protocol != "json":
        assert b"m &lt;x&gt;" in body
    else:
        assert dict(headers)["x-amzn-ErrorType"] == code


def test_a_servers_record_token_is_only_sent_to_this_machine(tmp_path, monkeypatch):
    from smlocal.auth import admin_token_for, write_server_record

    monkeypatch.setenv("SMLOCAL_RUNTIME_DIR", str(tmp_path))
    monkeypatch.delenv("SMLOCAL_ADMIN_TOKEN", raising=False)
    write_server_record(5599, {"endpoint": "http://127.0.0.1:5599", "port": 5599, "adminToken": "t" * 32})
    assert admin_token_for("http://127.0.0.1:5599") == admin_token_for("http://localhost:5599") == "t" * 32
    assert admin_token_for("http://other-host.example:5599") is None
