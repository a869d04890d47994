"""smlocal's MPI launch agent (``runtime/mpi_agent.py``) as real processes on loopback.

It takes SSH's place between a job's hosts, so it must start nothing for a caller without the
job's token, relay a command's output and exit code as ssh does, end the command when its caller
goes away (mpirun ending its rsh), survive garbage, and end when the master says the run is over.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from smlocal.runtime import distribution

AGENT = distribution.MPI_AGENT
TOKEN = "a-job-token"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def agent_env():
    return {**os.environ, "SMLOCAL_MPI_TOKEN": TOKEN, "SMLOCAL_MPI_PORT": str(_free_port()),
            "SMLOCAL_MPI_BIND": "127.0.0.1"}


@pytest.fixture()
def worker(agent_env):
    process = subprocess.Popen([sys.executable, AGENT, "worker", "127.0.0.1"], env=agent_env,
                               stderr=subprocess.PIPE, text=True)
    port = int(agent_env["SMLOCAL_MPI_PORT"])
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "the worker agent did not listen"
            time.sleep(0.05)
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()


def _rsh(env: dict, *command: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, AGENT, "rsh", "127.0.0.1", *command], env=env, capture_output=True,
                          text=True, timeout=30, **kwargs)


def _raw(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        return sock.recv(4096)


def test_a_command_runs_with_its_output_and_exit_code_relayed(worker, agent_env):
    done = _rsh(agent_env, "echo out-$((40+2));", "echo err >&2;", "exit 7")  # ssh joins its arguments
    assert (done.returncode, done.stdout, done.stderr) == (7, "out-42\n", "err\n")


def test_nothing_runs_without_the_jobs_token(worker, agent_env, tmp_path):
    marker = tmp_path / "ran"
    wrong = {**agent_env, "SMLOCAL_MPI_TOKEN": "another-job"}
    assert _rsh(wrong, f"touch {marker}").returncode == 255  # as ssh when the connection is refused
    port = int(agent_env["SMLOCAL_MPI_PORT"])
    for payload in (b"not json\n", b"[1, 2]\n", b'{"op": "exec", "command": "touch %s", "token": "\xe2\x98\x83"}\n'
                    % str(marker).encode(), b'{"op": "exec", "command": 5, "token": "a-job-token"}\n', b"\x00" * 70000):
        assert _raw(port, payload) == b""
    time.sleep(0.3)
    assert not marker.exists() and worker.poll() is None  # and the agent still serves
    assert _rsh(agent_env, "true").returncode == 0


def test_a_caller_that_goes_away_ends_its_command(worker, agent_env, tmp_path):
    pid_file = tmp_path / "pid"
    caller = subprocess.Popen([sys.executable, AGENT, "rsh", "127.0.0.1", f"echo $$ > {pid_file}; exec sleep 600"],
                              env=agent_env)
    deadline = time.monotonic() + 10
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pid = int(pid_file.read_text())
    caller.send_signal(signal.SIGTERM)  # mpirun ends its launchers so
    caller.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _alive(pid):
        assert time.monotonic() < deadline, "the command outlived its caller"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has ended; it may also vanish while being read)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_the_worker_ends_when_the_master_has_finished(agent_env):
    worker = subprocess.Popen([sys.executable, AGENT, "worker", "127.0.0.1"], env=agent_env,
                              stderr=subprocess.PIPE, text=True)
    try:
        # the master waits for the worker, runs its command (mpirun), tells the worker and exits with its code
        master = subprocess.run([sys.executable, AGENT, "master", "127.0.0.1", "--", sys.executable, "-c",
                                 "raise SystemExit(3)"], env=agent_env, capture_output=True, text=True, timeout=60)
        assert master.returncode == 3
        assert "worker 127.0.0.1 available for communication" in master.stderr
        assert worker.wait(timeout=20) == 0
        assert "the MPI run has finished on the master host" in worker.stderr.read()
    finally:
        if worker.poll() is None:
            worker.kill()
