"""The AWS "SageMaker Pipelines abalone" example as a program (``smlocal run abalone``).

Its data and step scripts are the project's ``fixtures/abalone`` (``fixtures`` here links to them,
so an installed package carries them as package data).
"""

from __future__ import annotations

from pathlib import Path


def fixtures_dir() -> Path:
    """The folder holding ``data/`` and ``code/`` of the abalone example."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "fixtures", here.parents[2] / "fixtures" / "abalone"):
        if (candidate / "code" / "preprocessing.py").is_file():
            return candidate
    raise FileNotFoundError(
        "abalone fixtures not found: expected smlocal/workflows/abalone/fixtures (package data) or "
        "fixtures/abalone in the smlocal source tree"
    )
