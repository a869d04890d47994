"""Pieces every resource family shares: ARNs, clock, listing with AWS paging and filters."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any, Callable

from smlocal.errors import ValidationError


@dataclass(frozen=True)
class Account:
    region: str
    account_id: str

    def arn(self, resource: str, name: str) -> str:
        """SageMaker ARNs carry the resource name in lower case."""
        return f"arn:aws:sagemaker:{self.region}:{self.account_id}:{resource}/{name.lower()}"


def now() -> float:
    return time.time()


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


_MAX_TOKEN = 64  # the tokens this module writes are about 16 characters


def _offset(token: str | None) -> int:
    if not token:
        return 0
    if len(token) > _MAX_TOKEN:  # nothing this module wrote; and no deep JSON for the decoder to recurse into
        raise ValidationError("Invalid pagination token")
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["o"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValidationError("Invalid pagination token") from exc
    if type(offset) is not int or offset < 0:  # a token this module did not write
        raise ValidationError("Invalid pagination token")
    return offset


def list_page(
    items: list[dict[str, Any]],
    request: dict[str, Any],
    *,
    name_key: str,
    status_key: str | None = None,
    sort_keys: dict[str, str] | None = None,
    default_sort: str = "CreationTime",
    default_max: int = 10,
) -> tuple[list[dict[str, Any]], str | None]:
    """Filters, sorts and pages documents the way SageMaker List* calls do.

    Handles NameContains, StatusEquals, Creation/LastModifiedTime After/Before, SortBy, SortOrder,
    MaxResults and NextToken.
    """
    sort_keys = sort_keys or {"Name": name_key, "CreationTime": "CreationTime", "Status": status_key or name_key}
    result = items
    if request.get("NameContains"):
        needle = request["NameContains"].lower()
        result = [d for d in result if needle in d[name_key].lower()]
    if status_key and request.get("StatusEquals"):
        result = [d for d in result if d.get(status_key) == request["StatusEquals"]]
    for key, field, cmp in (
        ("CreationTimeAfter", "CreationTime", lambda a, b: a > b),
        ("CreationTimeBefore", "CreationTime", lambda a, b: a < b),
        ("LastModifiedTimeAfter", "LastModifiedTime", lambda a, b: a > b),
        ("LastModifiedTimeBefore", "LastModifiedTime", lambda a, b: a < b),
    ):
        if request.get(key) is not None:
            bound = float(request[key])
            result = [d for d in result if d.get(field) is not None and cmp(d[field], bound)]
    sort_by = request.get("SortBy") or default_sort
    field = sort_keys.get(sort_by, sort_keys.get(default_sort, "CreationTime"))
    descending = (request.get("SortOrder") or "Descending") == "Descending"
    result = sorted(result, key=lambda d: (d.get(field) is None, d.get(field)), reverse=descending)
    start = _offset(request.get("NextToken"))
    size = int(request.get("MaxResults") or default_max)
    page = result[start : start + size]
    token = _token(start + size) if start + size < len(result) else None
    return page, token


def pick(doc: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: doc[k] for k in keys if doc.get(k) is not None}


Clock = Callable[[], float]
