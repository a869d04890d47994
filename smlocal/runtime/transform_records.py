"""Batch transform record handling (pure): split → filter → batch, then split → join → assemble.

One input S3 object becomes a :class:`ObjectPlan` (the request payloads, in order) and the model's
responses become the ``.out`` object. What AWS documents, and this module does:

* ``SplitType`` None sends the whole object; ``Line`` splits on ``\\n``. ``RecordIO`` and
  ``TFRecord`` are rejected (smlocal does not split binary record formats).
* ``BatchStrategy`` SingleRecord sends one record per request; MultiRecord (the default) as many
  consecutive records as fit in ``MaxPayloadInMB`` (default 6; 0 means no limit). A record (or an
  unsplit object) larger than the limit fails the object ("Exceeding the MaxPayloadInMB limit causes
  an error ... individual records within the dataset exceed the limit").
* ``AssembleWith`` Line ends every response (or joined record) with a newline unless it already
  ends with one; None concatenates the responses as they are.
* ``DataProcessing``: InputFilter selects part of each record before it is sent; JoinSource Input
  joins each output record to its *original* input record (CSV: the output columns appended to
  the input row; JSON: the input object gains a ``SageMakerOutput`` key, or a non-object input
  becomes ``{"SageMakerInput": ..., "SageMakerOutput": ...}``); OutputFilter selects part of the
  joined (or plain output) record. Filters use :mod:`transform_jsonpath`.

Speed: with no DataProcessing, MultiRecord batches are slices of the object cut at line ends, no
record is decoded; a CSV join without OutputFilter appends the output line to the input line as
bytes. Records are parsed only when a filter needs them.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

from smlocal.runtime.transform_jsonpath import JsonPath, JsonPathError, compile_path

MB = 1024 * 1024
DEFAULT_MAX_PAYLOAD_MB = 6


class RecordError(Exception):
    """The data of one input object cannot be transformed; the message goes to the data log."""


@dataclass(frozen=True)
class TransformSpec:
    """The record-handling settings of one transform job."""

    split_type: str = "None"
    strategy: str = "MultiRecord"
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_MB * MB  # 0: no limit
    assemble_with: str = "None"
    content_type: str | None = None
    accept: str | None = None
    compression: str = "None"
    input_filter: JsonPath = field(default_factory=lambda: compile_path(None))
    output_filter: JsonPath = field(default_factory=lambda: compile_path(None))
    join_input: bool = False

    @classmethod
    def from_job(cls, job: dict) -> "TransformSpec":
        """Builds the spec from a CreateTransformJob request; raises JsonPathError for a bad filter."""
        source = job.get("TransformInput") or {}
        output = job.get("TransformOutput") or {}
        processing = job.get("DataProcessing") or {}
        payload_mb = job.get("MaxPayloadInMB")
        return cls(
            split_type=source.get("SplitType") or "None",
            strategy=job.get("BatchStrategy") or "MultiRecord",
            max_payload_bytes=(DEFAULT_MAX_PAYLOAD_MB if payload_mb is None else int(payload_mb)) * MB,
            assemble_with=output.get("AssembleWith") or "None",
            content_type=source.get("ContentType"),
            accept=output.get("Accept"),
            compression=source.get("CompressionType") or "None",
            input_filter=compile_path(processing.get("InputFilter")),
            output_filter=compile_path(processing.get("OutputFilter")),
            join_input=processing.get("JoinSource") == "Input",
        )

    @property
    def per_record_output(self) -> bool:
        """Whether responses must be split into one output per input record (join or filter)."""
        return self.join_input or not self.output_filter.identity


@dataclass(frozen=True)
class Batch:
    """One request: its body and which records (by index in ``ObjectPlan.records``) it carries."""

    payload: bytes
    start: int
    count: int


@dataclass
class ObjectPlan:
    """The requests for one input object; ``records`` (original records) only when outputs are joined."""

    batches: list[Batch]
    records: list[bytes] | None = None


# ---------------------------------------------------------------------------------------------
# input side
# ---------------------------------------------------------------------------------------------
def decompress(data: bytes, compression: str) -> bytes:
    """Undoes ``CompressionType`` Gzip (a gzip stream); None returns the bytes unchanged."""
    if compression != "Gzip":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise RecordError(f"Unable to decompress the object as Gzip: {exc}") from exc


def split_lines(data: bytes) -> list[bytes]:
    """Lines without their terminators (``\\n``, and a ``\\r`` before it); no empty last line."""
    if not data:
        return []
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def plan_object(data: bytes, spec: TransformSpec) -> ObjectPlan:
    """Splits, filters and batches one (decompressed) input object.

    Raises:
        RecordError: unsupported SplitType, a record over MaxPayloadInMB, an InputFilter that does
            not apply to a record.
    """
    if spec.split_type in ("RecordIO", "TFRecord"):
        raise RecordError(f"SplitType {spec.split_type} is not supported by smlocal: use Line or None.")
    if not data:
        return ObjectPlan([], [] if spec.per_record_output else None)
    if spec.split_type != "Line":
        _check_size(len(data), spec, "The object")
        records = [data] if spec.per_record_output else None
        payload = data if spec.input_filter.identity else _filtered(data, spec)
        return ObjectPlan([Batch(payload, 0, 1)], records)
    if spec.input_filter.identity and not spec.per_record_output and spec.strategy == "MultiRecord":
        return ObjectPlan(_slice_batches(data, spec.max_payload_bytes))
    records = split_lines(data)
    payloads = records if spec.input_filter.identity else [_filtered(r, spec) for r in records]
    batches = _pack(payloads, spec)
    return ObjectPlan(batches, records if spec.per_record_output else None)


def _check_size(size: int, spec: TransformSpec, what: str) -> None:
    if spec.max_payload_bytes and size > spec.max_payload_bytes:
        hint = ("Split it (SplitType Line) or raise MaxPayloadInMB." if what == "The object" else
                "Raise MaxPayloadInMB to at least the size of the largest record.")
        raise RecordError(
            f"{what} is {size} bytes, larger than MaxPayloadInMB ({spec.max_payload_bytes // MB} MB). {hint}"
        )


def _slice_batches(data: bytes, limit: int) -> list[Batch]:
    """MultiRecord without DataProcessing: cut the object at line ends, never decoding a record."""
    if not limit or len(data) <= limit:
        return [Batch(data, 0, 0)]
    batches, start, size = [], 0, len(data)
    while start < size:
        end = start + limit
        if end >= size:
            batches.append(Batch(data[start:], start, 0))
            break
        cut = data.rfind(b"\n", start, end + 1)  # a record of exactly `limit` bytes still fits
        if cut < 0:
            following = data.find(b"\n", start)
            length = (following if following >= 0 else size) - start
            raise RecordError(
                f"A record is {length} bytes, larger than MaxPayloadInMB ({limit // MB} MB). "
                "Raise MaxPayloadInMB to at least the size of the largest record."
            )
        batches.append(Batch(data[start : cut + 1], start, 0))
        start = cut + 1
    return batches


def _pack(payloads: list[bytes], spec: TransformSpec) -> list[Batch]:
    """Groups records into requests. The limit applies to a request body without its final newline."""
    limit = spec.max_payload_bytes
    for payload in payloads:
        if limit and len(payload) > limit:
            _check_size(len(payload), spec, "A record")
    if spec.strategy == "SingleRecord":
        return [Batch(p, i, 1) for i, p in enumerate(payloads)]
    batches: list[Batch] = []
    start, size = 0, -1
    for index, payload in enumerate(payloads):
        grown = size + 1 + len(payload)
        if index > start and limit and grown > limit:
            batches.append(Batch(b"\n".join(payloads[start:index]) + b"\n", start, index - start))
            start, grown = index, len(payload)
        size = grown
    if start < len(payloads):
        batches.append(Batch(b"\n".join(payloads[start:]) + b"\n", start, len(payloads) - start))
    return batches


def _filtered(record: bytes, spec: TransformSpec) -> bytes:
    kind = record_kind(record, spec.content_type)
    value = parse_record(record, kind)
    try:
        selected = spec.input_filter.apply(value)
    except JsonPathError as exc:
        raise RecordError(f"InputFilter {exc}") from exc
    return serialize(selected, kind)


# ---------------------------------------------------------------------------------------------
# formats
# ---------------------------------------------------------------------------------------------
def record_kind(sample: bytes, content_type: str | None) -> str:
    """'csv' or 'json', from the MIME type (text/csv, application/json[lines]) or the data itself."""
    media = (content_type or "").lower()
    if "csv" in media:
        return "csv"
    if "json" in media:
        return "json"
    head = sample.lstrip()[:1]
    return "json" if head in (b"{", b"[") else "csv"


def parse_record(record: bytes, kind: str) -> Any:
    """A CSV row as a list of field strings, or a JSON value."""
    text = record.decode("utf-8")
    if kind == "json":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise RecordError(f"Unable to parse a record as JSON: {exc}") from exc
    return parse_csv_row(text)


def parse_csv_row(text: str) -> list[str]:
    """One RFC 4180 row; rows without quotes take the fast path."""
    text = text.rstrip("\r\n")
    if '"' not in text:
        return text.split(",")
    try:
        return next(csv.reader([text]))
    except (csv.Error, StopIteration) as exc:
        raise RecordError(f"Unable to parse a record as CSV: {exc}") from exc


def serialize(value: Any, kind: str) -> bytes:
    """A CSV row (fields quoted only when needed) or compact JSON."""
    if kind == "json":
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    fields = value if isinstance(value, list) else [value]
    return ",".join(_csv_field(f) for f in fields).encode("utf-8")


def _csv_field(value: Any) -> str:
    if isinstance(value, (dict, list)):
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    elif value is None:
        text = ""
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


# ---------------------------------------------------------------------------------------------
# output side
# ---------------------------------------------------------------------------------------------
def split_outputs(body: bytes, content_type: str | None, count: int) -> list[bytes]:
    """The model's response to a batch of ``count`` records, as one output per record.

    One line per record is the batch transform convention (AssembleWith Line, the built-in
    algorithms' batch output); a JSON array with one element per record is accepted too, and a
    one-record batch takes the whole body.
    """
    lines = split_lines(body)
    if len(lines) == count:
        return lines
    if record_kind(body, content_type) == "json":
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and len(parsed) == count:
            return [serialize(item, "json") for item in parsed]
    if count == 1:
        return [body.rstrip(b"\r\n")]
    raise RecordError(
        f"Unable to associate the output with the input: the model returned {len(lines)} line(s) for "
        f"{count} record(s). JoinSource and OutputFilter need one output line (or JSON array element) "
        "per input record."
    )


def finish_batch(plan: ObjectPlan, batch: Batch, body: bytes, content_type: str | None,
                 spec: TransformSpec) -> bytes:
    """One batch's contribution to the ``.out`` object (joined and filtered when asked)."""
    if not spec.per_record_output:
        if spec.assemble_with == "Line" and body and not body.endswith(b"\n"):
            return body + b"\n"
        return body
    assert plan.records is not None
    outputs = split_outputs(body, content_type, batch.count)
    out_kind = record_kind(outputs[0] if outputs else body, content_type or spec.accept)
    inputs = plan.records[batch.start : batch.start + batch.count]
    sep = b"\n" if spec.assemble_with == "Line" else b""
    pieces = []
    for source, output in zip(inputs, outputs):
        pieces.append(_finish_record(source, output, out_kind, spec))
        pieces.append(sep)
    return b"".join(pieces)


def _finish_record(source: bytes, output: bytes, out_kind: str, spec: TransformSpec) -> bytes:
    if spec.join_input:
        in_kind = record_kind(source, spec.content_type)
        if in_kind == "csv" and out_kind == "csv" and spec.output_filter.identity:
            return source + b"," + output  # appended columns, nothing parsed
        value, kind = join_record(source, output, in_kind, out_kind), in_kind
    else:
        value, kind = parse_output(output, out_kind), out_kind
    try:
        value = spec.output_filter.apply(value)
    except JsonPathError as exc:
        raise RecordError(f"OutputFilter {exc}") from exc
    return serialize(value, kind)


def parse_output(output: bytes, kind: str) -> Any:
    """An output record as a CSV field list or a JSON value (non-JSON text stays a string)."""
    if kind == "csv":
        return parse_csv_row(output.decode("utf-8"))
    try:
        return json.loads(output)
    except ValueError:
        return output.decode("utf-8")


def join_record(source: bytes, output: bytes, in_kind: str, out_kind: str) -> Any:
    """Joins one input record with its output (JoinSource Input)."""
    if in_kind == "csv":
        fields = parse_csv_row(source.decode("utf-8"))
        if out_kind == "csv":
            return fields + parse_csv_row(output.decode("utf-8"))
        return fields + [output.decode("utf-8")]
    value = parse_record(source, "json")
    try:
        result = json.loads(output)
    except ValueError:
        result = output.decode("utf-8")
    if isinstance(value, dict):
        return {**value, "SageMakerOutput": result}
    return {"SageMakerInput": value, "SageMakerOutput": result}


def assemble(pieces: list[bytes]) -> bytes:
    """The ``.out`` object from each batch's finished bytes, in input order."""
    buffer = io.BytesIO()
    for piece in pieces:
        buffer.write(piece)
    return buffer.getvalue()
