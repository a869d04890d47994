"""The host side of model serving: stage a Model's containers, run their workers, talk to them.

Used by real-time endpoints and by batch transform::

    server = ModelServer.start(ctx, model["Containers"] or [model["PrimaryContainer"]],
                               name="my-endpoint", kind="endpoint", log=writer.write)
    status, body, content_type = server.invoke(b"1,2,3", "text/csv", "text/csv")
    server.stop()

Each container gets a fresh job folder (its /opt/ml) with ``model/`` unpacked from the model data
(archives are checked for path escapes before anything is written) and ``code/`` staged from
``SAGEMAKER_SUBMIT_DIRECTORY``; its worker (:mod:`smlocal.runtime.serving.worker`) runs through
``ctx.backend`` and listens on a Unix socket in that folder. Several containers form a serial
inference pipeline: each one's response is the next one's request, with the response's content
type; only the last sees the caller's Accept.
"""

from __future__ import annotations

import collections
import http.client
import json
import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import smlocal
from smlocal.runtime import frameworks
from smlocal.runtime.backends.base import RunControl, RunResult, RunSpec
from smlocal.runtime.images import Runtime, UnresolvableImage, resolve_runtime
from smlocal.runtime.job import RuntimeContext, job_dir, job_marker, kill_orphans, pidfile
from smlocal.runtime.serving import plan as planning
from smlocal.runtime.serving.errors import ModelServerError, ModelTimeout
from smlocal.runtime.serving.staging import stage_container
from smlocal.runtime.serving.worker import LOAD_ERROR_MARKER

__all__ = ["InvokeResult", "ModelServer", "ModelServerError", "ModelTimeout", "new_instance_id"]

DEFAULT_STARTUP_TIMEOUT = 300.0
INVOKE_TIMEOUT = 60.0  # SageMaker's real-time invocation limit
PING_TIMEOUT = 2.0  # the health check's own request timeout
_MAX_IDLE = 32
TAIL_LINES, TAIL_LINE_CHARS = 200, 4096  # a worker's kept output (as the process backend's stderr tail)
_SUN_PATH_MAX = 100
IMAGE_HANDLER = "image"  # a container served by its own image (a backend that runs images)
SERVING_PORT = 8080  # where SageMaker's serving containers listen


@dataclass(frozen=True)
class InvokeResult:
    """A container's answer; ``container`` is the hostname that produced it (the failing one)."""

    status: int
    body: bytes
    content_type: str | None
    container: str


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _TcpConnection(http.client.HTTPConnection):
    """A connection to a container's published port (``host:port``)."""

    def __init__(self, address: str, timeout: float):
        host, _, port = address.rpartition(":")
        super().__init__(host, int(port), timeout=timeout)


class _Worker:
    """One container's worker process and a keep-alive connection pool to it."""

    def __init__(self, container: planning.ContainerPlan, opt_ml: Path, host: str):
        self.plan = container
        self.opt_ml = opt_ml
        self.host = host
        self.control = RunControl(grace_seconds=5.0)
        self.result: RunResult | None = None
        self.thread: threading.Thread | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)  # lines cut at TAIL_LINE_CHARS
        self._socket = opt_ml / planning.SOCKET_NAME
        self._link: Path | None = None
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        """A connectable path for the socket (a short symlink when the real path is too long)."""
        if len(str(self._socket)) <= _SUN_PATH_MAX:
            return str(self._socket)
        if self._link is None:
            folder = Path(tempfile.gettempdir()) / "smlocal-sockets"
            folder.mkdir(mode=0o700, exist_ok=True)
            link = folder / f"{secrets.token_hex(8)}.sock"
            link.symlink_to(self._socket)
            self._link = link
        return str(self._link)

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                timeout: float = INVOKE_TIMEOUT) -> tuple[int, bytes, str | None]:
        for attempt in (0, 1):
            conn, reused = self._take(timeout)
            try:
                conn.request(method, path, body=body, headers=headers or {})
                response = conn.getresponse()
                data = response.read()
            except socket.timeout as exc:
                conn.close()
                raise ModelTimeout(f"container {self.plan.hostname} did not answer within {timeout:.0f}s",
                                   stage="transport", container=self.plan.hostname) from exc
            except (http.client.HTTPException, OSError) as exc:
                conn.close()
                if reused and attempt == 0:
                    continue  # a kept-alive connection the worker closed meanwhile: retry on a fresh one
                raise ModelServerError(f"container {self.plan.hostname} is not answering: {exc}",
                                       stage="transport", container=self.plan.hostname) from exc
            if response.will_close:
                conn.close()
            else:
                self._give(conn)
            return response.status, data, response.getheader("Content-Type")
        raise AssertionError("unreachable")

    @property
    def reachable(self) -> bool:
        """Whether the worker says where it listens: a published port, or its socket in the folder."""
        return self.control.address is not None or self._socket.exists()

    def _take(self, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            if self._idle:
                conn = self._idle.pop()
                conn.timeout = timeout
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
                return conn, True
        if self.control.address is not None:  # a container's server, on a TCP port the backend published
            return _TcpConnection(self.control.address, timeout), False
        return _UnixConnection(self.address, timeout), False

    def _give(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < _MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def close_connections(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        if self._link is not None:
            self._link.unlink(missing_ok=True)

    def failure_detail(self) -> str:
        """Why the worker is not up: its load-error line, else the last lines it printed."""
        lines = list(self.tail)
        for line in reversed(lines):
            if line.startswith(LOAD_ERROR_MARKER):
                return line[len(LOAD_ERROR_MARKER):]
        meaningful = [ln for ln in lines if ln.strip()][-5:]
        exit_code = self.result.exit_code if self.result is not None else None
        text = " | ".join(meaningful) if meaningful else "no output"
        return f"the model server exited with code {exit_code}: {text}" if exit_code is not None else text


class ModelServer:
    """A running model: one worker per container; see the module docstring."""

    def __init__(self, ctx: RuntimeContext, kind: str, name: str, instance_id: str, workers: list[_Worker]):
        self._ctx = ctx
        self.kind = kind
        self.name = name
        self.instance_id = instance_id
        self._workers = workers
        self._stopped = False
        self.started_at = time.time()

    # ---- lifecycle
    @classmethod
    def start(cls, ctx: RuntimeContext, containers: list[dict], *, name: str, kind: str,
              environment: dict[str, str] | None = None, network_isolation: bool = False,
              log: Callable[[str], None] | None = None, batch: bool = False,
              instance_id: str | None = None, startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
              cancel: threading.Event | None = None, artifact_cache: Path | None = None) -> "ModelServer":
        """Stages and starts every container, returning once each answers ``/ping`` with 200.

        Args:
            ctx: The server's runtime services.
            containers: The Model's ``Containers``, or ``[PrimaryContainer]``.
            name, kind: Name the job folders ``jobs/<kind>/<name>/<instance>...``.
            environment: Extra environment for every container (overrides the model's).
            network_isolation: Run the workers without network (EnableNetworkIsolation).
            log: Receives each output line of the workers (and staging messages).
            batch: Batch transform: sets ``SAGEMAKER_BATCH=true`` as SageMaker does.
            instance_id: The instance name (log streams use it); generated when None.
            startup_timeout: Seconds to wait for each container's ping.
            cancel: Set it to abandon a start in progress (ModelServerError, stage ``cancelled``).
            artifact_cache: A folder keeping a copy of every archive fetched from S3 (model data,
                source code); a later start with the same folder uses the copies, as an endpoint's
                instances keep serving what they downloaded (even once S3 forgets it).

        Raises:
            ModelServerError: with ``stage`` saying what failed and ``detail`` why.
        """
        instance_id = instance_id or new_instance_id()
        emit = log or (lambda line: None)
        plans = _plan(ctx, containers)
        server = cls(ctx, kind, name, instance_id, [])
        try:
            for container in plans:
                host = instance_id if len(plans) == 1 else f"{instance_id}-{container.hostname}"
                worker = _Worker(container, job_dir(ctx, kind, name, host=host), host)
                server._workers.append(worker)
                # an image serves its own code (SAGEMAKER_SUBMIT_DIRECTORY): only the model data is staged
                staged = replace(container, handler="algorithm") if container.handler == IMAGE_HANDLER else container
                python = stage_container(ctx, staged, worker.opt_ml, emit, artifact_cache)
                prefix = "" if len(plans) == 1 else f"[{container.hostname}] "
                _launch(ctx, worker, kind=kind, name=name, python=python, environment=environment or {},
                        network_isolation=network_isolation, batch=batch,
                        emit=(lambda line, p=prefix: emit(p + line)) if prefix else emit)
                _wait_ready(worker, startup_timeout, cancel)
        except BaseException:
            server.stop()
            raise
        return server

    def stop(self) -> None:
        """Stops every worker and removes the job folders (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        for worker in self._workers:
            worker.control.stop.set()
        for worker in self._workers:
            if worker.thread is not None:
                worker.thread.join(timeout=worker.control.grace_seconds + 5)
            worker.close_connections()
            if not os.environ.get("SMLOCAL_KEEP_JOB_DIRS"):
                shutil.rmtree(worker.opt_ml, ignore_errors=True)
        folder = self._ctx.jobs_root / self.kind / self.name
        try:
            folder.rmdir()  # only when no other server of this name uses it
        except OSError:
            pass

    @staticmethod
    def kill_orphans(ctx: RuntimeContext, kind: str, name: str) -> int:
        """Kills workers a crashed smlocal left running for ``kind``/``name``; returns how many."""
        return kill_orphans(ctx, kind, name)

    # ---- state
    @property
    def alive(self) -> bool:
        return not self._stopped and all(w.running for w in self._workers)

    @property
    def containers(self) -> list[str]:
        return [w.plan.hostname for w in self._workers]

    @property
    def images(self) -> list[str]:
        return [w.plan.image for w in self._workers]

    # ---- requests
    def invoke(self, body: bytes, content_type: str | None, accept: str | None) -> tuple[int, bytes, str]:
        """One invocation through every container; thread-safe. Returns (status, body, content type)."""
        result = self.invoke_detailed(body, content_type, accept)
        return result.status, result.body, result.content_type or ""

    def invoke_detailed(self, body: bytes, content_type: str | None, accept: str | None, *,
                        target_container: str | None = None, timeout: float = INVOKE_TIMEOUT) -> InvokeResult:
        """Like :meth:`invoke`, also naming the container that answered (or failed).

        ``target_container`` sends the request to that container only (InferenceExecutionConfig
        Direct); otherwise the containers run as a serial pipeline.
        """
        if self._stopped:
            raise ModelServerError("the model server is stopped", stage="transport")
        workers = self._workers
        if target_container is not None:
            workers = [w for w in self._workers if w.plan.hostname == target_container]
            if not workers:
                raise ModelServerError(f"no container named {target_container}", stage="transport")
        payload, current_type = body, content_type
        result: InvokeResult | None = None
        for index, worker in enumerate(workers):
            last = index == len(workers) - 1
            headers = {"Content-Type": current_type} if current_type else {}
            if last and accept:
                headers["Accept"] = accept
            status, data, media = worker.request("POST", "/invocations", payload, headers, timeout)
            result = InvokeResult(status, data, media, worker.plan.hostname)
            if status >= 400:
                return result
            payload, current_type = data, media
        assert result is not None
        return result

    def execution_parameters(self) -> dict | None:
        """The last container's ``GET /execution-parameters`` answer, or None if it has none."""
        status, data, _ = self._workers[-1].request("GET", "/execution-parameters", timeout=PING_TIMEOUT * 5)
        if status != 200:
            return None
        try:
            return json.loads(data)
        except ValueError:
            return None

    def ping(self) -> bool:
        try:
            return all(w.request("GET", "/ping", timeout=PING_TIMEOUT)[0] == 200 for w in self._workers)
        except ModelServerError:
            return False


def new_instance_id() -> str:
    """An EC2-style instance id (``i-`` and 17 hex digits), as endpoint log streams name them."""
    return "i-" + secrets.token_hex(9)[:17]


def _resolver(ctx: RuntimeContext) -> Callable[[str, bool], Runtime]:
    def resolve(image: str, has_entry_point: bool) -> Runtime:
        mapping = ctx.settings.image_mapping(image)
        if mapping is not None:
            return Runtime(kind="script" if mapping.kind == "script" else "custom", image=image)
        return resolve_runtime(image, has_entry_point=has_entry_point)

    return resolve


def _plan(ctx: RuntimeContext, containers: list[dict]) -> list[planning.ContainerPlan]:
    """Each container resolved, by the backend of its image: to its image (a backend that runs
    images) or to a local handler."""
    if not any(ctx.backend_for(c.get("Image")).runs_images for c in containers):
        return _local_plans(ctx, containers)
    plans = []
    for hostname, container in zip(planning.container_hostnames(containers), containers):
        if ctx.backend_for(container.get("Image")).runs_images:
            plans.append(_image_plan(ctx, hostname, container))
        else:  # a pipeline's container served locally: planned alone, under its pipeline host name
            plans.extend(_local_plans(ctx, [{**container, "ContainerHostname": hostname}]))
    return plans


def _local_plans(ctx: RuntimeContext, containers: list[dict]) -> list[planning.ContainerPlan]:
    try:
        return planning.plan_containers(containers, _resolver(ctx))
    except (planning.PlanError, UnresolvableImage) as exc:
        raise ModelServerError(str(exc), stage="image") from exc


def _image_plan(ctx: RuntimeContext, hostname: str, container: dict) -> planning.ContainerPlan:
    """A container its image serves (``serve``): only its model data is staged here."""
    image = container.get("Image")
    problem = ctx.backend_for(image).image_problem(image)
    if problem:
        raise ModelServerError(f"Container {hostname}: {problem}", stage="image", container=hostname)
    env = dict(container.get("Environment") or {})
    try:
        data = planning.model_data(container)
    except planning.PlanError as exc:
        raise ModelServerError(str(exc), stage="image", container=hostname) from exc
    return planning.ContainerPlan(hostname=hostname, image=image, handler=IMAGE_HANDLER, environment=env,
                                  model_data=data, program=env.get("SAGEMAKER_PROGRAM") or None,
                                  submit_directory=env.get("SAGEMAKER_SUBMIT_DIRECTORY") or None)


def _launch(ctx: RuntimeContext, worker: _Worker, *, kind: str, name: str, python: str,
            environment: dict[str, str], network_isolation: bool, batch: bool,
            emit: Callable[[str], None]) -> None:
    container = worker.plan
    env = ctx.base_env()
    mapping = ctx.settings.image_mapping(container.image)
    image_env = dict(mapping.environment) if mapping is not None else {}
    env.update(planning.worker_environment(container, batch=batch, extra={**image_env, **environment}))
    env["SMLOCAL_JOB"] = job_marker(kind, name)
    # the worker imports smlocal even from a requirements.txt environment; user code imports the
    # packages its framework image ships (sagemaker_containers, sagemaker_xgboost_container ...)
    own = os.pathsep.join(p for p in (str(Path(smlocal.__file__).resolve().parent.parent), env.get("PYTHONPATH")) if p)
    env["PYTHONPATH"] = frameworks.python_path(own, container.framework) or own
    if python != ctx.python:
        env["PATH"] = f"{Path(python).parent}:{env['PATH']}"
    spec = RunSpec(
        command=(python, "-m", planning.WORKER_MODULE),
        env=env,
        opt_ml=worker.opt_ml,
        workdir=planning.CODE_DIR if container.handler != "algorithm" else planning.SANDBOX_ROOT,
        network_isolation=network_isolation,
        pidfile=pidfile(ctx, kind, name, host=worker.host),
        image=container.image,
        arguments=("serve",),
        job=job_marker(kind, name),
        serve_port=SERVING_PORT,
    )

    def sink(line: str) -> None:
        worker.tail.append(line[:TAIL_LINE_CHARS])  # a line (piece) may be ~256 KB
        emit(line)

    def run() -> None:
        try:
            worker.result = ctx.backend_for(container.image).run(spec, sink, worker.control)
        except Exception as exc:  # noqa: BLE001 - recorded as the reason; the waiter reports it
            worker.tail.append(f"{LOAD_ERROR_MARKER}smlocal could not run the worker: {exc!r}")

    worker.thread = threading.Thread(target=run, name=f"smlocal-serve-{worker.host}", daemon=True)
    worker.thread.start()


def _wait_ready(worker: _Worker, timeout: float, cancel: threading.Event | None) -> None:
    hostname = worker.plan.hostname
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        if cancel is not None and cancel.is_set():
            raise ModelServerError("the model server start was cancelled", stage="cancelled", container=hostname)
        if not worker.running:
            detail = worker.failure_detail()
            raise ModelServerError(f"container {hostname} did not pass the ping health check: {detail}",
                                   stage="ping", container=hostname, detail=detail)
        if worker.reachable:
            try:
                if worker.request("GET", "/ping", timeout=PING_TIMEOUT)[0] == 200:
                    return
            except ModelServerError:
                pass
        if time.monotonic() >= deadline:
            detail = f"no successful ping within {timeout:.0f}s"
            raise ModelServerError(f"container {hostname} did not pass the ping health check: {detail}",
                                   stage="ping", container=hostname, detail=detail)
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
