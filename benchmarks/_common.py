"""Shared helpers for benchmarks: an emulator in a temp dir, percentiles, JSON results, a job's end."""

from __future__ import annotations

import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
    }


def write(name: str, data: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    data = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()}, **data}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    print(json.dumps(data, indent=2))
    return path


def wait_training(sm, name: str, poll: float = 0.005) -> dict:
    """Polls training job ``name`` every ``poll`` seconds until it leaves InProgress; its description, Completed."""
    while True:
        job = sm.describe_training_job(TrainingJobName=name)
        if job["TrainingJobStatus"] != "InProgress":
            break
        time.sleep(poll)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    return job


def emulator():
    from smlocal.config import load_settings
    from smlocal.server import Emulator

    return Emulator(load_settings(data_dir=Path(tempfile.mkdtemp(prefix="smlocal-bench-"))))
