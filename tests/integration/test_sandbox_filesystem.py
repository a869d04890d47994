"""The job's view of the host: copy-on-write like a container's writable layer, secrets covered, and the
same sandbox for an unprivileged user. Real :class:`ProcessBackend` runs.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from docker_images import unavailable

from sandbox_support import data
from smlocal.runtime.backends.base import RunControl, RunSpec
from smlocal.runtime.backends.process import SOFTWARE_DIRS

pytestmark = pytest.mark.slow


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
        # not the other job's file, nor the host's /tmp: only the software under /tmp it runs (an editable
        # checkout in a CI clone under /tmp, say), shown read-only
        software = {Path(d).relative_to("/tmp").parts[0] for d in SOFTWARE_DIRS if d.startswith("/tmp/")}
        assert set(found["tmp"]) - software == {name}
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


def test_the_hosts_unix_sockets_under_run_are_out_of_reach(data):
    """/run holds docker.sock, dbus, systemd: a socket answers through an overlay or a read-only bind."""
    import socket

    folder = Path(tempfile.mkdtemp(prefix="smlocal-sock-", dir="/run"))
    path = folder / "host.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(1)
    try:
        for isolated in (False, True):
            result, lines = data.run(f"sock-{isolated}", """
                import os, socket, sys
                try:
                    socket.socket(socket.AF_UNIX).connect(sys.argv[1])
                    print("connected")
                except OSError as exc:
                    print(type(exc).__name__, os.path.exists("/var/run/" + sys.argv[1][5:]))
            """, str(path), network_isolation=isolated)
            assert result.exit_code == 0, result.stderr_tail
            assert lines[-1] == "FileNotFoundError False", lines
    finally:
        listener.close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def tools_with_a_host_mount(tmp_path):
    """A program folder under /tmp with a host mount inside: the kernel refuses its overlay."""
    import subprocess

    if os.getuid() != 0:
        unavailable("mounting a tmpfs on the host needs root", "the sandbox tests (it runs as root)")
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
        unavailable(reason, "the sandbox tests")
    if os.getuid() != 0 or shutil.which("setpriv") is None:
        unavailable("needs root (to become uid 65534 with setpriv) and setpriv", "the sandbox tests (it runs as root)")
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


# ---- the host's mounts change while a job starts (e.g. Docker containers starting and ending)
def test_a_host_mount_that_vanishes_between_plan_and_start_does_not_fail_the_job(data, monkeypatch):
    if os.geteuid() != 0:
        unavailable("mounting a tmpfs on the host needs root", "the sandbox tests (it runs as root)")
    import subprocess

    from smlocal.runtime.backends import process

    mountpoint = Path(tempfile.mkdtemp(prefix="smlocal-vanishing-", dir="/var/tmp"))
    inner = mountpoint / "merged"
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mountpoint)], check=True)
    inner.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(inner)], check=True)
    real_encode = process.encode_plan

    def plan_then_the_mount_goes(plan):  # the race made certain: the plan names a mount that then ends
        assert any(str(inner) in map(str, step) for step in plan["steps"]), "the plan must name the mount"
        subprocess.run(["umount", "-l", str(inner)], check=True)
        subprocess.run(["umount", "-l", str(mountpoint)], check=True)
        mountpoint.rmdir()  # its folder goes too, as a removed container's does
        return real_encode(plan)

    monkeypatch.setattr(process, "encode_plan", plan_then_the_mount_goes)
    try:
        result, lines = data.run("vanishing", "print('ran')")
        assert result.exit_code == 0, result.stderr_tail
        assert "ran" in lines, lines
    finally:
        subprocess.run(["umount", "-l", str(inner)], capture_output=True)
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)
        shutil.rmtree(mountpoint, ignore_errors=True)
