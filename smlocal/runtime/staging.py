"""Moving data between S3 and a job's folders: channels in, artefacts out.

Works against any S3 endpoint (the embedded moto or an external MinIO) through boto3.
"""

from __future__ import annotations

import json
import logging
import os
import tarfile
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Callable

from botocore.exceptions import ClientError, ParamValidationError

# what a call to S3 raises for a bad request: the service's answer, or botocore refusing it before sending
_S3_ERRORS = (ClientError, ParamValidationError)

from smlocal.runtime import archives, contract, jobfiles
from smlocal.runtime.archives import StagingError

__all__ = ["S3Stager", "StagingError", "channel_shard", "join_s3", "make_tar_gz", "safe_join", "split_s3_uri"]

logger = logging.getLogger(__name__)
Log = Callable[[str], None]


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise StagingError(f"Invalid S3 URI: {uri}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise StagingError(f"Invalid S3 URI: {uri}")
    return bucket, key


def join_s3(prefix: str, *parts: str) -> str:
    return "/".join([prefix.rstrip("/"), *[p.strip("/") for p in parts if p]])


class S3Stager:
    """Downloads channels and uploads outputs with one boto3 S3 client."""

    def __init__(self, s3_client):
        self.s3 = s3_client

    # ---- listing
    def list_keys(self, uri: str) -> list[str]:
        bucket, prefix = split_s3_uri(uri)
        keys: list[str] = []
        try:
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                keys.extend(obj["Key"] for obj in page.get("Contents", []))
        except _S3_ERRORS as exc:
            raise StagingError(_s3_error(uri, exc)) from exc
        return [k for k in keys if not k.endswith("/")]

    def manifest_entries(self, manifest_uri: str) -> list[tuple[str, str, str]]:
        """(bucket, key, relative path) for each entry of a ManifestFile."""
        bucket, key = split_s3_uri(manifest_uri)
        try:
            manifest = json.loads(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except (*_S3_ERRORS, ValueError) as exc:
            raise StagingError(f"Unable to read manifest file {manifest_uri}: {exc}") from exc
        if not manifest or not isinstance(manifest[0], dict) or "prefix" not in manifest[0]:
            raise StagingError(
                f"Manifest file {manifest_uri} must start with {{\"prefix\": \"s3://...\"}}"
            )
        m_bucket, m_prefix = split_s3_uri(manifest[0]["prefix"])
        return [(m_bucket, m_prefix + rel, rel) for rel in manifest[1:]]

    # ---- downloads
    def download_source(
        self, data_type: str, uri: str, dest: Path, shard: tuple[int, int] | None = None
    ) -> int:
        """Stages an S3DataSource (S3Prefix or ManifestFile) into ``dest``; returns files copied.

        ``shard`` is (host index, host count) for ShardedByS3Key: the objects are dealt out by
        :func:`contract.shard_keys` (a host may get none: its folder is then empty).
        """
        dest.mkdir(parents=True, exist_ok=True)
        if data_type == "ManifestFile":
            entries = self.manifest_entries(uri)
        elif data_type in ("S3Prefix", "AugmentedManifestFile"):
            bucket, prefix = split_s3_uri(uri)
            entries = [(bucket, key, _relative(prefix, key)) for key in self.list_keys(uri)]
        else:
            raise StagingError(f"S3DataType {data_type} is not supported by smlocal")
        if not entries:
            raise StagingError(f"No S3 objects found under S3 URL \"{uri}\" given in input data source. "
                               "Please ensure that the bucket exists in the selected region (us-east-1), "
                               "that objects exist under that S3 prefix, and that the role has access.")
        if shard:
            entries = _dealt(entries, *shard)
        for bucket, key, rel in entries:
            self.download_object(bucket, key, safe_join(dest, rel))
        return len(entries)

    def download_object(self, bucket: str, key: str, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.s3.download_file(bucket, key, str(target))
        except _S3_ERRORS as exc:
            raise StagingError(_s3_error(f"s3://{bucket}/{key}", exc)) from exc

    def read_bytes(self, uri: str) -> bytes:
        bucket, key = split_s3_uri(uri)
        try:
            return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except _S3_ERRORS as exc:
            raise StagingError(_s3_error(uri, exc)) from exc

    def fetch_and_extract(self, uri: str, dest: Path) -> None:
        """Downloads a .tar.gz (sourcedir, model.tar.gz) and unpacks it safely into ``dest``."""
        archives.extract(self.read_bytes(uri), dest, origin=uri)

    # ---- uploads
    def upload_file(self, path: Path, uri: str) -> None:
        bucket, key = split_s3_uri(uri)
        try:
            self.s3.upload_file(str(path), bucket, key)
        except _S3_ERRORS as exc:
            raise StagingError(_s3_error(uri, exc)) from exc

    def put_bytes(self, uri: str, data: bytes) -> None:
        bucket, key = split_s3_uri(uri)
        try:
            self.s3.put_object(Bucket=bucket, Key=key, Body=data)
        except _S3_ERRORS as exc:
            raise StagingError(_s3_error(uri, exc)) from exc

    def upload_tree(self, folder: Path, uri_prefix: str, *, root: Path | None = None,
                    log: Log | None = None) -> int:
        """Uploads every regular file below ``folder``; returns how many.

        A job wrote ``folder``: nothing below ``root`` (a folder smlocal made, by default
        ``folder``'s parent) is followed if it is a link, and a link inside ``folder`` is uploaded
        as the file it leads to only when that file is inside ``folder`` too (else skipped, with a
        line in ``log``).
        """
        root = root or folder.parent
        split_s3_uri(uri_prefix)
        count = 0
        for rel, handle in jobfiles.iter_regular_files(root, folder.relative_to(root), log or logger.info):
            uri = join_s3(uri_prefix, rel)
            try:
                self.s3.upload_fileobj(handle, *split_s3_uri(uri))
            except _S3_ERRORS as exc:
                raise StagingError(_s3_error(uri, exc)) from exc
            count += 1
        return count


def channel_shard(s3_data_source: dict, host_index: int, host_count: int) -> tuple[int, int] | None:
    """``download_source``'s ``shard`` for a channel's S3DataSource on host ``host_index`` (0-based,
    in host order) of ``host_count``: (index, count) under ShardedByS3Key, else None (every host
    gets every object: FullyReplicated, the default)."""
    if s3_data_source.get("S3DataDistributionType") != "ShardedByS3Key" or host_count < 2:
        return None
    return host_index, host_count


def _dealt(entries: list[tuple[str, str, str]], index: int, count: int) -> list[tuple[str, str, str]]:
    """The (bucket, key, relative path) entries whose keys :func:`contract.shard_keys` gives host
    ``index`` of ``count`` (a key listed twice, as a manifest may, counts twice)."""
    wanted = Counter(contract.shard_keys([key for _, key, _ in entries], index, count))
    kept = []
    for entry in sorted(entries, key=lambda e: e[1]):
        if wanted[entry[1]]:
            wanted[entry[1]] -= 1
            kept.append(entry)
    return kept


def _relative(prefix: str, key: str) -> str:
    rel = key[len(prefix):]
    if not rel:
        return PurePosixPath(key).name
    if prefix and not prefix.endswith("/") and not rel.startswith("/"):
        # s3://b/data/train matched data/train.csv: SageMaker keeps the object's own name
        return PurePosixPath(key).name
    return rel.lstrip("/")


def safe_join(root: Path, rel: str) -> Path:
    """``root/rel`` refusing anything that would land outside ``root``."""
    target = (root / rel).resolve()
    base = root.resolve()
    if target != base and base not in target.parents:
        raise StagingError(f"Refusing path that escapes the job directory: {rel}")
    return target


def make_tar_gz(folder: Path, target: Path, compresslevel: int = 6, *, root: Path | None = None,
                log: Log | None = None) -> Path:
    """Packs the contents of ``folder`` (not the folder itself) as SageMaker packs model.tar.gz.

    A job wrote ``folder``: nothing below ``root`` (a folder smlocal made, by default ``folder``'s
    parent) is followed if it is a link, so no file of the host gets in. A link inside ``folder``
    is stored as a link when it leads inside ``folder``; one leading outside, FIFOs, sockets and
    devices are left out, with a line in ``log``.
    """
    root = root or folder.parent
    rel = folder.relative_to(root)
    log = log or logger.info
    entries = jobfiles.walk(root, rel, log)
    destinations = jobfiles.link_destinations(entries)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(target, "w:gz", compresslevel=compresslevel) as archive:
        for entry in entries:
            info = tarfile.TarInfo(entry.rel)
            info.mode, info.mtime = entry.mode, int(entry.mtime)
            if entry.kind == "dir":
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            elif entry.kind == "symlink" and destinations.get(entry.parts) is not None:
                info.type, info.linkname = tarfile.SYMTYPE, entry.target
                archive.addfile(info)
            elif entry.kind == "file":
                handle = jobfiles.open_regular(root, rel / entry.rel)
                if handle is None:
                    log(f"smlocal: skipped {_shown(rel, entry)}: it changed while being packed")
                    continue
                with handle:
                    info.size = os.fstat(handle.fileno()).st_size
                    archive.addfile(info, handle)
            elif entry.kind == "symlink":
                log(f"smlocal: skipped {_shown(rel, entry)}: a symbolic link to '{entry.target}' "
                    f"outside {folder.name}")
            else:
                log(f"smlocal: skipped {_shown(rel, entry)}: not a regular file, folder or link")
    return target


def _shown(rel: PurePosixPath | Path, entry: jobfiles.Found) -> str:
    return f"{PurePosixPath(rel, entry.rel)}"


def _s3_error(uri: str, exc: Exception) -> str:
    error = getattr(exc, "response", {}).get("Error", {})  # a ParamValidationError has no response
    code = error.get("Code", "InvalidParameter" if isinstance(exc, ParamValidationError) else "Error")
    message = error.get("Message", str(exc))
    return f"Unable to access {uri}: {code} ({message})"
