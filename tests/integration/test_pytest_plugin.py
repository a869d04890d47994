"""smlocal's pytest plugin seen from outside: a downstream repository's own pytest runs, as subprocesses.

Each case copies ``fixtures/downstream`` to a temp dir and runs ``python -m pytest`` there with an
environment scrubbed of anything pointing at this session's emulator, so the plugin starts its own
(or uses the external one a case starts).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

DOWNSTREAM = Path(__file__).resolve().parents[2] / "fixtures" / "downstream"


@pytest.fixture
def downstream(tmp_path) -> Path:
    target = tmp_path / "downstream"
    shutil.copytree(DOWNSTREAM, target, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    return target


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SMLOCAL_", "AWS_", "PYTEST_")) and k not in ("PYTHONPATH", "SAGEMAKER_ROLE_ARN")}
    env.update(SAGEMAKER_SUPPRESS_V2_WARNING="1", **extra)
    return env


def run_pytest(folder: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", "-rA", *args],
        cwd=folder, env=env or _clean_env(), capture_output=True, text=True, timeout=600,
    )


def _summary(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-3000:]}"


def test_downstream_suite_passes_with_the_plugin(downstream):
    result = run_pytest(downstream, "-q")
    assert result.returncode == 0, _summary(result)
    assert re.search(r"\b4 passed\b", result.stdout), _summary(result)
    assert "PASSED tests/test_training.py::test_sklearn_training_job_produces_a_model" in result.stdout


def test_failed_training_job_log_is_in_the_failure_report(downstream):
    result = run_pytest(downstream, "failing")
    assert result.returncode == 1, _summary(result)
    out = result.stdout
    assert "FAILED failing/test_broken_training.py::test_broken_training_script" in out, _summary(result)
    section = re.search(r"smlocal: training job (\S+) failed: AlgorithmError: ExecuteUserScriptError", out)
    assert section, _summary(result)
    report = out[section.start():]
    # lines only the job's CloudWatch log has (the FailureReason holds just the traceback's tail)
    assert "broken_train: read 150 rows with columns" in report, _summary(result)
    assert "KeyError: 'label'" in report


def test_shared_state_marker_keeps_state_and_other_tests_reset(downstream):
    (downstream / "tests" / "test_shared.py").write_text(textwrap.dedent(
        """
        import pytest

        def test_a_writes(smlocal_s3_client):
            smlocal_s3_client.create_bucket(Bucket="kept")
            smlocal_s3_client.put_object(Bucket="kept", Key="k", Body=b"from a")

        @pytest.mark.smlocal_shared_state
        def test_b_sees_it(smlocal_s3_client):
            assert smlocal_s3_client.get_object(Bucket="kept", Key="k")["Body"].read() == b"from a"

        def test_c_starts_clean(smlocal, smlocal_s3_client, smlocal_sagemaker_client):
            assert smlocal_s3_client.list_buckets()["Buckets"] == []
            assert smlocal_sagemaker_client.list_training_jobs()["TrainingJobSummaries"] == []
            # the execution role survives the reset (it is recreated)
            role = smlocal.client("iam").get_role(RoleName=smlocal.role_arn.rsplit("/", 1)[1])["Role"]
            assert role["Arn"] == smlocal.role_arn
        """
    ))
    result = run_pytest(downstream, "-q", "tests/test_shared.py")
    assert result.returncode == 0, _summary(result)
    assert re.search(r"\b3 passed\b", result.stdout), _summary(result)


def test_each_xdist_worker_gets_its_own_emulator(downstream, tmp_path):
    record = tmp_path / "workers"
    record.mkdir()
    (downstream / "tests" / "test_where.py").write_text(textwrap.dedent(
        f"""
        import json, os
        import pytest

        @pytest.mark.parametrize("case", range(4))
        def test_where(smlocal, smlocal_bucket, case):
            worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
            with open(os.path.join({str(record)!r}, f"{{worker}}-{{case}}.json"), "w") as out:
                json.dump({{"worker": worker, "endpoint": smlocal.endpoint,
                            "data_dir": str(smlocal.emulator.settings.data_dir)}}, out)
        """
    ))
    result = run_pytest(downstream, "-q", "-n", "2", "tests/test_where.py", "tests/test_training.py",
                        "-k", "where or empty_storage or fresh_bucket")
    assert result.returncode == 0, _summary(result)
    assert re.search(r"\b7 passed\b", result.stdout), _summary(result)
    seen = [json.loads(path.read_text()) for path in record.iterdir()]
    by_worker = {item["worker"]: (item["endpoint"], item["data_dir"]) for item in seen}
    assert len(seen) == 4
    if len(by_worker) == 2:  # xdist may give every case to one worker; when both ran, they differ
        (end_a, dir_a), (end_b, dir_b) = by_worker.values()
        assert end_a != end_b and dir_a != dir_b
    assert all(item["worker"].startswith("gw") for item in seen)


def test_external_emulator_via_option(downstream, tmp_path):
    server = subprocess.Popen(
        [sys.executable, "-m", "smlocal.cli", "up", "--port", "0", "--data-dir", str(tmp_path / "ext-data")],
        env=_clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        seen = []
        for line in server.stdout:
            seen.append(line)
            match = re.search(r"listening on (http://\S+)", line)
            if match or len(seen) > 50:
                break
        assert match, "".join(seen)
        endpoint = match.group(1)
        (downstream / "tests" / "test_external.py").write_text(textwrap.dedent(
            f"""
            def test_uses_the_external_emulator(smlocal, smlocal_s3_client):
                assert smlocal.emulator is None
                assert smlocal.endpoint == {endpoint!r}
                smlocal_s3_client.create_bucket(Bucket="left-behind")
            """
        ))
        result = run_pytest(downstream, "-q", f"--smlocal-endpoint={endpoint}",
                            "tests/test_external.py", "tests/test_training.py", "-k", "external or storage")
        assert result.returncode == 0, _summary(result)
        assert re.search(r"\b3 passed\b", result.stdout), _summary(result)
    finally:
        server.terminate()
        server.wait(timeout=30)
