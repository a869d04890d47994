"""The Python packages the SageMaker framework images ship that user code imports.

Script-mode code written for a framework image imports what that image has installed besides the
framework itself. Without Docker smlocal runs that code under its own interpreter, so it puts its
own versions of those packages on the job's ``PYTHONPATH`` -- only for the images that ship them,
so code for another image sees none of them:

============  =====================================================================================
image         packages (folder here)
============  =====================================================================================
XGBoost       ``sagemaker_xgboost_container`` (``data_utils``, ``encoder``, ``distributed``,
              ``constants``) and ``sagemaker_algorithm_toolkit.exceptions`` (``xgboost_image/``);
              ``sagemaker_containers`` 2.8.6.post2, the legacy toolkit (``legacy_toolkit/``)
scikit-learn  ``sagemaker_containers`` 2.8.6.post2 (``legacy_toolkit/``)
============  =====================================================================================

The real ``sagemaker-containers`` from PyPI cannot serve here: it pins ``flask==1.1.1`` (the
Airflow extra needs ``flask>=2.1.1``), its ``_mapping`` subclasses ``collections.Mapping`` (gone
since Python 3.10) and its ``record_pb2`` needs ``protobuf<=3.20``; ``sagemaker-xgboost-container``
is not on PyPI. Both are written here from their public interfaces (module paths, names, signatures,
return and error types); their code is not copied. The packages import only numpy, scipy and
xgboost, never smlocal, so they work in a job's requirements.txt environment too.
"""

from __future__ import annotations

import os
from pathlib import Path

FRAMEWORKS_DIR = Path(__file__).resolve().parent
LEGACY_TOOLKIT_DIR = FRAMEWORKS_DIR / "legacy_toolkit"
XGBOOST_IMAGE_DIR = FRAMEWORKS_DIR / "xgboost_image"

# framework (images.Runtime.framework) -> folders to put on PYTHONPATH, in order
_PACKAGE_DIRS: dict[str, tuple[Path, ...]] = {
    "xgboost": (XGBOOST_IMAGE_DIR, LEGACY_TOOLKIT_DIR),
    "sklearn": (LEGACY_TOOLKIT_DIR,),
}


def package_dirs(framework: str | None) -> tuple[str, ...]:
    """The folders holding the packages the ``framework`` image ships (none for other images)."""
    return tuple(str(path) for path in _PACKAGE_DIRS.get(framework or "", ()))


def python_path(current: str | None, framework: str | None) -> str | None:
    """``PYTHONPATH`` with the framework image's packages after the entries already there.

    The job's own code (``/opt/ml/code``, first in ``current``) keeps precedence, as on the image
    where these packages live in site-packages.
    """
    parts = [p for p in (current or "").split(os.pathsep) if p]
    parts += [p for p in package_dirs(framework) if p not in parts]
    return os.pathsep.join(parts) if parts else current
