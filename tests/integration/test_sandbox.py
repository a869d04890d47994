"""The process sandbox as tight as a container, tried the way an attacker would, and bounded job output.

Most tests run the real :class:`ProcessBackend` on a :class:`RunSpec` (the simplest way to start
two jobs at once or hand a job a file descriptor); the others run real training jobs through boto3
against the emulator. As root (CI runs as root), where a missing user namespace matters most.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from conftest import script_job, unique, upload_sourcedir, wait_for
from smlocal.runtime.backends.base import RunControl, RunSpec, SandboxPolicy
from smlocal.runtime.backends.process import ProcessBackend
from smlocal.runtime.logs import MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_EVENT_BYTES, LogStreamWriter

pytestmark = pytest.mark.slow
LOG_GROUP = "/aws/sagemaker/TrainingJobs"


# ---- helpers
class Data:
    """A data dir laid out as the runtime lays it out: a store, job folders, cached environments."""

    def __init__(self, root: Path):
        self.root = root
        (root / "state.sqlite3").write_bytes(b"SQLite format 3\0secret-store")
        (root / "envs").mkdir()
        self.backend = ProcessBackend(SandboxPolicy(hidden=(root,), shared_copy_on_write=(root / "envs",)))

    def job(self, name: str) -> Path:
        folder = self.root / "jobs" / "training" / name / "algo-1"
        folder.mkdir(parents=True)
        return folder

    def run(self, name: str, script: str, *args: str, control: RunControl | None = None, env=None,
            network_isolation: bool = False, opt_ml: Path | None = None):
        lines: list[str] = []
        spec = RunSpec(command=(sys.executable, "-c", textwrap.dedent(script), *args),
                       env={"PATH": os.environ["PATH"], "SMLOCAL_JOB": f"training/{name}", **(env or {})},
                       opt_ml=opt_ml or self.job(name), network_isolation=network_isolation)
        result = self.backend.run(spec, lines.append, control or RunControl())
        return result, lines


@pytest.fixture
def data():
    root = Path(tempfile.mkdtemp(prefix="smlocal-sbx-"))  # short: a Unix socket path in it must fit
    yield Data(root)
    shutil.rmtree(root, ignore_errors=True)


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


def _stream_events(logs, name: str) -> list[dict]:
    streams = logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=f"{name}/")["logStreams"]
    assert len(streams) == 1
    events, token = [], None
    while True:
        kwargs = {"nextToken": token} if token else {}
        page = logs.get_log_events(logGroupName=LOG_GROUP, logStreamName=streams[0]["logStreamName"],
                                   startFromHead=True, **kwargs)
        events += page["events"]
        if not page["events"] or page["nextForwardToken"] == token:
            return events
        token = page["nextForwardToken"]


def test_a_one_megabyte_line_becomes_several_events_within_the_cap(sm, s3, bucket, emulator):
    code = upload_sourcedir(s3, bucket, {"train.py": (
        "import sys\n"
        "line = ''.join(chr(0x41 + i % 26) if i % 7 else '\\u00e9' for i in range(700_000))\n"
        "open('/opt/ml/model/line.txt', 'w').write(line)\n"
        "print('before'); print(line); print('after')\n"
    )})
    name = unique("bigline")
    sm.create_training_job(**script_job(name, bucket, code))
    job = wait_for(sm, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    expected = "".join(chr(0x41 + i % 26) if i % 7 else "\u00e9" for i in range(700_000))
    assert len(expected.encode()) > 780_000
    messages = [e["message"] for e in _stream_events(emulator.client("logs"), name)]
    start, end = messages.index("before"), messages.index("after")
    pieces = messages[start + 1:end]
    assert len(pieces) >= 3 and all(len(p.encode()) <= MAX_EVENT_BYTES for p in pieces)
    assert "".join(pieces) == expected


def test_a_megabyte_line_written_directly_is_split_at_character_boundaries(emulator):
    logs = emulator.client("logs")
    stream = unique("direct")
    line = ("a" * 262_117 + "\u00e9") * 4  # each cut falls inside a two-byte character
    writer = LogStreamWriter(logs, "/smlocal/test/logs", stream)
    writer.write(line)
    writer.close()
    events = logs.get_log_events(logGroupName="/smlocal/test/logs", logStreamName=stream,
                                 startFromHead=True)["events"]
    assert len(line.encode()) > 1_048_000 and len(events) >= 4
    assert all(len(e["message"].encode()) <= MAX_EVENT_BYTES for e in events)
    assert "".join(e["message"] for e in events) == line


class _Batches:
    """A journal (the writer's documented hook) that keeps what each batch held."""

    def __init__(self):
        self.batches: list[list[dict]] = []

    def append(self, group: str, stream: str, events: list[dict]) -> None:
        self.batches.append(list(events))


def test_twenty_thousand_lines_go_in_batches_within_the_limits(emulator):
    logs = emulator.client("logs")
    stream = unique("batches")
    journal = _Batches()
    writer = LogStreamWriter(logs, "/smlocal/test/logs", stream, flush_seconds=30, journal=journal)
    for i in range(20_000):
        writer.write(f"line {i}")
    for _ in range(6):
        writer.write("x" * 200_000)
    writer.close()
    assert sum(len(b) for b in journal.batches) == 20_006
    for batch in journal.batches:
        assert len(batch) <= MAX_BATCH_EVENTS
        assert sum(len(e["message"].encode()) + 26 for e in batch) <= MAX_BATCH_BYTES
        stamps = [e["timestamp"] for e in batch]
        assert stamps == sorted(stamps)
    events, token = [], None
    while True:
        page = logs.get_log_events(logGroupName="/smlocal/test/logs", logStreamName=stream, startFromHead=True,
                                   **({"nextToken": token} if token else {}))
        events += page["events"]
        if not page["events"]:
            break
        token = page["nextForwardToken"]
    assert len(events) == 20_006
    assert [e["message"] for e in events[:20_000:4_999]] == [f"line {i}" for i in range(0, 20_000, 4_999)]


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def test_a_job_printing_100_megabytes_keeps_server_memory_bounded(sm, s3, bucket):
    warm = upload_sourcedir(s3, bucket, {"train.py": "print('warm')\n"})
    name = unique("warm")
    sm.create_training_job(**script_job(name, bucket, warm))  # moto's first Logs call costs ~200 MB, once
    assert wait_for(sm, name)["TrainingJobStatus"] == "Completed"
    code = upload_sourcedir(s3, bucket, {"train.py": (
        "import sys\n"
        "block = ('y' * 1023 + '\\n') * 1024\n"
        "for _ in range(50):\n"
        "    sys.stdout.write(block)\n"  # 50 MB of 1 KB lines
        "sys.stdout.write('z' * 50 * 1024 * 1024 + '\\n')\n"  # and one 50 MB line
    )})
    name = unique("loud")
    before = _rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to the current RSS
    sm.create_training_job(**script_job(name, bucket, code))
    job = wait_for(sm, name, timeout=300)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    growth_mib = (_rss_kib("VmHWM") - before) / 1024
    # moto keeps every event in memory, as CloudWatch stores them: the 100 MiB of text, plus at most 100 MiB
    assert growth_mib < 200, growth_mib


# ---- the host is copy-on-write, like a container's writable layer
def _site_packages() -> str:
    import sysconfig

    return sysconfig.get_paths()["purelib"]


def test_writes_to_the_host_succeed_in_the_job_and_change_nothing_on_the_host(data):
    import smlocal

    marker = uuid.uuid4().hex[:8]
    package = os.path.dirname(smlocal.__file__)
    targets = [f"/root/smlocal-job-was-here-{marker}", os.path.join(package, f"pwned_{marker}.py"),
               os.path.join(_site_packages(), f"pwned_{marker}", "__init__.py"), f"/etc/smlocal-{marker}.conf"]
    victim = os.path.join(os.path.dirname(smlocal.__file__), "__init__.py")
    before = Path(victim).read_bytes()
    doomed = Path(f"/var/tmp/smlocal-doomed-{marker}")  # a host file the job deletes
    doomed.write_text("host")
    try:
        result, lines = data.run("writer", """
            import json, os, sys
            import smlocal
            done = {}
            for path in json.loads(sys.argv[1]):
                os.makedirs(os.path.dirname(path), exist_ok=True)  # as pip install does for a new package
                with open(path, "w") as handle:
                    handle.write("written by a job")
                done[path] = open(path).read()
            with open(sys.argv[2], "a") as handle:  # an existing file of smlocal's own source
                handle.write("\\nraise SystemExit('tampered')\\n")
            os.unlink(sys.argv[3])
            print(json.dumps(done))
        """, json.dumps(targets), victim, str(doomed))
        assert result.exit_code == 0, result.stderr_tail
        assert json.loads(lines[-1]) == {path: "written by a job" for path in targets}  # as in a container
        for path in targets:
            assert not os.path.exists(path), path
        assert not os.path.exists(os.path.join(_site_packages(), f"pwned_{marker}"))
        assert Path(victim).read_bytes() == before
        assert doomed.read_text() == "host"
    finally:
        doomed.unlink(missing_ok=True)
        for path in targets:
            Path(path).unlink(missing_ok=True)
        shutil.rmtree(os.path.join(_site_packages(), f"pwned_{marker}"), ignore_errors=True)
        if Path(victim).read_bytes() != before:
            Path(victim).write_bytes(before)


def _fake_env(root: Path) -> Path:
    """A cached requirements environment, as runtime/environments.py makes one."""
    import subprocess

    env_dir = root / "envs" / "0123abcd"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    return env_dir


def test_a_job_installs_into_its_requirements_env_and_the_next_job_does_not_see_it(data):
    env_dir = _fake_env(data.root)
    python = str(env_dir / "bin" / "python")
    before = sorted(str(p.relative_to(env_dir)) for p in env_dir.rglob("*"))
    spec_env = {"PATH": f"{env_dir / 'bin'}:{os.environ['PATH']}"}
    script = """
        import os, sys, sysconfig
        site = sysconfig.get_paths()["purelib"]
        print(site.startswith(sys.argv[1]), os.path.exists(os.path.join(site, "injected.py")))
        if sys.argv[2] == "write":
            open(os.path.join(site, "injected.py"), "w").write("VALUE = 1\\n")
            import injected
            print("imported", injected.VALUE)
    """
    lines: list[str] = []
    results = []
    for mode in ("write", "check"):
        spec = RunSpec(command=(python, "-c", textwrap.dedent(script), str(env_dir), mode), env=spec_env,
                       opt_ml=data.job(f"env-{mode}"))
        results.append(data.backend.run(spec, lines.append, RunControl()))
    assert [r.exit_code for r in results] == [0, 0], results[0].stderr_tail + results[1].stderr_tail
    assert lines == ["True False", "imported 1", "True False"]
    assert sorted(str(p.relative_to(env_dir)) for p in env_dir.rglob("*")) == before


def test_the_developers_credentials_are_not_readable(data, monkeypatch):
    home = Path(tempfile.mkdtemp(prefix="smlocal-home-", dir="/var/tmp"))  # not under /tmp: jobs see /var/tmp
    try:
        (home / ".aws").mkdir()
        (home / ".aws" / "credentials").write_text("[default]\naws_secret_access_key = developer-secret\n")
        (home / ".ssh").mkdir()
        (home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY")
        (home / ".netrc").write_text("machine example.com password developer-secret\n")
        (home / "notes.txt").write_text("not a secret")
        monkeypatch.setenv("HOME", str(home))  # the server's HOME: the covers follow it
        result, lines = data.run("creds", """
            import json, os, sys
            home = sys.argv[1]
            found = {}
            for name in (".aws/credentials", ".ssh/id_ed25519", ".netrc", "notes.txt", "/etc/shadow"):
                path = os.path.join(home, name)
                try:
                    found[name] = open(path).read()
                except OSError as exc:
                    found[name] = type(exc).__name__
            found["aws_listing"] = os.listdir(os.path.join(home, ".aws"))
            try:
                open(os.path.join(home, ".aws", "credentials"), "w")
            except OSError as exc:
                found["aws_write"] = exc.strerror
            found["role_key"] = os.environ.get("AWS_ACCESS_KEY_ID")
            print(json.dumps(found))
        """, str(home), env={"AWS_ACCESS_KEY_ID": "smlocal-role-key"})
        assert result.exit_code == 0, result.stderr_tail
        found = json.loads(lines[-1])
        assert found[".aws/credentials"] == "FileNotFoundError" and found["aws_listing"] == []
        assert found["aws_write"] == "Read-only file system"
        assert found[".ssh/id_ed25519"] == "FileNotFoundError"
        assert found[".netrc"] == ""  # an empty file
        assert found["/etc/shadow"] == ""
        assert found["notes.txt"] == "not a secret"  # the rest of the home is there, copy-on-write
        assert found["role_key"] == "smlocal-role-key"  # the environment smlocal gives it stays
    finally:
        shutil.rmtree(home, ignore_errors=True)


TMP_PROBE = """
    import json, os, sys, time
    open(f"/tmp/{sys.argv[1]}", "w").write("mine")
    stats = os.statvfs("/tmp")
    open("/opt/ml/started", "w").close()
    while not os.path.exists("/opt/ml/go"):
        time.sleep(0.02)
    print(json.dumps({"tmp": sorted(os.listdir("/tmp")), "tmp_blocks": stats.f_blocks}))
"""


def test_tmp_of_two_concurrent_jobs_is_their_own_folder_on_disk(data):
    names = [f"tmp-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    folders = {name: data.job(name) for name in names}
    out: dict[str, tuple] = {}
    threads = [threading.Thread(target=lambda n=name: out.__setitem__(n, data.run(n, TMP_PROBE, n, opt_ml=folders[n])))
               for name in names]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    while not all((f / "started").exists() for f in folders.values()) and time.monotonic() < deadline:
        time.sleep(0.02)
    seen_on_host = {name: (folders[name].parent / ".algo-1.sandbox" / "tmp" / name).read_text() for name in names}
    for folder in folders.values():
        (folder / "go").touch()
    for thread in threads:
        thread.join(timeout=20)
    assert seen_on_host == {name: "mine" for name in names}  # in the job's scratch folder, on disk
    disk_blocks = os.statvfs(str(data.root)).f_blocks
    for name in names:
        result, lines = out[name]
        assert result.exit_code == 0, result.stderr_tail
        found = json.loads(lines[-1])
        assert found["tmp"] == [name]  # not the other job's file, nor the host's /tmp
        assert found["tmp_blocks"] == disk_blocks  # the data dir's filesystem, not a tmpfs in memory
        assert not os.path.exists(f"/tmp/{name}")
        assert not (folders[name].parent / ".algo-1.sandbox").exists()


def test_the_scratch_folder_holds_the_jobs_writes_and_is_gone_after_a_failed_job(data):
    folder = data.job("fails")
    scratch = folder.parent / ".algo-1.sandbox"
    probe = f"smlocal-scratch-probe-{uuid.uuid4().hex[:8]}"
    seen: list[str] = []

    def watch() -> None:
        deadline = time.monotonic() + 20
        while not (folder / "written").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.extend(str(p.relative_to(scratch)) for p in scratch.rglob(probe))
        (folder / "go").touch()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result, _ = data.run("fails", """
            import os, sys, time
            os.makedirs(f"/usr/local/share/{sys.argv[1]}", exist_ok=True)
            open(f"/usr/local/share/{sys.argv[1]}/blob", "wb").write(os.urandom(1 << 20))
            open("/opt/ml/written", "w").close()
            while not os.path.exists("/opt/ml/go"):
                time.sleep(0.01)
            sys.exit(3)
        """, probe, opt_ml=folder)
        watcher.join(timeout=5)
        assert result.exit_code == 3
        assert len(seen) == 1 and seen[0].startswith("upper/"), seen  # the write landed in the job's upper layer
        assert not os.path.exists(f"/usr/local/share/{probe}")
        assert not scratch.exists()
    finally:
        shutil.rmtree(f"/usr/local/share/{probe}", ignore_errors=True)


def test_devices_and_kernel_settings_of_the_host_are_out_of_reach(data):
    result, lines = data.run("devices", """
        import json, os
        found = {"dev": sorted(os.listdir("/dev"))}
        for path in ("/proc/sys/vm/swappiness", "/sys/kernel/mm/transparent_hugepage/enabled",
                     "/proc/sysrq-trigger"):
            try:
                os.close(os.open(path, os.O_WRONLY))
                found[path] = "writable"
            except OSError as exc:
                found[path] = exc.strerror
        print(json.dumps(found))
    """)
    assert result.exit_code == 0, result.stderr_tail
    found = json.loads(lines[-1])
    assert set(found["dev"]) <= {"null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm",
                                 "fd", "stdin", "stdout", "stderr"}, found["dev"]
    assert "writable" not in found.values(), found


@pytest.fixture
def tools_with_a_host_mount(tmp_path):
    """A program folder under /tmp with a host mount inside: the kernel refuses its overlay."""
    import subprocess

    if os.getuid() != 0:
        pytest.skip("mounting a tmpfs on the host needs root")
    tools = tmp_path / "tools"
    (tools / "bin").mkdir(parents=True)
    (tools / "mounted").mkdir()
    (tools / "lib.txt").write_text("host")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "smlocal-test", str(tools / "mounted")], check=True)
    try:
        yield tools
    finally:
        subprocess.run(["umount", str(tools / "mounted")], check=True)


def test_a_folder_that_cannot_be_copy_on_write_is_read_only_and_the_log_says_so(tools_with_a_host_mount, data):
    tools = tools_with_a_host_mount
    folder = data.job("fallback")
    backend = data.backend
    lines: list[str] = []
    spec = RunSpec(command=(sys.executable, "-c", textwrap.dedent("""
        import sys
        try:
            open(sys.argv[1], "w").write("job")
            print("written")
        except OSError as exc:
            print(exc.strerror)
        print(open(sys.argv[1]).read())
    """), str(tools / "lib.txt")), env={"PATH": f"{tools / 'bin'}:{os.environ['PATH']}"}, opt_ml=folder)
    result = backend.run(spec, lines.append, RunControl())
    assert result.exit_code == 0, result.stderr_tail
    assert lines[-2:] == ["Read-only file system", "host"], lines
    assert any(f"{tools} is shown read-only" in line for line in lines), lines
    assert (tools / "lib.txt").read_text() == "host"


# ---- as an unprivileged user
def _unprivileged_userns_allowed() -> tuple[bool, str]:
    for path, forbidden in (("/proc/sys/kernel/unprivileged_userns_clone", "0"),
                            ("/proc/sys/user/max_user_namespaces", "0"),
                            ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1")):
        try:
            if Path(path).read_text().strip() == forbidden:
                return False, f"{path} is {forbidden}: the kernel forbids unprivileged user namespaces"
        except OSError:
            continue
    return True, ""


NOBODY_RUNNER = """
import json, os, sys
from pathlib import Path
from smlocal.runtime.backends.base import RunControl, RunSpec, SandboxPolicy
from smlocal.runtime.backends.process import ProcessBackend

root = Path(sys.argv[1])
job = root / "data" / "jobs" / "training" / "nobody" / "algo-1"
job.mkdir(parents=True)
(job / "input").mkdir()
(job / "input" / "hello.txt").write_text("from the host")
backend = ProcessBackend(SandboxPolicy(hidden=(root / "data",)))
script = '''
import json, os, sys
found = {"uid": os.getuid(), "input": open("/opt/ml/input/hello.txt").read()}
found["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
open("/opt/ml/model.txt", "w").write("trained")
for path in sys.argv[1:]:
    try:
        open(path, "w").write("job")
        found[path] = "written"
    except OSError as exc:
        found[path] = exc.strerror
print(json.dumps(found))
'''
lines = []
spec = RunSpec(command=(sys.executable, "-c", script, *sys.argv[2:]), env={"PATH": "/usr/bin:/bin"}, opt_ml=job)
result = backend.run(spec, lines.append, RunControl())
print(json.dumps({"exit": result.exit_code, "stderr": result.stderr_tail, "lines": lines,
                  "model": (job / "model.txt").read_text(), "uid": os.getuid(),
                  "scratch_left": (job.parent / ".algo-1.sandbox").exists()}))
"""


def test_an_unprivileged_user_gets_the_same_sandbox(tmp_path):
    import subprocess

    allowed, reason = _unprivileged_userns_allowed()
    if not allowed:
        pytest.skip(reason)
    if os.getuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root (to become uid 65534 with setpriv) and setpriv")
    root = Path(tempfile.mkdtemp(prefix="smlocal-nobody-"))
    host_file = Path(tempfile.mkdtemp(prefix="smlocal-nobody-", dir="/var/tmp")) / "owned.txt"
    try:
        for path in (root, host_file.parent):
            os.chmod(path, 0o755)
            os.chown(path, 65534, 65534)
        host_file.write_text("host")
        os.chown(host_file, 65534, 65534)
        (root / "runner.py").write_text(NOBODY_RUNNER)
        import smlocal

        site = _site_packages()
        python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
        pythonpath = os.pathsep.join([str(Path(smlocal.__file__).parent.parent), site])
        marker = uuid.uuid4().hex[:8]
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", marker])
        try:
            proc = subprocess.run(
                ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-I", "-c",
                 f"import sys; sys.path[:0] = {pythonpath.split(os.pathsep)!r}; "
                 f"exec(open({str(root / 'runner.py')!r}).read())", str(root), str(host_file), "/etc/passwd"],
                env={"PATH": "/usr/bin:/bin", "HOME": str(host_file.parent)}, capture_output=True, text=True,
                timeout=120)
        finally:
            sleeper.kill()
        assert proc.returncode == 0, proc.stderr[-3000:]
        outcome = json.loads(proc.stdout.splitlines()[-1])
        assert outcome["uid"] == 65534 and outcome["exit"] == 0, outcome
        found = json.loads(outcome["lines"][-1])
        assert found["uid"] == 0 and found["input"] == "from the host"  # root of its namespace, its /opt/ml
        assert found["pids"] == [1, 2]  # not the host's processes (the sleeper, the test)
        assert found[str(host_file)] == "written"  # its own copy of a file of its home
        assert found["/etc/passwd"] in ("Permission denied", "written"), found
        assert outcome["model"] == "trained" and outcome["scratch_left"] is False
        assert host_file.read_text() == "host"  # the host file it could write outside is unchanged
        assert "job" not in Path("/etc/passwd").read_text().splitlines()[-1:]
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(host_file.parent, ignore_errors=True)
