"""The console's address for the CLI: `smlocal console`, the `smlocal up` banner, the end of `smlocal run`."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from smlocal.auth import is_loopback, read_server_record


def console_link(endpoint: str, fragment: str = "") -> str:
    """The console URL of the server at ``endpoint``, optionally at the hash route ``fragment``.

    A loopback server's page carries its console token itself; elsewhere the token (read from the
    server's record in the runtime dir, as the admin token is) goes in the URL's ``#token=`` fragment.

    Args:
        endpoint: the server's base URL.
        fragment: a console route such as ``/executions/<url-encoded arn>`` (without ``#``).
    """
    from smlocal.gateway.console import console_url

    parts = urlsplit(endpoint)
    loopback = is_loopback(parts.hostname or "")
    token = ""
    if not loopback:
        record = read_server_record(parts.port or (443 if parts.scheme == "https" else 80)) or {}
        token = record.get("consoleToken") if isinstance(record.get("consoleToken"), str) else ""
    url = console_url(endpoint, token, loopback)
    if not fragment:
        return url
    if "#token=" in url:  # the token stays in the fragment, after the route
        base, token_part = url.split("#", 1)
        return f"{base}#{fragment}?{token_part}"
    return f"{url}#{fragment}"


def execution_fragment(arn: str) -> str:
    """The console route of a pipeline execution."""
    return f"/executions/{quote(arn, safe='')}"


def job_fragment(kind: str, name: str) -> str:
    """The console route of a job (``kind``: training, processing, transform)."""
    return f"/jobs/{kind}/{quote(name, safe='')}"
