"""Settings from flags, environment and ``[tool.smlocal]`` in pyproject.toml (or a TOML file).

Precedence: explicit flags > environment (``SMLOCAL_*``) > config file > defaults.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "123456789012"  # moto's account id: STS answers it, ARNs carry it
DEFAULT_ROLE_NAME = "SageMakerExecutionRole"
BACKENDS = ("process", "docker")  # how jobs run: local sandboxed processes, or containers of their images
JOB_NETWORK_MODES = ("multi-host", "always")  # which process-backend jobs get a private network of their own
GPU_MODES = ("cpu-fallback", "fail")  # a GPU instance type on a machine without GPUs: run on the CPU, or fail
GPU_DEVICES = ("instance", "all")  # a host gets as many of this machine's GPUs as its type has, or all


@dataclass(frozen=True)
class ImageMapping:
    """How a custom image URI runs without Docker: a command and extra environment.

    ``command`` is the image's ENTRYPOINT and, for training, the ``train`` it is run with: a job
    without ContainerEntrypoint/ContainerArguments runs it alone; ContainerArguments are appended
    to it (they replace the image's CMD); a ContainerEntrypoint replaces it (with the arguments
    after it), as Docker runs an image on AWS. The programs are this machine's: ``{python}``, or
    a plain ``python``/``python3`` first word, is the interpreter running smlocal (or the job's
    requirements environment); any other path, e.g. ``/venv/bin/python``, runs as it is.
    """

    image: str
    command: tuple[str, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    kind: str = "custom"  # or "script": run SDK script mode like a framework image
    backend: str | None = None  # "process" or "docker": how jobs of this image run (default: Settings.backend)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 0
    data_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "smlocal")
    s3_endpoint: str | None = None
    s3_client_endpoint: str | None = None  # how clients reach the S3 store, if not as the server does
    # the external store's key pair when smlocal knows it (the durable store's); else from the environment
    s3_access_key_id: str | None = field(default=None, repr=False)
    s3_secret_access_key: str | None = field(default=None, repr=False)
    region: str = DEFAULT_REGION
    account_id: str = DEFAULT_ACCOUNT
    max_parallel_jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    backend: str = "process"
    images: tuple[ImageMapping, ...] = ()
    config_file: Path | None = None
    allow_origins: tuple[str, ...] = ()  # browser Origins allowed to call smlocal (default: none)
    allowed_hosts: tuple[str, ...] = ()  # Host names accepted besides loopback, IPs and the bound address
    gpu: str = "cpu-fallback"  # GPU_MODES
    gpu_devices: str = "instance"  # GPU_DEVICES
    job_network: str = "multi-host"  # JOB_NETWORK_MODES

    def backend_for(self, image_uri: str | None) -> str:
        """The backend jobs of ``image_uri`` run on: the image's own ``backend``, else :attr:`backend`."""
        mapping = self.image_mapping(image_uri) if image_uri else None
        return mapping.backend if mapping is not None and mapping.backend else self.backend

    @property
    def backends_in_use(self) -> tuple[str, ...]:
        """Every backend a job may run on (the default and each image's)."""
        return tuple(dict.fromkeys([self.backend, *(m.backend for m in self.images if m.backend)]))

    def image_mapping(self, image_uri: str) -> ImageMapping | None:
        for mapping in self.images:
            if mapping.image == image_uri or (
                mapping.image.endswith("*") and image_uri.startswith(mapping.image[:-1])
            ):
                return mapping
        return None


def _read_config_file(path: Path) -> dict[str, Any]:
    data = tomllib.loads(path.read_text())
    if path.name == "pyproject.toml":
        return data.get("tool", {}).get("smlocal", {})
    return data.get("tool", {}).get("smlocal", data)


def find_config_file(start: Path | None = None) -> Path | None:
    """``SMLOCAL_CONFIG``, else the nearest pyproject.toml with a ``[tool.smlocal]`` table."""
    explicit = os.environ.get("SMLOCAL_CONFIG")
    if explicit:
        return Path(explicit)
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            try:
                if "smlocal" in tomllib.loads(candidate.read_text()).get("tool", {}):
                    return candidate
            except tomllib.TOMLDecodeError:
                return None
            return None
    return None


def _names(value: str | list | tuple) -> tuple[str, ...]:
    """A comma-separated string or a list of names → a tuple of non-empty, stripped names."""
    items = value.split(",") if isinstance(value, str) else [str(item) for item in value]
    return tuple(item.strip() for item in items if item.strip())


def _backend_name(value: Any, where: str) -> str:
    name = str(value).strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"{where} must be one of {', '.join(BACKENDS)}, not {value!r}")
    return name


def load_settings(**flags: Any) -> Settings:
    """Builds Settings; flags whose value is None are ignored."""
    config_path = flags.pop("config_file", None) or find_config_file()
    values: dict[str, Any] = {}
    if config_path:
        raw = _read_config_file(Path(config_path))
        values["config_file"] = Path(config_path)
        for key in ("port", "s3_endpoint", "s3_client_endpoint", "region", "max_parallel_jobs", "backend", "host",
                    "gpu", "gpu_devices", "job_network"):
            if key.replace("_", "-") in raw:
                values[key] = raw[key.replace("_", "-")]
            elif key in raw:
                values[key] = raw[key]
        if "data_dir" in raw or "data-dir" in raw:
            values["data_dir"] = Path(raw.get("data_dir", raw.get("data-dir")))
        images = []
        for image, spec in (raw.get("images") or {}).items():
            command = spec.get("command", [])
            images.append(
                ImageMapping(
                    image=image,
                    command=tuple(command.split() if isinstance(command, str) else command),
                    environment=dict(spec.get("environment", {})),
                    kind=spec.get("kind", "custom"),
                    backend=_backend_name(spec["backend"], f"[tool.smlocal.images.\"{image}\"] backend")
                    if spec.get("backend") else None,
                )
            )
        values["images"] = tuple(images)
        for key in ("allow_origins", "allowed_hosts"):
            listed = raw.get(key.replace("_", "-"), raw.get(key))
            if listed is not None:
                values[key] = _names(listed)
    env = os.environ
    for key, var, cast in (
        ("port", "SMLOCAL_PORT", int),
        ("data_dir", "SMLOCAL_DATA_DIR", Path),
        ("s3_endpoint", "SMLOCAL_S3_ENDPOINT", str),
        ("s3_client_endpoint", "SMLOCAL_S3_CLIENT_ENDPOINT", str),
        ("host", "SMLOCAL_HOST", str),
        ("region", "SMLOCAL_REGION", str),
        ("max_parallel_jobs", "SMLOCAL_MAX_PARALLEL_JOBS", int),
        ("backend", "SMLOCAL_BACKEND", str),
        ("gpu", "SMLOCAL_GPU", str),
        ("gpu_devices", "SMLOCAL_GPU_DEVICES", str),
        ("job_network", "SMLOCAL_JOB_NETWORK", str),
    ):
        if env.get(var):
            values[key] = cast(env[var])
    for key, var in (("allow_origins", "SMLOCAL_ALLOW_ORIGINS"), ("allowed_hosts", "SMLOCAL_ALLOWED_HOSTS")):
        if env.get(var):
            values[key] = _names(env[var])
    for key, value in flags.items():
        if value is not None:
            if key in ("allow_origins", "allowed_hosts"):
                value = _names(value)
            values[key] = Path(value) if key == "data_dir" else value
    if values.get("backend") is not None:
        values["backend"] = _backend_name(values["backend"], "backend")
    for key, choices in (("gpu", GPU_MODES), ("gpu_devices", GPU_DEVICES), ("job_network", JOB_NETWORK_MODES)):
        if values.get(key) is not None:
            values[key] = str(values[key]).strip().lower()
            if values[key] not in choices:
                raise ValueError(f"{key.replace('_', '-')} must be one of {', '.join(choices)}, not {values[key]!r}")
    if values.get("max_parallel_jobs") is not None and int(values["max_parallel_jobs"]) < 1:
        raise ValueError("max_parallel_jobs must be at least 1")
    return Settings(**values)
