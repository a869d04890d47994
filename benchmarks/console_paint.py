"""Console first paint and data refresh of execution graphs (Chromium through Playwright, loopback).

Two executions, each run to its end: a 30-step pipeline of Condition steps (a binary tree of DependsOn;
the last one's Fail branch not taken) and the abalone pipeline (``smlocal run abalone``'s definition,
real jobs). For each of several fresh page loads we time navigation start → the graph drawn (the page's
``execution-graph-drawn`` mark) and the page's own ``execution-graph-refresh`` measures (one API fetch +
draw), and the size of the shipped assets. Run: ``./dev python benchmarks/console_paint.py [--runs 10]``.
Target: first paint < 300 ms.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import tempfile
import time
from urllib.parse import quote

from _common import summary, write

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def definition(steps: int) -> dict:
    nodes = []
    for i in range(steps - 1):  # the Fail step is the 30th
        nodes.append({"Name": f"Check{i:02d}", "Type": "Condition", "DependsOn": [f"Check{(i - 1) // 2:02d}"] if i else [],
                      "Arguments": {"Conditions": [{"Type": "Equals", "LeftValue": 1, "RightValue": 1}],
                                    "IfSteps": [], "ElseSteps": []}})
    nodes[-1]["Arguments"]["ElseSteps"] = [{"Name": "NeverFails", "Type": "Fail", "Arguments": {"ErrorMessage": "no"}}]
    return {"Version": "2020-12-01", "Parameters": [], "Steps": nodes}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from smlocal.config import load_settings
    from smlocal.server import Emulator

    with Emulator(load_settings(data_dir=tempfile.mkdtemp(prefix="console-paint-"), port=0)) as emu:
        sm = emu.client("sagemaker")
        sm.create_pipeline(PipelineName="console-paint", PipelineDefinition=json.dumps(definition(args.steps)),
                           RoleArn=emu.role_arn)
        arn = sm.start_pipeline_execution(PipelineName="console-paint")["PipelineExecutionArn"]
        wait(sm, arn)
        abalone = abalone_execution(emu)
        results = {}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for label, execution in (("synthetic", arn), ("abalone", abalone)):
                results[label] = measure(page, f"{emu.console_url}#/executions/{quote(execution, safe='')}", args.runs)
            browser.close()
    synthetic = results["synthetic"]
    assert synthetic["steps"] == args.steps, synthetic["steps"]
    write("console_paint", {"steps": args.steps, "first_paint_ms": synthetic["first_paint_ms"],
                            "refresh_ms": synthetic["refresh_ms"], "abalone": results["abalone"],
                            "target_first_paint_ms": 300, "assets": shipped_assets(), "target_assets": ASSET_BUDGET})


def wait(sm, arn: str) -> None:
    while sm.describe_pipeline_execution(PipelineExecutionArn=arn)["PipelineExecutionStatus"] == "Executing":
        time.sleep(0.1)


def abalone_execution(emu) -> str:
    """Runs the abalone pipeline (the definition `smlocal run abalone` builds) to its end; its ARN."""
    import os

    os.environ.update(emu.client_env())
    from smlocal import compat

    compat.install()  # what `smlocal exec` gives a program: the SDK's STS client goes to smlocal too
    import sagemaker

    from smlocal.workflows.abalone import fixtures_dir
    from smlocal.workflows.abalone.main import build_pipeline, upload_data

    session = sagemaker.Session()
    bucket = session.default_bucket()
    input_uri, batch_uri = upload_data(session, bucket, fixtures_dir() / "data")
    role = sagemaker.get_execution_role()
    pipeline = build_pipeline(role, bucket, input_uri, batch_uri, fixtures_dir() / "code")
    pipeline.upsert(role_arn=role)
    arn = pipeline.start().arn
    wait(emu.client("sagemaker"), arn)
    return arn


def measure(page, url: str, runs: int) -> dict:
    page.goto(url)  # warm-up: the browser's first start, Python's first imports
    page.wait_for_selector("body[data-graph-drawn]", state="attached")
    paints, refreshes = [], []
    for _ in range(runs):
        page.goto("about:blank")
        page.goto(url)
        page.wait_for_selector("body[data-graph-drawn]", state="attached")
        count = page.locator("svg.graph g.node").count()
        paints.append(page.evaluate("performance.getEntriesByName('execution-graph-drawn')[0].startTime"))
        refreshes += page.evaluate("performance.getEntriesByName('execution-graph-refresh').map(e => e.duration)")
    return {"steps": count, "first_paint_ms": summary(paints), "refresh_ms": summary(refreshes)}


ASSET_BUDGET = {"bytes": 400_000, "gzipped_bytes": 120_000}  # every shipped console file but the licences


def shipped_assets() -> dict:
    """The console's shipped files (ours and the vendored libraries, licences aside): count, bytes, gzip -9 bytes."""
    from smlocal.gateway.console import STATIC_ROOT

    files = [p for p in STATIC_ROOT.rglob("*") if p.is_file() and p.name != "LICENSE"]
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files),
            "gzipped_bytes": sum(len(gzip.compress(p.read_bytes(), 9)) for p in files)}


if __name__ == "__main__":
    main()
