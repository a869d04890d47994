"""MPI across a job's hosts without SSH: a launch agent that takes SSH's place for ``mpirun``.

The SageMaker images run the ``mpi`` (and ``pytorchddp``) distributions with SSH: every worker host
starts ``sshd`` and waits; the first distribution host waits until each worker's port 22 answers,
runs ``mpirun``, whose rsh launcher starts Open MPI's daemon (``orted``) on each worker over SSH,
and afterwards tells every worker it is done (``sagemaker_training.mpi``). smlocal's hosts have no
SSH, so this module plays both ends over the job's private network, with the same steps:

``worker``
    Listens on port 22 of its host (the port sshd has there) and runs what ``mpirun`` asks with
    ``/bin/sh -c`` in the host's own environment (as sshd does with the ``/etc/environment`` the
    toolkit writes), relaying its output; it exits once the master says the run is over.
``master``
    Waits for every worker's agent, runs the ``mpirun`` command it is given with this module as
    Open MPI's rsh agent (``OMPI_MCA_plm_rsh_agent``), tells the workers it is done and exits with
    ``mpirun``'s exit code.
``rsh``
    What ``mpirun`` runs instead of ``ssh HOST COMMAND...``: the command runs on HOST's agent, its
    output comes back, and its exit code is this process's; when this process ends early (``mpirun``
    kills it), the command is ended on the host.

Every request carries the job's token (``SMLOCAL_MPI_TOKEN``, one per job), so nothing but the job's
own hosts can start a process through an agent. The module runs inside the job's sandbox with the
job's interpreter, so it uses the standard library only and is run by its path, never imported
from smlocal.
"""

from __future__ import annotations

import hmac
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

PORT = 22  # sshd's port on a SageMaker host
TOKEN_ENV = "SMLOCAL_MPI_TOKEN"
RSH_AGENT_ENV = "OMPI_MCA_plm_rsh_agent"
CONNECT_SECONDS = 120.0  # how long a host waits for a peer's agent to answer
STDOUT, STDERR, EXIT = 1, 2, 0
_HEADER = struct.Struct("!BI")
_MAX_REQUEST = 1 << 20


def say(message: str) -> None:
    """One line in the job log (the toolkit logs these steps too)."""
    sys.stderr.write(f"smlocal mpi: {message}\n")
    sys.stderr.flush()


def _token() -> str:
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        raise SystemExit(f"smlocal mpi: {TOKEN_ENV} is not set")
    return token


def _send_frame(sock: socket.socket, lock: threading.Lock, kind: int, data: bytes) -> None:
    with lock:
        sock.sendall(_HEADER.pack(kind, len(data)) + data)


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = sock.recv(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_request(conn: socket.socket) -> dict | None:
    buffer = b""
    while b"\n" not in buffer:
        chunk = conn.recv(65536)
        if not chunk or len(buffer) + len(chunk) > _MAX_REQUEST:
            return None
        buffer += chunk
    try:
        request = json.loads(buffer.split(b"\n", 1)[0])
    except ValueError:
        return None
    return request if isinstance(request, dict) else None


def _connect(host: str, port: int, deadline: float) -> socket.socket:
    """A connection to ``host``'s agent, retried until ``deadline`` (the peer may be starting)."""
    while True:
        try:
            return socket.create_connection((host, port), timeout=5)
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise SystemExit(f"smlocal mpi: the launch agent on {host}:{port} did not answer: {exc}")
            time.sleep(0.2)


def _request(host: str, port: int, request: dict, deadline: float) -> socket.socket:
    sock = _connect(host, port, deadline)
    sock.settimeout(None)
    sock.sendall(json.dumps({**request, "token": _token()}).encode() + b"\n")
    return sock


# --- worker ---------------------------------------------------------------------------------------

class _Worker:
    def __init__(self, port: int) -> None:
        self.token = _token()
        # every address of the host's own network namespace (its peers reach it on eth0)
        self.listener = socket.create_server((os.environ.get("SMLOCAL_MPI_BIND", "0.0.0.0"), port), backlog=64)
        self.finished = threading.Event()
        self.active: set[subprocess.Popen] = set()
        self.lock = threading.Lock()

    def serve(self) -> int:
        self.listener.settimeout(0.5)
        while not self.finished.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()
        self.listener.close()
        deadline = time.monotonic() + 10  # mpirun has ended: its daemons end on their own
        while time.monotonic() < deadline:
            with self.lock:
                if not self.active:
                    break
            time.sleep(0.1)
        with self.lock:
            for process in self.active:
                _kill_group(process)
        return 0

    def _session(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            request = _read_request(conn)
            if request is None or not hmac.compare_digest(str(request.get("token", "")).encode(),
                                                          self.token.encode()):
                return  # not from this job's hosts: nothing runs
            conn.settimeout(None)
            op = request.get("op")
            if op == "ping":
                conn.sendall(b"ok\n")
            elif op == "finish":
                say("the MPI run has finished on the master host")
                conn.sendall(b"ok\n")
                self.finished.set()
            elif op == "exec" and isinstance(request.get("command"), str):
                self._exec(conn, request["command"])

    def _exec(self, conn: socket.socket, command: str) -> None:
        send_lock = threading.Lock()
        process = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, start_new_session=True)
        with self.lock:
            self.active.add(process)

        def pump(stream, kind: int) -> None:
            for chunk in iter(lambda: stream.read1(65536), b""):
                try:
                    _send_frame(conn, send_lock, kind, chunk)
                except OSError:
                    return

        def watch_caller() -> None:  # the caller went away (mpirun ended its rsh): end the command
            try:
                while conn.recv(4096):
                    pass
            except OSError:
                pass
            if process.poll() is None:
                _kill_group(process)

        pumps = [threading.Thread(target=pump, args=(process.stdout, STDOUT), daemon=True),
                 threading.Thread(target=pump, args=(process.stderr, STDERR), daemon=True)]
        for thread in pumps:
            thread.start()
        threading.Thread(target=watch_caller, daemon=True).start()
        code = process.wait()
        for thread in pumps:
            thread.join(timeout=5)
        with self.lock:
            self.active.discard(process)
        try:
            _send_frame(conn, send_lock, EXIT, struct.pack("!i", code))
        except OSError:
            pass


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except OSError:
        pass


def worker(port: int, master: str) -> int:
    say(f"worker host: the launch agent listens on port {port} for {master}'s mpirun")
    return _Worker(port).serve()


# --- rsh (what mpirun runs for ssh) ---------------------------------------------------------------

def rsh(argv: list[str], port: int) -> int:
    """``ssh [options] HOST COMMAND...``: ssh's options are accepted and ignored."""
    args = list(argv)
    while args and args[0].startswith("-"):
        args.pop(0)
    if len(args) < 2:
        raise SystemExit("smlocal mpi: usage: rsh HOST COMMAND...")
    host, command = args[0], " ".join(args[1:])  # ssh joins its arguments for the remote shell
    sock = _request(host, port, {"op": "exec", "command": command}, time.monotonic() + CONNECT_SECONDS)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(143))
    outputs = {STDOUT: sys.stdout.buffer, STDERR: sys.stderr.buffer}
    with sock:
        while True:
            header = _recv_exact(sock, _HEADER.size)
            if header is None:
                return 255  # ssh's code when the connection is lost
            kind, size = _HEADER.unpack(header)
            data = _recv_exact(sock, size) if size else b""
            if data is None:
                return 255
            if kind == EXIT:
                return struct.unpack("!i", data)[0] if len(data) == 4 else 255
            stream = outputs.get(kind)
            if stream is not None:
                stream.write(data)
                stream.flush()


# --- master ---------------------------------------------------------------------------------------

def _ask(host: str, port: int, op: str, deadline: float) -> bool:
    try:
        with _request(host, port, {"op": op}, deadline) as sock:
            sock.settimeout(10)
            return sock.recv(3) == b"ok\n"
    except (OSError, SystemExit):
        return False


def master(workers: list[str], port: int, command: list[str]) -> int:
    say(f"waiting for the MPI workers' launch agents: {', '.join(workers)}")
    for host in workers:
        if not _ask(host, port, "ping", time.monotonic() + CONNECT_SECONDS):
            say(f"worker {host} did not answer on port {port}")
            return 1
        say(f"worker {host} available for communication")
    env = dict(os.environ)
    env[RSH_AGENT_ENV] = f"{sys.executable} {os.path.abspath(__file__)} rsh"
    process = subprocess.Popen(command, env=env)
    forward = lambda signum, _frame: process.send_signal(signum)  # noqa: E731 - the job's stop
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = process.wait()
    for host in workers:  # the toolkit's status file on each worker: the run is over
        if not any(_ask(host, port, "finish", time.monotonic() + 5) for _ in range(5)):
            say(f"could not tell {host} that the run finished")
    return code


def main(argv: list[str]) -> int:
    if not argv:
        raise SystemExit("smlocal mpi: usage: worker MASTER | master WORKERS -- COMMAND... | rsh HOST COMMAND...")
    mode, rest = argv[0], argv[1:]
    port = int(os.environ.get("SMLOCAL_MPI_PORT", PORT))
    if mode == "worker" and len(rest) == 1:
        return worker(port, rest[0])
    if mode == "master" and len(rest) >= 3 and rest[1] == "--":
        return master([h for h in rest[0].split(",") if h], port, rest[2:])
    if mode == "rsh":
        return rsh(rest, port)
    raise SystemExit(f"smlocal mpi: unknown use: {' '.join(argv)}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
