"""SDK v2 ``@remote`` functions and ``@step`` function steps: training jobs running the SDK's job driver.

The SageMaker Python SDK runs a decorated function as a training job whose ContainerEntrypoint is
its job driver (``/bin/bash .../sagemaker_remote_function_bootstrap/job_driver.sh``), staged as a
channel with the SDK's bootstrap scripts. The driver pip-installs the job's dependency file (the
SDK always writes one, naming at least ``sagemaker``) with ``pip install -r FILE -U``, then runs
``python -m sagemaker.remote_function.invoke_function``, which loads the serialized function and
arguments from S3 (checking their SHA-256 against ``metadata.json``), runs it and writes the result
or the exception back to S3 and the exception's ``repr`` to ``/opt/ml/output/failure``.

smlocal installs the dependency file once per distinct content, outside the sandbox, into a cached
environment (:mod:`smlocal.runtime.environments`), and runs the driver in it with pip told to use
no index: the driver's own pip then finds everything installed and downloads nothing.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import Mapping, Sequence

BOOTSTRAP_CHANNEL = "sagemaker_remote_function_bootstrap"
JOB_DRIVER_ENTRYPOINT = ("/bin/bash", f"/opt/ml/input/data/{BOOTSTRAP_CHANNEL}/job_driver.sh")
DEPENDENCIES_CHANNEL = "pre_exec_script_and_dependencies"  # a pipeline step's dependency file
WORKSPACE_CHANNEL = "sm_rf_user_ws"  # a @remote call's workspace.zip
WORKSPACE_FOLDER = "sagemaker_remote_function_workspace"  # its folder inside the zip
#: pip inside the job: what it needs is installed already; it must not reach an index.
PIP_OFFLINE_ENV = {"PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
_REQUIREMENTS_MAX = 1024 * 1024


def is_function_job(algorithm: Mapping | None) -> bool:
    """Whether an AlgorithmSpecification runs the SDK's remote-function job driver."""
    return tuple((algorithm or {}).get("ContainerEntrypoint") or ()) == JOB_DRIVER_ENTRYPOINT


def dependency_file(arguments: Sequence[str]) -> str | None:
    """The file name in ``--dependency_settings {"dependency_file": ...}`` of the driver's arguments."""
    args = list(arguments)
    for index, arg in enumerate(args[:-1]):
        if arg == "--dependency_settings":
            try:
                settings = json.loads(args[index + 1])
            except ValueError:
                return None
            name = settings.get("dependency_file") if isinstance(settings, dict) else None
            return name if isinstance(name, str) and name and "/" not in name and name not in (".", "..") else None
    return None


def stage_requirements(opt_ml: Path, arguments: Sequence[str], folder: Path) -> bool:
    """Copies the job's requirements file (a ``.txt`` dependency file) to ``folder/requirements.txt``.

    Looks where the SDK puts it: the pipeline step's dependencies channel, else the ``@remote``
    call's workspace.zip. Returns False when the job has none (or a conda ``.yml``: left to the driver).
    """
    name = dependency_file(arguments)
    if name is None or not name.endswith(".txt"):
        return False
    data_dir = opt_ml / "input" / "data"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "requirements.txt"
    direct = data_dir / DEPENDENCIES_CHANNEL / name
    if direct.is_file() and not direct.is_symlink():
        shutil.copyfile(direct, target)
        return True
    archive = data_dir / WORKSPACE_CHANNEL / "workspace.zip"
    if not archive.is_file() or archive.is_symlink():
        return False
    try:
        with zipfile.ZipFile(archive) as workspace:
            info = workspace.getinfo(f"{WORKSPACE_FOLDER}/{name}")
            if info.file_size > _REQUIREMENTS_MAX:
                return False
            target.write_bytes(workspace.read(info))
    except (KeyError, zipfile.BadZipFile, OSError):
        return False
    return True
