"""Shared by the sandbox tests: a data dir laid out as the runtime lays it out, run on the real backend."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from smlocal.runtime.backends.base import RunControl, RunSpec, SandboxPolicy
from smlocal.runtime.backends.process import ProcessBackend


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

