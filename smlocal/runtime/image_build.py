"""Building smlocal's framework images into the local Docker engine (I/O).

``smlocal images build`` runs :func:`build` for each catalog image
(:mod:`smlocal.runtime.image_catalog`):

1. the image's Python wheels are fetched on the host (the host's pip, its index and certificates):
   ``pip wheel`` for the packages published only as source (``sagemaker-training``, which compiles
   a small C extension, and ``inotify_simple``), then ``pip download`` of everything for CPython
   3.11 manylinux x86_64. They are kept under ``DATA_DIR/images/wheels/<name>`` and fetched again
   only when the image's ``requirements.txt`` changes;
2. a build context is assembled in a temporary folder: the Dockerfile folder, ``containers/common``,
   the parts of smlocal the image runs (serving worker handlers, algorithm emulations, the
   framework compatibility packages) and the wheels;
3. the Docker SDK builds it with the classic builder (``BASE_IMAGE`` build argument; no pull of
   anything but the base image when it is missing), streaming the build's lines to ``progress``.
   The image is labelled with :func:`source_digest` (``smlocal.source-digest``): the images carry
   parts of smlocal's own code, so :func:`stale_reason` tells an image built from other sources
   (an older checkout) from a current one. A rebuild removes the image it replaced when nothing
   uses it any more.

The wheels are installed offline in the Dockerfile's builder stage; the final image has neither
wheels nor any certificate besides the base image's own.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import smlocal
from smlocal.runtime.image_catalog import FrameworkImage, catalog, find_image

logger = logging.getLogger(__name__)

DEFAULT_BASE_IMAGE = "python:3.11-slim"
BASE_IMAGE_ENV = "SMLOCAL_BASE_IMAGE"
PYTHON_VERSION = "3.11"  # the wheels' CPython; the base image must carry the same minor version
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64", "linux_x86_64")
# published only as source: built on the host (same glibc family as the Debian base) as cp311 wheels
# (those an image's requirements name)
SOURCE_ONLY = ("sagemaker-training", "inotify_simple", "sagemaker-pytorch-training")

SMLOCAL_DIR = Path(smlocal.__file__).resolve().parent
CONTAINERS_DIR = SMLOCAL_DIR.parent / "containers"
# the parts of smlocal the images run (paths under smlocal/), copied with their folders
_IMAGE_SOURCES = (
    "__init__.py",
    "runtime/__init__.py",
    "runtime/images.py",
    "runtime/serving/__init__.py",
    "runtime/serving/codecs.py",
    "runtime/serving/errors.py",
    "runtime/serving/handlers.py",
    "runtime/serving/plan.py",
    "runtime/serving/worker.py",
    "runtime/algorithms",
    "runtime/frameworks",
)

SOURCE_DIGEST_LABEL = "smlocal.source-digest"

Progress = Callable[[str], None]


class ImageBuildError(Exception):
    """A framework image could not be built; the message says why and what to do."""


@dataclass(frozen=True)
class BuildResult:
    """One image built: its tag, id, size in bytes and the build's wall time in seconds."""

    name: str
    tag: str
    image_id: str
    size: int
    seconds: float


@dataclass(frozen=True)
class ImageStatus:
    """A catalog image and whether the engine has it (``image_id``/``size`` None when missing)."""

    image: FrameworkImage
    image_id: str | None
    size: int | None
    created: str | None


def docker_client() -> Any:
    """A Docker SDK client from the environment (DOCKER_HOST...), or ImageBuildError saying why."""
    try:
        import docker
    except ImportError as exc:
        raise ImageBuildError("The Docker SDK for Python is not installed: pip install 'smlocal[docker]'") from exc
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001 - docker raises several kinds for "no engine"
        raise ImageBuildError(f"No Docker engine is reachable ({exc}). Start dockerd or set DOCKER_HOST.") from exc
    return client


def default_base_image() -> str:
    """``$SMLOCAL_BASE_IMAGE`` or a slim Python image from the user's registry."""
    return os.environ.get(BASE_IMAGE_ENV) or DEFAULT_BASE_IMAGE


def resolve_names(names: list[str] | tuple[str, ...]) -> list[FrameworkImage]:
    """Catalog entries for the names given (all of them for none); ImageBuildError on a bad name."""
    if not names:
        return list(catalog())
    images = []
    for name in names:
        image = find_image(name)
        if image is None:
            known = ", ".join(entry.name for entry in catalog())
            raise ImageBuildError(f"Unknown image '{name}'. smlocal builds: {known}.")
        images.append(image)
    return images


def statuses(client: Any) -> list[ImageStatus]:
    """Each catalog image with what the engine has under its tag."""
    import docker.errors

    result = []
    for image in catalog():
        try:
            found = client.images.get(image.tag)
        except docker.errors.ImageNotFound:
            result.append(ImageStatus(image, None, None, None))
            continue
        result.append(ImageStatus(image, found.short_id.split(":", 1)[-1], found.attrs.get("Size"),
                                  str(found.attrs.get("Created", ""))[:19]))
    return result


def requirements_file(image: FrameworkImage) -> Path:
    return CONTAINERS_DIR / image.folder / "requirements.txt"


def fetch_wheels(image: FrameworkImage, data_dir: Path, progress: Progress) -> Path:
    """The folder of the image's wheels, downloading them on the host when not there yet.

    Args:
        image: the catalog image.
        data_dir: smlocal's data dir; the wheels go to ``images/wheels/<name>`` under it.
        progress: receives one line per step.
    """
    requirements = requirements_file(image)
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    dest = data_dir / "images" / "wheels" / image.name
    stamp = dest / f".complete-{digest}"
    if stamp.exists():
        progress(f"{image.name}: wheels already downloaded ({dest})")
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    built = dest / "built"
    built.mkdir(parents=True)
    pins = _pins(requirements)
    source_only = [pins[key] for key in (name.lower().replace("_", "-") for name in SOURCE_ONLY) if key in pins]
    progress(f"{image.name}: building wheels of source-only packages: {' '.join(source_only)}")
    _pip(["wheel", "--no-deps", "--wheel-dir", str(built), *source_only])
    progress(f"{image.name}: downloading wheels for CPython {PYTHON_VERSION} manylinux into {dest}")
    platform_args = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    _pip(["download", "--dest", str(dest), "--find-links", str(built), "--only-binary=:all:",
          *platform_args, "--python-version", PYTHON_VERSION, "--implementation", "cp",
          "-r", str(requirements)])
    for wheel in built.iterdir():
        target = dest / wheel.name
        if not target.exists():
            shutil.copy2(wheel, target)
    shutil.rmtree(built)
    stamp.touch()
    count = sum(1 for _ in dest.glob("*.whl"))
    progress(f"{image.name}: {count} wheels ready")
    return dest


def _pins(requirements: Path) -> dict[str, str]:
    """Requirement lines by normalised project name ('sagemaker-training' → 'sagemaker-training==5.1.4')."""
    pins = {}
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name = line.split("=", 1)[0].split("<", 1)[0].split(">", 1)[0].strip().lower().replace("_", "-")
            pins[name] = line
    return pins


def _pip(args: list[str]) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args]
    logger.info("running %s", " ".join(command))
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise ImageBuildError(f"pip {args[0]} failed (exit {done.returncode}):\n{tail}")


def assemble_context(image: FrameworkImage, wheels: Path, dest: Path) -> Path:
    """Lays out the build context of ``image`` in ``dest`` (an empty folder); returns it."""
    folder = CONTAINERS_DIR / image.folder
    if not (folder / "Dockerfile").is_file():
        raise ImageBuildError(f"{folder / 'Dockerfile'} is missing: smlocal's containers/ folder is needed "
                              "to build images (use a source checkout of smlocal).")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(folder, dest, dirs_exist_ok=True, ignore=ignore)
    common = CONTAINERS_DIR / "common"
    python = dest / "python"
    shutil.copytree(common / "smlocal_container", python / "smlocal_container", ignore=ignore)
    shutil.copy2(common / "serve", dest / "serve")
    for rel in _IMAGE_SOURCES:
        source, target = SMLOCAL_DIR / rel, python / "smlocal" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=ignore)
        else:
            shutil.copy2(source, target)
    (dest / "wheels").mkdir()
    for wheel in wheels.glob("*.whl"):
        _link_or_copy(wheel, dest / "wheels" / wheel.name)
    return dest


def _source_files(image: FrameworkImage) -> list[tuple[str, Path]]:
    """Every file :func:`assemble_context` copies from this checkout (not the wheels), by its
    place in the context."""
    def walk(root: Path, prefix: str) -> list[tuple[str, Path]]:
        if root.is_file():
            return [(prefix, root)]
        return [(f"{prefix}/{path.relative_to(root).as_posix()}", path) for path in sorted(root.rglob("*"))
                if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"]

    files = walk(CONTAINERS_DIR / image.folder, ".")
    files += walk(CONTAINERS_DIR / "common" / "smlocal_container", "python/smlocal_container")
    files += walk(CONTAINERS_DIR / "common" / "serve", "serve")
    for rel in _IMAGE_SOURCES:
        files += walk(SMLOCAL_DIR / rel, f"python/smlocal/{rel}")
    return files


def source_digest(image: FrameworkImage, base_image: str) -> str:
    """A digest of what an image is built from here: the base image's name and every source file
    of its context (names and contents)."""
    digest = hashlib.sha256(f"base={base_image}\n".encode())
    for name, path in _source_files(image):
        digest.update(f"{name}\n{path.stat().st_size}\n".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def stale_reason(client: Any, image: FrameworkImage, base_image: str) -> str | None:
    """Why the engine's ``image.tag`` is not a build of this checkout's sources on ``base_image``
    (missing, or built from other sources), or None when it is current."""
    import docker.errors

    try:
        found = client.images.get(image.tag)
    except docker.errors.ImageNotFound:
        return f"{image.tag} is not built"
    labels = found.labels or {}
    if labels.get(SOURCE_DIGEST_LABEL) != source_digest(image, base_image):
        return (f"{image.tag} was built from other sources (or another base image) than this checkout's "
                f"(label {SOURCE_DIGEST_LABEL}={labels.get(SOURCE_DIGEST_LABEL)})")
    return None


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def build(client: Any, image: FrameworkImage, *, base_image: str, data_dir: Path,
          progress: Progress, labels: dict[str, str] | None = None) -> BuildResult:
    """Builds one framework image into the engine and tags it ``image.tag``.

    Args:
        client: a Docker SDK client.
        image: the catalog image.
        base_image: the ``BASE_IMAGE`` build argument (a Debian-based image with Python 3.11 and
            ``venv``), e.g. ``python:3.11-slim`` or ``smlocal/base:bookworm``.
        data_dir: smlocal's data dir (wheel cache).
        progress: receives the build's lines.
        labels: extra image labels.
    """
    started = time.monotonic()
    wheels = fetch_wheels(image, data_dir, progress)
    previous = _image_id(client, image.tag)
    with tempfile.TemporaryDirectory(prefix=f"smlocal-build-{image.name}-") as tmp:
        context = assemble_context(image, wheels, Path(tmp) / "context")
        progress(f"{image.name}: building {image.tag} FROM {base_image}")
        image_id = _docker_build(client, context, image, base_image,
                                 {"smlocal.base-image": base_image,
                                  SOURCE_DIGEST_LABEL: source_digest(image, base_image), **(labels or {})}, progress)
    if previous and previous != image_id:
        _remove_replaced(client, previous)
    seconds = time.monotonic() - started
    built = client.images.get(image_id)
    size = int(built.attrs.get("Size") or 0)
    progress(f"{image.name}: built {image.tag} ({size / 1e6:.0f} MB) in {seconds:.1f} s")
    return BuildResult(image.name, image.tag, image_id, size, seconds)


def _image_id(client: Any, name: str) -> str | None:
    import docker.errors

    try:
        return client.images.get(name).id
    except docker.errors.ImageNotFound:
        return None


def _remove_replaced(client: Any, image_id: str) -> None:
    """Removes the image a rebuild untagged, unless a container (or another tag) still uses it."""
    try:
        if client.images.get(image_id).tags:
            return
        client.images.remove(image_id, noprune=False)
    except Exception as exc:  # noqa: BLE001 - in use, or already gone: it stays for `docker image prune`
        logger.info("kept the replaced image %s: %s", image_id[:19], exc)


def _has_image(client: Any, name: str) -> bool:
    import docker.errors

    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def _docker_build(client: Any, context: Path, image: FrameworkImage, base_image: str,
                  labels: dict[str, str], progress: Progress) -> str:
    import docker.errors

    image_id = None
    errors = []
    try:
        stream = client.api.build(path=str(context), tag=image.tag, buildargs={"BASE_IMAGE": base_image},
                                  labels={"smlocal.image": image.name, **labels}, rm=True, forcerm=True,
                                  pull=False, decode=True)
        for chunk in stream:
            if "stream" in chunk:
                for line in chunk["stream"].splitlines():
                    if line.strip():
                        progress(f"{image.name}: {line.rstrip()}")
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
            if "error" in chunk:
                errors.append(chunk["error"].strip())
    except docker.errors.APIError as exc:
        errors.append(str(exc))
    if errors or not image_id:
        message = "; ".join(errors) or "the engine returned no image id"
        hint = ""
        if not _has_image(client, base_image):
            hint = (f" The base image '{base_image}' must be in the engine or pullable: pass "
                    "--base-image IMAGE, or make one without a registry with containers/base/build-base.sh.")
        raise ImageBuildError(f"Building {image.tag} failed: {message}.{hint}")
    return image_id
