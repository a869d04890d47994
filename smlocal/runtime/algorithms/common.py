"""Shared plumbing for the built-in algorithm emulations (XGBoost, KNN).

What lives here:

* the error types an algorithm raises, each carrying the HTTP status a model server should answer
  with (``status_code``) and the prefix the failure file uses (``failure_prefix``);
* reading the SageMaker training layout under ``/opt/ml`` (``hyperparameters.json``,
  ``inputdataconfig.json``, channel files);
* parsing of content types, CSV and LIBSVM data (training files and inference payloads);
* a tiny declarative hyperparameter validator used by both algorithms;
* the ``main()`` scaffolding shared by the ``python -m ... train`` entry points.

Every function here is pure Python + numpy/pandas/scipy; nothing talks to AWS.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import os
import pathlib
import sys
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np

DEFAULT_OPT_ML = "/opt/ml"
OPT_ML_ENV = "SMLOCAL_OPT_ML"
VERSION_ENV = "SMLOCAL_ALGO_VERSION"


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------
class AlgorithmException(Exception):
    """Base class. ``message`` is what the client (or the failure file) sees."""

    status_code = 500
    failure_prefix = "AlgorithmError"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message


class ClientError(AlgorithmException):
    """Bad user input (hyperparameters, data, request payload). HTTP 400 when serving."""

    status_code = 400
    failure_prefix = "ClientError"


class AlgorithmError(AlgorithmException):
    """Anything that is not the user's fault. HTTP 500 when serving."""

    status_code = 500
    failure_prefix = "AlgorithmError"


class UnsupportedMediaType(ClientError):
    """The request's Content-Type is not served (or the payload cannot be parsed as it). HTTP 415."""

    status_code = 415


class NotAcceptable(ClientError):
    """The request's Accept type cannot be produced. HTTP 406."""

    status_code = 406


class NoContent(AlgorithmException):
    """Not an error: the container answers an empty request body with ``204 No Content`` and an
    empty body. Raised by ``predict`` so the model server can reproduce that status."""

    status_code = 204
    failure_prefix = "ClientError"


# --------------------------------------------------------------------------------------------
# The /opt/ml layout
# --------------------------------------------------------------------------------------------
def _read_json(path: pathlib.Path, default: Any) -> Any:
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise AlgorithmError(f"Could not read {path}: {e}") from e


def read_hyperparameters(opt_ml: pathlib.Path) -> dict[str, str]:
    """``input/config/hyperparameters.json``; SageMaker writes every value as a string."""
    raw = _read_json(pathlib.Path(opt_ml) / "input" / "config" / "hyperparameters.json", {})
    if not isinstance(raw, dict):
        raise AlgorithmError("hyperparameters.json is not a JSON object")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}


def read_input_data_config(opt_ml: pathlib.Path) -> dict[str, dict]:
    """``input/config/inputdataconfig.json``: channel name -> channel config."""
    raw = _read_json(pathlib.Path(opt_ml) / "input" / "config" / "inputdataconfig.json", {})
    if not isinstance(raw, dict):
        raise AlgorithmError("inputdataconfig.json is not a JSON object")
    return {str(k): dict(v or {}) for k, v in raw.items()}


def channel_path(opt_ml: pathlib.Path, channel: str) -> pathlib.Path:
    return pathlib.Path(opt_ml) / "input" / "data" / channel


def list_data_files(root: pathlib.Path, skip_prefixes: Sequence[str] = (".",)) -> list[pathlib.Path]:
    """All regular files under ``root`` (recursively, sorted), skipping names that start with one
    of ``skip_prefixes`` and anything inside a directory whose name does."""
    root = pathlib.Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        return []
    out: list[pathlib.Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(tuple(skip_prefixes)))
        for name in sorted(filenames):
            if name.startswith(tuple(skip_prefixes)):
                continue
            p = pathlib.Path(dirpath) / name
            if p.is_file():
                out.append(p)
    return out


def hidden_files(root: pathlib.Path) -> list[pathlib.Path]:
    """Files under ``root`` whose own name starts with a dot."""
    root = pathlib.Path(root)
    if not root.is_dir():
        return []
    return [pathlib.Path(d) / f for d, _, fs in os.walk(root) for f in fs if f.startswith(".")]


# --------------------------------------------------------------------------------------------
# Content types
# --------------------------------------------------------------------------------------------
def parse_content_type(value: str | None) -> tuple[str, dict[str, str]]:
    """``'text/csv; label_size=1'`` -> ``('text/csv', {'label_size': '1'})``; lower-cased media
    type, parameters stripped of quotes. ``None``/empty gives ``('', {})``."""
    if not value:
        return "", {}
    parts = [p.strip() for p in str(value).split(";")]
    params: dict[str, str] = {}
    for p in parts[1:]:
        if "=" in p:
            k, v = p.split("=", 1)
            params[k.strip().lower()] = v.strip().strip('"').strip("'")
    return parts[0].lower(), params


# --------------------------------------------------------------------------------------------
# CSV / LIBSVM parsing
# --------------------------------------------------------------------------------------------
def sniff_csv_delimiter(sample_line: str) -> str:
    """The delimiter of a CSV line, as the XGBoost container infers it (csv.Sniffer), except that
    an alphanumeric or '.'/'-' "delimiter" (a one-column line) falls back to ','.
    Raises ValueError when nothing can be inferred."""
    try:
        d = csv.Sniffer().sniff(sample_line[:512]).delimiter
    except csv.Error as e:
        if _is_number(sample_line.strip()):
            return ","  # one-column data: nothing to sniff
        raise ValueError(str(e)) from e
    if d.isalnum() or d in ".-+":
        return ","
    return d


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def first_line(path: pathlib.Path) -> str:
    with open(path, "r", errors="ignore") as f:
        for line in f:
            if line.strip():
                return line
    return ""


def read_csv_array(data: bytes | str | pathlib.Path, delimiter: str = ",") -> np.ndarray:
    """Headerless numeric CSV -> float32 2-D array (empty fields become NaN). Uses pandas' C
    parser; raises ValueError on ragged rows or non-numeric fields."""
    import pandas as pd

    src: Any
    if isinstance(data, (bytes, bytearray)):
        src = io.BytesIO(data)
    elif isinstance(data, str):
        src = io.StringIO(data)
    else:
        src = str(data)
    try:
        frame = pd.read_csv(src, header=None, sep=delimiter, dtype=np.float32, engine="c",
                            skip_blank_lines=True, na_filter=True)
    except pd.errors.EmptyDataError:
        return np.zeros((0, 0), dtype=np.float32)
    except (pd.errors.ParserError, ValueError, TypeError) as e:
        raise ValueError(str(e)) from e
    return frame.to_numpy(dtype=np.float32, copy=False)


def read_csv_files(files: Iterable[pathlib.Path]) -> np.ndarray:
    """Concatenate headerless CSV files (delimiter sniffed per file). Raises ClientError."""
    arrays = []
    for f in files:
        line = first_line(f)
        if not line:
            continue
        try:
            delim = sniff_csv_delimiter(line)
        except ValueError as e:
            raise ClientError(f"Could not determine delimiter on line {line[:50]}:\n{e}") from e
        try:
            arr = read_csv_array(pathlib.Path(f), delim)
        except ValueError as e:
            raise ClientError(f"Failed to load csv data with exception:\n{e}") from e
        if arr.size:
            arrays.append(arr)
    if not arrays:
        return np.zeros((0, 0), dtype=np.float32)
    widths = {a.shape[1] for a in arrays}
    if len(widths) > 1:
        raise ClientError(
            f"Failed to load csv data with exception:\nfiles have different numbers of columns: {sorted(widths)}")
    return np.vstack(arrays)


@dataclass
class LibSVMData:
    """Sparse features (scipy CSR), labels, and optional instance weights (``label:weight``)."""

    features: Any
    labels: np.ndarray
    weights: np.ndarray | None = None


def parse_libsvm_lines(lines: Iterable[str], *, with_label: bool, n_cols: int | None = None) -> LibSVMData:
    """Parse LIBSVM text: ``[<label>[:<weight>]] <index>:<value> ...`` (indices are taken as-is,
    i.e. zero-based column numbers, as XGBoost reads them; ``qid:`` tokens are ignored).
    ``with_label=False`` ignores any leading token without a colon (inference payloads)."""
    from scipy.sparse import csr_matrix

    indptr = [0]
    indices: list[int] = []
    values: list[float] = []
    labels: list[float] = []
    weights: list[float] = []
    has_weight = False
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        toks = line.split()
        start = 0
        if toks and ":" not in toks[0]:
            start = 1
            if with_label:
                labels.append(float(toks[0]))
                weights.append(1.0)
        elif with_label and toks and toks[0].count(":") == 1 and _label_weight(toks[0]) is not None:
            lab, w = _label_weight(toks[0])  # type: ignore[misc]
            labels.append(lab)
            weights.append(w)
            has_weight = True
            start = 1
        elif with_label:
            raise ValueError(f"line does not start with a label: {line[:50]}")
        for tok in toks[start:]:
            k, sep, v = tok.partition(":")
            if not sep:
                raise ValueError(f"token {tok!r} is not <index>:<value>")
            if k == "qid":
                continue
            indices.append(int(k))
            values.append(float(v))
        indptr.append(len(indices))
    width = (max(indices) + 1) if indices else 0
    if n_cols is not None:
        width = max(width, n_cols)
    feats = csr_matrix((np.asarray(values, dtype=np.float32), np.asarray(indices, dtype=np.int64),
                        np.asarray(indptr, dtype=np.int64)), shape=(len(indptr) - 1, width))
    return LibSVMData(feats, np.asarray(labels, dtype=np.float32),
                      np.asarray(weights, dtype=np.float32) if has_weight else None)


def _label_weight(tok: str) -> tuple[float, float] | None:
    # "<label>:<weight>" where both parts are numbers; a feature token "3:0.5" looks the same, so
    # the caller only asks this for the first token of a line.
    a, _, b = tok.partition(":")
    try:
        return float(a), float(b)
    except ValueError:
        return None


def check_libsvm_first_line(path: pathlib.Path) -> None:
    """The XGBoost container's LIBSVM sanity check: lines are read until one has two or more
    features; a malformed line before that fails with the container's message."""
    with open(path, "r", errors="ignore") as f:
        for line in f:
            toks = line.rstrip("\n").split(" ")
            head = toks[0].split(":")
            label_ok = len(head) <= 2 and all(_is_number(p) for p in head)
            feats_ok = all(":" in t and len(t.split(":")) == 2 for t in toks[1:] if t)
            if not label_ok or not feats_ok:
                raise ClientError(f"First line '{line[:50]}...' of file '{pathlib.Path(path).name}' is not "
                                  "'LIBSVM' format. Please ensure the file is in 'LIBSVM' format.")
            if len(toks) > 2:
                return


def read_libsvm_files(files: Iterable[pathlib.Path]) -> LibSVMData:
    from scipy.sparse import vstack

    parts: list[LibSVMData] = []
    for f in files:
        with open(f, "r", errors="ignore") as fh:
            try:
                parts.append(parse_libsvm_lines(fh, with_label=True))
            except ValueError as e:
                raise ClientError(f"Failed to load libsvm data with exception:\n{e}") from e
    parts = [p for p in parts if p.features.shape[0]]
    if not parts:
        return LibSVMData(None, np.zeros(0, dtype=np.float32))
    width = max(p.features.shape[1] for p in parts)
    for p in parts:
        p.features.resize((p.features.shape[0], width))
    weights = None
    if any(p.weights is not None for p in parts):
        weights = np.concatenate([p.weights if p.weights is not None else np.ones(len(p.labels), np.float32)
                                  for p in parts])
    return LibSVMData(vstack([p.features for p in parts]).tocsr(),
                      np.concatenate([p.labels for p in parts]), weights)


# --------------------------------------------------------------------------------------------
# Hyperparameter validation
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """A numeric range; ``str()`` renders like the SageMaker algorithm toolkit: ``[0, 1]``,
    ``(0, 1]``, ``[1, +inf)``."""

    min_closed: float | None = None
    min_open: float | None = None
    max_closed: float | None = None
    max_open: float | None = None

    def __contains__(self, v: float) -> bool:
        return not ((self.min_open is not None and v <= self.min_open)
                    or (self.min_closed is not None and v < self.min_closed)
                    or (self.max_open is not None and v >= self.max_open)
                    or (self.max_closed is not None and v > self.max_closed))

    def __str__(self) -> str:
        lo = (f"({self.min_open}, " if self.min_open is not None
              else f"[{self.min_closed}, " if self.min_closed is not None else "(-inf, ")
        hi = (f"{self.max_open})" if self.max_open is not None
              else f"{self.max_closed}]" if self.max_closed is not None else "+inf)")
        return lo + hi


@dataclass(frozen=True)
class HP:
    """One hyperparameter. ``kind``: int | float | str | list (comma separated) | raw.
    ``valid``: an Interval, a list of allowed values, or a callable(value) -> bool."""

    name: str
    kind: str = "str"
    valid: Any = None
    required: bool = False
    shown: str | None = None  # how the range prints in errors when ``valid`` is a callable

    def parse(self, raw: str) -> Any:
        if self.kind == "int":
            return int(str(raw).strip())
        if self.kind == "float":
            return float(str(raw).strip())
        if self.kind == "list":
            return [p.strip() for p in str(raw).split(",")]
        return raw

    def ok(self, value: Any) -> bool:
        v = self.valid
        if v is None:
            return True
        if isinstance(v, (Interval, list, tuple, set, frozenset)):
            return all(x in v for x in value) if self.kind == "list" else value in v
        return all(v(x) for x in value) if self.kind == "list" else bool(v(value))


def _range_text(hp: HP) -> str:
    return hp.shown if hp.shown is not None else str(hp.valid)


def validate_toolkit_hyperparameters(raw: dict[str, str], table: Sequence[HP],
                                     aliases: dict[str, str] | None = None) -> dict[str, Any]:
    """Validate string hyperparameters in the order and with the wording of the
    sagemaker-algorithm-toolkit (bundled with the XGBoost container): required ones first, then
    unknown names, parsing, ranges. Kinds ``tuple``/``nested`` take Python literals
    (``(1,-1)``, ``[[0,1],[2]]``). Returns the converted values; raises ClientError."""
    defs = {hp.name: hp for hp in table}
    user = {(aliases or {}).get(k, k): v for k, v in raw.items()}
    for name, hp in defs.items():
        if hp.required and name not in user:
            raise ClientError(f"Missing required hyperparameter: {name}")
    parsed: dict[str, Any] = {}
    for name, value in user.items():
        if name not in defs:
            raise ClientError(f"Extraneous hyperparameter found: {name}")
        hp = defs[name]
        try:
            if hp.kind in ("tuple", "nested"):
                v = ast.literal_eval(value) if isinstance(value, str) else value
                parsed[name] = tuple(v) if hp.kind == "tuple" and isinstance(v, (list, tuple)) else v
            else:
                parsed[name] = hp.parse(value)
        except (ValueError, SyntaxError, TypeError):
            raise ClientError(f"Hyperparameter {name}: could not parse value (caused by ValueError)") from None
    for name, value in parsed.items():
        hp = defs[name]
        if hp.kind == "tuple":
            bad = not isinstance(value, tuple) or any(e not in hp.valid for e in value)
        elif hp.kind == "nested":
            bad = not isinstance(value, list) or any(not isinstance(o, list) or any(
                not isinstance(e, int) or e not in hp.valid for e in o) for o in value)
        else:
            bad = not hp.ok(value)
        if bad and hp.kind in ("list", "tuple", "nested"):
            raise ClientError(f"Hyperparameter {name}: value {value} not in range {_range_text(hp)}")
        if bad:
            raise ClientError(f"Hyperparameter {name}: {value} is not in {_range_text(hp)}")
    return parsed


# --------------------------------------------------------------------------------------------
# Failure file and the `python -m ... train` entry point
# --------------------------------------------------------------------------------------------
def failure_text(exc: BaseException, style: str, limit: int = 1024) -> str:
    """The text SageMaker shows as FailureReason.

    ``style="prefixed"``: ``"ClientError: <message>"`` / ``"AlgorithmError: <message>"`` (the
    first-party algorithm containers such as KNN).
    ``style="framework"``: what a sagemaker-containers based image (the XGBoost container) writes
    for *any* exception escaping the entry point, prefixed the way the service shows it:
    ``"AlgorithmError: framework error: \\n<traceback>\\n<message>"``; outer frames are dropped
    when needed to keep the text within ``limit`` (DescribeTrainingJob's FailureReason is cut at
    1024 characters, and the message comes last).
    """
    message = getattr(exc, "message", None) or str(exc) or exc.__class__.__name__
    if style == "framework":
        te = traceback.TracebackException.from_exception(exc)
        head, tail = "Traceback (most recent call last):\n", "".join(te.format_exception_only())
        frames = [f'  File "{f.filename}", line {f.lineno}, in {f.name}\n' + (f"    {f.line}\n" if f.line else "")
                  for f in te.stack]
        text = f"AlgorithmError: framework error: \n{head}{''.join(frames)}{tail}\n{message}"
        while len(text) > limit and frames:  # drop outer frames so the message survives the clip
            frames = frames[1:]
            text = f"AlgorithmError: framework error: \n{head}  ...\n{''.join(frames)}{tail}\n{message}"
        return text
    prefix = exc.failure_prefix if isinstance(exc, AlgorithmException) else "AlgorithmError"
    return f"{prefix}: {message}"


def run_main(argv: Sequence[str] | None, train_fn: Callable[[pathlib.Path, str], None],
             default_version: str, style: str, prog: str) -> int:
    """Shared body of each algorithm module's ``main``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "serve":
        print(f"{prog}: serving is done by smlocal's model server, not by this entry point", file=sys.stderr)
        return 2
    if args and args[0] != "train":
        print(f"usage: python -m {prog} train", file=sys.stderr)
        return 2
    opt_ml = pathlib.Path(os.environ.get(OPT_ML_ENV) or DEFAULT_OPT_ML)
    version = os.environ.get(VERSION_ENV) or default_version
    try:
        train_fn(opt_ml, version)
    except Exception as e:  # noqa: BLE001 - the failure file must record everything
        text = failure_text(e, style)
        try:
            out = opt_ml / "output"
            out.mkdir(parents=True, exist_ok=True)
            (out / "failure").write_text(text)
        except OSError:
            pass
        print(text, file=sys.stderr, flush=True)
        return 1
    try:
        (opt_ml / "output").mkdir(parents=True, exist_ok=True)
    except OSError:
        pass
    return 0
