"""Finding a running emulator, or starting one for the duration of a block."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path
from typing import Iterator

from smlocal.config import Settings, load_settings


DEFAULT_ENDPOINT = "http://127.0.0.1:5555"  # where `smlocal up` and compose.yaml listen


def running_endpoint() -> str | None:
    """A healthy smlocal to use: ``SMLOCAL_ENDPOINT`` if set, else one on the default port.

    ``SMLOCAL_AUTODETECT=0`` turns off the default-port probe (tests use it for isolation).
    """
    endpoint = os.environ.get("SMLOCAL_ENDPOINT")
    if not endpoint and os.environ.get("SMLOCAL_AUTODETECT", "1") not in ("0", "false", "no"):
        endpoint = DEFAULT_ENDPOINT
    if endpoint and (health(endpoint, timeout=1.0) or {}).get("status") == "ok":
        return endpoint
    return None


def health(endpoint: str, timeout: float = 2.0) -> dict | None:
    try:
        with urllib.request.urlopen(f"{endpoint.rstrip('/')}/_smlocal/health", timeout=timeout) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def emulator_environment(settings: Settings | None = None, **flags) -> Iterator[dict[str, str]]:
    """Yields the client environment of a running emulator, starting an embedded one if needed.

    An embedded emulator started here lives for the block; without an explicit data dir it keeps
    its state in a temporary folder that is removed afterwards.
    """
    endpoint = running_endpoint()
    if endpoint:
        info = health(endpoint) or {}
        settings = settings or load_settings(region=info.get("region"))
        if info.get("s3Endpoint") and info["s3Endpoint"] != endpoint:
            settings = Settings(**{**settings.__dict__, "s3_endpoint": info["s3Endpoint"],
                                   "s3_client_endpoint": info["s3Endpoint"]})
        from smlocal.env import client_environment

        yield client_environment(endpoint, settings)
        return
    from smlocal.server import Emulator

    temp = None
    if settings is None:
        if flags.get("data_dir") is None and not os.environ.get("SMLOCAL_DATA_DIR"):
            temp = tempfile.mkdtemp(prefix="smlocal-")
            flags["data_dir"] = Path(temp)
        settings = load_settings(**flags)
    try:
        with Emulator(settings) as emulator:
            yield emulator.client_env()
    finally:
        if temp:
            shutil.rmtree(temp, ignore_errors=True)
