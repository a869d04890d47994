"""The pytest plugin's costs: session start-up and per-test isolation (reset) overhead.

* ``startup``: wall time of a pytest session with one test that requests ``smlocal`` minus the same
  session whose test requests nothing (imports + embedded emulator start + stop), 3 runs each.
* ``reset_in_process``: ``SmlocalHandle.reset()`` (stop jobs, clear records, moto reset, recreate
  the role) after each of 100 rounds that leave a bucket, an object and a log group behind.
* ``per_test_pytest``: 60 tests that each write one S3 object, run with the per-test reset and
  again marked ``smlocal_shared_state``; the wall-time difference divided by 60.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import emulator, summary, write  # noqa: E402

PER_TEST_CASES = 60


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMLOCAL_", "AWS_", "PYTEST_"))}
    env.pop("PYTHONPATH", None)
    env["SAGEMAKER_SUPPRESS_V2_WARNING"] = "1"
    return env


def _pytest_seconds(folder: Path, *args: str) -> float:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                            cwd=folder, env=_env(), capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"benchmark session failed:\n{result.stdout}\n{result.stderr}")
    return elapsed


def startup(runs: int = 3) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="smlocal-bench-plugin-"))
    (folder / "test_with.py").write_text("def test_with(smlocal):\n    assert smlocal.endpoint\n")
    (folder / "test_without.py").write_text("def test_without():\n    assert True\n")
    with_plugin = [_pytest_seconds(folder, "test_with.py") for _ in range(runs)]
    without = [_pytest_seconds(folder, "test_without.py") for _ in range(runs)]
    return {"session_with_smlocal_s": summary(with_plugin), "session_without_s": summary(without),
            "startup_overhead_s": min(with_plugin) - min(without)}


def reset_in_process(rounds: int = 100) -> dict:
    from smlocal.pytest_plugin import SmlocalHandle

    with emulator() as emu:
        handle = SmlocalHandle(emu.endpoint, emu.settings, emulator=emu)
        s3, logs = handle.s3_client(), handle.client("logs")
        times = []
        for i in range(rounds):
            s3.create_bucket(Bucket=f"bench-{i}")
            s3.put_object(Bucket=f"bench-{i}", Key="k", Body=b"x" * 1024)
            logs.create_log_group(logGroupName=f"/bench/{i}")
            start = time.perf_counter()
            handle.reset()
            times.append((time.perf_counter() - start) * 1000)
    return {"reset_ms": summary(times)}


def per_test_pytest() -> dict:
    folder = Path(tempfile.mkdtemp(prefix="smlocal-bench-plugin-"))
    body = textwrap.dedent(
        """
        import pytest
        MARK
        @pytest.mark.parametrize("case", range(CASES))
        def test_case(smlocal_s3_client, case):
            if "bench" not in [b["Name"] for b in smlocal_s3_client.list_buckets()["Buckets"]]:
                smlocal_s3_client.create_bucket(Bucket="bench")
            smlocal_s3_client.put_object(Bucket="bench", Key=f"k{case}", Body=b"x")
        """
    )
    body = body.replace("CASES", str(PER_TEST_CASES))
    (folder / "test_isolated.py").write_text(body.replace("MARK", ""))
    (folder / "test_shared.py").write_text(body.replace("MARK", "pytestmark = pytest.mark.smlocal_shared_state"))
    isolated = min(_pytest_seconds(folder, "test_isolated.py") for _ in range(3))
    shared = min(_pytest_seconds(folder, "test_shared.py") for _ in range(3))
    return {"isolated_session_s": isolated, "shared_state_session_s": shared,
            "per_test_overhead_ms": (isolated - shared) / PER_TEST_CASES * 1000}


def main() -> None:
    write("pytest_plugin", {"startup": startup(), "reset_in_process": reset_in_process(),
                            "per_test_pytest": per_test_pytest(), "target_per_test_ms": 20})


if __name__ == "__main__":
    main()
