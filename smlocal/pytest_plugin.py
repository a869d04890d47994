"""pytest plugin: a real smlocal emulator for the tests of any repository that installs smlocal.

Loaded automatically (``pytest11`` entry point ``smlocal``); disable with ``-p no:smlocal``.
Nothing starts until a test asks for one of the fixtures below.

Fixtures:
    smlocal: (session) the emulator handle: ``endpoint``, ``region``, ``account_id``,
        ``role_arn``, ``s3_endpoint``, ``env``, ``client(service)``, ``s3_client()``, ``reset()``.
        Embedded (started in this process, data under pytest's tmp dir, ephemeral port: one per
        xdist worker) unless ``--smlocal-endpoint URL`` or ``SMLOCAL_ENDPOINT`` names a running one.
        ``--smlocal-backend docker`` runs the embedded emulator's jobs in containers of their images
        (default: ``SMLOCAL_BACKEND``, else the process backend). ``--smlocal-s3 minio`` (or
        ``SMLOCAL_PYTEST_S3=minio``) puts its S3 on a MinIO container started through testcontainers
        (image: ``--smlocal-minio-image`` / ``SMLOCAL_MINIO_IMAGE``, default ``minio/minio:latest``),
        emptied by the per-test reset and removed at session end (``pip install 'smlocal[docker]'``).
    smlocal_env: (function) the process environment points at smlocal (``AWS_ENDPOINT_URL``,
        region, credentials, ``SMLOCAL_ROLE_ARN`` ...) with smlocal's SDK shims installed;
        restored after the test.
    smlocal_bucket: (function) the name of a new, empty S3 bucket.
    smlocal_session: (function) a SageMaker SDK v2 ``sagemaker.Session`` wired to smlocal.
    smlocal_sagemaker_client / smlocal_s3_client: (function) boto3 clients for smlocal.

Isolation: before each test that uses any ``smlocal*`` fixture, every SageMaker record and all
moto state (S3, IAM, CloudWatch Logs ...) is reset, and running jobs are stopped; the execution
role is recreated. ``@pytest.mark.smlocal_shared_state`` skips that reset for a test. An external
emulator is reset with its admin token (``SMLOCAL_ADMIN_TOKEN``, else the record file that
``smlocal up`` writes in its runtime folder).

Failure reports: when such a test fails, the CloudWatch logs of the training, processing and
transform jobs that failed during it are appended to its report.
"""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Any

import pytest

from smlocal.client import JOB_KINDS, JobKind

SHARED_STATE_MARK = "smlocal_shared_state"
_START = pytest.StashKey[float]()
_HANDLE = pytest.StashKey["SmlocalHandle"]()
LOG_TAIL_LINES = 200
DEFAULT_MINIO_IMAGE = "minio/minio:latest"


@dataclass
class FailedJob:
    """A job that ended Failed, with the tail of its CloudWatch log."""

    kind: str
    name: str
    reason: str
    log: str = ""


@dataclass
class SmlocalHandle:
    """What the ``smlocal`` fixture gives a test: where the emulator is and how to talk to it."""

    endpoint: str
    settings: Any
    emulator: Any = None  # the embedded smlocal.server.Emulator, None when external
    isolate: bool = True
    s3_store: "MinioStore | None" = None  # the session's MinIO container (--smlocal-s3 minio)
    _clients: dict = field(default_factory=dict, repr=False)

    @property
    def region(self) -> str:
        return self.settings.region

    @property
    def account_id(self) -> str:
        return self.settings.account_id

    @property
    def role_arn(self) -> str:
        from smlocal.config import DEFAULT_ROLE_NAME

        return f"arn:aws:iam::{self.settings.account_id}:role/{DEFAULT_ROLE_NAME}"

    @property
    def s3_endpoint(self) -> str:
        return self.settings.s3_endpoint or self.endpoint

    @property
    def env(self) -> dict[str, str]:
        """The environment that sends unchanged boto3/SDK code (also in subprocesses) to smlocal."""
        from smlocal.auth import client_environment

        return client_environment(self.endpoint, self.settings)

    def client(self, service: str, **kwargs):
        """A boto3 client for ``service`` at smlocal (cached per service when no kwargs are given)."""
        if service == "s3" and not kwargs:
            return self.s3_client()
        if kwargs:
            return self._make_client(service, **kwargs)
        if service not in self._clients:
            self._clients[service] = self._make_client(service)
        return self._clients[service]

    def s3_client(self):
        """A boto3 S3 client for smlocal's S3 (the external store's, when one is configured)."""
        if "s3" not in self._clients:
            from smlocal.auth import s3_credentials

            key, secret = s3_credentials(self.settings)
            self._clients["s3"] = self._make_client("s3", endpoint_url=self.s3_endpoint,
                                                    aws_access_key_id=key, aws_secret_access_key=secret,
                                                    s3_path_style=True)
        return self._clients["s3"]

    def _make_client(self, service: str, *, s3_path_style: bool = False, **kwargs):
        import boto3
        from botocore.config import Config

        from smlocal.auth import CLIENT_ACCESS_KEY, client_secret_key

        options = {"retries": {"max_attempts": 2, "mode": "standard"}}
        if s3_path_style:
            options["s3"] = {"addressing_style": "path"}
        params = {
            "endpoint_url": self.endpoint,
            "region_name": self.region,
            "aws_access_key_id": CLIENT_ACCESS_KEY,
            "aws_secret_access_key": client_secret_key(),
            "config": Config(**options),
        }
        params.update(kwargs)
        return boto3.client(service, **params)

    def reset(self) -> None:
        """Stops running jobs and forgets all SageMaker and moto state; recreates the execution role."""
        if self.emulator is not None:
            self.emulator.reset_all()
            if self.s3_store is not None:  # the emulator leaves an --s3-endpoint store alone: this one is ours
                self.s3_store.clear()
            return
        from smlocal.client import AdminCallError, admin_post

        try:
            admin_post(self.endpoint, "reset-all")
        except AdminCallError as exc:
            raise RuntimeError(f"smlocal at {self.endpoint} could not be reset: {exc}") from exc

    def failed_jobs(self, since: float) -> list[FailedJob]:
        """Jobs created at or after ``since`` (epoch seconds) that are now Failed, with their logs."""
        sm = self.client("sagemaker")
        found = []
        for kind in JOB_KINDS:
            try:
                summaries = getattr(sm, kind.list_call)(StatusEquals="Failed", CreationTimeAfter=since,
                                                        MaxResults=100)[kind.summaries_key]
            except Exception:  # noqa: BLE001 - a family this emulator does not serve yet
                continue
            for summary in summaries:
                name = summary[kind.name_key]
                reason = summary.get("FailureReason") or self._failure_reason(kind, name)
                found.append(FailedJob(kind.kind, name, reason, self.job_log(kind.log_group, name)))
        return found

    def _failure_reason(self, kind: JobKind, name: str) -> str:
        try:
            return getattr(self.client("sagemaker"), kind.describe_call)(**{kind.name_key: name}).get(
                "FailureReason", "")
        except Exception:  # noqa: BLE001
            return ""

    def job_log(self, group: str, name: str, tail: int = LOG_TAIL_LINES) -> str:
        """The last ``tail`` lines of a job's log streams (``<name>/...``) in ``group``."""
        from smlocal.runtime.logs import job_log_streams, read_log_stream

        logs = self.client("logs")
        lines: list[str] = []
        try:
            for stream in job_log_streams(logs, group, name):
                events, _ = read_log_stream(logs, group, stream["logStreamName"])
                lines += [event["message"] for event in events]
        except Exception as exc:  # noqa: BLE001 - the report must still be written
            return f"(could not read {group} logs for {name}: {exc})"
        if len(lines) > tail:
            lines = [f"... ({len(lines) - tail} earlier lines not shown)"] + lines[-tail:]
        return "\n".join(lines)


class MinioStore:
    """A MinIO container (testcontainers' ``MinioContainer``) as the session's S3 store.

    Readiness is a signed ``ListBuckets`` through the ``minio`` client (what the store must answer
    before smlocal uses it; MinIO's ``/minio/health/live`` is not asked, so an S3-compatible stand-in
    image works too). The port is published on this machine's loopback and, when ``bridge_ip`` is
    given (jobs in containers on the engine's default bridge), on that address with the same port
    number: smlocal's Docker backend rewrites loopback endpoints to the bridge address, port kept.

    Args:
        image: the MinIO image (pulled by testcontainers when the engine lacks it).
        bridge_ip: the host's address on the default bridge, or None.
    """

    PORT = 9000

    def __init__(self, image: str, bridge_ip: str | None = None) -> None:
        import secrets

        self.image = image
        self.bridge_ip = bridge_ip
        self.access_key = "smlocal" + secrets.token_hex(6)
        self.secret_key = secrets.token_urlsafe(24)
        self.host_port = 0
        self._container = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.host_port}"

    def start(self) -> "MinioStore":
        try:
            from testcontainers.core.config import testcontainers_config

            try:
                from testcontainers.community.minio import MinioContainer
            except ImportError:  # testcontainers before the community/ layout
                from testcontainers.minio import MinioContainer
        except ImportError as exc:
            raise pytest.UsageError("smlocal: --smlocal-s3 minio needs testcontainers[minio] and minio "
                                    "(pip install 'smlocal[docker]')") from exc
        self._configure_reaper(testcontainers_config)
        self.host_port = _free_port_on("127.0.0.1", *([self.bridge_ip] if self.bridge_ip else []))
        container = MinioContainer(image=self.image, access_key=self.access_key, secret_key=self.secret_key,
                                   labels={"smlocal.test": "1", "smlocal.pytest": "minio"})
        container.with_env("MINIO_ROOT_USER", self.access_key).with_env("MINIO_ROOT_PASSWORD", self.secret_key)
        container.ports[str(self.PORT)] = [("127.0.0.1", self.host_port)] + (
            [(self.bridge_ip, self.host_port)] if self.bridge_ip else [])
        container.waiting_for(_minio_client_ready(self, 60))
        self._container = container
        try:
            container.start()
        except Exception as exc:  # noqa: BLE001 - the image is missing and cannot be pulled, the engine ...
            self.stop()
            raise pytest.UsageError(f"smlocal: the MinIO container ({self.image}) did not start: {exc}. "
                                    "Pull the image, build the stand-in (containers/s3-standin/build.sh) and "
                                    "pass --smlocal-minio-image, or check the Docker engine") from exc
        return self

    @staticmethod
    def _configure_reaper(config) -> None:
        """testcontainers' reaper (Ryuk) is an image of its own: off when the engine lacks it (no pull
        here), unless TESTCONTAINERS_RYUK_DISABLED says otherwise. The session removes its container."""
        if "TESTCONTAINERS_RYUK_DISABLED" in os.environ:
            return
        from smlocal.runtime.backends.docker import connect

        try:
            connect(timeout=10).images.get(config.ryuk_image)
        except Exception:  # noqa: BLE001 - docker.errors.ImageNotFound and the like
            config.ryuk_disabled = True

    def client(self):
        """A ``minio`` client of the store on loopback (the module's ``get_client()`` asks testcontainers
        for the host's address, which inside a container is the bridge's, where nothing may listen)."""
        from minio import Minio

        return Minio(f"127.0.0.1:{self.host_port}", access_key=self.access_key, secret_key=self.secret_key,
                     secure=False)

    def clear(self) -> None:
        """Deletes every object and bucket (the per-test reset)."""
        from minio.deleteobjects import DeleteObject

        client = self.client()
        for bucket in client.list_buckets():
            names = [DeleteObject(o.object_name) for o in client.list_objects(bucket.name, recursive=True)]
            for error in client.remove_objects(bucket.name, names):
                raise RuntimeError(f"smlocal: could not empty {bucket.name} in MinIO: {error}")
            client.remove_bucket(bucket.name)

    def stop(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            try:
                container.stop()
            except Exception as exc:  # noqa: BLE001 - never created, already gone
                warnings.warn(f"smlocal: removing the MinIO container failed: {exc}", stacklevel=1)


def _minio_client_ready(store: MinioStore, timeout: float):
    """A testcontainers wait strategy: ready once the ``minio`` client's ListBuckets (signed with the
    store's keys) succeeds."""
    from testcontainers.core.waiting_utils import WaitStrategy

    class MinioClientReady(WaitStrategy):
        def wait_until_ready(self, container) -> None:
            deadline = time.monotonic() + self._startup_timeout
            while True:
                try:
                    store.client().list_buckets()
                    return
                except Exception as exc:  # noqa: BLE001 - connection refused, 5xx while starting ...
                    if container.status not in ("created", "running") or time.monotonic() > deadline:
                        raise TimeoutError(f"MinIO did not answer ListBuckets within {self._startup_timeout:.0f} "
                                           f"s (container {container.status}): {exc}") from exc
                time.sleep(self._poll_interval)

    return MinioClientReady().with_startup_timeout(timeout).with_poll_interval(0.1)


def _free_port_on(*hosts: str) -> int:
    """A TCP port free on every one of ``hosts`` (asked of the first, checked on the others)."""
    import socket

    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((hosts[0], 0))
            port = probe.getsockname()[1]
        try:
            for host in hosts[1:]:
                with socket.socket() as other:
                    other.bind((host, port))
            return port
        except OSError:
            continue
    raise RuntimeError(f"no TCP port free on {', '.join(hosts)}")


def point_environment_at(patch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """Sets ``env`` (a client environment) in this process through ``patch``, dropping what would override
    it: other services' ``AWS_ENDPOINT_URL_*``, profiles and session tokens. ``patch.undo()`` restores."""
    for key in list(os.environ):
        if key.startswith("AWS_ENDPOINT_URL_") and key not in env:
            patch.delenv(key)
    for key in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        patch.delenv(key, raising=False)
    for key, value in env.items():
        patch.setenv(key, value)


# ---- hooks
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("smlocal", "smlocal SageMaker emulator")
    group.addoption("--smlocal-endpoint", default=None, metavar="URL",
                    help="use a running smlocal (e.g. `smlocal up`) instead of an embedded one; "
                         "default: $SMLOCAL_ENDPOINT, else embedded")
    group.addoption("--smlocal-backend", default=None, choices=["process", "docker"],
                    help="how the embedded emulator runs jobs: host processes or containers of their "
                         "images (default: $SMLOCAL_BACKEND, else process)")
    group.addoption("--smlocal-s3", default=None, choices=["memory", "minio"],
                    help="the embedded emulator's S3: in memory, or a MinIO container started through "
                         "testcontainers for the session (default: $SMLOCAL_PYTEST_S3, else memory)")
    group.addoption("--smlocal-minio-image", default=None, metavar="IMAGE",
                    help="the image of --smlocal-s3 minio (default: $SMLOCAL_MINIO_IMAGE, else "
                         f"{DEFAULT_MINIO_IMAGE})")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{SHARED_STATE_MARK}: keep the smlocal state left by earlier tests (no reset before this test)",
    )


def _uses_plugin(fixturenames) -> bool:
    return any(name == "smlocal" or name.startswith("smlocal_") for name in fixturenames)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed and report.when in ("setup", "call") and _START in item.stash and _HANDLE in item.stash:
        try:
            for job in item.stash[_HANDLE].failed_jobs(item.stash[_START] - 1.0):
                headline = (job.reason.splitlines() or [""])[0][:120]
                body = f"FailureReason: {job.reason}\n\n" + (job.log or "(no log lines)")
                report.sections.append((f"smlocal: {job.kind} job {job.name} failed: {headline}", body))
        except Exception as exc:  # noqa: BLE001 - never break pytest's reporting
            report.sections.append(("smlocal: failed-job logs unavailable", repr(exc)))
    return report


# ---- fixtures
def _external_endpoint(config: pytest.Config) -> str | None:
    return config.getoption("smlocal_endpoint") or os.environ.get("SMLOCAL_ENDPOINT") or None


@pytest.fixture(scope="session")
def smlocal(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The emulator for this test session (this xdist worker): embedded, or the one at the endpoint."""
    from smlocal.config import Settings, load_settings

    endpoint = _external_endpoint(request.config)
    if endpoint:
        from smlocal.client import health

        info = health(endpoint)
        if not info or info.get("status") != "ok":
            raise pytest.UsageError(f"smlocal: no healthy emulator at {endpoint} (from --smlocal-endpoint "
                                    "or SMLOCAL_ENDPOINT)")
        settings = load_settings(region=info.get("region"))
        if info.get("s3Endpoint") and info.get("s3External", info["s3Endpoint"] != endpoint):
            # an external store (--s3-endpoint): its keys come from the environment (auth.s3_credentials)
            settings = Settings(**{**settings.__dict__, "s3_endpoint": info["s3Endpoint"]})
        shared = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1
        if shared:
            warnings.warn("smlocal: xdist workers share the external emulator at "
                          f"{endpoint}; per-test state reset is off (tests must use their own names)",
                          stacklevel=1)
        yield SmlocalHandle(endpoint.rstrip("/"), settings, isolate=not shared)
        return
    from smlocal.server import Emulator

    config = request.config
    backend = config.getoption("smlocal_backend")
    s3_kind = config.getoption("smlocal_s3") or os.environ.get("SMLOCAL_PYTEST_S3") or "memory"
    if s3_kind not in ("memory", "minio"):
        raise pytest.UsageError(f"smlocal: SMLOCAL_PYTEST_S3={s3_kind!r}: expected memory or minio")
    settings = load_settings(data_dir=tmp_path_factory.mktemp("smlocal-data"), port=0, backend=backend)
    store = None
    if s3_kind == "minio":
        image = config.getoption("smlocal_minio_image") or os.environ.get("SMLOCAL_MINIO_IMAGE") or DEFAULT_MINIO_IMAGE
        store = MinioStore(image, bridge_ip=_bridge_ip() if settings.backend == "docker" else None).start()
        settings = dataclasses.replace(settings, s3_endpoint=store.endpoint, s3_access_key_id=store.access_key,
                                       s3_secret_access_key=store.secret_key)
    try:
        emulator = Emulator(settings).start()
        try:
            yield SmlocalHandle(emulator.endpoint, emulator.settings, emulator=emulator, s3_store=store)
        finally:
            emulator.stop()
    finally:
        if store is not None:
            store.stop()


def _bridge_ip() -> str:
    """The host's address on the engine's default bridge (where job containers reach this machine)."""
    from smlocal.runtime.backends.docker import bridge_gateway, connect

    return bridge_gateway(connect(timeout=10))


@pytest.fixture(autouse=True)
def _smlocal_isolation(request: pytest.FixtureRequest):
    """Resets smlocal before each test that uses it (not for ``smlocal_shared_state`` tests)."""
    if not _uses_plugin(request.fixturenames):
        return
    handle: SmlocalHandle = request.getfixturevalue("smlocal")
    if handle.isolate and request.node.get_closest_marker(SHARED_STATE_MARK) is None:
        handle.reset()
    request.node.stash[_HANDLE] = handle
    request.node.stash[_START] = time.time()


@pytest.fixture
def smlocal_env(smlocal: SmlocalHandle):
    """Points this process's boto3/SDK clients (and subprocesses) at smlocal for one test."""
    from smlocal import compat

    patch = pytest.MonkeyPatch()
    env = smlocal.env
    point_environment_at(patch, env)
    compat.install()
    try:
        yield env
    finally:
        patch.undo()


@pytest.fixture
def smlocal_bucket(smlocal: SmlocalHandle) -> str:
    """A new, empty bucket (``smlocal-test-<random>``)."""
    name = f"smlocal-test-{uuid.uuid4().hex[:16]}"
    smlocal.s3_client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def smlocal_session(smlocal_env, smlocal: SmlocalHandle):
    """A SageMaker SDK v2 ``Session`` for smlocal; ``default_bucket()`` works."""
    import boto3
    import sagemaker

    return sagemaker.Session(boto_session=boto3.Session(region_name=smlocal.region))


@pytest.fixture
def smlocal_sagemaker_client(smlocal: SmlocalHandle):
    """A boto3 ``sagemaker`` client for smlocal."""
    return smlocal.client("sagemaker")


@pytest.fixture
def smlocal_s3_client(smlocal: SmlocalHandle):
    """A boto3 ``s3`` client for smlocal's S3."""
    return smlocal.s3_client()
