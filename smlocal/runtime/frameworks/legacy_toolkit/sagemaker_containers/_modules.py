"""User modules: whether one is importable, running one as ``python -m``."""

from __future__ import annotations

import importlib
import subprocess
import sys

from sagemaker_containers import _env, _errors

DEFAULT_MODULE_NAME = "default_user_module_name"


def exists(name):
    """Whether the module ``name`` can be imported."""
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def run(module_name, args=None, env_vars=None, wait=True, capture_error=False):
    """Runs ``python -m module_name args`` from the code folder with ``env_vars`` added.

    Returns:
        subprocess.Popen: The process (finished when ``wait``).

    Raises:
        ExecuteUserScriptError: The module exited with a non-zero code (``wait``).
    """
    cmd = [sys.executable, "-m", module_name, *(args or [])]
    _env.write_env_vars(env_vars or {})
    stderr = subprocess.PIPE if capture_error else None
    try:
        process = subprocess.Popen(cmd, cwd=_env.code_dir, stderr=stderr)
    except OSError as exc:
        raise _errors.ExecuteUserScriptError(" ".join(cmd), output=str(exc)) from exc
    if not wait:
        return process
    _, err = process.communicate()
    if process.returncode:
        raise _errors.ExecuteUserScriptError(" ".join(cmd), return_code=process.returncode, output=err)
    return process


def import_module(uri, name=DEFAULT_MODULE_NAME, cache=None):
    """Imports the user module ``name`` from the code folder ``uri`` (a local folder here)."""
    del cache
    if uri and uri not in sys.path and not str(uri).startswith("s3://"):
        sys.path.insert(0, str(uri))
    if _env.code_dir not in sys.path:
        sys.path.insert(0, _env.code_dir)
    try:
        return importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - the toolkit wraps every import failure
        raise _errors.ImportModuleError(exc) from exc
