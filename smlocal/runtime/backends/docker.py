"""DockerBackend: every host of a job is a container of the job's own image.

What SageMaker does with an image, this does with the local engine (Docker SDK for Python):

* the image runs with its own ENTRYPOINT, ``train`` or ``serve`` as argument (its CMD replaced),
  or the request's ContainerEntrypoint / ContainerArguments (:attr:`RunSpec.entrypoint`,
  :attr:`RunSpec.arguments`), its own working directory and ENV, plus the job's contract
  environment (:meth:`RunSpec.container_environment`: nothing naming this machine's folders);
* the host's job folder is bind-mounted on ``/opt/ml`` (the contract's files as the runners lay
  them), and only it and the spec's binds: never the data dir, the runtime dir or the engine's
  socket (:meth:`DockerBackend.confine` names what is refused);
* the image URI as it is when the engine has it (an AWS image the user pulled, a BYO image), else
  smlocal's own build of it (:func:`smlocal.runtime.image_catalog.local_tag`); else the job fails
  with :func:`~smlocal.runtime.image_catalog.missing_image_reason`;
* one host: the engine's default bridge, host name ``algo-1``; several hosts: a job-private
  network (labelled, removed after the job) where ``algo-1..N`` resolve to each other;
  EnableNetworkIsolation: ``--network none`` with ``--add-host algo-1:127.0.0.1`` (the training
  toolkit waits until its host name resolves), several hosts or a server on an internal network;
* smlocal's own build of an AWS image is told the version the job's URI names
  (``SMLOCAL_ALGO_VERSION``, :func:`~smlocal.runtime.image_catalog.aws_version`): it stands in for
  every version, and e.g. the built-in XGBoost's artefact format follows it (a pickled Booster for
  1.0-1, as the process backend writes);
* ``AWS_ENDPOINT_URL*`` pointing at this machine's loopback are rewritten to the address the
  containers reach the gateway at (:class:`GatewayAddress`);
* a server (``RunSpec.serve_port``) is published on ``127.0.0.1`` on a random port (an isolated
  one is reached at its address on its internal network) and :attr:`RunControl.address` says where;
* Stop and the time limit: ``docker stop`` with the grace period (SIGTERM, SIGKILL after it);
* every container and network carries ``smlocal.server=<id of the data dir>``,
  ``smlocal.owner=<server process>`` and ``smlocal.job=<kind/name>``: :meth:`DockerBackend.sweep` and
  :meth:`DockerBackend.remove_leftovers` remove what a dead server left (:mod:`.docker_owners`);
  every run removes its container whatever happens.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from smlocal.auth import CLIENT_ACCESS_KEY, is_loopback, runtime_dir
from smlocal.runtime.backends import docker_owners
from smlocal.runtime.backends.base import OutputSink, RunControl, RunResult, RunSpec, SandboxPolicy
from smlocal.runtime.backends.docker_owners import HOST_LABEL, JOB_LABEL, OWNER_LABEL, SERVER_LABEL, owner_id
from smlocal.runtime.backends.process import _Tail, split_block

_log = logging.getLogger(__name__)

CONTAINER_ROOT = "/opt/ml"
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
_ENDPOINT_PREFIX = "AWS_ENDPOINT_URL"
#: capabilities no job needs: raw sockets, device nodes, file capabilities, the audit log. The rest
#: of Docker's default set stays: the training toolkit runs as root (as on SageMaker), installs
#: requirements and starts sshd for MPI jobs (which changes user and chroots its privilege separation)
DROPPED_CAPABILITIES = ("NET_RAW", "MKNOD", "SETFCAP", "AUDIT_WRITE")
PIDS_LIMIT = 4096
_INIT_EXEC_FAILURE = "[FATAL tini"  # docker-init's line when the entry program cannot be executed
#: what the clean-up container (:meth:`DockerBackend._reclaim`) may do: change owners and modes
_RECLAIM_CAPABILITIES = ["CHOWN", "FOWNER", "DAC_OVERRIDE", "DAC_READ_SEARCH"]


class DockerUnavailable(RuntimeError):
    """No Docker engine answers (or the ``docker`` package is missing)."""


def connect(timeout: float = 60.0):
    """A Docker SDK client of the engine ``DOCKER_HOST`` names (or the local socket), checked with a ping.

    Raises:
        DockerUnavailable: the package is not installed or no engine answers.
    """
    try:
        import docker
    except ImportError as exc:  # the `docker` extra
        raise DockerUnavailable("the Docker backend needs the 'docker' package (pip install 'smlocal[docker]')") from exc
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - docker.errors.DockerException, requests errors ...
        raise DockerUnavailable(f"no Docker engine is reachable ({exc})") from exc
    return client


def server_id(data_dir: Path) -> str:
    """The ``smlocal.server`` label of a server's containers: the same for every server of a data dir."""
    return hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:12]


def bridge_gateway(client) -> str:
    """The host's address on the engine's default bridge (``docker0``), where containers reach it."""
    attrs = client.networks.get("bridge").attrs
    for config in (attrs.get("IPAM") or {}).get("Config") or []:
        if config.get("Gateway"):
            return config["Gateway"].split("/")[0]
    name = (attrs.get("Options") or {}).get("com.docker.network.bridge.name", "docker0")
    address = _interface_address(name)
    if address:
        return address
    for config in (attrs.get("IPAM") or {}).get("Config") or []:
        if config.get("Subnet"):  # the engine gives the bridge the subnet's first address
            return str(next(ipaddress.ip_network(config["Subnet"]).hosts()))
    raise DockerUnavailable("cannot tell the address of the engine's default bridge")


def _interface_address(name: str) -> str | None:
    import fcntl
    import socket
    import struct

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            packed = fcntl.ioctl(sock.fileno(), 0x8915, struct.pack("256s", name[:15].encode()))  # SIOCGIFADDR
        return socket.inet_ntoa(packed[20:24])
    except OSError:
        return None


@dataclass(frozen=True)
class GatewayAddress:
    """Where containers reach the gateway: ``loopback`` (the server's own URL) → ``container``.

    ``bridge_host`` is the host's address containers reach: another loopback endpoint (an external
    S3 store on this machine) is rewritten to it, port kept. ``credentials``: the key pair the
    containers' listener accepts (:func:`smlocal.auth.container_key_pair`), given to jobs in place
    of smlocal's own pair.
    """

    loopback: str
    container: str
    bridge_host: str
    credentials: tuple[str, str] | None = None

    def rewrite(self, url: str) -> str:
        if url.rstrip("/") == self.loopback.rstrip("/") or url.startswith(self.loopback.rstrip("/") + "/"):
            return self.container.rstrip("/") + url[len(self.loopback.rstrip("/")):]
        parts = urlsplit(url)
        if parts.hostname and is_loopback(parts.hostname):
            netloc = self.bridge_host + (f":{parts.port}" if parts.port else "")
            return urlunsplit(parts._replace(netloc=netloc))
        return url


class DockerBackend:
    """Runs each host of a job as a container of its image; see the module docstring."""

    name = "docker"
    runs_images = True

    def __init__(self, server: str, client=None, gateway: GatewayAddress | None = None) -> None:
        """``server``: this server's label value (:func:`server_id`); ``client``: a Docker SDK
        client (default: :func:`connect`); ``gateway``: see :meth:`set_gateway`."""
        self.server = server
        self.owner = owner_id()
        self.client = client if client is not None else connect()
        self.api = self.client.api
        self.gateway = gateway
        self._refused: tuple[Path, ...] = ()
        self._networks: dict[str, list] = {}  # job → [network id, users, subnet, internal]
        self._lock = threading.Lock()
        self._isolated_subnets: set[str] = set()
        self.confine(SandboxPolicy())

    # ---- the protocol
    def confine(self, policy: SandboxPolicy) -> None:
        """Sets what no container may be given: ``policy.hidden`` (the data dir), the runtime dir and
        the engine's socket (a bind of them, or of a folder holding them, is refused)."""
        refused = [*policy.hidden, *policy.shared_copy_on_write, runtime_dir(), *map(Path, DOCKER_SOCKETS)]
        self._refused = tuple(Path(os.path.realpath(p)) for p in refused)

    def image_problem(self, image: str | None) -> str | None:
        """Why ``image`` cannot run (not in the engine, no build of smlocal's), or None."""
        try:
            self.local_image(image)
        except _MissingImage as exc:
            return str(exc)
        return None

    def local_image(self, image: str | None) -> str:
        """The engine's name of the image to run for ``image`` (see the module docstring)."""
        if not image:
            raise _MissingImage("The job names no image to run.")
        if self._present(image):
            return image
        from smlocal.runtime import image_catalog

        tag = image_catalog.local_tag(image)
        if tag and self._present(tag):
            return tag
        raise _MissingImage(image_catalog.missing_image_reason(image))

    def _present(self, name: str) -> bool:
        import docker

        try:
            self.client.images.get(name)
            return True
        except docker.errors.ImageNotFound:
            return False
        except docker.errors.APIError as exc:  # e.g. an invalid reference
            _log.info("the engine does not know the image %s: %s", name, exc)
            return False

    def run(self, spec: RunSpec, sink: OutputSink, control: RunControl) -> RunResult:
        import docker

        started = time.monotonic()
        try:
            image = self.local_image(spec.image)
            self._check_mounts(spec)
        except _MissingImage as exc:
            return RunResult(exit_code=1, failure=str(exc), elapsed=time.monotonic() - started)
        if control.stop.is_set():
            return RunResult(exit_code=137, stopped=True, elapsed=time.monotonic() - started)
        network = container = None
        try:
            network = self._network_for(spec)
            container = self._create(spec, image, network)
            self.api.start(container)
            return self._run(container, spec, sink, control, started, network)
        except docker.errors.APIError as exc:  # the engine refused: no such executable, a port taken ...
            _log.info("the container of %s did not start: %s", spec.job, exc)
            return RunResult(exit_code=1, failure=start_failure(exc), elapsed=time.monotonic() - started)
        finally:
            if container is not None:
                self._remove(container)
                self._reclaim(spec, image)
            if network is not None:
                self._release_network(spec)

    def sweep(self, job_folder: Path) -> None:
        """Removes the containers and networks a dead server left for the job of ``job_folder``
        (``<jobs root>/<kind>/<name>``)."""
        docker_owners.remove_labelled(self.client, self.server, {JOB_LABEL: f"{job_folder.parent.name}/{job_folder.name}"})

    def remove_leftovers(self) -> int:
        """Removes every container and network of this server's label (a dead server's: the data dir
        is this server's) and those of any smlocal server whose owner is gone
        (:func:`~smlocal.runtime.backends.docker_owners.owner_is_dead`); returns how many containers."""
        return (docker_owners.remove_labelled(self.client, self.server, {})
                + docker_owners.remove_dead_owners(self.client, self.owner))

    def accepts_client(self, address: str) -> bool:
        """Whether a connection from ``address`` may reach the gateway: not from a container of an
        isolated job (an internal network's containers reach the host's addresses)."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        with self._lock:
            subnets = list(self._isolated_subnets)
        return not any(ip in ipaddress.ip_network(subnet) for subnet in subnets)

    def set_gateway(self, gateway: GatewayAddress) -> None:
        """Where jobs reach the gateway (the server sets it once it listens for containers)."""
        self.gateway = gateway

    # ---- one container
    def _labels(self, spec: RunSpec) -> dict[str, str]:
        return {SERVER_LABEL: self.server, OWNER_LABEL: self.owner, JOB_LABEL: spec.job, HOST_LABEL: spec.hostname}

    def _environment(self, spec: RunSpec, image: str) -> dict[str, str]:
        env = spec.container_environment()
        if image != spec.image:  # smlocal's stand-in serves many versions: tell it the job's one
            from smlocal.runtime import image_catalog
            from smlocal.runtime.serving.plan import ENV_ALGO_VERSION

            version = image_catalog.aws_version(spec.image or "")
            if version:
                env[ENV_ALGO_VERSION] = version
        if self.gateway is not None and not spec.network_isolation:
            for key, value in env.items():
                if key.startswith(_ENDPOINT_PREFIX):
                    env[key] = self.gateway.rewrite(value)
        if self.gateway is not None and self.gateway.credentials and env.get("AWS_ACCESS_KEY_ID") == CLIENT_ACCESS_KEY:
            env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = self.gateway.credentials
        return env

    def _check_mounts(self, spec: RunSpec) -> None:
        for source in [spec.opt_ml, *(src for src, _ in spec.binds)]:
            real = Path(os.path.realpath(source))
            for refused in self._refused:
                if real == refused or refused.is_relative_to(real):
                    raise _MissingImage(f"InternalServerError: smlocal refuses to give a container {source} "
                                        "(it holds the data dir, the runtime dir or the engine's socket).")

    def _create(self, spec: RunSpec, image: str, network: str | None):
        import docker

        api = self.api
        binds = {str(Path(spec.opt_ml).resolve()): {"bind": CONTAINER_ROOT, "mode": "rw"}}
        binds.update({str(Path(src).resolve()): {"bind": target, "mode": "rw"} for src, target in spec.binds})
        ports = {}
        if spec.serve_port and not (spec.network_isolation and network):
            ports = {spec.serve_port: ("127.0.0.1", None)}
        if network is not None:
            mode, extra_hosts = network, None
        else:  # a one-host isolated job (_network_for)
            mode, extra_hosts = "none", {host: "127.0.0.1" for host in spec.all_hosts}
        # the host's GPUs (RunSpec.gpus): the engine's NVIDIA runtime shows just those, numbered from 0
        devices = ([docker.types.DeviceRequest(device_ids=list(spec.gpus), capabilities=[["gpu"]])]
                   if spec.gpus else None)
        host_config = api.create_host_config(binds=binds, port_bindings=ports or None, network_mode=mode,
                                             extra_hosts=extra_hosts, init=True, cap_drop=list(DROPPED_CAPABILITIES),
                                             security_opt=["no-new-privileges"], pids_limit=PIDS_LIMIT,
                                             device_requests=devices)
        networking = None
        if network is not None:
            networking = api.create_networking_config({network: api.create_endpoint_config(aliases=[spec.hostname])})
        created = api.create_container(
            image, command=list(spec.arguments) if spec.arguments is not None else None,
            entrypoint=list(spec.entrypoint) if spec.entrypoint else None, environment=self._environment(spec, image),
            hostname=spec.hostname, labels=self._labels(spec), host_config=host_config,
            networking_config=networking, ports=list(ports) or None, detach=True)
        return created["Id"]

    def _run(self, container: str, spec: RunSpec, sink: OutputSink, control: RunControl, started: float,
             network: str | None) -> RunResult:
        api = self.api
        if spec.serve_port:
            control.address = self._address(container, spec, network)
        tail = _Tail()
        readers = [threading.Thread(target=self._pump, args=(container, True, sink, None), daemon=True),
                   threading.Thread(target=self._pump, args=(container, False, sink, tail), daemon=True)]
        for reader in readers:
            reader.start()
        ended = threading.Event()
        status: list[int] = []

        def wait() -> None:
            try:
                status.append(int(api.wait(container, timeout=None)["StatusCode"]))
            except Exception as exc:  # noqa: BLE001 - the engine went away: the job ends, failed
                _log.warning("lost the container %s: %s", container[:12], exc)
            ended.set()

        threading.Thread(target=wait, daemon=True).start()
        stopped = timed_out = False
        deadline = started + control.timeout if control.timeout else None
        while not ended.wait(0.05):
            if control.stop.is_set() and not stopped:
                stopped = True
                self._stop(container, control.grace_seconds)
            elif deadline and time.monotonic() >= deadline and not (timed_out or stopped):
                timed_out = True
                self._stop(container, control.grace_seconds)
        for reader in readers:
            reader.join(timeout=5)
        code = status[0] if status else 137
        # the engine's init (--init) could not exec the entry: the container never started the job
        failure = next((f"ClientError: the container could not start: {line.strip()}" for line in tail.text().splitlines()
                        if code in (126, 127) and line.startswith(_INIT_EXEC_FAILURE)), None)
        return RunResult(exit_code=code, stopped=stopped, timed_out=timed_out, stderr_tail=tail.text(),
                         elapsed=time.monotonic() - started, failure=failure)

    def _stop(self, container: str, grace: float) -> None:
        """``docker stop``: SIGTERM, SIGKILL after the grace period (in a thread: the loop keeps watching)."""
        def stop() -> None:
            try:
                self.api.stop(container, timeout=max(0, math.ceil(grace)))
            except Exception as exc:  # noqa: BLE001 - already gone
                _log.info("stopping %s: %s", container[:12], exc)

        threading.Thread(target=stop, daemon=True).start()

    def _address(self, container: str, spec: RunSpec, network: str | None) -> str:
        info = self.api.inspect_container(container)
        settings = info.get("NetworkSettings") or {}
        if spec.network_isolation and network:
            ip = ((settings.get("Networks") or {}).get(network) or {}).get("IPAddress")
            return f"{ip}:{spec.serve_port}"
        bound = (settings.get("Ports") or {}).get(f"{spec.serve_port}/tcp") or []
        if not bound:
            raise RuntimeError(f"the engine published no port for {spec.serve_port}")
        return f"127.0.0.1:{bound[0]['HostPort']}"

    def _pump(self, container: str, stdout: bool, sink: OutputSink, tail: _Tail | None) -> None:
        pending = bytearray()
        try:
            stream = self.api.logs(container, stdout=stdout, stderr=not stdout, stream=True, follow=True)
            for block in stream:
                pending += block
                for raw in split_block(pending):
                    self._emit(raw, sink, tail)
        except Exception as exc:  # noqa: BLE001 - the container was removed under the stream
            _log.info("log stream of %s ended: %s", container[:12], exc)
        if pending:
            self._emit(bytes(pending), sink, tail)

    @staticmethod
    def _emit(raw: bytes, sink: OutputSink, tail: _Tail | None) -> None:
        line = raw.decode("utf-8", errors="replace")
        if tail is not None:
            tail.append(line)
        sink(line.rstrip("\n"))

    def _remove(self, container: str) -> None:
        docker_owners.remove_container(self.api, container)

    # ---- networks
    def _network_for(self, spec: RunSpec) -> str | None:
        """The job-private network of every job but a one-host isolated one without a server (that one
        has ``--network none``): shared by the job's hosts' runs and removed when the last ends. Jobs
        and endpoints never share a network: none reaches another's containers."""
        if spec.network_isolation and len(spec.all_hosts) < 2 and not spec.serve_port:
            return None
        key = _network_key(spec)
        with self._lock:
            entry = self._networks.get(key)
            if entry is not None:
                entry[1] += 1
                return entry[0]
            suffix = hashlib.sha256(f"{self.server}/{key}/{time.time()}".encode()).hexdigest()[:12]
            created = self.client.networks.create(f"smlocal-{suffix}", driver="bridge",
                                                  internal=spec.network_isolation, check_duplicate=True,
                                                  labels={SERVER_LABEL: self.server, OWNER_LABEL: self.owner,
                                                          JOB_LABEL: spec.job})
            created.reload()
            configs = (created.attrs.get("IPAM") or {}).get("Config") or []
            subnet = configs[0].get("Subnet") if configs else None
            if spec.network_isolation and subnet:
                self._isolated_subnets.add(subnet)
            self._networks[key] = [created.name, 1, subnet, created.id]
            return created.name

    def _release_network(self, spec: RunSpec) -> None:
        key = _network_key(spec)
        with self._lock:
            entry = self._networks.get(key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] > 0:
                return
            del self._networks[key]
            self._isolated_subnets.discard(entry[2])
        try:
            self.client.networks.get(entry[3]).remove()
        except Exception as exc:  # noqa: BLE001 - already gone
            _log.info("removing the network %s: %s", entry[0], exc)

    # ---- the job folder back to this server
    def _reclaim(self, spec: RunSpec, image: str) -> None:
        """Gives what the container left in the job's folders back to this server's user, set-id bits
        stripped (a container's root owns what it wrote; a hostile job could leave a setuid program):
        a short ``--network none`` container of the job's image runs ``chown``/``chmod`` on them."""
        folders = [Path(spec.opt_ml).resolve(), *(Path(src).resolve() for src, _ in spec.binds)]
        uid, gid = os.getuid(), os.getgid()
        if not any(_needs_reclaim(folder, uid, gid) for folder in folders):
            return
        targets = [f"/reclaim/{index}" for index in range(len(folders))]
        script = (f"chmod -R u-s,g-s {' '.join(targets)}; chown -R -h {uid}:{gid} {' '.join(targets)}; "
                  f"chmod -R u-s,g-s {' '.join(targets)}")
        host_config = self.api.create_host_config(
            binds={str(folder): {"bind": target, "mode": "rw"} for folder, target in zip(folders, targets)},
            network_mode="none", cap_drop=["ALL"], cap_add=_RECLAIM_CAPABILITIES,
            security_opt=["no-new-privileges"], pids_limit=64)
        container = None
        try:
            container = self.api.create_container(image, entrypoint=["/bin/sh", "-c", script], command=[], user="0:0",
                                                  labels={**self._labels(spec), HOST_LABEL: f"{spec.hostname}-reclaim"},
                                                  host_config=host_config, detach=True)["Id"]
            self.api.start(container)
            self.api.wait(container, timeout=120)
        except Exception as exc:  # noqa: BLE001 - e.g. an image without /bin/sh: the files stay as they are
            _log.warning("could not give %s back to uid %d (%s): the job left files this server may not remove",
                         spec.opt_ml, uid, exc)
        finally:
            if container is not None:
                self._remove(container)


def _network_key(spec: RunSpec) -> str:
    return spec.job or str(spec.opt_ml.parent)


def _needs_reclaim(folder: Path, uid: int, gid: int) -> bool:
    """Whether anything under ``folder`` is not ``uid:gid``'s or has a set-id bit (or cannot be read)."""
    import stat

    def wrong(path: str) -> bool:
        info = os.lstat(path)
        return (info.st_uid, info.st_gid) != (uid, gid) or bool(info.st_mode & (stat.S_ISUID | stat.S_ISGID)
                                                               and not stat.S_ISLNK(info.st_mode))

    try:
        if wrong(str(folder)):
            return True
        for root, dirs, files in os.walk(folder, onerror=_raise):
            if any(wrong(os.path.join(root, name)) for name in (*dirs, *files)):
                return True
    except OSError:
        return True
    return False


def _raise(exc: OSError) -> None:
    raise exc


def start_failure(exc) -> str:
    """The FailureReason of a container the engine could not create or start."""
    explanation = getattr(exc, "explanation", None) or str(exc)
    if isinstance(explanation, bytes):
        explanation = explanation.decode("utf-8", errors="replace")
    return f"ClientError: the container could not start: {explanation}"


class _MissingImage(Exception):
    """The job cannot start: the message is its FailureReason."""
