"""Helpers for the console's tests: browser pages (offline, errors collected, CSP-safe waits), metric jobs.

The Chromium the pages run in is test_browser_boundary's ``browser`` fixture (Debian's, via
Playwright; a missing browser skips, or fails under ``SMLOCAL_CI=1``). The console's CSP forbids
evaluating strings in its pages, so the waits here use selectors, URLs and Playwright's ``expect``.
"""

from __future__ import annotations

from contextlib import contextmanager
from urllib.parse import quote, urlsplit

from conftest import script_job, upload_sourcedir

VIEWPORT = {"width": 1400, "height": 1000}
METRIC_DEFINITIONS = [{"Name": "validation:rmse", "Regex": r"validation:rmse=([0-9.]+)"},
                      {"Name": "train:loss", "Regex": r"train_loss=([0-9.]+)"}]


@contextmanager
def console_page(browser, emulator, *, timeout: float = 30_000, errors_fail: bool = True):
    """A page of its own browser context, closed at the end, that works as the console must: offline.

    Every request beyond the server's origin is aborted and listed in ``page.foreign``; uncaught
    exceptions are listed in ``page.errors``, and they with the console's error messages in
    ``page.problems``. At the end no request may have left the server's origin, nor (unless
    ``errors_fail`` is false: a test opening a hostile page) an exception have gone uncaught.

    Args:
        browser: The shared Chromium (test_browser_boundary's ``browser`` fixture).
        emulator: The server whose origin the page may use.
        timeout: Milliseconds every wait of the page may take.
        errors_fail: Whether an uncaught exception fails the test.
    """
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(timeout)
    page.foreign, page.errors, page.problems = [], [], []
    own = urlsplit(emulator.endpoint).netloc

    def gate(route):
        if urlsplit(route.request.url).netloc == own:
            route.continue_()
        else:
            page.foreign.append(route.request.url)
            route.abort()

    def uncaught(error):
        page.errors.append(str(error))
        page.problems.append(str(error))

    page.route("**/*", gate)
    page.on("console", lambda message: message.type == "error" and page.problems.append(message.text))
    page.on("pageerror", uncaught)
    try:
        yield page
    finally:
        context.close()
    assert page.foreign == [], f"the console asked beyond its server: {page.foreign}"
    if errors_fail:
        assert not page.errors, page.errors


def open_console(page, emulator, route: str) -> None:
    """Loads the console at ``route`` (its hash route, e.g. ``/jobs/training``)."""
    page.goto(f"{emulator.console_url.split('#')[0]}#{route}")


def open_execution(page, emulator, arn: str) -> None:
    """Loads an execution's graph page and waits until its graph is drawn."""
    open_console(page, emulator, f"/executions/{quote(arn, safe='')}")
    page.wait_for_selector("svg.graph g.node")


def wait_text(locator, text: str, timeout: float = 30_000) -> None:
    """Waits until ``locator``'s text is ``text`` (the whole text, whitespace normalised)."""
    from playwright.sync_api import expect

    expect(locator).to_have_text(text, timeout=timeout)


def metrics_script(line: str, epochs: int, pause: float, last: str | None = None) -> str:
    """A train.py printing ``line`` (an f-string's body over ``epoch``) each epoch, ``pause`` s apart, then ``last``."""
    script = f"import time\nfor epoch in range({epochs}):\n    print(f{line!r}, flush=True)\n    time.sleep({pause})\n"
    return script + (f"print({last!r}, flush=True)\n" if last else "")


def create_metric_job(sm, s3, bucket: str, name: str, script: str, **extra) -> None:
    """Creates training job ``name`` running ``script`` with :data:`METRIC_DEFINITIONS` (it does not wait)."""
    request = script_job(name, bucket, upload_sourcedir(s3, bucket, {"train.py": script}), **extra)
    request["AlgorithmSpecification"]["MetricDefinitions"] = METRIC_DEFINITIONS
    sm.create_training_job(**request)
