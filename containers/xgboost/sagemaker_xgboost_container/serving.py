"""Serving in the XGBoost image: the user's inference script when ``SAGEMAKER_PROGRAM`` is set,
else the built-in algorithm's model (``xgboost-model``), see ``smlocal_container.serve``."""

from __future__ import annotations

from smlocal_container import serve


def main() -> int:
    """``SAGEMAKER_SERVING_MODULE`` entry, called by ``serve``."""
    return serve.run("xgboost")
