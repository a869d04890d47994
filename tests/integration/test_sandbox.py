"""The process sandbox as tight as a container, tried the way an attacker would: namespaces and processes.

Most tests run the real :class:`ProcessBackend` on a :class:`RunSpec` (the simplest way to start
two jobs at once or hand a job a file descriptor); the others run real training jobs through boto3
against the emulator. As root (CI runs as root), where a missing user namespace matters most.
"""

from __future__ import annotations

import json
import os
import socket
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from conftest import script_job, unique, upload_sourcedir, wait_for
from sandbox_support import data
from smlocal.runtime.backends.base import RunControl

pytestmark = pytest.mark.slow



def _host_processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


SETNS_THEN_CONNECT = """
    import array, ctypes, os, socket, sys
    CLONE_NEWNET = 0x40000000
    libc = ctypes.CDLL(None, use_errno=True)
    port = int(sys.argv[1])
    results = []
    def attempt(label, fd):
        ok = libc.setns(fd, CLONE_NEWNET) == 0
        results.append(f"{label}:setns={'ok' if ok else os.strerror(ctypes.get_errno())}")
    try:
        attempt("proc", os.open(f"/proc/{os.environ['SERVER_PID']}/ns/net", os.O_RDONLY))
    except OSError as exc:
        results.append(f"proc:open={exc.strerror}")
    if os.path.exists("/opt/ml/fd.sock"):  # the host's own netns handle, passed in over SCM_RIGHTS
        with socket.socket(socket.AF_UNIX) as unix:
            unix.connect("/opt/ml/fd.sock")
            _, fds, _, _ = socket.recv_fds(unix, 16, 1)
        attempt("fd", fds[0])
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        results.append("connect=ok")
    except OSError as exc:
        results.append(f"connect={type(exc).__name__}")
    print("|".join(results))
"""


def _serve_netns_fd(path: Path) -> threading.Thread:
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(1)
    listener.settimeout(30)

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            fd = os.open("/proc/self/ns/net", os.O_RDONLY)
            with conn:
                socket.send_fds(conn, [b"x"], [fd])
            os.close(fd)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


# ---- capabilities and namespaces
def test_isolated_job_cannot_setns_into_the_server_network_namespace(data):
    port_owner = socket.socket()
    port_owner.bind(("127.0.0.1", 0))
    port_owner.listen(8)  # a server port on the host, as the gateway's
    port = port_owner.getsockname()[1]
    folder = data.job("setns")
    _serve_netns_fd(folder / "fd.sock")
    with port_owner:
        result, lines = data.run("setns", SETNS_THEN_CONNECT, str(port), opt_ml=folder,
                                 env={"SERVER_PID": str(os.getpid())}, network_isolation=True)
    assert result.exit_code == 0, result.stderr_tail
    words = lines[-1].split("|")
    assert "proc:open=No such file or directory" in words  # the server's pid is not in the job's /proc
    assert "fd:setns=Operation not permitted" in words  # no capability over the host's namespaces
    assert words[-1] in ("connect=ConnectionRefusedError", "connect=OSError"), words


def test_proc_shows_only_the_jobs_own_processes(data):
    marker = f"other-job-{uuid.uuid4().hex[:8]}"
    control = RunControl(grace_seconds=1)
    other = threading.Thread(target=data.run, args=("other", "import time; time.sleep(30)", marker),
                             kwargs={"control": control}, daemon=True)
    other.start()
    deadline = time.monotonic() + 10
    while not _host_processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _host_processes_with(marker), "the other job did not start"
    try:
        result, lines = data.run("lister", """
            import os
            for pid in sorted(int(p) for p in os.listdir("/proc") if p.isdigit()):
                try:
                    print(pid, repr(open(f"/proc/{pid}/cmdline", "rb").read()))
                except OSError:
                    pass
        """)
    finally:
        control.stop.set()
        other.join(timeout=10)
    assert result.exit_code == 0, result.stderr_tail
    seen = "\n".join(lines)
    assert marker not in seen  # the concurrent job
    assert [line.split()[0] for line in lines] == ["1", "2"]  # its init and itself: not the server


def test_job_cannot_reach_another_jobs_files_the_store_or_the_runtime_dir(data, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "server.json").write_text('{"secret": "admin"}')
    monkeypatch.setenv("SMLOCAL_RUNTIME_DIR", str(run_dir))
    victim = data.job("victim")
    (victim / "model").mkdir()
    (victim / "model" / "weights.bin").write_text("private")
    attempts = {
        "other_job": str(victim / "model" / "weights.bin"),
        "store": str(data.root / "state.sqlite3"),
        "runtime": str(run_dir / "server.json"),
    }
    result, lines = data.run("attacker", """
        import ctypes, json, os, sys
        libc = ctypes.CDLL(None, use_errno=True)
        targets, data_dir, run_dir = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
        for folder in (data_dir, run_dir):  # try to lift the covers first
            libc.umount2(folder.encode(), 2)
        found = {}
        for name, path in targets.items():
            try:
                with open(path, "r+b") as handle:
                    found[name] = handle.read().decode(errors="replace")
            except OSError as exc:
                found[name] = type(exc).__name__
        mounts = open("/proc/self/mountinfo").read()
        found["mountinfo_names_victim"] = "victim" in mounts
        print(json.dumps(found))
    """, json.dumps(attempts), str(data.root), str(run_dir))
    assert result.exit_code == 0, result.stderr_tail
    found = json.loads(lines[-1])
    assert found["other_job"] in ("FileNotFoundError", "PermissionError", "OSError"), found
    assert found["store"] in ("FileNotFoundError", "PermissionError", "OSError"), found
    assert found["runtime"] in ("FileNotFoundError", "PermissionError", "OSError"), found
    assert found["mountinfo_names_victim"] is False
    assert (victim / "model" / "weights.bin").read_text() == "private"


def test_setsid_child_holding_stdout_leaves_nothing_and_does_not_delay_the_end(data):
    marker = f"orphan-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    result, lines = data.run("orphans", """
        import os, subprocess, sys
        subprocess.Popen(["setsid", sys.executable, "-c", "import time; time.sleep(60)", sys.argv[1]])
        if os.fork() == 0:  # a plain forked child too
            os.execvp(sys.executable, [sys.executable, "-c", "import time; time.sleep(60)", sys.argv[1]])
        print("parent done")
    """, marker)
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.stderr_tail
    assert lines == ["parent done"]
    assert elapsed < 3.0, elapsed
    time.sleep(0.2)
    assert _host_processes_with(marker) == []


def test_exit_status_of_a_signal_death_is_128_plus_n(data):
    result, _ = data.run("sig", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert result.exit_code == 137


def test_stop_reaches_a_python_job_without_handler_as_sigterm(data):
    control = RunControl(grace_seconds=30)
    folder = data.job("stop")

    def stop_when_ready() -> None:
        while not (folder / "ready").exists():
            time.sleep(0.02)
        control.stop.set()

    threading.Thread(target=stop_when_ready, daemon=True).start()
    started = time.monotonic()
    result, _ = data.run("stop", "import time; open('/opt/ml/ready', 'w').close(); time.sleep(120)",
                         control=control, opt_ml=folder)
    assert result.stopped
    assert time.monotonic() - started < 10  # well inside the 30 s grace: SIGTERM, not the SIGKILL after it
    assert result.exit_code == 128 + 15


# ---- through real training jobs
def test_training_job_with_network_isolation_cannot_reach_the_gateway(sm, s3, bucket, emulator):
    port = int(emulator.endpoint.rsplit(":", 1)[1].strip("/"))
    code = upload_sourcedir(s3, bucket, {"train.py": textwrap.dedent(SETNS_THEN_CONNECT).replace(
        "int(sys.argv[1])", str(port)) + "if 'connect=ok' in results or any('setns=ok' in r for r in results):\n"
                                         "    sys.exit(3)\n"})
    name = unique("isolated")
    sm.create_training_job(**script_job(name, bucket, code, EnableNetworkIsolation=True,
                                        Environment={"SERVER_PID": str(os.getpid())}))
    job = wait_for(sm, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")


def test_stop_training_job_ends_a_python_job_without_handler_and_its_children(sm, s3, bucket):
    marker = f"stop-child-{uuid.uuid4().hex[:8]}"
    code = upload_sourcedir(s3, bucket, {"train.py": (
        "import subprocess, sys, time\n"
        f"subprocess.Popen(['setsid', sys.executable, '-c', 'import time; time.sleep(120)', '{marker}'])\n"
        "print('training', flush=True)\n"
        "time.sleep(120)\n"
    )})
    name = unique("stop-nohandler")
    sm.create_training_job(**script_job(name, bucket, code))
    deadline = time.monotonic() + 60
    while not _host_processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _host_processes_with(marker), "the job did not start its child"
    started = time.monotonic()
    sm.stop_training_job(TrainingJobName=name)
    job = wait_for(sm, name, timeout=60)
    assert job["TrainingJobStatus"] == "Stopped"
    assert time.monotonic() - started < 8  # SIGTERM ended it; SIGKILL would come after the grace period
    time.sleep(0.2)
    assert _host_processes_with(marker) == []
