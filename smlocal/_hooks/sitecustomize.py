"""smlocal's site hook: on PYTHONPATH only under `smlocal exec` / the pytest fixtures.

It activates :mod:`smlocal.compat` when ``SMLOCAL_ENDPOINT`` is set, then runs any other
``sitecustomize`` that this one shadows.
"""

import os
import sys

if os.environ.get("SMLOCAL_ENDPOINT"):
    try:
        from smlocal import compat

        compat.install()
    except ImportError:  # smlocal not importable by this interpreter: nothing to shim
        pass

_here = os.path.dirname(os.path.abspath(__file__))
_rest = [p for p in sys.path if os.path.abspath(p or ".") != _here]
if "sitecustomize" in sys.modules and sys.modules["sitecustomize"].__file__ == __file__:
    import importlib.machinery
    import importlib.util

    _spec = importlib.machinery.PathFinder.find_spec("sitecustomize", _rest)
    if _spec is not None and _spec.loader is not None:
        _module = importlib.util.module_from_spec(_spec)
        _spec.loader.exec_module(_module)
