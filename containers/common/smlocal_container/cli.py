"""The image's ``serve`` command: runs ``SAGEMAKER_SERVING_MODULE`` (``package.module:function``).

AWS's framework images install a ``serve`` command that imports the serving module the image sets
in ``SAGEMAKER_SERVING_MODULE`` and calls it; ``train`` is the real ``sagemaker-training`` command,
which does the same with ``SAGEMAKER_TRAINING_MODULE``.
"""

from __future__ import annotations

import importlib
import os
import sys


def serve() -> int:
    """Entry of ``serve``: imports and calls the image's serving function."""
    target = os.environ.get("SAGEMAKER_SERVING_MODULE", "")
    module_name, _, function = target.partition(":")
    if not module_name or not function:
        print(f"serve: SAGEMAKER_SERVING_MODULE must be 'module:function', got {target!r}", file=sys.stderr)
        return 2
    result = getattr(importlib.import_module(module_name), function)()
    return int(result or 0)
