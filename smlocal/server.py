"""The emulator: one threaded HTTP server on loopback with the SageMaker service and moto behind it.

Each started emulator has a fresh admin secret (:attr:`Emulator.admin_token`) and writes it, with its
endpoint and pid, to ``server-<port>.json`` in :func:`smlocal.auth.runtime_dir` (mode 0600) until it
stops; admin calls (reset) must carry it (see :mod:`smlocal.gateway.boundary`).

Usable as a context manager from tests and programs::

    with Emulator(load_settings(data_dir=tmp)) as emu:
        boto3.client("sagemaker", endpoint_url=emu.endpoint, ...)
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import secrets
import socket
import threading
from pathlib import Path

import boto3
from botocore.config import Config
from werkzeug.serving import make_server

from moto.moto_server.werkzeug_app import MotoRequestHandler

from smlocal.auth import (CLIENT_ACCESS_KEY, CLIENT_SECRET_KEY, accepted_keys, client_environment, client_secret_key,
                          container_key_pair, container_keys, remove_server_record, s3_credentials, server_record_path, write_server_record)
from smlocal.config import DEFAULT_ROLE_NAME, Settings
from smlocal.service.store import DataDirLock, Store
from smlocal.gateway import boundary, console
from smlocal.gateway.app import Gateway
from smlocal.gateway.s3proxy import S3Proxy
from smlocal.gateway.wire import framing_problem, framing_refusal, request_timeout
from smlocal.runtime.backends.base import BackendSet
from smlocal.runtime.backends.process import ProcessBackend
from smlocal.runtime.job import RuntimeContext
from smlocal.runtime.log_journal import LogJournal
from smlocal.runtime.staging import S3Stager
from smlocal.service.api import SageMakerService
from smlocal.service.common import Account
from smlocal.service.endpoints import Endpoints
from smlocal.service.experiments import Experiments
from smlocal.service.models import Models
from smlocal.service.pipelines import Pipelines
from smlocal.service.processing import ProcessingJobs
from smlocal.service.registry import ModelRegistry
from smlocal.service.search_api import SearchApi
from smlocal.service.scheduler import JobScheduler
from smlocal.service.tags import Tags
from smlocal.service.training import TrainingJobs
from smlocal.service.transform import TransformJobs
from smlocal.service.tuning import TuningJobs

log = logging.getLogger(__name__)

_TRUST = (
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow",'
    '"Principal":{"Service":"sagemaker.amazonaws.com"},"Action":"sts:AssumeRole"}]}'
)


class _Handler(MotoRequestHandler):
    """moto's request handler with a read timeout and strict body framing.

    A client that stays silent (headers or body) for :func:`~smlocal.gateway.wire.request_timeout`
    seconds loses its connection, and a request whose ``Content-Length`` is malformed (``abc``,
    ``-5``, two different values) is answered 400 before any application reads its body: moto's own
    readers would otherwise wait for the end of the stream.
    """

    @property
    def timeout(self) -> float:  # read by StreamRequestHandler.setup() for each connection
        return request_timeout()

    def run_wsgi(self) -> None:
        problem = framing_problem(self.headers.get_all("Content-Length") or [],
                                  self.headers.get("Transfer-Encoding"))
        if problem is None:
            super().run_wsgi()
            return
        status, headers, body = framing_refusal(problem, self.headers.get("X-Amz-Target"))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_request(self, *args, **kwargs) -> None:  # quiet: one line per request is noise
        pass


def _admin_token() -> str:
    """``SMLOCAL_ADMIN_TOKEN`` when set (compose passes one so host clients can reset), else a fresh secret."""
    configured = os.environ.get("SMLOCAL_ADMIN_TOKEN", "")
    if len(configured) >= 16:
        return configured
    if configured:
        log.warning("SMLOCAL_ADMIN_TOKEN is shorter than 16 characters; using a generated admin token instead")
    return secrets.token_urlsafe(32)


class Emulator:
    """Owns the server thread, the store, the job scheduler and every resource family."""

    def __init__(self, settings: Settings, s3_store=None):
        self.settings = settings
        self.s3_store = s3_store  # a smlocal.s3store.DurableS3Store: durable S3 and Logs (`smlocal up`)
        self.log_journal: LogJournal | None = None
        self.account = Account(settings.region, settings.account_id)
        self.role_arn = f"arn:aws:iam::{settings.account_id}:role/{DEFAULT_ROLE_NAME}"
        self._server = None
        self._thread: threading.Thread | None = None
        self._ready = False
        self.store: Store | None = None
        self.scheduler: JobScheduler | None = None
        self.admin_token = _admin_token()  # what admin calls carry; see boundary.check_admin
        self.console_token = secrets.token_urlsafe(32)  # what the console's calls carry (never admin calls)
        self.record_path: Path | None = None
        self._lock: DataDirLock | None = None
        self._container_server = None  # the listener on the engine's bridge (Docker backend)
        self._container_thread: threading.Thread | None = None
        self._container_gateway: Gateway | None = None
        self.container_endpoint: str | None = None  # where containers reach the gateway
        self.container_credentials = container_key_pair()  # the key pair jobs in containers sign with

    # ---- lifecycle
    def start(self) -> "Emulator":
        """Takes the data dir, starts the store(s) and serves; on any failure undoes what it started.

        Raises:
            DataDirInUse: another live smlocal serves this data dir.
        """
        data = Path(self.settings.data_dir)
        data.mkdir(parents=True, exist_ok=True)
        try:
            self._lock = DataDirLock(data)  # before anything reads or recovers the state of the data dir
            self._start_durable(data)
            self.store = Store(data / "state.sqlite3")
            self.service = SageMakerService()
            identity = f"arn:aws:sts::{self.settings.account_id}:assumed-role/{DEFAULT_ROLE_NAME}/smlocal"
            self.gateway = Gateway(self.service, identity, self.settings.account_id,
                                   admin={"health": self._health, "reset": self.reset,
                                          "reset-all": self.reset_all},
                                   policy=self.boundary_policy(), admin_token=self.admin_token,
                                   keys=accepted_keys(self.settings), console_token=self.console_token)
            self._proxy_s3()
            self._server = make_server(self.settings.host, self.settings.port, self.gateway, threaded=True,
                                       request_handler=_Handler)
            self._server.daemon_threads = True
            self._write_record()
            self._wire()  # every operation is registered before the first request is served
            self._thread = threading.Thread(target=self._server.serve_forever, name="smlocal-gateway",
                                            daemon=True)
            self._thread.start()
            self._bootstrap_identity()
            if self.log_journal is not None:
                self.log_journal.replay(self.client("logs"))
        except BaseException:
            self.stop()
            raise
        self._ready = True
        return self

    def _start_durable(self, data: Path) -> None:
        """With a durable S3 store: starts it and opens the CloudWatch Logs journal.

        The settings keep no S3 endpoint: clients and jobs reach the store through the gateway's S3
        proxy (:meth:`_proxy_s3`) with smlocal's key pair; only this server talks to it directly.
        """
        if self.s3_store is None:
            return
        self.s3_store.start()
        self.log_journal = LogJournal(data / "logs")

    def _proxy_s3(self) -> None:
        """Sends every S3 request the gateway gets to the durable store (re-signed with its key pair)."""
        if self.s3_store is not None:
            self.gateway.s3_proxy = S3Proxy(self.s3_store.endpoint, self.s3_store.credentials, self.settings.region,
                                            host_names=self.gateway.policy.allowed_hosts)

    def _wire(self) -> None:
        settings = self.settings
        runtime = RuntimeContext(
            settings=settings,
            stager=S3Stager(self.s3_client()),
            logs_client=self.client("logs"),
            backend=self._backends(),
            endpoint_url=self.endpoint,
            log_journal=self.log_journal,
        )
        self.runtime = runtime
        self.gateway.console.readers = console.Readers(s3=runtime.stager.s3, logs=runtime.logs_client)
        self.scheduler = JobScheduler(settings.max_parallel_jobs)
        self.families = self._families(runtime)
        # containers' requests are verified: they do not come from loopback (every family is wired now)
        self._container_gateway = copy.copy(self.gateway)
        self._container_gateway.policy = dataclasses.replace(self.gateway.policy, require_signature=True)
        # containers sign with their own random pair, and only it is accepted here (not smlocal's default)
        self._container_gateway._keys = container_keys(settings, self.container_credentials)  # noqa: SLF001
        for family in self.families:
            self.service.register(family.operations())
        recovered = sum(family.recover() for family in self.families)
        if recovered:
            log.warning("%d job(s) left running by a previous server were marked Failed", recovered)

    def _backends(self) -> BackendSet:
        """The backends the settings use (``backend``, and each image's); the Docker one removes what
        a dead server of this data dir left and gets the gateway's address for containers."""
        settings = self.settings
        built = {}
        if "process" in settings.backends_in_use:
            built["process"] = ProcessBackend()
        if "docker" in settings.backends_in_use:
            from smlocal.runtime.backends.docker import DockerBackend, server_id

            docker_backend = DockerBackend(server_id(settings.data_dir))
            docker_backend.remove_leftovers()  # the data dir is ours: any container of its label is a dead server's
            self._listen_for_containers(docker_backend)
            built["docker"] = docker_backend
        default = built[settings.backend]
        return BackendSet(default, built, choose=settings.backend_for)

    def _listen_for_containers(self, backend) -> None:
        """Makes the gateway reachable from containers: on the engine's bridge address (and there only,
        besides loopback), signatures required; a server bound to every interface already is."""
        from smlocal.runtime.backends.docker import GatewayAddress, bridge_gateway

        bridge = bridge_gateway(backend.client)
        if boundary.is_wildcard(self.settings.host) or self.settings.host == bridge:
            self.container_endpoint = f"http://{bridge}:{self.port}"
        else:
            try:
                server = make_server(bridge, self.port, self._serve_container, threaded=True, request_handler=_Handler)
            except OSError:  # the port is taken on that address: any other
                server = make_server(bridge, 0, self._serve_container, threaded=True, request_handler=_Handler)
            server.daemon_threads = True
            # an isolated job's network reaches the host's addresses: its containers are refused
            server.verify_request = lambda request, address: backend.accepts_client(address[0])
            self._container_server = server
            self._container_thread = threading.Thread(target=server.serve_forever, name="smlocal-gateway-containers",
                                                      daemon=True)
            self._container_thread.start()
            self.container_endpoint = f"http://{bridge}:{server.server_address[1]}"
        backend.set_gateway(GatewayAddress(loopback=self.endpoint, container=self.container_endpoint,
                                           bridge_host=bridge, credentials=self.container_credentials))

    def _serve_container(self, environ, start_response):
        gateway = self._container_gateway
        if gateway is None:  # not wired yet: no job has started
            start_response("503 Service Unavailable", [("Content-Length", "0")])
            return [b""]
        return gateway(environ, start_response)

    def _families(self, runtime: RuntimeContext) -> list:
        """Every resource family, in dependency order (later ones may use earlier ones)."""
        self.training = TrainingJobs(self.store, self.scheduler, self.account, runtime)
        self.processing = ProcessingJobs(self.store, self.scheduler, self.account, runtime)
        self.registry = ModelRegistry(self.store, self.account)
        self.models = Models(self.store, self.account, self.registry)
        self.endpoints = Endpoints(self.store, self.account, runtime, self.models)
        self.gateway.runtime = self.endpoints.invoke  # POST /endpoints/<name>/invocations
        self.transform = TransformJobs(self.store, self.scheduler, self.account, runtime, self.models)
        return [
            self.training,
            self.processing,
            self.registry,
            self.models,
            self.endpoints,
            self.transform,
            *self._workflow_families(runtime),
        ]

    def _workflow_families(self, runtime: RuntimeContext) -> list:
        """Experiments, tuning and pipelines (they call the families above)."""
        self.experiments = Experiments(self.store, self.account)
        self.tuning = TuningJobs(self.store, self.account, self.service, experiments=self.experiments)
        self.pipelines = Pipelines(self.store, self.account, service=self.service, read_s3=runtime.stager.read_bytes,
                                   client_factory=self.client, experiments=self.experiments)
        self.tags = Tags(self.store)
        self.service.after_call(self.tags.record_created)
        self.service.after_call(self.experiments.record_created)  # each job's trial component
        search = SearchApi(self.store, self.service.call, self.experiments)  # Search reads every family above
        return [self.experiments, self.tuning, self.pipelines, self.tags, search]

    def _bootstrap_identity(self, known_absent: bool = False) -> None:
        """Creates the execution role unless it exists (``known_absent``: right after a moto reset)."""
        if getattr(self, "_iam", None) is None:
            self._iam = self.client("iam")
        iam = self._iam
        if not known_absent:
            try:
                iam.get_role(RoleName=DEFAULT_ROLE_NAME)
                return
            except iam.exceptions.NoSuchEntityException:
                pass
        iam.create_role(RoleName=DEFAULT_ROLE_NAME, AssumeRolePolicyDocument=_TRUST,
                        Description="SageMaker execution role (smlocal)")

    def boundary_policy(self) -> boundary.BoundaryPolicy:
        """Who may call this server (Origins, Host names, signatures), from the settings."""
        names: list[str] = []
        if boundary.is_wildcard(self.settings.host):
            names = [socket.gethostname(), socket.getfqdn()]
        policy = boundary.policy_for(self.settings.host, self.settings.allow_origins, self.settings.allowed_hosts,
                                     names)
        if policy.require_signature and client_secret_key() == CLIENT_SECRET_KEY:
            log.warning("bound to %s with smlocal's default secret key: anyone who can reach this address can sign "
                        "requests; set SMLOCAL_SECRET_ACCESS_KEY to a secret of your own", self.settings.host)
        return policy

    def _write_record(self) -> None:
        """The server record clients read the admin token from (``auth.admin_token_for``)."""
        try:
            self.record_path = write_server_record(self.port, {
                "endpoint": self.endpoint, "port": self.port, "pid": os.getpid(), "host": self.settings.host,
                "adminToken": self.admin_token, "consoleToken": self.console_token})
        except OSError as exc:  # the server still works; clients then need SMLOCAL_ADMIN_TOKEN
            log.warning("could not write the server record %s: %s", server_record_path(self.port), exc)

    def stop(self) -> None:
        for family in getattr(self, "families", []):
            family.close()
        if self.scheduler is not None:
            self.scheduler.shutdown()
        if self._container_server is not None:
            if self._container_thread is not None:
                self._container_server.shutdown()
            self._container_server.server_close()
            self._container_server = None
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
        if self._server is not None:
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.store is not None:
            self.store.close()
        if self.record_path is not None:
            remove_server_record(self.port, self.admin_token)
            self.record_path = None
        if self.log_journal is not None:
            self.log_journal.close()
        if self.s3_store is not None:
            self.s3_store.stop()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- addresses and clients
    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def console_url(self) -> str:
        """The URL that opens this server's console (with its token in the fragment beyond loopback)."""
        return console.console_url(self.endpoint, self.console_token, not self.gateway.policy.require_signature)

    @property
    def endpoint(self) -> str:
        host = "127.0.0.1" if self.settings.host in ("0.0.0.0", "") else self.settings.host
        return f"http://{host}:{self.port}"

    @property
    def s3_endpoint(self) -> str:
        return self.settings.s3_endpoint or self.endpoint

    def client(self, service: str, **kwargs):
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=self.settings.region,
            aws_access_key_id=CLIENT_ACCESS_KEY,
            aws_secret_access_key=client_secret_key(),
            config=Config(retries={"max_attempts": 2, "mode": "standard"}),
            **kwargs,
        )

    def s3_client(self):
        """The server's own S3 client (the stager's): the durable store directly, without the gateway's proxy."""
        key, secret = self.s3_store.credentials if self.s3_store is not None else s3_credentials(self.settings)
        return boto3.client(
            "s3",
            endpoint_url=self.s3_store.endpoint if self.s3_store is not None else self.s3_endpoint,
            region_name=self.settings.region,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"}),
        )

    def client_env(self) -> dict[str, str]:
        """The environment that points unchanged boto3/SDK code at this emulator."""
        return client_environment(self.endpoint, self.settings)

    # ---- admin
    def _health(self) -> dict:
        from smlocal import __version__

        return {"status": "ok" if self._ready else "starting", "version": __version__, "region": self.settings.region,
                "s3Endpoint": self.settings.s3_client_endpoint or self.s3_endpoint,
                "s3External": bool(self.settings.s3_endpoint), "dataDir": str(self.settings.data_dir)}

    def reset(self) -> dict:
        """Forgets every SageMaker record (jobs keep running to their end, unrecorded)."""
        self.store.clear()
        return {"status": "reset"}

    def reset_all(self, wait: float = 10.0) -> dict:
        """Back to a fresh emulator: jobs stopped, SageMaker records and moto state (S3, IAM, Logs ...) gone.

        Running and queued jobs are asked to stop and given ``wait`` seconds to end; a family with a
        ``reset()`` method (e.g. one owning endpoint processes) is told first. moto is reset through
        its documented ``POST /moto-api/reset`` (with this server's admin token: the gateway refuses
        it otherwise), which also drops the execution role, so the role is created again. Used by the
        pytest plugin between tests (``POST /_smlocal/reset-all`` with the token, over HTTP).
        smlocal's durable S3 store (``smlocal up``) is emptied through its S3 API and the Logs journal
        removed; a store given with ``--s3-endpoint`` is not smlocal's and is left as it is.
        """
        import urllib.request

        for family in self.families:
            hook = getattr(family, "reset", None)
            if callable(hook):
                hook()
        stopped = self.scheduler.stop_all(grace=1.0, wait=wait)
        self.store.clear()
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", data=b"", method="POST",
                                         headers={boundary.ADMIN_TOKEN_HEADER: self.admin_token})
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
        self._bootstrap_identity(known_absent=True)
        if self.s3_store is not None:  # smlocal's own durable store; an --s3-endpoint store is left alone
            self.s3_store.clear()
        if self.log_journal is not None:
            self.log_journal.clear()
        return {"status": "reset", "stoppedJobs": stopped}
