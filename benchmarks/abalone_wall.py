"""`smlocal run abalone` wall time versus the same four programs run bare, one after the other.

Bare: preprocessing.py → XGBoost training through smlocal's algorithm module (the code the training
job runs) → evaluation.py → batch prediction of the batch file with the trained model, each as its
own ``python`` process on local files. smlocal: the whole `smlocal run abalone` command (emulator
start, SDK pipeline definition, uploads, the pipeline execution, the report) and, separately, the
execution alone (StartPipelineExecution → Succeeded, as the program prints it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import write  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures" / "abalone"
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
HYPERPARAMETERS = {"objective": "reg:linear", "num_round": "50", "max_depth": "5", "eta": "0.2", "gamma": "4",
                   "min_child_weight": "6", "subsample": "0.7"}
PREDICT = """
import pathlib, sys
from smlocal.runtime.algorithms import xgboost_algo
model = xgboost_algo.load_model(pathlib.Path(sys.argv[1]))
body, _ = xgboost_algo.predict(model, pathlib.Path(sys.argv[2]).read_bytes(), None, batch=True)
pathlib.Path(sys.argv[3]).write_bytes(body)
"""


def _python(*args: str, cwd: Path, env: dict | None = None) -> None:
    subprocess.run([sys.executable, *args], cwd=cwd, check=True, env={**os.environ, **(env or {})},
                   stdout=subprocess.DEVNULL)


def bare_run() -> dict[str, float]:
    """The four stages as plain processes; seconds per stage and in total."""
    work = Path(tempfile.mkdtemp(prefix="abalone-bare-"))
    shutil.copyfile(FIXTURES / "data" / "abalone.csv", work / "abalone-dataset.csv")
    stages: dict[str, float] = {}
    start = time.perf_counter()
    _python(str(FIXTURES / "code" / "preprocessing.py"), "--input", "abalone-dataset.csv", "--output-dir", "split",
            cwd=work)
    stages["preprocess"] = time.perf_counter() - start

    t = time.perf_counter()
    opt_ml = work / "opt_ml"
    (opt_ml / "input" / "config").mkdir(parents=True)
    (opt_ml / "model").mkdir()
    for channel in ("train", "validation"):
        (opt_ml / "input" / "data" / channel).mkdir(parents=True)
        shutil.copyfile(work / "split" / channel / f"{channel}.csv", opt_ml / "input" / "data" / channel / f"{channel}.csv")
    (opt_ml / "input" / "config" / "hyperparameters.json").write_text(json.dumps(HYPERPARAMETERS))
    (opt_ml / "input" / "config" / "inputdataconfig.json").write_text(json.dumps(
        {c: {"ContentType": "text/csv", "TrainingInputMode": "File"} for c in ("train", "validation")}))
    _python("-m", "smlocal.runtime.algorithms.xgboost_algo", "train", cwd=work,
            env={"SMLOCAL_OPT_ML": str(opt_ml), "SMLOCAL_ALGO_VERSION": "1.0-1"})
    with tarfile.open(work / "model.tar.gz", "w:gz") as archive:
        for item in (opt_ml / "model").iterdir():
            archive.add(item, arcname=item.name)
    stages["train"] = time.perf_counter() - t

    t = time.perf_counter()
    _python(str(FIXTURES / "code" / "evaluation.py"), "--model", "model.tar.gz", "--test", "split/test/test.csv",
            "--output-dir", "evaluation", cwd=work)
    stages["evaluate"] = time.perf_counter() - t

    t = time.perf_counter()
    _python("-c", PREDICT, str(opt_ml / "model"), str(FIXTURES / "data" / "abalone-batch.csv"), "predictions.csv",
            cwd=work)
    stages["transform"] = time.perf_counter() - t
    stages["total"] = time.perf_counter() - start
    shutil.rmtree(work, ignore_errors=True)
    return stages


def smlocal_run() -> dict[str, float]:
    """`smlocal run abalone` in a clean environment; whole command and execution-only seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SMLOCAL_", "SAGEMAKER_"))}
    env["SMLOCAL_AUTODETECT"] = "0"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "smlocal.cli", "run", "abalone"], capture_output=True, text=True,
                          env=env, check=False)
    total = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"smlocal run abalone failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    marks = re.findall(r"\[\s*([0-9.]+)s\] execution Succeeded", done.stdout)
    return {"total": total, "execution": float(marks[-1]) if marks else float("nan")}


def main() -> None:
    bare, local = [], []
    load_before = os.getloadavg()
    bare_run()  # warm the page cache and the interpreter's imports once
    for _ in range(RUNS):
        bare.append(bare_run())
        local.append(smlocal_run())
    median = lambda rows, key: statistics.median(r[key] for r in rows)  # noqa: E731
    result = {
        "runs": RUNS,
        "bare_seconds": {k: median(bare, k) for k in bare[0]},
        "smlocal_seconds": {k: median(local, k) for k in local[0]},
        "raw": {"bare": bare, "smlocal": local},
    }
    result["ratio_total"] = result["smlocal_seconds"]["total"] / result["bare_seconds"]["total"]
    result["ratio_execution"] = result["smlocal_seconds"]["execution"] / result["bare_seconds"]["total"]
    result["target_ratio"] = 1.3
    result["load_average_1m"] = {"before": load_before[0], "after": os.getloadavg()[0]}
    write("abalone_wall", result)


if __name__ == "__main__":
    main()
