"""The Kedro spaceflights project trained on SageMaker (``smlocal run kedro-spaceflights``).

The project is the source tree's ``fixtures/kedro-spaceflights``; the workflow copies it to a
working folder and runs ``kedro run --env sagemaker`` there, under the emulator's environment.
"""

from __future__ import annotations

from pathlib import Path


def project_dir(explicit: str | None = None) -> Path:
    """The Kedro project folder: ``explicit`` if given, else the one in smlocal's source tree."""
    here = Path(__file__).resolve().parent
    candidates = [Path(explicit)] if explicit else [here / "project", here.parents[2] / "fixtures" / "kedro-spaceflights"]
    for candidate in candidates:
        if (candidate / "pyproject.toml").is_file() and (candidate / "conf" / "sagemaker").is_dir():
            return candidate
    raise FileNotFoundError(
        "Kedro spaceflights project not found: expected fixtures/kedro-spaceflights in the smlocal source "
        "tree (or pass --param project=PATH)"
    )
