"""`smlocal executions` and `smlocal steps` against a running `smlocal up`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import boto3

from conftest import ROLE

SMLOCAL = [sys.executable, "-m", "smlocal.cli"]


def test_executions_and_steps_tables(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SMLOCAL_"))}
    server = subprocess.Popen([*SMLOCAL, "up", "--port", "0", "--data-dir", str(tmp_path)], stdout=subprocess.PIPE,
                              text=True, env=env)
    try:
        endpoint = server.stdout.readline().split("listening on ", 1)[1].split()[0]
        sm = boto3.client("sagemaker", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="smlocal",
                          aws_secret_access_key="smlocal-secret")
        steps = [{"Name": "Gate", "Type": "Condition", "Arguments": {
            "Conditions": [{"Type": "Equals", "LeftValue": 1, "RightValue": 2}], "IfSteps": [],
            "ElseSteps": [{"Name": "Stop", "Type": "Fail", "Arguments": {"ErrorMessage": "not equal"}}]}}]
        sm.create_pipeline(PipelineName="cli-pipeline", RoleArn=ROLE,
                           PipelineDefinition=json.dumps({"Version": "2020-12-01", "Steps": steps}))
        arn = sm.start_pipeline_execution(PipelineName="cli-pipeline")["PipelineExecutionArn"]
        while sm.describe_pipeline_execution(PipelineExecutionArn=arn)["PipelineExecutionStatus"] == "Executing":
            time.sleep(0.1)
        client_env = {**env, "SMLOCAL_ENDPOINT": endpoint}
        listed = subprocess.run([*SMLOCAL, "executions"], capture_output=True, text=True, env=client_env, check=True)
        lines = listed.stdout.splitlines()
        assert lines[0].split() == ["PIPELINE", "EXECUTION", "STATUS", "STARTED", "DISPLAY", "NAME", "FAILURE"]
        assert "cli-pipeline" in lines[1] and arn.rsplit("/", 1)[-1] in lines[1] and "Failed" in lines[1]
        shown = subprocess.run([*SMLOCAL, "steps", arn], capture_output=True, text=True, env=client_env, check=True)
        out = shown.stdout.splitlines()
        assert out[0] == f"{arn}: Failed (Step failure: One or multiple steps failed.)"
        assert out[1].split()[:3] == ["STEP", "STATUS", "SECONDS"]
        assert out[2].split()[:2] == ["Gate", "Succeeded"] and out[2].endswith("outcome False")
        assert out[3].split()[:2] == ["Stop", "Failed"] and out[3].endswith("not equal")
    finally:
        server.terminate()
        server.wait(timeout=30)
