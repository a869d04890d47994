"""Staging a model container's folder: model data from S3 (unpacked safely: an archive member
escaping the folder fails the whole archive before anything is written) and inference code from
``SAGEMAKER_SUBMIT_DIRECTORY`` (S3 sourcedir, ``/opt/ml/model/code`` in a repacked model, or a
local path), plus the requirements.txt environment."""

from __future__ import annotations

import hashlib
import secrets
import shutil
from pathlib import Path
from typing import Callable

from smlocal.runtime import archives
from smlocal.runtime.environments import RequirementsError, python_for_requirements
from smlocal.runtime.job import RuntimeContext
from smlocal.runtime.serving import plan as planning
from smlocal.runtime.serving.errors import ModelServerError
from smlocal.runtime.staging import StagingError


def fetch(ctx: RuntimeContext, uri: str, cache: Path | None) -> bytes:
    """An S3 object's bytes, through ``cache`` when given (raises StagingError)."""
    if cache is None:
        return ctx.stager.read_bytes(uri)
    path = cache / (hashlib.sha256(uri.encode()).hexdigest()[:32] + ".bin")
    if path.is_file():
        return path.read_bytes()
    data = ctx.stager.read_bytes(uri)
    cache.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{secrets.token_hex(4)}.part")
    partial.write_bytes(data)
    partial.replace(path)
    return data


def stage_container(ctx: RuntimeContext, container: planning.ContainerPlan, opt_ml: Path,
                    emit: Callable[[str], None], cache: Path | None) -> str:
    """Unpacks model data and code into ``opt_ml`` (the container's /opt/ml); returns the
    interpreter to run its worker with (a requirements.txt environment when the code has one)."""
    model_dir = opt_ml / "model"
    code_dir = opt_ml / "code"
    model_dir.mkdir(parents=True, exist_ok=True)
    data = container.model_data
    if data is not None:
        if data.compressed:
            try:
                archive = fetch(ctx, data.uri, cache)
            except StagingError as exc:
                raise ModelServerError(f"Could not access model data at {data.uri}. {exc}", stage="model_data",
                                       container=container.hostname, detail=str(exc)) from exc
            try:
                archives.extract(archive, model_dir, origin=data.uri)
            except StagingError as exc:
                raise ModelServerError(
                    f"Failed to extract model data archive from URL \"{data.uri}\". Please ensure that the object "
                    f"located at the URL is a valid tar.gz archive. ({exc})", stage="model_data",
                    container=container.hostname, detail=str(exc)) from exc
        else:
            try:
                ctx.stager.download_source("S3Prefix", data.uri, model_dir)
            except StagingError as exc:
                raise ModelServerError(f"Could not access model data at {data.uri}. {exc}", stage="model_data",
                                       container=container.hostname, detail=str(exc)) from exc
    if container.handler == "algorithm":
        return ctx.python
    _stage_code(ctx, container, model_dir, code_dir, cache)
    if (code_dir / "requirements.txt").is_file():
        try:
            return python_for_requirements(code_dir, ctx.envs_root, emit)
        except RequirementsError as exc:
            raise ModelServerError(str(exc), stage="code", container=container.hostname) from exc
    return ctx.python


def _stage_code(ctx: RuntimeContext, container: planning.ContainerPlan, model_dir: Path, code_dir: Path,
                cache: Path | None) -> None:
    source = container.submit_directory
    try:
        if source is None or source.rstrip("/") == planning.REPACKED_CODE_DIR or \
                source.startswith(planning.MODEL_DIR + "/"):
            rel = "code" if source is None else source.rstrip("/")[len(planning.MODEL_DIR) + 1:]
            packed = model_dir / rel
            if packed.is_dir():
                shutil.copytree(packed, code_dir, dirs_exist_ok=True)
            elif source is not None:
                raise ModelServerError(f"SAGEMAKER_SUBMIT_DIRECTORY {source} does not exist in the model data.",
                                       stage="code", container=container.hostname)
        elif source.startswith("s3://"):
            archives.extract(fetch(ctx, source, cache), code_dir, origin=source)
        elif source.startswith("file://") or source.startswith("/"):
            local = Path(source.removeprefix("file://"))
            if local.is_dir():
                shutil.copytree(local, code_dir, dirs_exist_ok=True)
            elif local.is_file():
                archives.extract(local, code_dir, origin=source)
            else:
                raise ModelServerError(f"SAGEMAKER_SUBMIT_DIRECTORY {source} does not exist.", stage="code",
                                       container=container.hostname)
        else:
            raise ModelServerError(f"SAGEMAKER_SUBMIT_DIRECTORY {source} is neither an S3 URI nor a path.",
                                   stage="code", container=container.hostname)
    except StagingError as exc:
        raise ModelServerError(f"Could not fetch the inference code {source}: {exc}", stage="code",
                               container=container.hostname) from exc
    code_dir.mkdir(exist_ok=True)
