"""smlocal's framework images for the Docker tests: current builds of this checkout, built once.

The images carry parts of smlocal's own code (serving handlers, algorithm emulations), so an image
built from an older checkout runs old code: :func:`current_images` rebuilds any image whose
``smlocal.source-digest`` label is not this checkout's (layers cached: seconds when only smlocal's
code changed) and builds a missing one, with the wheels `smlocal images build` keeps in the data
dir. xdist workers share one lock file under the session's
base temp folder, so one worker builds while the other waits, and nobody re-tags an image under a
test of the other worker twice.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from smlocal.config import load_settings
from smlocal.runtime import image_build
from smlocal.runtime.image_catalog import find_image

BASE_IMAGE = "smlocal/base:bookworm"


def unavailable(reason: str, tests: str = "the Docker tests"):
    """Skips with the reason; CI (``SMLOCAL_CI=1``) must run ``tests``, so there it fails."""
    if os.environ.get("SMLOCAL_CI"):
        pytest.fail(f"{reason}, and CI must run {tests}")
    pytest.skip(reason)


def base_image(engine) -> str:
    """``$SMLOCAL_BASE_IMAGE``, else the debootstrap base when the engine has it (what CI builds on)."""
    import docker.errors

    chosen = os.environ.get(image_build.BASE_IMAGE_ENV)
    if chosen:
        return chosen
    try:
        engine.images.get(BASE_IMAGE)
        return BASE_IMAGE
    except docker.errors.ImageNotFound:
        return image_build.DEFAULT_BASE_IMAGE


def _shared_dir(tmp_path_factory) -> Path:
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # popen-gwN's parent: shared


def current_images(engine, tmp_path_factory, names=("sklearn", "xgboost")) -> dict[str, str]:
    """Short name → tag of each framework image, built or rebuilt first when not current."""
    base = base_image(engine)
    data_dir = load_settings().data_dir  # the wheel cache `smlocal images build` fills (CI's too)
    tags = {}
    with open(_shared_dir(tmp_path_factory) / "smlocal-images.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        for name in names:
            image = find_image(name)
            if image_build.stale_reason(engine, image, base):
                try:
                    image_build.build(engine, image, base_image=base, data_dir=data_dir, progress=lambda line: None)
                except image_build.ImageBuildError as exc:
                    unavailable(f"cannot build {image.tag}: {exc}")
            tags[name] = image.tag
    return tags
