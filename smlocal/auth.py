"""Credentials, at the bottom of the layers: smlocal's key pair, S3 credentials and the client environment.

Everything that needs to know which keys smlocal answers to (the server, the runtime that gives a
job its environment, the CLI, the pytest plugin) imports them from here; this module imports only
:mod:`smlocal.config`, so the runtime never reaches the client or server side for a key.
"""

from __future__ import annotations

import os
from pathlib import Path

from smlocal.config import DEFAULT_ROLE_NAME, Settings

# smlocal's own key pair: what its clients sign with (on loopback any key pair is accepted)
CLIENT_ACCESS_KEY = "smlocal"
CLIENT_SECRET_KEY = "smlocal-secret"
MINIO_DEFAULT_CREDENTIALS = ("minioadmin", "minioadmin")
HOOKS_DIR = Path(__file__).parent / "_hooks"


def s3_credentials(settings: Settings) -> tuple[str, str]:
    """Credentials for S3: smlocal's own for the embedded moto, the store's for an external one."""
    if not settings.s3_endpoint:
        return CLIENT_ACCESS_KEY, CLIENT_SECRET_KEY
    return (
        os.environ.get("SMLOCAL_S3_ACCESS_KEY_ID", MINIO_DEFAULT_CREDENTIALS[0]),
        os.environ.get("SMLOCAL_S3_SECRET_ACCESS_KEY", MINIO_DEFAULT_CREDENTIALS[1]),
    )


def client_environment(endpoint: str, settings: Settings) -> dict[str, str]:
    """Environment variables that send every AWS client to smlocal.

    * ``AWS_ENDPOINT_URL`` for every service (botocore ≥ 1.31 honours it), and
      ``AWS_ENDPOINT_URL_S3`` when S3 is an external store;
    * region and credentials (with an external store, its credentials: moto accepts any);
    * ``PYTHONPATH`` gains smlocal's site hook, which redirects SDK clients built with explicit
      ``*.amazonaws.com`` endpoints (the SDK's regional STS client) to smlocal and, unless
      ``SMLOCAL_FAST_POLL=0``, shortens SDK/boto3 waiter sleeps so local jobs are seen finishing at once.
    """
    key, secret = s3_credentials(settings)
    role_arn = f"arn:aws:iam::{settings.account_id}:role/{DEFAULT_ROLE_NAME}"
    env = {
        "SMLOCAL_ENDPOINT": endpoint,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": settings.region,
        "AWS_REGION": settings.region,
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "SMLOCAL_ROLE_ARN": role_arn,
        "SAGEMAKER_ROLE_ARN": role_arn,
    }
    if settings.s3_endpoint:
        env["AWS_ENDPOINT_URL_S3"] = settings.s3_client_endpoint or settings.s3_endpoint
    existing = os.environ.get("PYTHONPATH")
    env["PYTHONPATH"] = str(HOOKS_DIR) + (os.pathsep + existing if existing else "")
    return env


def runtime_dir() -> Path:
    """Where running servers record their endpoint and admin secret (created mode 0700 on use).

    ``SMLOCAL_RUNTIME_DIR``, else ``$XDG_RUNTIME_DIR/smlocal``, else ``~/.smlocal/run``. Job
    sandboxes never see this folder (the process backend mounts an empty one over it).
    """
    explicit = os.environ.get("SMLOCAL_RUNTIME_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "smlocal"
    return Path.home() / ".smlocal" / "run"
