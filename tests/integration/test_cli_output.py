"""What the smlocal command prints: quiet `run`/`exec`, step progress (piped and on a terminal), `console`.

Real subprocesses of the CLI against the session's emulator (``SMLOCAL_ENDPOINT``); the terminal is
a real pseudo-terminal (``pty``).
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
import urllib.request
from urllib.parse import quote

SMLOCAL = [sys.executable, "-m", "smlocal.cli"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# log lines of the libraries (botocore, the SDK, werkzeug): "INFO:botocore.configprovider:Found endpoint ..."
LIBRARY_LOG = re.compile(r"^(INFO|DEBUG):(botocore|boto3|sagemaker|urllib3|werkzeug|s3transfer)[.:]", re.M)
PIPELINE_STEPS = ("AbaloneProcess", "AbaloneTrain", "AbaloneEval", "AbaloneMSECond")


def _env(endpoint: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SMLOCAL_", "SAGEMAKER_"))
           and k not in ("PYTHONPATH", "COLUMNS", "LINES")}
    env["SMLOCAL_AUTODETECT"] = "0"  # never borrow a developer's running `smlocal up`
    if endpoint:
        env["SMLOCAL_ENDPOINT"] = endpoint
    return {**env, **extra}


def _run(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*SMLOCAL, *args], capture_output=True, text=True, env=env, timeout=timeout)


def _on_terminal(args: list[str], env: dict[str, str], timeout: float = 600) -> tuple[int, str]:
    """Runs the CLI on a 160×40 pseudo-terminal; its exit code and everything it wrote there."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    child = subprocess.Popen([*SMLOCAL, *args], stdin=slave, stdout=slave, stderr=slave,
                             env={**env, "TERM": "xterm-256color"})
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the terminal's last writer is gone
                    break
                if not data:
                    break
                chunks.append(data)
            elif child.poll() is not None:
                break
        return child.wait(timeout=30), b"".join(chunks).decode("utf-8", "replace")
    finally:
        os.close(master)
        if child.poll() is None:
            child.kill()


def _assert_quiet(output: str) -> None:
    assert not LIBRARY_LOG.search(output), LIBRARY_LOG.search(output).group(0)
    assert "sagemaker.config" not in output
    assert "Found endpoint for" not in output and "Found credentials" not in output
    assert "Popping out" not in output and "will collect telemetry" not in output


def test_run_abalone_piped_is_quiet_and_shows_each_step_state(emulator):
    done = _run(["run", "abalone"], _env(emulator.endpoint))
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    _assert_quiet(output)
    assert "\x1b[" not in output  # piped: plain text
    lines = done.stdout.splitlines()
    for step, kind in (("AbaloneProcess", "Processing"), ("AbaloneTrain", "Training"),
                       ("AbaloneEval", "Processing"), ("AbaloneTransform", "Transform")):
        ended = [i for i, line in enumerate(lines) if re.fullmatch(rf"step {step}  {kind}  Succeeded  \d+\.\ds", line)]
        assert len(ended) == 1, done.stdout  # one line per state: the end once
        # the running state is shown once if a poll (every 0.5 s) saw it, always before the end
        running = [i for i, line in enumerate(lines) if line == f"step {step}  {kind}  Executing"]
        assert len(running) <= 1 and all(i < ended[0] for i in running), done.stdout
    assert "step AbaloneTrain  Training  Executing" in lines, done.stdout  # seconds long: always seen running
    assert "step AbaloneMSECond  Condition  Succeeded  0.0s  outcome True" in lines
    # the branch not taken: shown once as such (a step not started yet is no news)
    assert [line for line in lines if line.startswith("step AbaloneMSEFail")] == ["step AbaloneMSEFail  Fail  Skipped"]
    assert "Pipeline execution Succeeded" in done.stdout  # the workflow's own output passes through
    summary = next(line for line in lines if line.startswith("smlocal run abalone "))
    match = re.fullmatch(r"smlocal run abalone succeeded in [\d.]+s: execution AbalonePipeline/(\w+) Succeeded",
                         summary)
    assert match, summary
    arn = emulator.client("sagemaker").list_pipeline_executions(
        PipelineName="AbalonePipeline", SortOrder="Descending")["PipelineExecutionSummaries"][0]["PipelineExecutionArn"]
    assert arn.endswith("/" + match.group(1))
    console = lines[lines.index(summary) + 1]
    assert console == f"Console: {emulator.endpoint}/_smlocal/console/#/executions/{quote(arn, safe='')}"


def test_run_on_a_terminal_draws_a_live_table_of_the_steps(emulator):
    code, screen = _on_terminal(["run", "abalone", "--param", "MseThreshold=3.0"], _env(emulator.endpoint))
    text = ANSI.sub("", screen)
    assert code == 1, text[-4000:]
    assert "\x1b[" in screen  # styled for a terminal: colours and the live redraws
    assert "\x1b[?25l" in screen  # rich Live hides the cursor while it redraws the table
    _assert_quiet(text)
    assert "STEP / JOB" in text and "DURATION" in text
    table = text[text.rindex("STEP / JOB"):]  # the last drawing of the table
    for step in PIPELINE_STEPS:
        assert re.search(rf"{step}\s+\w+\s+Succeeded\s+\d+\.\ds", table), table
    assert re.search(r"AbaloneMSEFail\s+Fail\s+Failed\s+0\.0s\s+Execution failed due to MSE > 3\.0", table), table
    # the Failed status is red (rich's bold red: 1;31)
    assert re.search(r"\x1b\[1;31mFailed", screen)
    assert re.search(r"smlocal run abalone failed \(exit 1\) in [\d.]+s: execution AbalonePipeline/\w+ Failed", text)


def test_run_verbose_brings_the_library_lines_back_and_shows_jobs_without_a_pipeline(emulator):
    done = _run(["run", "sklearn-train", "--verbose"], _env(emulator.endpoint))
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "INFO:botocore.configprovider:Found endpoint for s3 via: environment_global." in output
    assert "sagemaker.config INFO - Not applying SDK defaults" in output
    lines = done.stdout.splitlines()
    # no pipeline: the training job the SDK started, one line per state
    started = [line for line in lines if re.fullmatch(r"job sagemaker-scikit-learn-\S+  Training  InProgress", line)]
    assert len(started) == 1, done.stdout
    name = started[0].split()[1]
    assert any(re.fullmatch(rf"job {name}  Training  Completed  \d+\.\ds", line) for line in lines), done.stdout
    summary = next(line for line in lines if line.startswith("smlocal run sklearn-train "))
    assert re.fullmatch(r"smlocal run sklearn-train succeeded in [\d.]+s: 1 job\(s\)", summary), summary
    assert lines[lines.index(summary) + 1] == f"Console: {emulator.endpoint}/_smlocal/console/#/jobs/training/{name}"


PROGRAM = """
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(levelname)s:%(name)s:%(message)s")
log = logging.getLogger("myprogram")
log.info("hello from the program")
import boto3, sagemaker
boto3.client("s3").list_buckets()
sagemaker.Session().default_bucket()
root = logging.getLogger()
log.info("root level %s, handlers %d", logging.getLevelName(root.level), len(root.handlers))
"""

# a program that wants botocore's own lines: it keeps all of them, but the ones smlocal alone causes
DEBUG_PROGRAM = """
import logging
logging.basicConfig(level=logging.INFO, format="%(levelname)s:%(name)s:%(message)s")
logging.getLogger("botocore").setLevel(logging.DEBUG)
import boto3
boto3.client("s3").list_buckets()
print("levels", *(logging.getLevelName(logging.getLogger(name).level)
                  for name in ("botocore", "botocore.credentials", "botocore.configprovider")))
"""


def test_exec_quiets_library_noise_but_keeps_the_programs_logging(emulator):
    quiet = _run(["exec", "--", sys.executable, "-c", PROGRAM], _env(emulator.endpoint), timeout=300)
    output = quiet.stdout + quiet.stderr
    assert quiet.returncode == 0, output[-4000:]
    assert "INFO:myprogram:hello from the program" in output
    assert "INFO:myprogram:root level INFO, handlers 1" in output  # its own set-up, untouched
    assert "Found endpoint for" not in output and "Found credentials" not in output
    assert "sagemaker.config" not in output
    loud = _run(["exec", "-v", "--", sys.executable, "-c", PROGRAM], _env(emulator.endpoint), timeout=300)
    output = loud.stdout + loud.stderr
    assert loud.returncode == 0, output[-4000:]
    assert "INFO:myprogram:hello from the program" in output
    assert "INFO:botocore.configprovider:Found endpoint for s3 via: environment_global." in output
    assert "sagemaker.config INFO - Not applying SDK defaults" in output


def test_exec_keeps_the_levels_a_program_sets_on_botocore(emulator):
    done = _run(["exec", "--", sys.executable, "-c", DEBUG_PROGRAM], _env(emulator.endpoint), timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "levels DEBUG NOTSET NOTSET" in output  # smlocal set no level on botocore's loggers
    # the two loggers whose noise smlocal drops still log everything else at the program's level
    assert "DEBUG:botocore.configprovider:Looking for endpoint for s3 via: environment_service" in output
    assert "DEBUG:botocore.credentials:Looking for credentials via: env" in output
    assert "Found endpoint for s3 via: environment_global." not in output
    assert "Found credentials in environment variables." not in output


# a program (not a pipeline) whose training job fails: its input bucket does not exist
FAILING_JOB_PROGRAM = """
import json, sys, time
import boto3
sm = boto3.client("sagemaker")
request = json.loads(sys.argv[1])
sm.create_training_job(**request)
while sm.describe_training_job(TrainingJobName=request["TrainingJobName"])["TrainingJobStatus"] == "InProgress":
    time.sleep(0.2)
"""


def test_run_shows_why_a_job_outside_a_pipeline_failed(emulator, sm, monkeypatch, capsys):
    """TrainingJobSummary has no FailureReason: the progress describes the Failed job once for it."""
    import json

    from conftest import script_job, unique
    from smlocal.cli_run import run_workflow

    name = unique("cli-run-failed")
    request = script_job(name, "no-such-bucket-for-cli-run", "s3://no-such-bucket-for-cli-run/x")
    monkeypatch.setenv("SMLOCAL_ENDPOINT", emulator.endpoint)
    code = run_workflow("failing-job", [sys.executable, "-c", FAILING_JOB_PROGRAM, json.dumps(request)], {},
                        verbose=False)
    out = capsys.readouterr().out
    assert code == 0, out[-4000:]
    reason = sm.describe_training_job(TrainingJobName=name)["FailureReason"].splitlines()[0]
    assert reason
    ended = [line for line in out.splitlines() if line.startswith(f"job {name}  Training  Failed")]
    assert len(ended) == 1 and re.fullmatch(rf"job {name}  Training  Failed  \d+\.\ds  {re.escape(reason)}",
                                            ended[0]), out
    assert re.search(r"smlocal run failing-job succeeded in [\d.]+s: 1 job\(s\), 1 failed", out), out


def test_console_prints_the_url_of_the_running_server(emulator):
    done = _run(["console"], _env(emulator.endpoint), timeout=60)
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip()
    assert url == f"{emulator.endpoint}/_smlocal/console/"
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
        assert "text/html" in response.headers["Content-Type"]


def test_console_without_a_server_fails_clearly():
    done = _run(["console"], _env(None), timeout=60)
    assert done.returncode == 1
    assert done.stdout == ""
    assert "no running emulator" in done.stderr


def test_tables_are_plain_and_unwrapped_when_piped(emulator, sm):
    """`smlocal jobs` piped: aligned plain columns, a long failure reason kept whole on its row."""
    from conftest import script_job, unique

    name = unique("cli-output-" + "x" * 40)
    sm.create_training_job(**script_job(name, "no-such-bucket-for-cli-output", "s3://no-such-bucket-for-cli-output/x"))
    deadline = time.monotonic() + 120
    while sm.describe_training_job(TrainingJobName=name)["TrainingJobStatus"] == "InProgress":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    reason = sm.describe_training_job(TrainingJobName=name)["FailureReason"].splitlines()[0]
    done = _run(["jobs", "--max", "100"], _env(emulator.endpoint, COLUMNS="60"), timeout=60)
    assert done.returncode == 0, done.stderr
    assert "\x1b[" not in done.stdout
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["TYPE", "NAME", "STATUS", "CREATED", "DETAIL"]
    row = next(line for line in lines if name in line)
    assert row.split()[:3] == ["training", name, "Failed"] and row.endswith(reason)
    # columns aligned: every row's STATUS starts under the header's
    column = lines[0].index("STATUS")
    assert all(line[column:column + 1].strip() for line in lines[1:])


def test_console_open_hands_the_url_to_the_web_browser(emulator, tmp_path):
    """``--open`` goes through Python's webbrowser, which runs ``$BROWSER`` with the URL."""
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.py"
    browser.write_text(f"import sys\nopen({str(opened)!r}, 'w').write(sys.argv[1])\n")
    done = _run(["console", "--open"], _env(emulator.endpoint, BROWSER=f"{sys.executable} {browser} %s"), timeout=60)
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 30
    while not opened.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert opened.read_text() == done.stdout.strip() == f"{emulator.endpoint}/_smlocal/console/"
