"""Console first paint and data refresh of a 30-step execution graph (Chromium through Playwright, loopback).

A 30-step pipeline of Condition steps (a binary tree of DependsOn; the last one's Fail branch not taken)
runs to its end; then, for each of several fresh page loads, we time navigation start → the graph drawn
(the page's ``execution-graph-drawn`` mark) and the page's own ``execution-graph-refresh`` measures (one
API fetch + draw), and the size of the shipped assets. Run: ``./dev python benchmarks/console_paint.py [--runs 10]``. Target: first paint < 300 ms.
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
        while sm.describe_pipeline_execution(PipelineExecutionArn=arn)["PipelineExecutionStatus"] == "Executing":
            time.sleep(0.1)
        url = f"{emu.console_url}#/executions/{quote(arn, safe='')}"
        paints, refreshes = [], []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)  # warm-up: the browser's first start, Python's first imports
            page.wait_for_selector("body[data-graph-drawn]", state="attached")
            for _ in range(args.runs):
                page.goto("about:blank")
                page.goto(url)
                page.wait_for_selector("body[data-graph-drawn]", state="attached")
                count = page.locator("svg.graph g.node").count()
                assert count == args.steps, count
                paints.append(page.evaluate("performance.getEntriesByName('execution-graph-drawn')[0].startTime"))
                refreshes += page.evaluate("performance.getEntriesByName('execution-graph-refresh').map(e => e.duration)")
            browser.close()
    write("console_paint", {"steps": args.steps, "first_paint_ms": summary(paints),
                            "refresh_ms": summary(refreshes), "target_first_paint_ms": 300,
                            "assets": shipped_assets(), "target_assets": ASSET_BUDGET})


ASSET_BUDGET = {"bytes": 400_000, "gzipped_bytes": 120_000}  # every shipped console file but the licences


def shipped_assets() -> dict:
    """The console's shipped files (ours and the vendored libraries, licences aside): count, bytes, gzip -9 bytes."""
    from smlocal.gateway.console import STATIC_ROOT

    files = [p for p in STATIC_ROOT.rglob("*") if p.is_file() and p.name != "LICENSE"]
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files),
            "gzipped_bytes": sum(len(gzip.compress(p.read_bytes(), 9)) for p in files)}


if __name__ == "__main__":
    main()
