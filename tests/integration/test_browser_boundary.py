"""A real browser as the attacker: a web page on another site (and a DNS-rebound page) tries to drive smlocal.

Chromium (Debian's ``chromium``) is driven by Playwright for Python. The attacker's page is served by a
plain HTTP server on ``attacker.localhost`` (Chromium resolves ``*.localhost`` to loopback itself), so
it is a different site from smlocal's ``127.0.0.1``; DNS rebinding is reproduced with Chromium's own
resolver rules (``rebound.example`` → 127.0.0.1; the page itself is handed to the browser as the
attacker's server would have served it before the name was rebound): a page of that name talks to
smlocal "same-origin".
CI installs Chromium and sets ``SMLOCAL_CI=1``, where a missing browser fails instead of skipping.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import threading
import uuid

import pytest

from conftest import ROLE, SKLEARN_IMAGE, unique

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                  "--disable-component-update", "--disable-sync", "--disable-quic",
                  "--host-resolver-rules=MAP rebound.example 127.0.0.1",
                  # Chromium's own Local Network Access checks off: the tests exercise smlocal's defence, which
                  # must hold in browsers that have no such checks (and for pages they do not cover)
                  "--disable-features=LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests,"
                  "PrivateNetworkAccessSendPreflights,PrivateNetworkAccessRespectPreflightResults"]


def _browser_or_skip():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    missing = "Playwright for Python" if sync_playwright is None else ("Chromium" if CHROMIUM is None else None)
    if missing:
        if os.environ.get("SMLOCAL_CI"):
            pytest.fail(f"{missing} is not installed, and CI must run the browser tests")
        pytest.skip(f"{missing} is not installed (apt-get install chromium; pip install playwright)")
    return sync_playwright


@pytest.fixture(scope="module")
def browser():
    sync_playwright = _browser_or_skip()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def attacker_site():
    """An HTTP server for the attacker's pages: ``serve(html)`` returns the page's URL on attacker.localhost."""
    pages: dict[str, bytes] = {}

    class Pages(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            body = pages.get(self.path.split("?")[0], b"not found")
            self.send_response(200 if self.path.split("?")[0] in pages else 404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def serve(html: str) -> str:
        path = f"/{uuid.uuid4().hex[:8]}.html"
        pages[path] = html.encode()
        return f"http://attacker.localhost:{server.server_address[1]}{path}"

    yield serve
    server.shutdown()


def _processing_job(name: str) -> dict:
    return {"ProcessingJobName": name, "RoleArn": ROLE,
            "AppSpecification": {"ImageUri": SKLEARN_IMAGE,
                                 "ContainerEntrypoint": ["python3", "-c", "print('the page ran code')"]},
            "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large",
                                                      "VolumeSizeInGB": 1}}}


ATTACK = """
<html><body><script>
window.results = {};
const sm = %(endpoint)s;
async function attack() {
  try {  // a CORS request with the SageMaker target header: needs a permissive preflight
    const r = await fetch(sm + "/", {method: "POST", body: JSON.stringify(%(job)s),
      headers: {"X-Amz-Target": "SageMaker.CreateProcessingJob", "Content-Type": "application/x-amz-json-1.1"}});
    window.results.cors = "answered " + r.status + " " + (await r.text());
  } catch (e) { window.results.cors = "blocked: " + e; }
  try {  // a "simple" cross-site POST needs no preflight: the server itself must refuse it
    await fetch(sm + "/", {method: "POST", mode: "no-cors", body: JSON.stringify(%(job2)s),
      headers: {"Content-Type": "text/plain"}});
    window.results.simple = "sent";
  } catch (e) { window.results.simple = "blocked: " + e; }
  await new Promise(done => {  // an <img> tag: a plain GET of the admin reset
    const img = new Image(); img.onload = img.onerror = () => done(); img.src = sm + "/_smlocal/reset-all";
  });
  window.results.img = "sent";
  window.results.done = true;
}
attack();
</script></body></html>
"""


def test_a_page_on_another_site_cannot_drive_smlocal(browser, attacker_site, emulator, sm, s3, bucket):
    names = unique("from-page"), unique("from-page-simple")
    url = attacker_site(ATTACK % {"endpoint": json.dumps(emulator.endpoint), "job": json.dumps(_processing_job(names[0])),
                                  "job2": json.dumps(_processing_job(names[1]))})
    page = browser.new_page()
    try:
        page.goto(url)
        page.wait_for_function("window.results && window.results.done === true", timeout=30_000)
        results = page.evaluate("window.results")
    finally:
        page.close()
    assert results["cors"].startswith("blocked"), results  # the browser was refused the preflight
    listed = {j["ProcessingJobName"] for j in sm.list_processing_jobs(MaxResults=100)["ProcessingJobSummaries"]}
    assert not listed & set(names)
    s3.head_bucket(Bucket=bucket)  # the <img> GET of reset-all did nothing


def test_a_dns_rebound_page_is_refused(browser, emulator, sm):
    """The page's own name resolves to 127.0.0.1: its requests are "same-origin" but carry a foreign Host."""
    name = unique("rebound")
    page = browser.new_page()
    try:
        # the attacker's server served this page; then the name was rebound to 127.0.0.1 (the resolver rule)
        page_url = f"http://rebound.example:{emulator.port}/attack.html"
        page.route(page_url, lambda route: route.fulfill(body="<html><body>rebound</body></html>",
                                                         content_type="text/html"))
        page.goto(page_url)
        status = page.evaluate("""async (job) => {
            const r = await fetch("/", {method: "POST", body: JSON.stringify(job),
              headers: {"X-Amz-Target": "SageMaker.CreateProcessingJob", "Content-Type": "application/x-amz-json-1.1"}});
            return [r.status, await r.text()];
        }""", _processing_job(name))
    finally:
        page.close()
    assert status[0] == 403, status
    listed = {j["ProcessingJobName"] for j in sm.list_processing_jobs(MaxResults=100)["ProcessingJobSummaries"]}
    assert name not in listed


def test_an_allowed_origin_may_call_smlocal_from_the_browser(browser, attacker_site, tmp_path):
    from smlocal.config import load_settings
    from smlocal.server import Emulator

    html = "<html><body>console</body></html>"
    url = attacker_site(html)
    origin = url.rsplit("/", 1)[0]
    with Emulator(load_settings(data_dir=tmp_path, port=0, allow_origins=(origin,))) as allowed:
        page = browser.new_page()
        try:
            page.goto(url)
            status, body = page.evaluate("""async (sm) => {
                const r = await fetch(sm + "/", {method: "POST", body: "{}",
                  headers: {"X-Amz-Target": "SageMaker.ListProcessingJobs", "Content-Type": "application/x-amz-json-1.1"}});
                return [r.status, await r.text()];
            }""", allowed.endpoint)
        finally:
            page.close()
    assert status == 200 and "ProcessingJobSummaries" in json.loads(body)
