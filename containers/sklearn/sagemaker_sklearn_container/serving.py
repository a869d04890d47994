"""Serving in the scikit-learn image: the user's ``model_fn``/``input_fn``/``predict_fn``/
``output_fn`` (or ``transform_fn``) from ``SAGEMAKER_PROGRAM`` (see ``smlocal_container.serve``)."""

from __future__ import annotations

from smlocal_container import serve


def main() -> int:
    """``SAGEMAKER_SERVING_MODULE`` entry, called by ``serve``."""
    return serve.run("sklearn")
