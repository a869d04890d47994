"""Cached Python environments for a job's requirements.txt, as the framework containers install it.

The containers run ``pip install -r requirements.txt`` from the code dir before the entry point.
smlocal does the same once per distinct requirements (and local packages they name) and reuses the
environment: a venv layered over the interpreter running smlocal, so the framework libraries stay
visible and the requirements take precedence.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path
from typing import Callable

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


class RequirementsError(Exception):
    """pip could not install the requirements; the message becomes the FailureReason."""


def requirements_key(code_dir: Path) -> str:
    req = code_dir / "requirements.txt"
    digest = hashlib.sha256(req.read_bytes())
    digest.update(sys.version.encode())
    for line in req.read_text().splitlines():
        entry = line.strip()
        if entry.startswith((".", "/")) and not entry.startswith("#"):
            local = (code_dir / entry).resolve()
            if not local.is_relative_to(code_dir.resolve()):
                continue
            for path in sorted(local.rglob("*")) if local.is_dir() else [local]:
                if path.is_file():  # content and place inside the code dir, not the job's folder
                    digest.update(path.relative_to(code_dir.resolve()).as_posix().encode())
                    digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def pip_environment(environ) -> dict[str, str]:
    """The server's environment for pip, without smlocal's secrets or the developer's AWS keys.

    pip runs outside the job sandbox and a requirement's build may run its own code: it keeps what
    reaching an index needs (proxies, CA bundles, ``PIP_*``), never ``SMLOCAL_*`` or ``AWS_*``.
    """
    env = {k: v for k, v in environ.items() if not k.startswith(("SMLOCAL_", "AWS_"))}
    env["PIP_NO_WARN_SCRIPT_LOCATION"] = "1"
    return env


def python_for_requirements(code_dir: Path, cache_root: Path, log: Callable[[str], None]) -> str:
    """The interpreter that has ``code_dir/requirements.txt`` installed (building it if new)."""
    key = requirements_key(code_dir)
    env_dir = cache_root / key
    python = env_dir / "bin" / "python"
    with _locks_guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        if (env_dir / ".complete").exists():
            log(f"Using cached environment for requirements.txt ({key})")
            return str(python)
        log("Installing dependencies from requirements.txt:")
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--clear", str(env_dir)], check=True)
        site = Path(
            subprocess.check_output(
                [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
            ).strip()
        )
        (site / "_smlocal_base.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        # pip targets the new venv; packages of the base stay untouched ("outside environment")
        cmd = [sys.executable, "-m", "pip", "--python", str(python), "install",
               "--disable-pip-version-check", "--no-input", "-r", "requirements.txt"]
        log(" ".join(["python", "-m", "pip", "install", "-r", "requirements.txt"]))
        proc = subprocess.run(cmd, cwd=code_dir, capture_output=True, text=True,
                              env=pip_environment(os.environ))
        for line in (proc.stdout + proc.stderr).splitlines():
            log(line)
        if proc.returncode != 0:
            raise RequirementsError(
                "InstallRequirementsError:\nExitCode "
                f"{proc.returncode}\nErrorMessage \"{_last_lines(proc.stderr)}\"\n"
                f"Command \"{' '.join(['python', '-m', 'pip', 'install', '-r', 'requirements.txt'])}\""
            )
        (env_dir / ".complete").write_text(key)
        return str(python)


def _last_lines(text: str, count: int = 5) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(lines[-count:])
