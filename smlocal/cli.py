"""The `smlocal` command: one thin layer over the emulator and its API."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from rich.text import Text

from smlocal import __version__
from smlocal.cli_tables import print_table, render, status_text


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    level = "INFO" if getattr(args, "verbose", False) else os.environ.get("SMLOCAL_LOG_LEVEL", "WARNING")
    logging.basicConfig(level=level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smlocal", description=__doc__)
    parser.add_argument("--version", action="version", version=f"smlocal {__version__}")
    sub = parser.add_subparsers(dest="command")

    up = sub.add_parser("up", help="run the emulator in the foreground")
    _server_flags(up)
    up.add_argument("--s3", choices=["durable", "memory"], default=None,
                    help="S3 kept in DATA_DIR/s3 across restarts (durable, the default; also keeps IAM and "
                         "CloudWatch Logs) or in memory (SMLOCAL_S3); ignored with --s3-endpoint")
    up.set_defaults(func=cmd_up)

    ex = sub.add_parser("exec", help="run a command against smlocal (a running one, or embedded)")
    _server_flags(ex)
    _verbose_flag(ex)
    ex.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    ex.set_defaults(func=cmd_exec)

    run = sub.add_parser("run", help="run a bundled workflow (abalone, sklearn-train, ...)")
    _server_flags(run)
    _verbose_flag(run)
    run.add_argument("workflow")
    run.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", type=_name_value,
                     help="workflow parameter (repeatable)")
    run.set_defaults(func=cmd_run)

    console = sub.add_parser("console", help="print the URL of the running emulator's browser console",
                             description="Prints the console URL of the running smlocal (SMLOCAL_ENDPOINT, else "
                                         "the default port); exit code 1 if none runs.")
    console.add_argument("--open", action="store_true", help="also open it in the web browser")
    console.set_defaults(func=cmd_console)

    jobs = sub.add_parser("jobs", help="list jobs of a running emulator")
    jobs.add_argument("--max", type=int, default=50)
    jobs.set_defaults(func=cmd_jobs)

    logs = sub.add_parser("logs", help="print a job's logs")
    logs.add_argument("job")
    logs.add_argument("--follow", "-f", action="store_true")
    logs.set_defaults(func=cmd_logs)

    promote = sub.add_parser("promote", help="create a pipeline that ran on smlocal in your AWS account",
                             description="Copies a pipeline's definition (and the local S3 objects it reads) "
                                         "to the AWS account of your own credentials, rewriting smlocal's "
                                         "account, role and buckets. Give a bundled WORKFLOW (e.g. abalone) or "
                                         "--pipeline NAME of a running smlocal.")
    _server_flags(promote)
    promote.add_argument("workflow", nargs="?", help="bundled pipeline workflow to define and promote (abalone)")
    promote.add_argument("--to", required=True, choices=["aws"], help="where to promote to")
    promote.add_argument("--pipeline", help="a pipeline of the running smlocal (instead of WORKFLOW)")
    promote.add_argument("--role", required=True, metavar="ROLE_ARN",
                         help="SageMaker execution role in the target account")
    promote.add_argument("--name", help="pipeline name in the target (default: the same)")
    promote.add_argument("--bucket", help="target bucket (default: sagemaker-REGION-ACCOUNT, created if missing)")
    promote.add_argument("--region", help="target region (default: your AWS configuration's)")
    promote.add_argument("--profile", help="AWS profile of the target")
    promote.add_argument("--start", action="store_true", help="start an execution once created")
    promote.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", type=_name_value,
                         help="execution parameter with --start (repeatable)")
    promote.add_argument("--dry-run", action="store_true",
                         help="check and print the plan and the rewritten definition; write nothing")
    promote.set_defaults(func=cmd_promote)

    executions = sub.add_parser("executions", help="list pipeline executions of a running emulator")
    executions.add_argument("--pipeline", help="only this pipeline's executions")
    executions.add_argument("--max", type=int, default=20, help="executions per pipeline")
    executions.set_defaults(func=cmd_executions)

    reset = sub.add_parser("reset", help="forget the SageMaker records of a running emulator",
                           description="POSTs the admin reset with the server's admin token "
                                       "(SMLOCAL_ADMIN_TOKEN, else the record `smlocal up` wrote).")
    reset.add_argument("--all", action="store_true",
                       help="also stop running jobs and wipe S3, IAM and CloudWatch Logs")
    reset.set_defaults(func=cmd_reset)

    images = sub.add_parser("images", help="list smlocal's framework images, or build them (images build)")
    images_sub = images.add_subparsers(dest="images_command")
    images_build = images_sub.add_parser("build", help="build framework images into the local Docker engine")
    images_build.add_argument("names", nargs="*", metavar="NAME", help="sklearn, xgboost (default: all)")
    images_build.add_argument("--base-image", default=None,
                              help="BASE_IMAGE build argument (default $SMLOCAL_BASE_IMAGE or python:3.11-slim)")
    images_build.add_argument("--data-dir", default=None, help="where downloaded wheels are kept")
    images.set_defaults(func=cmd_images)

    steps = sub.add_parser("steps", help="show the steps of a pipeline execution")
    steps.add_argument("execution_arn")
    steps.set_defaults(func=cmd_steps)
    return parser


def _verbose_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="show smlocal's and the libraries' log lines (botocore, the SageMaker SDK), "
                             "quiet by default")


def _name_value(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key, value


def _server_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--s3-endpoint", default=None, help="external S3-compatible store (e.g. MinIO)")
    parser.add_argument("--s3-client-endpoint", default=None,
                        help="the store's address as clients see it, if different (e.g. in compose)")
    parser.add_argument("--max-parallel-jobs", type=int, default=None)
    parser.add_argument("--backend", choices=["process", "docker"], default=None,
                        help="how jobs run: sandboxed local processes (process, the default) or containers of "
                             "their images in the local Docker engine (docker); also SMLOCAL_BACKEND, or "
                             "backend = \"docker\" in [tool.smlocal] (and per image)")
    parser.add_argument("--allow-origin", action="append", default=None, metavar="ORIGIN",
                        help="a browser origin (scheme://host[:port]) allowed to call smlocal (repeatable; "
                             "default: none)")
    parser.add_argument("--allow-host", action="append", default=None, metavar="NAME",
                        help="a Host name accepted besides localhost, IP addresses and the bound address "
                             "(repeatable; its subdomains too)")


def _flags(args) -> dict:
    return {
        "host": args.host,
        "s3_client_endpoint": args.s3_client_endpoint,
        "port": args.port,
        "data_dir": Path(args.data_dir) if args.data_dir else None,
        "s3_endpoint": args.s3_endpoint,
        "max_parallel_jobs": args.max_parallel_jobs,
        "backend": getattr(args, "backend", None),
        "allow_origins": tuple(args.allow_origin) if args.allow_origin else None,
        "allowed_hosts": tuple(args.allow_host) if args.allow_host else None,
    }


def cmd_up(args) -> int:
    from smlocal.cli_console import console_link
    from smlocal.config import load_settings
    from smlocal.s3store import DurableS3Store, S3StoreError
    from smlocal.server import Emulator
    from smlocal.service.store import DataDirInUse

    flags = _flags(args)
    if flags["port"] is None and not os.environ.get("SMLOCAL_PORT"):
        flags["port"] = 5555
    if flags["data_dir"] is None and not os.environ.get("SMLOCAL_DATA_DIR"):
        flags["data_dir"] = Path.cwd() / ".smlocal"
    settings = load_settings(**flags)
    mode = args.s3 or os.environ.get("SMLOCAL_S3") or "durable"
    if mode not in ("durable", "memory"):
        print(f"smlocal up: SMLOCAL_S3 must be durable or memory, not {mode!r}", file=sys.stderr)
        return 2
    store = DurableS3Store(settings.data_dir, region=settings.region) \
        if mode == "durable" and not settings.s3_endpoint else None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        emulator = Emulator(settings, s3_store=store).start()  # takes the data dir, then starts the store
    except (DataDirInUse, S3StoreError) as exc:
        print(f"smlocal up: {exc}", file=sys.stderr)
        return 1
    try:
        kept = f"durable in {store.root}" if store else ("external" if settings.s3_endpoint else "in memory")
        print(f"smlocal {__version__} listening on {emulator.endpoint} (data: {settings.data_dir}, "
              f"S3: {emulator.s3_endpoint}, {kept})")
        print("Point clients at it with:")
        for key, value in emulator.client_env().items():
            if key != "PYTHONPATH":
                print(f"  export {key}={value}")
        print(f"  export PYTHONPATH={emulator.client_env()['PYTHONPATH']}   # SDK shims (see README)")
        print("or run a command with: smlocal exec -- COMMAND")
        print(f"Console: {console_link(emulator.endpoint)}")
        print(f"Admin token (reset) in {emulator.record_path} (or set SMLOCAL_ADMIN_TOKEN for clients elsewhere)"
              if emulator.record_path else "Admin token: set SMLOCAL_ADMIN_TOKEN (no record file could be written)",
              flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    finally:
        emulator.stop()
    return 0


def cmd_exec(args) -> int:
    from smlocal.cli_run import quiet_environment
    from smlocal.client import emulator_environment

    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        print("smlocal exec: give a command after --", file=sys.stderr)
        return 2
    with emulator_environment(**_flags(args)) as env:
        try:
            return subprocess.call(cmd, env={**os.environ, **env, **quiet_environment(args.verbose)})
        except FileNotFoundError:
            print(f"smlocal exec: command not found: {cmd[0]}", file=sys.stderr)
            return 127


def cmd_run(args) -> int:
    from smlocal.cli_run import run_workflow
    from smlocal.workflows import WORKFLOWS, workflow_argv

    argv = workflow_argv(args.workflow, dict(args.param))
    if argv is None:
        print(f"smlocal run: unknown workflow {args.workflow!r}; known: {', '.join(sorted(WORKFLOWS))}",
              file=sys.stderr)
        return 2
    return run_workflow(args.workflow, argv, _flags(args), args.verbose)


def cmd_console(args) -> int:
    import webbrowser

    from smlocal.cli_console import console_link

    url = console_link(_running_endpoint())
    print(url, flush=True)
    if args.open and not webbrowser.open(url):
        print("smlocal console: no web browser could be opened here; open the URL above", file=sys.stderr)
        return 1
    return 0


def _running_endpoint() -> str:
    from smlocal.client import running_endpoint

    endpoint = running_endpoint()
    if not endpoint:
        print("smlocal: no running emulator (start `smlocal up` and set SMLOCAL_ENDPOINT, "
              "or use `smlocal exec -- ...`)", file=sys.stderr)
        raise SystemExit(1)
    return endpoint


def cmd_reset(args) -> int:
    from smlocal.client import AdminCallError, admin_post

    endpoint = _running_endpoint()
    try:
        result = admin_post(endpoint, "reset-all" if args.all else "reset")
    except AdminCallError as exc:
        print(f"smlocal reset: {exc}", file=sys.stderr)
        return 1
    stopped = result.get("stoppedJobs")
    print(f"smlocal at {endpoint} reset" + (f" ({stopped} running job(s) stopped)" if stopped else ""))
    return 0


def _connected_clients():
    import boto3

    from smlocal.auth import CLIENT_ACCESS_KEY, client_secret_key

    endpoint = _running_endpoint()
    session = boto3.session.Session(
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", CLIENT_ACCESS_KEY),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", client_secret_key()),
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    )
    return session.client("sagemaker", endpoint_url=endpoint), session.client("logs", endpoint_url=endpoint)


def cmd_promote(args) -> int:
    from smlocal.client import emulator_environment, running_endpoint
    from smlocal.promote import PromotionError, Request, promote, source_from_env, target_region
    from smlocal.workflows import define_pipeline

    if bool(args.workflow) == bool(args.pipeline):
        print("smlocal promote: give either a WORKFLOW or --pipeline NAME", file=sys.stderr)
        return 2
    params = dict(args.param)
    try:
        region = target_region(args.profile, args.region)
    except PromotionError as exc:
        print(f"smlocal promote: {exc}", file=sys.stderr)
        return 1
    if args.pipeline and not running_endpoint():
        print("smlocal promote: --pipeline needs a running smlocal (`smlocal up`, or SMLOCAL_ENDPOINT)",
              file=sys.stderr)
        return 1
    request = Request(pipeline=args.pipeline or "", role_arn=args.role, target_name=args.name, bucket=args.bucket,
                      region=region, profile=args.profile, start=args.start, parameters=params,
                      dry_run=args.dry_run)
    with emulator_environment(**_flags(args)) as env:
        if args.workflow:
            try:
                request.pipeline = define_pipeline(args.workflow, env, image_region=region)
            except (ValueError, RuntimeError) as exc:
                print(f"smlocal promote: {exc}", file=sys.stderr)
                return 1
        return promote(source_from_env(env), request)


def cmd_jobs(args) -> int:
    from smlocal.cli_run import failure_reason
    from smlocal.client import JOB_KINDS

    sm, _ = _connected_clients()
    jobs = []
    for kind in JOB_KINDS:
        for summary in getattr(sm, kind.list_call)(MaxResults=min(args.max, 100))[kind.summaries_key]:
            detail = failure_reason(sm, kind, summary) or summary.get("SecondaryStatus") or ""
            jobs.append((summary["CreationTime"], kind.kind, summary[kind.name_key], summary[kind.status_key],
                         detail.splitlines()[0] if detail else ""))
    jobs.sort(key=lambda job: job[0], reverse=True)
    rows = [(kind, name, status, created.strftime("%Y-%m-%d %H:%M:%S"), detail)
            for created, kind, name, status, detail in jobs[:args.max]]
    print_table(("TYPE", "NAME", "STATUS", "CREATED", "DETAIL"), rows, status_column=2, shrink_column=4)
    return 0


def cmd_logs(args) -> int:
    from smlocal.client import JOB_KINDS, TERMINAL_JOB_STATUSES
    from smlocal.runtime.logs import job_log_streams, read_log_stream

    sm, logs = _connected_clients()
    tokens: dict[tuple[str, str], str] = {}
    while True:
        found = False
        for kind in JOB_KINDS:
            for stream in job_log_streams(logs, kind.log_group, args.job):
                found = True
                key = (kind.log_group, stream["logStreamName"])
                events, tokens[key] = read_log_stream(logs, *key, tokens.get(key))
                for event in events:
                    print(event["message"], flush=True)
        if not found and not args.follow:
            print(f"smlocal: no logs for job {args.job}", file=sys.stderr)
            return 1
        if not args.follow:
            return 0
        if _job_status(sm, args.job) in TERMINAL_JOB_STATUSES:
            args.follow = False  # one more pass picks up the last lines
            continue
        time.sleep(0.5)


def _job_status(sm, name: str) -> str:
    """The status of the job of any kind called ``name`` ("InProgress" until one is found)."""
    from smlocal.client import JOB_KINDS

    for kind in JOB_KINDS:
        try:
            return getattr(sm, kind.describe_call)(**{kind.name_key: name})[kind.status_key]
        except sm.exceptions.ClientError:
            continue
    return "InProgress"


def cmd_executions(args) -> int:
    sm, _ = _connected_clients()
    names = [args.pipeline] if args.pipeline else [
        p["PipelineName"] for page in sm.get_paginator("list_pipelines").paginate()
        for p in page["PipelineSummaries"]]
    rows = []
    for name in names:
        listed = sm.list_pipeline_executions(PipelineName=name, MaxResults=min(args.max, 100))
        for item in listed["PipelineExecutionSummaries"]:
            rows.append((name, item["PipelineExecutionArn"].rsplit("/", 1)[-1], item["PipelineExecutionStatus"],
                         item["StartTime"].strftime("%Y-%m-%d %H:%M:%S"), item.get("PipelineExecutionDisplayName", ""),
                         item.get("PipelineExecutionFailureReason", "")))
    print_table(("PIPELINE", "EXECUTION", "STATUS", "STARTED", "DISPLAY NAME", "FAILURE"), rows, status_column=2,
                shrink_column=5)
    return 0


def cmd_steps(args) -> int:
    import datetime as dt

    from smlocal.cli_progress import execution_rows
    from smlocal.cli_run import execution_definition, execution_steps

    sm, _ = _connected_clients()
    execution = sm.describe_pipeline_execution(PipelineExecutionArn=args.execution_arn)
    render(Text.assemble(execution["PipelineExecutionArn"], ": ", status_text(execution["PipelineExecutionStatus"]),
                         f" ({execution['FailureReason']})" if execution.get("FailureReason") else ""))
    rows = execution_rows(args.execution_arn, execution_definition(sm, args.execution_arn),
                          execution_steps(sm, args.execution_arn), dt.datetime.now(dt.timezone.utc))
    print_table(("STEP", "STATUS", "SECONDS", "TYPE", "JOB", "DETAIL"),
                [(row.name, row.status, "" if row.seconds is None else f"{row.seconds:.1f}", row.type, row.job,
                  row.detail) for row in rows], status_column=1, shrink_column=5)
    return 0


def cmd_images(args) -> int:
    from smlocal.config import load_settings
    from smlocal.runtime import image_build

    try:
        client = image_build.docker_client()
        if args.images_command == "build":
            images = image_build.resolve_names(args.names)
            base = args.base_image or image_build.default_base_image()
            data_dir = Path(args.data_dir) if args.data_dir else load_settings().data_dir
            for image in images:
                image_build.build(client, image, base_image=base, data_dir=data_dir,
                                  progress=lambda line: print(line, flush=True))
            return 0
        rows = [(status.image.name, status.image.tag, "present" if status.image_id else "missing",
                 status.image_id or "", f"{status.size / 1e6:.0f} MB" if status.size else "",
                 " ".join(f"{repo}:{v}" for repo in status.image.aws_repositories
                          for v in status.image.aws_versions)
                 + "".join(f" {repo}:{tag}" for repo, tag in status.image.legacy_tags))
                for status in image_build.statuses(client)]
        print_table(("NAME", "LOCAL IMAGE", "STATUS", "ID", "SIZE", "SERVES (any region/account)"), rows,
                    status_column=2, shrink_column=5)
        return 0
    except image_build.ImageBuildError as exc:
        print(f"smlocal images: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
