"""Finding a running emulator, or starting one for the duration of a block."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from smlocal.config import Settings, load_settings

DEFAULT_ENDPOINT = "http://127.0.0.1:5555"  # where `smlocal up` and compose.yaml listen
TERMINAL_JOB_STATUSES = ("Completed", "Failed", "Stopped")


@dataclass(frozen=True)
class JobKind:
    """One kind of SageMaker job as a client sees it: its API calls, keys and CloudWatch log group."""

    kind: str
    log_group: str
    noun: str  # "TrainingJob": the List/Describe calls, summaries and name keys derive from it

    @property
    def list_call(self) -> str:
        return f"list_{self._snake}s"

    @property
    def describe_call(self) -> str:
        return f"describe_{self._snake}"

    @property
    def summaries_key(self) -> str:
        return f"{self.noun}Summaries"

    @property
    def name_key(self) -> str:
        return f"{self.noun}Name"

    @property
    def status_key(self) -> str:
        return f"{self.noun}Status"

    @property
    def _snake(self) -> str:
        return "".join("_" + c.lower() if c.isupper() else c for c in self.noun).lstrip("_")


JOB_KINDS = (
    JobKind("training", "/aws/sagemaker/TrainingJobs", "TrainingJob"),
    JobKind("processing", "/aws/sagemaker/ProcessingJobs", "ProcessingJob"),
    JobKind("transform", "/aws/sagemaker/TransformJobs", "TransformJob"),
)


def running_endpoint() -> str | None:
    """A healthy smlocal to use: ``SMLOCAL_ENDPOINT`` if set, else one on the default port.

    ``SMLOCAL_AUTODETECT=0`` turns off the default-port probe (tests use it for isolation).
    """
    endpoint = os.environ.get("SMLOCAL_ENDPOINT")
    timeout = 10.0  # a server named explicitly may be slow to answer on a loaded machine
    if not endpoint and os.environ.get("SMLOCAL_AUTODETECT", "1") not in ("0", "false", "no"):
        endpoint, timeout = DEFAULT_ENDPOINT, 1.0  # only a probe: an absent server must not cost seconds
    if endpoint and (health(endpoint, timeout=timeout) or {}).get("status") == "ok":
        return endpoint
    return None


def health(endpoint: str, timeout: float = 2.0) -> dict | None:
    try:
        with urllib.request.urlopen(f"{endpoint.rstrip('/')}/_smlocal/health", timeout=timeout) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return None


class AdminCallError(RuntimeError):
    """An admin call (reset) a running smlocal refused or could not be asked."""


def admin_post(endpoint: str, call: str, timeout: float = 60.0) -> dict:
    """POSTs the admin call ``call`` (``reset``, ``reset-all``) with the server's admin token.

    The token is ``SMLOCAL_ADMIN_TOKEN``, else the record file the server at ``endpoint`` wrote in
    :func:`smlocal.auth.runtime_dir`.
    """
    from smlocal.auth import admin_token_for

    url = f"{endpoint.rstrip('/')}/_smlocal/{call}"
    token = admin_token_for(endpoint)
    if not token:
        raise AdminCallError(f"no admin token for the smlocal at {endpoint}: set SMLOCAL_ADMIN_TOKEN, or run this "
                             "where the server's record file is readable (see `smlocal up`)")
    request = urllib.request.Request(url, data=b"", method="POST", headers={"X-Smlocal-Admin-Token": token})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:500]
        raise AdminCallError(f"smlocal at {endpoint} refused {call}: HTTP {exc.code} {detail}") from exc
    except (OSError, ValueError) as exc:
        raise AdminCallError(f"smlocal at {endpoint} could not be asked to {call}: {exc}") from exc


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
        if info.get("s3Endpoint") and info.get("s3External", info["s3Endpoint"] != endpoint):
            # an external store (--s3-endpoint): its keys come from the environment (auth.s3_credentials)
            settings = Settings(**{**settings.__dict__, "s3_endpoint": info["s3Endpoint"],
                                   "s3_client_endpoint": info["s3Endpoint"]})
        from smlocal.auth import client_environment

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
