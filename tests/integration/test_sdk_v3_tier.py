"""The SageMaker SDK v3 tier (tests/sdk_v3), run from the main suite against this session's emulator.

SDK v3 (``sagemaker>=3``) cannot share a venv with v2, so this test builds ``.venv-v3`` (once; again
when the requirements below or pyproject.toml change, as ./dev does for .venv) with v3, pytest and
smlocal (without its v2 dependencies: the tier needs only its client shims), then runs tests/sdk_v3 in
it as a subprocess with this session's client environment. The tier is never skipped silently: a venv
that cannot be built fails this test with pip's output. ``SMLOCAL_SKIP_SDK_V3=1`` opts out (a skip
that says so), except under ``SMLOCAL_CI=1``, where it fails instead.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("SMLOCAL_VENV_V3", ROOT / ".venv-v3"))
# The exact SDK v3 tested (its sub-packages too: sagemaker asks only for ranges of them), so CI and a
# cached local .venv-v3 run the same SDK; raise them together.
REQUIREMENTS = ("sagemaker==3.27.0", "sagemaker-core==2.27.0", "sagemaker-train==1.27.0",
                "sagemaker-serve==1.27.0", "sagemaker-mlops==1.27.0", "pytest>=8")
BUILD_TIMEOUT = 1200
TIER_TIMEOUT = 900


def _stamp() -> Path:
    digest = hashlib.sha256("\n".join(REQUIREMENTS).encode() + (ROOT / "pyproject.toml").read_bytes())
    return VENV / f".installed-{digest.hexdigest()[:16]}"


def _run(argv: list[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def _build_venv() -> float:
    """Builds ``.venv-v3`` unless its stamp is current; returns the seconds it took (0 when cached)."""
    stamp = _stamp()
    if stamp.exists():
        return 0.0
    started = time.monotonic()
    python = VENV / "bin" / "python"
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(VENV)],
        [str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"],
        [str(python), "-m", "pip", "install", "-q", *REQUIREMENTS],
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "-e", str(ROOT)],
    ]
    for argv in steps:
        done = _run(argv, BUILD_TIMEOUT)
        if done.returncode != 0:
            pytest.fail(f"could not build {VENV} for the SDK v3 tier: {' '.join(argv)} exited "
                        f"{done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}", pytrace=False)
    stamp.touch()
    return time.monotonic() - started


def test_sdk_v3_tier_passes_against_this_emulator(client_env):
    if os.environ.get("SMLOCAL_SKIP_SDK_V3") == "1":
        if os.environ.get("SMLOCAL_CI") == "1":
            pytest.fail("SMLOCAL_SKIP_SDK_V3=1 under SMLOCAL_CI=1: CI runs the SDK v3 tier")
        pytest.skip("SDK v3 tier opted out with SMLOCAL_SKIP_SDK_V3=1")
    built = _build_venv()
    env = {**os.environ, **client_env, "VIRTUAL_ENV": str(VENV),
           "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_ADDOPTS", None)
    started = time.monotonic()
    done = subprocess.run(
        [str(VENV / "bin" / "python"), "-m", "pytest", "tests/sdk_v3", "-c", "tests/sdk_v3/pytest.ini",
         "-p", "no:cacheprovider", "-q"],
        capture_output=True, text=True, timeout=TIER_TIMEOUT, cwd=ROOT, env=env)
    took = time.monotonic() - started
    print(f"SDK v3 venv build: {built:.1f} s (0 = cached); tier: {took:.1f} s")
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0 and " passed" in summary and "skipped" not in summary, (
        f"the SDK v3 tier failed (exit {done.returncode}):\n{done.stdout[-12000:]}\n{done.stderr[-4000:]}")
