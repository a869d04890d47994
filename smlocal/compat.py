"""Client-side compatibility shims, active only under `smlocal exec` and the pytest fixtures.

1. **Explicit AWS endpoints.** The SageMaker SDK v2 builds its STS client with an explicit regional
   endpoint (``https://sts.<region>.amazonaws.com``), which overrides ``AWS_ENDPOINT_URL``; so
   ``Session.default_bucket()`` and ``get_execution_role()`` would try to reach AWS. While
   ``SMLOCAL_ENDPOINT`` is set, any client created with an ``*.amazonaws.com`` endpoint is sent to
   smlocal instead (S3 to ``AWS_ENDPOINT_URL_S3`` if set).
2. **Fast polling** (``SMLOCAL_FAST_POLL``, default on). The SDK waits 5–10 s between job status
   polls and boto3's SageMaker waiters 30–120 s: sensible for cloud jobs lasting minutes, absurd for
   local ones lasting a second. Sleeps inside ``sagemaker`` and ``botocore.waiter`` are capped
   at ``SMLOCAL_POLL_SECONDS`` (0.2 s), and those modules' clock skips ahead by the time spared, so
   their elapsed-time checks see the waits they asked for. Nothing outside them changes.
3. **No telemetry to AWS.** SDK v2 reports each call (with job names and failure reasons) to an
   AWS-hosted S3 URL through ``requests``; under smlocal that would leak local work and, offline,
   print connection tracebacks. The SDK's telemetry sender is made a no-op.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
import time as _time
import types

_AWS_HOST = ".amazonaws.com"
_real_sleep = _time.sleep


def _redirect(service_name: str, endpoint_url):
    target = os.environ.get("SMLOCAL_ENDPOINT")
    if not target or not isinstance(endpoint_url, str) or _AWS_HOST not in endpoint_url:
        return endpoint_url
    if service_name == "s3" and os.environ.get("AWS_ENDPOINT_URL_S3"):
        return os.environ["AWS_ENDPOINT_URL_S3"]
    return target


def patch_botocore(module: types.ModuleType) -> None:
    """Wraps ``botocore.session.Session.create_client`` to apply :func:`_redirect`."""
    session_cls = module.Session
    if getattr(session_cls.create_client, "_smlocal", False):
        return
    original = session_cls.create_client

    def create_client(self, service_name, *args, **kwargs):
        if "endpoint_url" in kwargs:
            kwargs["endpoint_url"] = _redirect(service_name, kwargs["endpoint_url"])
        elif len(args) >= 5:  # region, api_version, use_ssl, verify, endpoint_url
            args = (*args[:4], _redirect(service_name, args[4]), *args[5:])
        return original(self, service_name, *args, **kwargs)

    create_client._smlocal = True  # type: ignore[attr-defined]
    session_cls.create_client = create_client


class _FastTime(types.ModuleType):
    """A stand-in for the ``time`` module of a polling module: sleeps are capped and its clock skips.

    The module's clock (``time``, ``monotonic``, ``perf_counter``) runs ahead by every second of sleep
    it was spared, so loops that also wait on elapsed time (the SDK re-describes a job only after
    30 s of log tailing) behave as if they had slept in full. Only the patched modules see this
    clock; timestamps elsewhere are untouched.
    """

    _CLOCKS = ("time", "monotonic", "perf_counter")

    def __init__(self) -> None:
        super().__init__("time")
        self.__dict__.update({k: getattr(_time, k) for k in dir(_time)
                              if not k.startswith("__") and k != "sleep" and k not in self._CLOCKS})
        self._skew = 0.0

    def sleep(self, seconds: float) -> None:
        cap = float(os.environ.get("SMLOCAL_POLL_SECONDS", "0.2"))
        spared = max(0.0, seconds - cap)
        _real_sleep(min(seconds, cap))
        self._skew += spared

    def time(self) -> float:
        return _time.time() + self._skew

    def monotonic(self) -> float:
        return _time.monotonic() + self._skew

    def perf_counter(self) -> float:
        return _time.perf_counter() + self._skew


_FAST_TIME: _FastTime | None = None


def patch_polling(module: types.ModuleType) -> None:
    global _FAST_TIME
    if getattr(module, "time", None) is _time:
        if _FAST_TIME is None:
            _FAST_TIME = _FastTime()
        module.time = _FAST_TIME


def _fast_poll_enabled() -> bool:
    return os.environ.get("SMLOCAL_FAST_POLL", "1") not in ("0", "false", "no")


def patch_telemetry(module: types.ModuleType) -> None:
    if hasattr(module, "_send_telemetry_request"):
        module._send_telemetry_request = lambda *args, **kwargs: None


_PATCHES = {
    "sagemaker.telemetry.telemetry_logging": [patch_telemetry],
    "botocore.session": [patch_botocore],
    "botocore.waiter": [lambda m: _fast_poll_enabled() and patch_polling(m)],
    "sagemaker.session": [lambda m: _fast_poll_enabled() and patch_polling(m)],
    "sagemaker.workflow.pipeline": [lambda m: _fast_poll_enabled() and patch_polling(m)],
    "sagemaker.predictor": [lambda m: _fast_poll_enabled() and patch_polling(m)],
}


class _PatchingFinder(importlib.abc.MetaPathFinder):
    """Applies the patches right after the named modules are imported."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in _PATCHES:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = getattr(finder, "find_spec", lambda *a: None)(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(spec.loader, fullname)
                return spec
        return None


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, inner, name: str):
        self._inner = inner
        self._name = name

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module):
        self._inner.exec_module(module)
        for patch in _PATCHES[self._name]:
            patch(module)


def install() -> None:
    """Activates the shims for this interpreter (idempotent); already-imported modules are patched now."""
    for name, patches in _PATCHES.items():
        if name in sys.modules:
            for patch in patches:
                patch(sys.modules[name])
    if not any(isinstance(f, _PatchingFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchingFinder())
