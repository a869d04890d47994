"""The default handler functions of a serving container built on this toolkit."""

from __future__ import annotations

import textwrap

from sagemaker_containers import _encoders, _worker


def default_model_fn(model_dir):
    """No default: the user module must define ``model_fn``."""
    raise NotImplementedError(textwrap.dedent("""
        Please provide a model_fn implementation.
        See documentation for model_fn at https://github.com/aws/sagemaker-python-sdk
        """))


def default_input_fn(input_data, content_type):
    """The request body decoded by content type (JSON, CSV, NPY)."""
    return _encoders.decode(input_data, content_type)


def default_predict_fn(data, model):
    """No default: the user module must define ``predict_fn``."""
    raise NotImplementedError(textwrap.dedent("""
        Please provide a predict_fn implementation.
        See documentation for predict_fn at https://github.com/aws/sagemaker-python-sdk
        """))


def default_output_fn(prediction, accept):
    """The prediction encoded as ``accept``, as a :class:`~sagemaker_containers._worker.Response`."""
    return _worker.Response(_encoders.encode(prediction, accept), accept, mimetype=accept)
