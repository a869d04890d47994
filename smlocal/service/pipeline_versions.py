"""Pipeline versions: every CreatePipeline / UpdatePipeline makes one (ids 1, 2, …).

Versions live inside their ``Pipeline`` document, under ``_Versions`` (id as a string → record) with
``_VersionId`` the latest id. Each record holds the version's definition, its times, its display
name and description (``UpdatePipelineVersion``) and the last execution started on it.

Data dirs written by older smlocal releases (before UpdatePipelineVersion) hold ``_Versions`` as
id → definition text; :func:`versions` reads either form, and :func:`migrate` rewrites a document's
records into the current form before one of them is changed (lazy migration, no upgrade step).
"""

from __future__ import annotations

from typing import Any

from smlocal.errors import ResourceNotFound

_SUMMARY = ("PipelineArn", "PipelineVersionId", "CreationTime", "PipelineVersionDescription",
            "PipelineVersionDisplayName", "LastExecutionPipelineExecutionArn")


def versions(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The version records of a pipeline document, whatever release wrote it.

    Args:
        doc: A stored ``Pipeline`` document.

    Returns:
        Version id (a string) → record with ``PipelineDefinition`` and ``CreationTime`` at least.
    """
    latest = str(doc["_VersionId"])
    result = {}
    for key, value in doc["_Versions"].items():
        if isinstance(value, str):  # an older release kept only the text (its times: the pipeline's)
            stamp = doc["LastModifiedTime"] if key == latest else doc["CreationTime"]
            value = {"PipelineDefinition": value, "CreationTime": stamp, "LastModifiedTime": stamp}
        result[key] = dict(value)
    return result


def migrate(doc: dict[str, Any]) -> None:
    """Rewrite ``doc``'s version records in the current form (in place)."""
    doc["_Versions"] = versions(doc)


def add_version(doc: dict[str, Any], definition: str, stamp: float) -> int:
    """Record a new latest version of ``doc`` (in place) and return its id."""
    migrate(doc)
    version_id = doc["_VersionId"] + 1
    doc["_Versions"][str(version_id)] = {"PipelineDefinition": definition, "CreationTime": stamp,
                                         "LastModifiedTime": stamp}
    doc["_VersionId"] = version_id
    return version_id


def first_version(definition: str, stamp: float) -> dict[str, Any]:
    """The ``_Versions`` of a pipeline just created."""
    return {"1": {"PipelineDefinition": definition, "CreationTime": stamp, "LastModifiedTime": stamp}}


def version(doc: dict[str, Any], version_id: int | None) -> tuple[int, dict[str, Any]]:
    """One version of the pipeline (the latest when ``version_id`` is None).

    Raises:
        ResourceNotFound: The pipeline has no such version.
    """
    chosen = int(doc["_VersionId"] if version_id is None else version_id)
    record = versions(doc).get(str(chosen))
    if record is None:
        raise ResourceNotFound(f"Pipeline version {chosen} of '{doc['PipelineArn']}' does not exist.")
    return chosen, record


def summaries(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every version as a ``PipelineVersionSummary`` (plus ``LastModifiedTime`` for filtering)."""
    items = []
    for key, record in versions(doc).items():
        summary = {"PipelineArn": doc["PipelineArn"], "PipelineVersionId": int(key), **record}
        items.append({k: summary[k] for k in _SUMMARY if summary.get(k) is not None})
    return items


def describe_fields(record: dict[str, Any]) -> dict[str, Any]:
    """What DescribePipeline shows of a version besides the pipeline's own members."""
    fields = {"PipelineDefinition": record["PipelineDefinition"]}
    for key in ("PipelineVersionDisplayName", "PipelineVersionDescription"):
        if record.get(key) is not None:
            fields[key] = record[key]
    return fields
