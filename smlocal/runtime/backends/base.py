"""The backend protocol: what every way of running a job (process, docker) implements."""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Mapping, Protocol

#: Variables of a job's environment that name this machine's folders and settings: a container
#: has its own (its image's ENV), so they are not passed into one. Every ``SMLOCAL_*`` variable but
#: ``SMLOCAL_JOB`` (the job's marker) is the host's too.
HOST_ONLY_VARIABLES = frozenset({"PATH", "PYTHONPATH", "HOME", "TMPDIR", "VIRTUAL_ENV", "LANG", "LC_ALL", "TZ"})
JOB_MARKER_VARIABLE = "SMLOCAL_JOB"


@dataclass(frozen=True)
class RunSpec:
    """One host of a job: what runs as a local process in a sandbox, or as the job's image.

    A backend takes what its way of running needs: the process backend runs ``command`` with
    ``env`` (this machine's programs); a backend that runs images (:attr:`Backend.runs_images`)
    runs ``image`` with ``entrypoint``/``arguments`` and :meth:`container_environment`.

    Attributes:
        command: argv as the job sees it (paths under /opt/ml are valid inside the sandbox).
        env: the complete environment of the process.
        opt_ml: host directory that the process sees as ``/opt/ml``.
        workdir: working directory inside the sandbox.
        network_isolation: no network at all (EnableNetworkIsolation).
        binds: extra (host_dir, sandbox_dir) pairs, e.g. processing paths outside /opt/ml.
        pidfile: where to record the process id while it runs (orphan clean-up after a crash).
        image: the job's image URI (AlgorithmSpecification.TrainingImage, AppSpecification.ImageUri,
            a model container's Image).
        entrypoint: replaces the image's ENTRYPOINT (ContainerEntrypoint); None keeps it.
        arguments: replace the image's CMD: ContainerArguments, or ``train``/``serve`` as SageMaker
            runs an image; None keeps the CMD.
        hostname: this host's name (``algo-1`` .. ``algo-N``).
        hosts: every host of the job (empty: only ``hostname``); they reach each other by name.
        job: ``kind/name`` of the job (how its containers are labelled and found again).
        serve_port: the port the job's server listens on inside a container (8080 for serving):
            the backend makes it reachable and says where in :attr:`RunControl.address`.
        network: this host's share of the job's private network, attached by the backend's
            :meth:`Backend.job_network` (opaque to everyone else); None: no job network.
        gpus: this machine's GPU indices the host gets as devices: a container's device request;
            the process backend's sandbox shows their ``/dev/nvidia*`` nodes (``env`` names them
            in CUDA_VISIBLE_DEVICES).
        own_network: the host needs the job's private network even when it is the only one (Open
            MPI binds the job's interface, ``eth0``, as every SageMaker container has one).
    """

    command: tuple[str, ...]
    env: dict[str, str]
    opt_ml: Path
    workdir: str = "/opt/ml"
    network_isolation: bool = False
    binds: tuple[tuple[Path, str], ...] = ()
    pidfile: Path | None = None
    image: str | None = None
    entrypoint: tuple[str, ...] | None = None
    arguments: tuple[str, ...] | None = None
    hostname: str = "algo-1"
    hosts: tuple[str, ...] = ()
    job: str = ""
    serve_port: int | None = None
    gpus: tuple[str, ...] = ()
    network: Any = None
    own_network: bool = False

    @property
    def all_hosts(self) -> tuple[str, ...]:
        return self.hosts or (self.hostname,)

    def container_environment(self) -> dict[str, str]:
        """``env`` without what names this machine (:data:`HOST_ONLY_VARIABLES`, ``SMLOCAL_*``)."""
        return {key: value for key, value in self.env.items()
                if key not in HOST_ONLY_VARIABLES and (not key.startswith("SMLOCAL_") or key == JOB_MARKER_VARIABLE)}


@dataclass(frozen=True)
class SandboxPolicy:
    """What of the host a job must not see, whichever job it is.

    Attributes:
        hidden: host folders covered by an empty, read-only folder inside the sandbox (the smlocal
            data dir with every job's folder and the state store; the servers' runtime dir).
        shared_copy_on_write: folders under ``hidden`` whose entries a job may need, shown
            copy-on-write (the job may change its view; the host folder never changes): for each,
            only the entry that the job's command or ``PATH`` names (e.g. the cached requirements
            environment whose interpreter runs the job, where its own ``pip install`` lands).
        job_network: ``"multi-host"``: jobs of several hosts get a private network of their own
            (the hosts reach each other by name, and nothing else but smlocal); ``"always"``:
            single-host jobs too (the ``job-network`` setting).
        relayed_endpoints: smlocal's own loopback endpoints, ``(address, port)``, that a host of a
            job network reaches on its loopback (:func:`jobnet_plan.relayed_endpoints` of the
            endpoints smlocal gives every job; never taken from a job's environment, which its
            request may fill).
    """

    hidden: tuple[Path, ...] = ()
    shared_copy_on_write: tuple[Path, ...] = ()
    job_network: str = "multi-host"
    relayed_endpoints: tuple[tuple[str, int], ...] = ()


@dataclass
class RunResult:
    """How a run ended; ``exit_code`` is 128+N when the job died of signal N (as a shell reports it).

    ``failure`` is set when the backend could not start the job at all (e.g. its image is not in
    the engine): the reason, which becomes the job's FailureReason.
    """

    exit_code: int
    stopped: bool = False
    timed_out: bool = False
    stderr_tail: str = ""
    elapsed: float = 0.0
    failure: str | None = None


OutputSink = Callable[[str], None]


@dataclass
class RunControl:
    """How the caller steers a running job: a stop request and a time limit."""

    stop: threading.Event = field(default_factory=threading.Event)
    timeout: float | None = None
    grace_seconds: float = 10.0
    #: where the job's server (``RunSpec.serve_port``) answers, ``host:port``, once the backend
    #: knows it; None: in the job's folder (the process backend's Unix socket)
    address: str | None = None


class Backend(Protocol):
    name: str
    #: The backend runs the job's image itself (its own entry, toolkit and libraries): runners give
    #: it the image and what the container runs, and leave the image's work to it (fetching code,
    #: installing requirements, the built-in algorithms); it gives every host of a job its own
    #: machine, the hosts reaching each other by name. False: ``command`` runs on this machine.
    runs_images: bool

    def image_problem(self, image: str | None) -> str | None:
        """Why ``image`` cannot run here (the job's FailureReason), or None."""
        ...

    def confine(self, policy: SandboxPolicy) -> None:
        """Sets what every later job must not see (called once by the runtime, before any run)."""
        ...

    def run(self, spec: RunSpec, sink: OutputSink, control: RunControl) -> RunResult:
        """Runs the process to its end, a stop request or the time limit; never raises for job errors."""
        ...

    def sweep(self, job_folder: Path) -> None:
        """Removes what runs of a dead server left under a job's folder (crash recovery)."""
        ...

    # Optional: ``job_network(specs) -> ContextManager[list[RunSpec]]``, entered by the runner around
    # all hosts of one job (see :func:`job_network`): a backend that gives the hosts their network
    # itself, per run (Docker's per-job network), has none.


class JobNetworkUnavailable(RuntimeError):
    """A job that needs a private network cannot get one here; the message says why."""


def job_network(backend: Backend, specs: list[RunSpec]) -> ContextManager[list[RunSpec]]:
    """What the runner enters around all hosts of one job: the backend's ``job_network(specs)``
    when it has one (it yields the specs to run, each with its :attr:`RunSpec.network`), else the
    specs unchanged (a backend that gives hosts their network itself, e.g. Docker's per-job network).

    Raises:
        JobNetworkUnavailable: on entry, when the job needs a network and cannot get one.
    """
    hook = getattr(backend, "job_network", None)
    return hook(specs) if hook is not None else contextlib.nullcontext(specs)


class BackendSet:
    """Several backends behind one: each job runs on the backend chosen for its image.

    Args:
        default: the backend of every image without a choice of its own.
        others: further backends by name.
        choose: image URI → the name of its backend, or None for the default.
    """

    def __init__(self, default: Backend, others: Mapping[str, Backend] | None = None,
                 choose: Callable[[str], str | None] | None = None) -> None:
        self.default = default
        self._by_name = {default.name: default, **dict(others or {})}
        self._choose = choose or (lambda image: None)

    @property
    def backends(self) -> Iterable[Backend]:
        return tuple(self._by_name.values())

    def for_image(self, image: str | None) -> Backend:
        name = self._choose(image) if image else None
        return self._by_name.get(name, self.default) if name else self.default

    def named(self, name: str) -> Backend | None:
        return self._by_name.get(name)

    def image_problem(self, image: str | None) -> str | None:
        return self.for_image(image).image_problem(image)

    def confine(self, policy: SandboxPolicy) -> None:
        for backend in self.backends:
            backend.confine(policy)

    def run(self, spec: RunSpec, sink: OutputSink, control: RunControl) -> RunResult:
        return self.for_image(spec.image).run(spec, sink, control)

    def sweep(self, job_folder: Path) -> None:
        for backend in self.backends:
            backend.sweep(job_folder)

    def job_network(self, specs: list[RunSpec]) -> ContextManager[list[RunSpec]]:
        return job_network(self.for_image(specs[0].image if specs else None), specs)
