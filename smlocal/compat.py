"""Client-side compatibility shims, active only under `smlocal exec` and the pytest fixtures.

1. **Explicit AWS endpoints.** The SageMaker SDK v2 builds its STS client with an explicit regional
   endpoint (``https://sts.<region>.amazonaws.com``), which overrides ``AWS_ENDPOINT_URL``; so
   ``Session.default_bucket()`` and ``get_execution_role()`` would try to reach AWS. While
   ``SMLOCAL_ENDPOINT`` is set, any client created with an ``*.amazonaws.com`` endpoint is sent to
   smlocal instead (S3 to ``AWS_ENDPOINT_URL_S3`` if set).
2. **Fast polling** (``SMLOCAL_FAST_POLL``, default on). The SDK waits 5–10 s between job status
   polls and boto3's SageMaker waiters 30–120 s: sensible for cloud jobs lasting minutes, absurd for
   local ones lasting a second. Polling is made fast while every caller's time budget is kept in real
   time: a wait gives up no sooner than it would on AWS, unless the resource ends first.

   * botocore waiters (boto3's ``get_waiter``, the SDK's ``PipelineExecution.wait``, the async
     predictor's S3 waiter): ``Delay`` × (``MaxAttempts`` − 1) is what botocore waits before its last
     attempt; they poll every ``SMLOCAL_POLL_SECONDS`` (0.2 s) with as many attempts as fill that time.
   * the SDKs' own loops (:data:`_FAST_POLL_MODULES`): sleeps are capped at ``SMLOCAL_POLL_SECONDS``.
     Deadline loops (sagemaker-core's ``wait(timeout=...)``, v3's trainer waits) keep the real clock.
     The log-tailing loops (``logs_for_job`` and kin, v2 and v3) re-describe the job only after 30 s on
     their clock, so their modules' clock skips ahead by the sleep spared; the one deadline among
     them, ``_logs_for_job(timeout=...)``, still passes in real time (:class:`RealTimeout`).
3. **No telemetry to AWS.** SDK v2 reports each call (with job names and failure reasons) to an
   AWS-hosted S3 URL through ``requests``; under smlocal that would leak local work and, offline,
   print connection tracebacks. The SDK's telemetry sender (v2 and v3) is made a no-op.
4. **No IAM policy simulation.** SDK v3 validates an execution role with IAM's
   ``SimulatePrincipalPolicy`` before each training job; smlocal's IAM (moto) cannot answer it and
   smlocal enforces no IAM policy, so ``SAGEMAKER_VALIDATE_ROLE`` (the SDK's own switch) defaults to
   ``false`` here. A value the user set is kept.
5. **Quiet library logs** (``SMLOCAL_QUIET=1``, which `smlocal exec` and `smlocal run` set unless
   ``--verbose``): :func:`quiet_library_logs` drops the lines that exist only because the program
   runs under smlocal (botocore's "Found endpoint ... via: environment_global", "Found credentials in
   environment variables") with a filter on the logger that logs them, and sets the SDK's
   ``sagemaker.config`` logger to WARNING through the SDK's documented switch. No other level, no
   handler, the root logger and the program's own loggers are never touched.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import inspect
import math
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


def _poll_seconds() -> float:
    return float(os.environ.get("SMLOCAL_POLL_SECONDS", "0.2"))


def fast_waiter_config(delay: float, max_attempts: int, poll: float) -> dict:
    """The ``WaiterConfig`` that polls every ``poll`` seconds for as long as ``delay``/``max_attempts`` would.

    botocore makes its first attempt at once and sleeps ``delay`` between attempts, so it gives up
    ``delay * (max_attempts - 1)`` seconds after it started. Polling every ``poll`` seconds, the last
    attempt comes no sooner than that (each sleep lasts at least ``poll``). A waiter already polling at
    least that often is left as it is.

    Example: ``fast_waiter_config(540, 3, 0.2)`` is ``{"Delay": 0.2, "MaxAttempts": 5401}``.
    """
    delay, max_attempts = float(delay), int(max_attempts)
    if delay <= poll or max_attempts <= 1:
        return {"Delay": delay, "MaxAttempts": max_attempts}
    budget = delay * (max_attempts - 1)
    return {"Delay": poll, "MaxAttempts": math.ceil(round(budget / poll, 6)) + 1}


def patch_waiters(module: types.ModuleType) -> None:
    """Makes every botocore waiter poll fast within the time its ``Delay`` and ``MaxAttempts`` give."""
    waiter_cls = module.Waiter
    if getattr(waiter_cls.wait, "_smlocal", False):
        return
    original = waiter_cls.wait

    @functools.wraps(original)
    def wait(self, **kwargs):
        config = dict(kwargs.pop("WaiterConfig", None) or {})
        if _fast_poll_enabled():
            config.update(fast_waiter_config(config.get("Delay", self.config.delay),
                                             config.get("MaxAttempts", self.config.max_attempts), _poll_seconds()))
        return original(self, WaiterConfig=config, **kwargs)

    wait._smlocal = True  # type: ignore[attr-defined]
    waiter_cls.wait = wait


class _FastTime(types.ModuleType):
    """A stand-in for the ``time`` module of a polling module: sleeps are capped at ``SMLOCAL_POLL_SECONDS``.

    With ``skip=True`` the module's clock (``time``, ``monotonic``, ``perf_counter``) runs ahead by
    every second of sleep it was spared, so loops that also wait on elapsed time (the SDK re-describes
    a job only after 30 s of log tailing) behave as if they had slept in full. Only the patched
    modules see this clock; timestamps elsewhere are untouched. With ``skip=False`` the clock is the
    real one, for loops whose clock checks are the caller's deadlines.
    """

    def __init__(self, *, skip: bool) -> None:
        super().__init__("time")
        own = ("sleep", "time", "monotonic", "perf_counter")  # the methods below
        self.__dict__.update({k: getattr(_time, k) for k in dir(_time) if not k.startswith("__") and k not in own})
        self._skip = skip
        self._skew = 0.0

    def sleep(self, seconds: float) -> None:
        cap = _poll_seconds()
        _real_sleep(min(seconds, cap))
        if self._skip:
            self._skew += max(0.0, seconds - cap)

    def time(self) -> float:
        return _time.time() + self._skew

    def monotonic(self) -> float:
        return _time.monotonic() + self._skew

    def perf_counter(self) -> float:
        return _time.perf_counter() + self._skew


class RealTimeout(float):
    """A caller's timeout handed to a loop on the skipping clock: the deadline made from it passes in real time.

    ``_logs_for_job`` computes ``end = time.time() + timeout`` and stops once ``time.time() > end``.
    On a clock that skips ahead by the sleeps spared, that deadline would pass after a fraction of
    ``timeout``. Added to a clock reading, this number yields a :class:`_RealDeadline`, which a later
    reading passes only when ``timeout`` real seconds have gone by; it prints as the caller's value
    (the SDK's "Timeout Exceeded. 60 seconds elapsed.").
    """

    def __new__(cls, seconds):
        value = super().__new__(cls, seconds)
        value.given = seconds
        return value

    def __radd__(self, reading):
        return _RealDeadline(reading + float(self), _time.monotonic() + float(self))

    __add__ = __radd__

    def __format__(self, spec: str) -> str:
        return format(self.given, spec)

    def __str__(self) -> str:
        return str(self.given)

    __repr__ = __str__


class _RealDeadline(float):
    """A deadline on a skipping clock that compares against the real one (``reading > deadline``)."""

    def __new__(cls, value: float, real: float):
        deadline = super().__new__(cls, value)
        deadline.real_deadline = real
        return deadline

    # Python tries a float subclass's reflected comparison first: ``reading > d`` is ``d.__lt__(reading)``.
    def __lt__(self, reading) -> bool:
        return _time.monotonic() > self.real_deadline

    def __le__(self, reading) -> bool:
        return _time.monotonic() >= self.real_deadline

    def __gt__(self, reading) -> bool:
        return _time.monotonic() < self.real_deadline

    def __ge__(self, reading) -> bool:
        return _time.monotonic() <= self.real_deadline


_CLOCKS: dict[bool, _FastTime] = {}


def patch_polling(module: types.ModuleType, *, skip: bool = True) -> None:
    """Gives ``module`` a ``time`` with capped sleeps (a skipping clock with ``skip``; else the real one)."""
    if getattr(module, "time", None) is _time:
        if skip not in _CLOCKS:
            _CLOCKS[skip] = _FastTime(skip=skip)
        module.time = _CLOCKS[skip]


def patch_log_timeouts(module: types.ModuleType) -> None:
    """Wraps the module's ``_logs_for_job`` so that its ``timeout`` is a :class:`RealTimeout`."""
    original = getattr(module, "_logs_for_job", None)
    if original is None or getattr(original, "_smlocal", False):
        return
    signature = inspect.signature(original)

    @functools.wraps(original)
    def logs_for_job(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        if bound.arguments.get("timeout"):
            bound.arguments["timeout"] = RealTimeout(bound.arguments["timeout"])
        return original(*bound.args, **bound.kwargs)

    logs_for_job._smlocal = True  # type: ignore[attr-defined]
    module._logs_for_job = logs_for_job


def _fast_poll_enabled() -> bool:
    return os.environ.get("SMLOCAL_FAST_POLL", "1") not in ("0", "false", "no")


def patch_telemetry(module: types.ModuleType) -> None:
    if hasattr(module, "_send_telemetry_request"):
        module._send_telemetry_request = lambda *args, **kwargs: None


def _skipping_clock(module: types.ModuleType) -> None:
    if _fast_poll_enabled():
        patch_polling(module, skip=True)
        patch_log_timeouts(module)


def _real_clock(module: types.ModuleType) -> None:
    if _fast_poll_enabled():
        patch_polling(module, skip=False)


def default_role_validation_off(module: types.ModuleType) -> None:
    os.environ.setdefault("SAGEMAKER_VALIDATE_ROLE", "false")


# The SDKs' polling modules (v2 ``sagemaker``; v3 ``sagemaker.core`` / ``.train`` / ``.mlops``) by clock:
# log tailing with a 30 s re-describe interval skips; loops checking only deadlines keep real time.
_FAST_POLL_MODULES = {
    "sagemaker.session": _skipping_clock,
    "sagemaker.core.helper.session_helper": _skipping_clock,
    "sagemaker.core.processing": _skipping_clock,
    "sagemaker.core.transformer": _skipping_clock,
    "sagemaker.core.remote_function.job": _skipping_clock,
    "sagemaker.core.resources": _real_clock,
    "sagemaker.train.common_utils.trainer_wait": _real_clock,
    "sagemaker.train.common_utils.job_wait": _real_clock,
}

_PATCHES = {
    "sagemaker.telemetry.telemetry_logging": [patch_telemetry],
    "sagemaker.core.telemetry.telemetry_logging": [patch_telemetry],
    "sagemaker.core.helper.iam_role_resolver": [default_role_validation_off],
    "botocore.session": [patch_botocore],
    "botocore.waiter": [patch_waiters],
    **{name: [patch] for name, patch in _FAST_POLL_MODULES.items()},
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


# Quieting the noise changes no level, handler or propagation of botocore's or the program's loggers:
# each noise line is dropped by a filter on the logger that logs it, so a program that sets ``botocore``
# (or any logger) to DEBUG still gets every other line of it. The one level set is the SDK's own
# ``sagemaker.config`` logger's, the switch the SDK documents for it.
_CONFIG_LOGGER = "sagemaker.config"
_ENDPOINT_FROM_ENV = ("environment_global", "environment_service")  # botocore's names of AWS_ENDPOINT_URL(_<SVC>)


def is_smlocal_noise(record) -> bool:
    """Whether a log record is a line that exists only because the program runs under smlocal.

    Those are botocore's "Found endpoint for s3 via: environment_global." (once per client: smlocal
    sets ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3``), "Found credentials in environment variables."
    (smlocal sets the keys) and SDK v2's "SageMaker Python SDK will collect telemetry ..." (untrue
    here: shim 3 sends nothing). They show whenever the root logger is at INFO, which importing SDK v2
    itself does (``logging.basicConfig`` in ``sagemaker.experiments._metrics``).
    """
    args = record.args if isinstance(record.args, tuple) else ()
    if record.name == "botocore.configprovider":
        return record.msg == "Found endpoint for %s via: %s." and len(args) == 2 and args[1] in _ENDPOINT_FROM_ENV
    if record.name == "botocore.credentials":
        return record.msg == "Found credentials in environment variables."
    if record.name == "sagemaker.telemetry.telemetry_logging":
        return str(record.msg).startswith("SageMaker Python SDK will collect telemetry")
    return False


NOISY_LOGGERS = ("botocore.configprovider", "botocore.credentials", "sagemaker.telemetry.telemetry_logging")
"""The loggers that log the lines of :func:`is_smlocal_noise` (a logger's filters see only its own records)."""


class _SmlocalNoiseFilter:
    """A logging filter dropping the records :func:`is_smlocal_noise` names."""

    def filter(self, record) -> bool:
        return not is_smlocal_noise(record)


def quiet_library_logs() -> None:
    """Drops smlocal's noise lines (:func:`is_smlocal_noise`) and the SDK's ``sagemaker.config`` INFO lines.

    The ``sagemaker.config`` logger has its own stdout handler and says "Not applying SDK defaults from
    location: ..." at INFO on every run; its level is the SDK's documented switch: a level set before
    the SDK first uses it is kept (``sagemaker.config.config_utils.get_sagemaker_config_logger``), so it
    is set to WARNING here, before the program runs (the program may set it again). Nothing else about
    the program's logging changes: no other level, handler or the root logger.
    """
    import logging

    logging.getLogger(_CONFIG_LOGGER).setLevel(logging.WARNING)
    for name in NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _SmlocalNoiseFilter) for f in logger.filters):
            logger.addFilter(_SmlocalNoiseFilter())


def install() -> None:
    """Activates the shims for this interpreter (idempotent); already-imported modules are patched now."""
    if os.environ.get("SMLOCAL_QUIET") == "1":
        quiet_library_logs()
    for name, patches in _PATCHES.items():
        if name in sys.modules:
            for patch in patches:
                patch(sys.modules[name])
    if not any(isinstance(f, _PatchingFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchingFinder())
