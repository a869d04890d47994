"""A job's private network on the process backend: real namespaces, real TCP between real hosts.

Each host of a multi-host job has its own network namespace on a bridge of the job's own, reaches
its peers by name (``/etc/hosts``, ``hostname``), smlocal on the loopback port its environment
names, and nothing else of the machine; with EnableNetworkIsolation only its peers. As a normal
user too, where the kernel allows unprivileged user namespaces (else skipped with the reason,
failing under ``SMLOCAL_CI=1``): the three-host job and a two-host MPI job (the launch agent's
workers bind port 22 without privilege).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import pytest

from docker_images import unavailable

from conftest import script_job, unique, upload_sourcedir, wait_for

PYTORCH_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5-cpu-py311"

# every host listens on PORT, connects to each peer by name, says hello and reads the peer's token;
# then tries each of PROBES (host:port) and reports; UPLOAD_BUCKET: the report goes to S3 from the job
TALK = r'''
import json, os, socket, threading, time
hosts = json.loads(os.environ["SM_HOSTS"])
me = os.environ["SM_CURRENT_HOST"]
token = os.environ.get("TOKEN", "")
PORT = 22  # below 1024 (sshd's, which the MPI launch agent takes): any port binds in a host, as in a container
report = {"hostname": socket.gethostname(), "addresses": {h: socket.gethostbyname(h) for h in hosts},
          "received": [], "replies": {}, "probes": {}}
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", PORT))
server.listen()

def serve():
    for _ in hosts[1:]:
        conn, _ = server.accept()
        line = conn.makefile().readline().strip()
        conn.sendall(f"{token} from {me}\n".encode())
        report["received"].append(line)
        print(f"{me} received: {line}", flush=True)
        conn.close()

thread = threading.Thread(target=serve)
thread.start()
time.sleep(float(os.environ.get("HOLD", "0")))
for peer in hosts:
    if peer == me:
        continue
    for _ in range(300):
        try:
            conn = socket.create_connection((peer, PORT), timeout=2)
            break
        except OSError:
            time.sleep(0.1)
    conn.sendall(f"hello from {me}\n".encode())
    report["replies"][peer] = conn.makefile().readline().strip()
    conn.close()
thread.join(120)
for target in filter(None, os.environ.get("PROBES", "").split(",")):
    address, port = target.rsplit(":", 1)
    try:
        socket.create_connection((address, int(port)), timeout=3).close()
        report["probes"][target] = "connected"
    except OSError as exc:
        report["probes"][target] = type(exc).__name__
try:  # bring its own interface down: the namespace is not the job's to change
    import fcntl, struct
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock, 0x8914, struct.pack("16sH", b"eth0", 0).ljust(40, b"\0"))  # SIOCSIFFLAGS
    report["eth0_down"] = "done"
except OSError as exc:
    report["eth0_down"] = type(exc).__name__
time.sleep(float(os.environ.get("HOLD", "0")))
if os.environ.get("UPLOAD_BUCKET"):
    import boto3
    boto3.client("s3").put_object(Bucket=os.environ["UPLOAD_BUCKET"], Key=f"talk/{me}.json",
                                  Body=json.dumps(report).encode())
open(os.path.join(os.environ["SM_MODEL_DIR"], f"{me}.json"), "w").write(json.dumps(report))
print(f"{me} done", flush=True)
'''


def _model_files(s3, uri: str) -> dict[str, bytes]:
    bucket, key = uri[5:].split("/", 1)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}


def _machine_addresses() -> list[str]:
    """This machine's IPv4 addresses but loopback (its other interfaces: the LAN, Docker's bridge)."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
    found = [line.split()[3].split("/")[0] for line in out.splitlines()]
    return [a for a in found if not a.startswith("127.")]


@pytest.fixture
def host_service():
    """A TCP server on every address of the machine (loopback included) that no job may reach."""
    server = socket.create_server(("0.0.0.0", 0))
    accepted: list[str] = []

    def serve():
        while True:
            try:
                conn, peer = server.accept()
            except OSError:
                return
            accepted.append(peer[0])
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1], accepted
    server.shutdown(socket.SHUT_RDWR)
    server.close()


def _job(name, bucket, code, hosts: int, env: dict, **extra) -> dict:
    request = script_job(name, bucket, code, Environment=env, **extra)
    request["ResourceConfig"]["InstanceCount"] = hosts
    return request


def _reports(s3, job) -> dict[str, dict]:
    files = _model_files(s3, job["ModelArtifacts"]["S3ModelArtifacts"])
    return {name[:-5]: json.loads(body) for name, body in files.items() if name.endswith(".json")}


def _messages(emulator, name: str) -> list[str]:
    logs = emulator.client("logs")
    streams = logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs",
                                        logStreamNamePrefix=f"{name}/")["logStreams"]
    return [e["message"] for s in streams for e in logs.get_log_events(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=s["logStreamName"], startFromHead=True)["events"]]


def _assert_talked(reports: dict[str, dict], hosts: list[str], token: str) -> None:
    for me in hosts:
        report = reports[me]
        peers = [h for h in hosts if h != me]
        assert report["hostname"] == me
        assert len(set(report["addresses"].values())) == len(hosts)  # every name resolves, each its own
        assert sorted(report["received"]) == sorted(f"hello from {p}" for p in peers)
        assert report["replies"] == {p: f"{token} from {p}" for p in peers}
        assert report["eth0_down"] == "PermissionError"


def test_three_hosts_talk_by_name_and_reach_smlocal_only(sm, s3, bucket, emulator, host_service):
    port, accepted = host_service
    code = upload_sourcedir(s3, bucket, {"train.py": TALK})
    name = unique("net3")
    others = _machine_addresses()
    probes = [f"127.0.0.1:{emulator.port}", f"127.0.0.1:{port}", *(f"{a}:{port}" for a in others)]
    # a request that names a loopback service as an endpoint of its own gets no relay to it
    sm.create_training_job(**_job(name, bucket, code, 3, {"PROBES": ",".join(probes), "UPLOAD_BUCKET": bucket,
                                                          "TOKEN": "t3",
                                                          "AWS_ENDPOINT_URL_EVIL": f"http://127.0.0.1:{port}"}))
    job = wait_for(sm, name, timeout=180)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    hosts = ["algo-1", "algo-2", "algo-3"]
    reports = _reports(s3, job)
    _assert_talked(reports, hosts, "t3")
    for me in hosts:
        # smlocal's gateway on the loopback port the job was given, and nothing else of the machine
        assert reports[me]["probes"].pop(f"127.0.0.1:{emulator.port}") == "connected"
        assert reports[me]["probes"][f"127.0.0.1:{port}"] == "ConnectionRefusedError"  # AWS_ENDPOINT_URL_EVIL's
        assert set(reports[me]["probes"].values()) <= {"ConnectionRefusedError", "OSError"}, reports
        # the job itself wrote to S3 through the gateway
        uploaded = json.loads(s3.get_object(Bucket=bucket, Key=f"talk/{me}.json")["Body"].read())
        assert uploaded["received"] == reports[me]["received"]
    assert accepted == []
    messages = _messages(emulator, name)
    for me in hosts:
        for peer in hosts:
            if peer != me:
                assert f"{me} received: hello from {peer}" in messages


def test_isolated_hosts_reach_each_other_but_not_smlocal(sm, s3, bucket, emulator, host_service):
    port, accepted = host_service
    code = upload_sourcedir(s3, bucket, {"train.py": TALK})
    name = unique("netiso")
    probes = [f"127.0.0.1:{emulator.port}", f"127.0.0.1:{port}",
              *(f"{a}:{p}" for a in _machine_addresses() for p in (port, emulator.port))]
    sm.create_training_job(**_job(name, bucket, code, 2, {"PROBES": ",".join(probes), "TOKEN": "iso"},
                                  EnableNetworkIsolation=True))
    job = wait_for(sm, name, timeout=180)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    reports = _reports(s3, job)
    _assert_talked(reports, ["algo-1", "algo-2"], "iso")
    for me in ("algo-1", "algo-2"):
        assert "connected" not in reports[me]["probes"].values(), reports[me]["probes"]
        assert len(reports[me]["probes"]) == len(probes)
    assert accepted == []


# every host opens CONNECTIONS to smlocal's relayed port and keeps them; says how many the relay
# closed at once, then holds the rest open for HOLD seconds
FLOOD = r'''
import os, socket, time
from urllib.parse import urlsplit
me, url = os.environ["SM_CURRENT_HOST"], urlsplit(os.environ["AWS_ENDPOINT_URL"])
held, failed = [], 0
for _ in range(int(os.environ["CONNECTIONS"])):
    try:
        held.append(socket.create_connection((url.hostname, url.port), timeout=5))
    except OSError:
        failed += 1
time.sleep(1)
closed = 0
for conn in held:
    conn.setblocking(False)
    try:
        closed += conn.recv(1) == b""
    except BlockingIOError:
        pass
    except OSError:
        closed += 1
print(f"{me} holding {len(held) - closed} closed {closed} failed {failed}", flush=True)
time.sleep(float(os.environ["HOLD"]))
'''


def test_a_job_flooding_the_relay_costs_the_server_a_bounded_number_of_threads(sm, s3, bucket, emulator):
    from smlocal.runtime.backends.jobnet import RELAYS_PER_HOST

    code = upload_sourcedir(s3, bucket, {"train.py": FLOOD})
    name = unique("netflood")
    baseline = threading.active_count()
    sm.create_training_job(**_job(name, bucket, code, 2, {"CONNECTIONS": "300", "HOLD": "6"}))
    most, lines = baseline, []
    deadline = time.time() + 120
    while time.time() < deadline:
        most = max(most, threading.active_count())
        lines = [m for m in _messages(emulator, name) if " holding " in m]
        if len(lines) == 2:
            break
        time.sleep(0.05)
    assert len(lines) == 2, _messages(emulator, name)
    for _ in range(20):  # while both hosts hold their connections
        most = max(most, threading.active_count())
        time.sleep(0.05)
    started = time.monotonic()
    assert sm.list_training_jobs(MaxResults=1)["TrainingJobSummaries"]  # the gateway still answers
    assert time.monotonic() - started < 5
    # each relayed connection: a relay thread here and the gateway's thread serving it; no more
    assert most - baseline <= 2 * (2 * RELAYS_PER_HOST) + 20, (baseline, most, lines)
    held = sum(int(line.split(" holding ")[1].split()[0]) for line in lines)
    closed = sum(int(line.split(" closed ")[1].split()[0]) for line in lines)
    assert held <= 2 * RELAYS_PER_HOST and closed >= 600 - 2 * RELAYS_PER_HOST, lines
    job = wait_for(sm, name, timeout=120)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    deadline = time.time() + 15
    while threading.active_count() > baseline + 10 and time.time() < deadline:
        time.sleep(0.2)
    assert threading.active_count() <= baseline + 10  # the relays ended with the job


def _job_processes(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if f"SMLOCAL_JOB={marker}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_concurrent_jobs_have_separate_networks_and_leave_nothing(sm, s3, bucket, emulator):
    code = upload_sourcedir(s3, bucket, {"train.py": TALK})
    interfaces = sorted(os.listdir("/sys/class/net"))
    names = {unique("netA"): "tokenA", unique("netB"): "tokenB"}
    for name, token in names.items():
        sm.create_training_job(**_job(name, bucket, code, 2, {"TOKEN": token, "HOLD": "2"}))
    seen_during = set()
    deadline = time.time() + 180
    while time.time() < deadline:
        seen_during.update(os.listdir("/sys/class/net"))
        states = [sm.describe_training_job(TrainingJobName=n)["TrainingJobStatus"] for n in names]
        if "InProgress" not in states:
            break
        time.sleep(0.2)
    for name, token in names.items():
        job = wait_for(sm, name)
        assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
        _assert_talked(_reports(s3, job), ["algo-1", "algo-2"], token)  # its own peers' token, never the other's
        assert _job_processes(f"training/{name}") == []  # the switch and its holders are gone too
    started = [sm.describe_training_job(TrainingJobName=n)["TrainingStartTime"] for n in names]
    ended = [sm.describe_training_job(TrainingJobName=n)["TrainingEndTime"] for n in names]
    assert max(started) < min(ended)  # they ran at the same time
    # no bridge or veth ever appeared in the machine's namespace (other jobs' containers may come and go)
    assert not {n for n in seen_during - set(interfaces) if n.startswith(("br0", "h1", "h2", "eth0"))}


# ---- as a normal user; and a network that cannot be made
RUNNER = r'''
import io, json, sys, tarfile, time, uuid
from pathlib import Path
from smlocal.config import load_settings
from smlocal.server import Emulator

data, hosts, talk = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]).read_text()
with Emulator(load_settings(data_dir=data, port=0)) as emu:
    sm, s3 = emu.client("sagemaker"), emu.client("s3")
    bucket = "net-" + uuid.uuid4().hex[:10]
    s3.create_bucket(Bucket=bucket)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as archive:
        body = talk.encode()
        info = tarfile.TarInfo("train.py"); info.size = len(body); info.mode = 0o755
        archive.addfile(info, io.BytesIO(body))
    s3.put_object(Bucket=bucket, Key="code/sourcedir.tar.gz", Body=buf.getvalue())
    request = json.loads(sys.argv[4])
    request["HyperParameters"]["sagemaker_submit_directory"] = f'"s3://{bucket}/code/sourcedir.tar.gz"'
    request["OutputDataConfig"]["S3OutputPath"] = f"s3://{bucket}/output"
    request["ResourceConfig"]["InstanceCount"] = hosts
    request["Environment"] = {"UPLOAD_BUCKET": bucket, "TOKEN": "nobody", **json.loads(sys.argv[5])}
    sm.create_training_job(**request)
    while sys.argv[6:] == ["crash"]:  # the test kills this server while the job's hosts talk
        if sm.describe_training_job(TrainingJobName=request["TrainingJobName"])["SecondaryStatus"] == "Training":
            print("training", flush=True)
            time.sleep(600)
        time.sleep(0.2)
    deadline = time.time() + 240
    while time.time() < deadline:
        job = sm.describe_training_job(TrainingJobName=request["TrainingJobName"])
        if job["TrainingJobStatus"] not in ("InProgress", "Stopping"):
            break
        time.sleep(0.5)
    uploaded = {}
    if job["TrainingJobStatus"] == "Completed":
        for i in range(1, hosts + 1):
            key = f"talk/algo-{i}.json"
            uploaded[f"algo-{i}"] = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    print(json.dumps({"status": job["TrainingJobStatus"], "reason": job.get("FailureReason"), "reports": uploaded}))
'''


def _unavailable(reason: str):
    unavailable(reason, "the job network tests")


def _userns_forbidden() -> str | None:
    for path, forbidden in (("/proc/sys/kernel/unprivileged_userns_clone", "0"),
                            ("/proc/sys/user/max_user_namespaces", "0"),
                            ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1")):
        try:
            if Path(path).read_text().strip() == forbidden:
                return f"{path} is {forbidden}: the kernel forbids unprivileged user namespaces"
        except OSError:
            continue
    return None


def _python_for_nobody(folder: Path) -> str:
    """An interpreter uid 65534 may run that imports smlocal and its packages: this one, else a
    virtualenv of the system Python (same version) seeing this environment's packages."""
    probe = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    # through env: a program it starts must find the interpreter too (setpriv itself may run it anyway)
    found = subprocess.run([*probe, "env", sys.executable, "-c", "import smlocal, moto"], capture_output=True)
    if found.returncode == 0:
        return sys.executable
    system = "/usr/bin/python3"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if not os.path.exists(system) or subprocess.run(
            [system, "-c", f"import sys; assert '%d.%d' % sys.version_info[:2] == {version!r}"]).returncode != 0:
        _unavailable(f"{sys.executable} is not readable by uid 65534 and there is no system Python {version}")
    venv = folder / "venv"
    subprocess.run([system, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    import smlocal

    (site / "smlocal-test.pth").write_text(
        f"{Path(smlocal.__file__).resolve().parent.parent}\n{sysconfig.get_paths()['purelib']}\n")
    python = str(venv / "bin" / "python")
    check = subprocess.run([*probe, "env", python, "-c", "import smlocal, moto, boto3"], capture_output=True,
                           text=True)
    if check.returncode != 0:
        _unavailable(f"no interpreter uid 65534 may run with smlocal's packages: {check.stderr[-300:]}")
    return python


def _server_argv(python: str, folder: Path, hosts: int, name: str, job_env: dict | None = None, *,
                 script: str = TALK, request: dict | None = None) -> list[str]:
    (folder / "runner.py").write_text(RUNNER)
    (folder / "talk.py").write_text(script)
    request = request or script_job(name, "placeholder", "s3://placeholder/x")
    return [python, str(folder / "runner.py"), str(folder / "data"), str(hosts), str(folder / "talk.py"),
            json.dumps(request), json.dumps(job_env or {})]


def _run_server(argv_prefix: list[str], python: str, folder: Path, hosts: int, env: dict, *, script: str = TALK,
                request: dict | None = None) -> dict:
    argv = _server_argv(python, folder, hosts, unique("netsrv"), script=script, request=request)
    proc = subprocess.run([*argv_prefix, *argv], env=env, capture_output=True, text=True, timeout=300, cwd=folder)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


MPI_TALK = r'''
import json, os, socket
import boto3
from mpi4py import MPI

comm = MPI.COMM_WORLD
total = comm.allreduce(comm.Get_rank() + 1)
boto3.client("s3").put_object(Bucket=os.environ["UPLOAD_BUCKET"], Key=f"talk/{socket.gethostname()}.json",
                              Body=json.dumps({"rank": comm.Get_rank(), "size": comm.Get_size(), "sum": total}))
'''


def _as_nobody(hosts: int, **job) -> dict:
    """The job run by a server of uid 65534 (no privilege, no sbin on PATH)."""
    forbidden = _userns_forbidden()
    if forbidden:
        _unavailable(forbidden)
    if os.getuid() != 0 or shutil.which("setpriv") is None:
        _unavailable("needs root (to become uid 65534 with setpriv) and setpriv")
    folder = Path(tempfile.mkdtemp(prefix="smlocal-netnobody-"))
    try:
        os.chmod(folder, 0o755)
        python = _python_for_nobody(folder)
        home = folder / "home"
        home.mkdir()
        for path in (folder, home):
            os.chown(path, 65534, 65534)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "SMLOCAL_RUNTIME_DIR": str(home / "run"),
               "TMPDIR": str(home), "SMLOCAL_AUTODETECT": "0"}  # no sbin on PATH, as for most users
        return _run_server(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"], python, folder, hosts,
                           env, **job)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_normal_user_runs_the_three_host_job():
    outcome = _as_nobody(3)
    assert outcome["status"] == "Completed", outcome["reason"]
    _assert_talked(outcome["reports"], ["algo-1", "algo-2", "algo-3"], "nobody")


def test_a_normal_user_runs_a_two_host_mpi_job():
    """mpirun through the launch agent, whose workers bind port 22, without privilege."""
    if shutil.which("mpirun") is None:
        _unavailable("Open MPI is not installed (apt-get install openmpi-bin)")
    request = script_job(unique("netmpi"), "placeholder", "s3://placeholder/x", hyperparameters={
        "sagemaker_mpi_enabled": "true", "sagemaker_mpi_num_of_processes_per_host": "1"})
    request["AlgorithmSpecification"]["TrainingImage"] = PYTORCH_IMAGE
    outcome = _as_nobody(2, script=MPI_TALK, request=request)
    assert outcome["status"] == "Completed", outcome["reason"]
    assert outcome["reports"] == {f"algo-{r + 1}": {"rank": r, "size": 2, "sum": 3} for r in range(2)}


def test_a_job_whose_network_cannot_be_made_fails_with_the_reason():
    """A server where no user namespace may be made (the limit set to 0 in its own namespace)."""
    if shutil.which("unshare") is None:
        _unavailable("needs unshare (util-linux)")
    folder = Path(tempfile.mkdtemp(prefix="smlocal-netfail-"))
    try:
        env = {**os.environ, "SMLOCAL_RUNTIME_DIR": str(folder / "run"), "SMLOCAL_AUTODETECT": "0"}
        prefix = ["unshare", "--user", "--map-root-user", "sh", "-c",
                  'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"', "sh"]
        outcome = _run_server(prefix, sys.executable, folder, 2, env)
        assert outcome["status"] == "Failed"
        assert outcome["reason"] == ("The job's private network could not be made: this kernel allows no user "
                                     "namespaces (/proc/sys/user/max_user_namespaces is 0)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_job_network_always_gives_a_single_host_job_its_own_network(tmp_path, host_service):
    """``job-network = "always"``: one host, its own name and namespace; smlocal's port only (the
    policy's, whatever the job's environment names)."""
    from smlocal.runtime.backends.base import RunControl, RunSpec, SandboxPolicy
    from smlocal.runtime.backends.process import ProcessBackend
    from smlocal.runtime.job import run_hosts

    port, accepted = host_service
    gateway = socket.create_server(("127.0.0.1", 0))  # stands for smlocal's port named in the environment
    threading.Thread(target=lambda: gateway.accept()[0].sendall(b"gateway\n"), daemon=True).start()
    script = (f"import socket\nprint(socket.gethostname(), socket.gethostbyname('algo-1'))\n"
              f"print(socket.create_connection(('127.0.0.1', {gateway.getsockname()[1]})).recv(99))\n"
              f"try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    print('reached')\n"
              f"except OSError as exc:\n    print(type(exc).__name__)\n")
    folder = tmp_path / "jobs" / "training" / "one" / "algo-1"
    folder.mkdir(parents=True)
    backend = ProcessBackend(SandboxPolicy(hidden=(tmp_path,), job_network="always",
                                           relayed_endpoints=(("127.0.0.1", gateway.getsockname()[1]),)))
    spec = RunSpec(command=(sys.executable, "-c", script), opt_ml=folder,
                   env={"PATH": os.environ["PATH"], "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"})
    lines: list[str] = []
    results, cause = run_hosts(backend, [spec], [lines.append], RunControl(), 60)
    gateway.close()
    assert cause is None and results[0].exit_code == 0, results[0].stderr_tail
    assert lines == ["algo-1 10.200.0.1", "b'gateway\\n'", "ConnectionRefusedError"]
    assert accepted == []


def test_holders_keep_no_socket_once_their_relay_sockets_are_handed_over():
    from smlocal.runtime.backends.jobnet import JobNetwork, network_problem

    if network_problem():
        _unavailable(network_problem())
    with JobNetwork(("algo-1", "algo-2"), (("127.0.0.1", 4566), ("127.0.0.1", 4567))) as network:
        for name in ("algo-1", "algo-2"):
            holder = Path(network.host(name).net_ns).parent.parent
            targets = [os.readlink(fd) for fd in (holder / "fd").iterdir()]
            assert not [t for t in targets if t.startswith("socket:")], (name, targets)


def test_a_server_that_dies_leaves_no_part_of_a_job_network():
    folder = Path(tempfile.mkdtemp(prefix="smlocal-netcrash-"))
    name = unique("netcrash")
    marker = f"training/{name}"
    env = {**os.environ, "SMLOCAL_RUNTIME_DIR": str(folder / "run"), "SMLOCAL_AUTODETECT": "0"}
    server = subprocess.Popen([*_server_argv(sys.executable, folder, 2, name, {"HOLD": "600"}), "crash"], env=env,
                              stdout=subprocess.PIPE, text=True, cwd=folder)
    try:
        assert server.stdout.readline().strip() == "training"
        deadline = time.time() + 60
        while len(_job_processes(marker)) < 5 and time.time() < deadline:  # switch, 2 holders, 2 hosts (and more)
            time.sleep(0.2)
        running = _job_processes(marker)
        switches = [p for p in running if b"jobnet_switch.py" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(running) >= 5 and len(switches) == 3, running  # the switch and its two holders
        server.kill()
        server.wait()
        deadline = time.time() + 30
        while _job_processes(marker) and time.time() < deadline:
            time.sleep(0.2)
        assert _job_processes(marker) == []
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(folder, ignore_errors=True)
