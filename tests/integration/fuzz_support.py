"""Hypothesis strategies built from botocore input shapes, and the ways the fuzz test breaks them.

``request_for(shape)`` draws a valid-looking request: required members always, optional ones
sometimes, enums from their value set, lengths and ranges respected, strings that fit the shape's
pattern where a cheap candidate or a generated match does. Every S3 URI points at a bucket that
does not exist and every image at nothing smlocal can run, so a job the fuzz creates fails at once.

``MUTATIONS`` turn such a request into a broken one (wrong types, missing required members, huge
strings, deep nesting, junk NextToken, bad timestamps, unknown members); ``BROKEN_BODIES`` are
bodies that are not a JSON object at all.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from typing import Any

from botocore.model import Shape
from hypothesis import strategies as st

NO_BUCKET = "smlocal-fuzz-no-such-bucket"

# Tried first for a pattern-constrained string: names the fuzz reuses (so Describe/Delete/Stop meet
# what Create made), ARNs, URIs, versions. Every one fails fast if a job is really started with it.
CANDIDATES = (
    "fuzz-a", "fuzz-b", "Fuzz1", "a", "1", "1.0", "x" * 40,
    f"s3://{NO_BUCKET}/fuzz/key", f"https://{NO_BUCKET}.s3.amazonaws.com/fuzz",
    "arn:aws:iam::123456789012:role/SageMakerExecutionRole",
    "arn:aws:sagemaker:us-east-1:123456789012:training-job/fuzz-a",
    "arn:aws:sagemaker:us-east-1:123456789012:model-package/fuzz-a/1",
    "arn:aws:sagemaker:us-east-1:123456789012:pipeline/fuzz-a/execution/abcdef123456",
    "arn:aws:sagemaker:us-east-1:123456789012:model-package-group/fuzz-a",
    "123456789012.dkr.ecr.us-east-1.amazonaws.com/fuzz-no-such-image:latest",
    "ml.m5.large", "text/csv", "Key", "$.features", "{}",
    json.dumps({"Version": "2020-12-01", "Parameters": [{"Name": "P", "Type": "String", "DefaultValue": "x"}],
                "Steps": [{"Name": "FuzzFail", "Type": "Fail", "Arguments": {"ErrorMessage": "fuzz"}}]}),
)
# Optional in the model but needed by the service to get past its first check: always drawn, so
# that valid-looking requests reach the code behind those checks.
USUALLY_NEEDED = frozenset({
    "AlgorithmSpecification", "TrainingImage", "ModelName", "PipelineDefinition", "PrimaryContainer", "Image",
    "InstanceType", "InitialInstanceCount", "ContainerEntrypoint", "ModelPackageGroupName",
})
_ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"
_NO_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/fuzz-no-such-image:latest"
_FAIL_PIPELINE = CANDIDATES[-1]
_TOKEN = "fuzz-client-request-token-0000000000"
_TRAINING = {"AlgorithmSpecification": {"TrainingImage": _NO_IMAGE, "TrainingInputMode": "File"}, "RoleArn": _ROLE,
             "OutputDataConfig": {"S3OutputPath": f"s3://{NO_BUCKET}/out"},
             "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
             "StoppingCondition": {"MaxRuntimeInSeconds": 60}}
# Requests that pass every check of their operation (so the code behind the checks runs), drawn as
# often as shape-built ones and broken the same ways. Each starts nothing that can run.
TEMPLATES: dict[str, list[dict]] = {
    "CreateModel": [{"ModelName": "fuzz-a", "ExecutionRoleArn": _ROLE, "PrimaryContainer": {"Image": _NO_IMAGE}}],
    "CreateEndpointConfig": [{"EndpointConfigName": "fuzz-a", "ProductionVariants": [
        {"VariantName": "v1", "ModelName": "fuzz-a", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}]}],
    "CreateEndpoint": [{"EndpointName": "fuzz-a", "EndpointConfigName": "fuzz-a"}],
    "UpdateEndpoint": [{"EndpointName": "fuzz-a", "EndpointConfigName": "fuzz-a"}],
    "UpdateEndpointWeightsAndCapacities": [{"EndpointName": "fuzz-a", "DesiredWeightsAndCapacities": [
        {"VariantName": "v1", "DesiredWeight": 1.0, "DesiredInstanceCount": 1}]}],
    "CreatePipeline": [{"PipelineName": "fuzz-a", "RoleArn": _ROLE, "PipelineDefinition": _FAIL_PIPELINE,
                        "ClientRequestToken": _TOKEN}],
    "UpdatePipeline": [{"PipelineName": "fuzz-a", "PipelineDefinition": _FAIL_PIPELINE}],
    "StartPipelineExecution": [{"PipelineName": "fuzz-a", "PipelineParameters": [{"Name": "P", "Value": "y"}],
                                "ClientRequestToken": _TOKEN}],
    "CreateTrainingJob": [{"TrainingJobName": "fuzz-t", **_TRAINING, "HyperParameters": {"a": "1"},
                           "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
                               "S3DataType": "S3Prefix", "S3Uri": f"s3://{NO_BUCKET}/in"}}}]}],
    "CreateHyperParameterTuningJob": [{
        "HyperParameterTuningJobName": "fuzz-h",
        "HyperParameterTuningJobConfig": {
            "Strategy": "Random", "ResourceLimits": {"MaxNumberOfTrainingJobs": 1, "MaxParallelTrainingJobs": 1},
            "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": "loss"},
            "ParameterRanges": {"ContinuousParameterRanges": [{"Name": "lr", "MinValue": "0.1", "MaxValue": "1"}]}},
        "TrainingJobDefinition": {**{k: v for k, v in _TRAINING.items() if k != "AlgorithmSpecification"},
                                  "AlgorithmSpecification": {"TrainingImage": _NO_IMAGE, "TrainingInputMode": "File",
                                                             "MetricDefinitions": [{"Name": "loss",
                                                                                    "Regex": "loss=(.*)"}]},
                                  "StaticHyperParameters": {"a": "1"}}}],
    "CreateModelPackageGroup": [{"ModelPackageGroupName": "fuzz-a"}],
    "CreateModelPackage": [{"ModelPackageGroupName": "fuzz-a", "ModelApprovalStatus": "PendingManualApproval",
                            "InferenceSpecification": {"Containers": [{"Image": _NO_IMAGE}],
                                                       "SupportedContentTypes": ["text/csv"],
                                                       "SupportedResponseMIMETypes": ["text/csv"]}}],
    "CreateTransformJob": [{"TransformJobName": "fuzz-x", "ModelName": "fuzz-a",
                            "TransformInput": {"DataSource": {"S3DataSource": {
                                "S3DataType": "S3Prefix", "S3Uri": f"s3://{NO_BUCKET}/in"}}},
                            "TransformOutput": {"S3OutputPath": f"s3://{NO_BUCKET}/out"},
                            "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1}}],
}
_MAX_TEXT = 24
_MAX_ITEMS = 2
_MAX_DEPTH = 6
_NAME_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-"


# --- valid-looking values --------------------------------------------------------------------------

def _python_pattern(pattern: str) -> re.Pattern | None:
    try:
        from smlocal.service.validation import java_regex_to_python

        return re.compile(java_regex_to_python(pattern), re.ASCII)
    except (re.error, ValueError):
        return None


def _string(shape: Shape) -> st.SearchStrategy:
    md = shape.metadata
    if md.get("enum"):
        return st.sampled_from(md["enum"])
    lo, hi = md.get("min", 0), md.get("max", 256)
    fits = lambda s: lo <= len(s) <= hi  # noqa: E731
    pattern = md.get("pattern")
    regex = _python_pattern(pattern) if pattern else None
    if pattern and regex is None:
        return st.sampled_from(CANDIDATES)
    chosen = [c for c in CANDIDATES if fits(c) and (regex is None or regex.fullmatch(c))]
    options = [st.sampled_from(chosen)] if chosen else []
    if regex is None:
        options.append(st.text(_NAME_ALPHABET, min_size=lo, max_size=max(lo, min(hi, _MAX_TEXT))))
    elif len(pattern) < 300:
        options.append(st.from_regex(regex, fullmatch=True).filter(lambda s: fits(s) and len(s) < 200))
    return st.one_of(options) if options else st.just("fuzz-a")


def _number(shape: Shape, integral: bool) -> st.SearchStrategy:
    md = shape.metadata
    lo = md.get("min", 0)
    hi = md.get("max", lo + 100)
    top = min(hi, lo + 5)
    if integral:
        return st.integers(int(lo), int(top)) | st.just(int(hi))
    return st.floats(float(lo), float(top), allow_nan=False, allow_infinity=False)


class ShapeStrategies:
    """One strategy per botocore shape name, built on first use (recursive shapes cut at a depth)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, int], st.SearchStrategy] = {}

    def for_shape(self, shape: Shape, depth: int = 0) -> st.SearchStrategy:
        key = (shape.name, min(depth, _MAX_DEPTH))
        if key not in self._cache:
            self._cache[key] = st.deferred(lambda: self._build(shape, depth))
        return self._cache[key]

    def _build(self, shape: Shape, depth: int) -> st.SearchStrategy:
        kind, md = shape.type_name, shape.metadata
        if kind == "structure":
            required = set(shape.required_members) | (USUALLY_NEEDED & set(shape.members))
            if depth >= _MAX_DEPTH:
                optional = {}
            else:
                optional = {n: self.for_shape(m, depth + 1) for n, m in shape.members.items() if n not in required}
            return st.fixed_dictionaries({n: self.for_shape(shape.members[n], depth + 1) for n in required},
                                         optional=optional)
        if kind == "list":
            lo = md.get("min", 0)
            size = max(lo, 0) if depth >= _MAX_DEPTH else None
            return st.lists(self.for_shape(shape.member, depth + 1), min_size=lo,
                            max_size=size if size is not None else max(lo, min(md.get("max", _MAX_ITEMS), _MAX_ITEMS)))
        if kind == "map":
            lo = md.get("min", 0)
            return st.dictionaries(self.for_shape(shape.key, depth + 1), self.for_shape(shape.value, depth + 1),
                                   min_size=lo, max_size=max(lo, min(md.get("max", _MAX_ITEMS), _MAX_ITEMS)))
        if kind == "string":
            return _string(shape)
        if kind in ("integer", "long"):
            return _number(shape, integral=True)
        if kind in ("float", "double"):
            return _number(shape, integral=False)
        if kind == "boolean":
            return st.booleans()
        if kind == "timestamp":
            return st.integers(1_600_000_000, 1_900_000_000) | st.just("2024-05-01T12:00:00Z")
        if kind == "blob":
            return st.binary(max_size=16).map(lambda b: base64.b64encode(b).decode())
        return st.none()


#: The order in which the templates build on each other (a model before its endpoint config ...).
PRIMING_ORDER = ("CreateModel", "CreateEndpointConfig", "CreateEndpoint", "CreatePipeline", "StartPipelineExecution",
                 "CreateModelPackageGroup", "CreateModelPackage", "CreateTrainingJob", "CreateHyperParameterTuningJob")


def request_for(operation: str, shape: Shape, strategies: ShapeStrategies) -> st.SearchStrategy:
    """Shape-built requests, and the operation's templates (fresh copies: mutations change them)."""
    drawn = strategies.for_shape(shape) if shape is not None else st.just({})
    templates = TEMPLATES.get(operation)
    if not templates:
        return drawn
    return st.one_of(drawn, st.sampled_from(templates).map(copy.deepcopy))


# --- breaking them ---------------------------------------------------------------------------------

def _slots(value: Any, shape: Shape, path: tuple = ()) -> list[tuple[tuple, Shape]]:
    """Every (path, shape) in a drawn request: a path is the keys/indexes from the top."""
    out = [(path, shape)]
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        for name, member in shape.members.items():
            if name in value:
                out += _slots(value[name], member, path + (name,))
    elif kind == "list" and isinstance(value, list):
        for i, item in enumerate(value):
            out += _slots(item, shape.member, path + (i,))
    elif kind == "map" and isinstance(value, dict):
        for key, item in value.items():
            out += _slots(item, shape.value, path + (key,))
    return out


def _put(request: dict, path: tuple, value: Any) -> None:
    target = request
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


def _drop(request: dict, path: tuple) -> None:
    target = request
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]


_DEEP = re.compile(r'"<<deep:(\d+)>>"')


def _nested(depth: int) -> str:
    """A marker :func:`encode` turns into JSON nested ``depth`` levels (no recursion on our side)."""
    return f"<<deep:{depth}>>"


def _expand(match: re.Match) -> str:
    depth = int(match.group(1))
    return '{"k":[' * (depth // 2) + '"deep"' + "]}" * (depth // 2)


def encode(request: dict) -> bytes:
    """The request as a JSON body, deep-nesting markers expanded."""
    return _DEEP.sub(_expand, json.dumps(request)).encode()


WRONG_VALUES = st.sampled_from([
    "", "yes", "12", 0, -1, 2**63, 1.5, -1e300, True, False, [], [1, "a"], {}, {"a": {"b": []}}, None,
    "\x00\udcff", "../../etc/passwd", "..", ".",
])
JUNK_TOKENS = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=40).map(lambda b: base64.urlsafe_b64encode(b).decode()),
    st.sampled_from([
        base64.urlsafe_b64encode(json.dumps(v).encode()).decode()
        for v in ({"o": -5}, {"o": 1e400}, {"o": "x"}, {"o": [1]}, [1], {"p": 1}, 7, None, {"o": 10**30})
    ] + ["eyJvIjogMWU0MDB9", "0", "-1", "²", "99999999999999999999", "ey"]),
)
BAD_TIMESTAMPS = st.sampled_from(["yesterday", "2024-13-45", "", "1e3", 1e300, -1e20, [], {}, True, "now"])


def _mutate_type(data, request, slots):
    paths = [p for p, _ in slots if p] or [(name,) for name in slots[0][1].members]
    _put(request, data.draw(st.sampled_from(paths)), data.draw(WRONG_VALUES))


def _mutate_missing(data, request, slots):
    candidates = [(p, s) for p, s in slots if s.type_name == "structure" and s.required_members]
    path, shape = data.draw(st.sampled_from(candidates or slots))
    owner = request
    for key in path:
        owner = owner[key]
    present = [m for m in getattr(shape, "required_members", []) if isinstance(owner, dict) and m in owner]
    if present:
        del owner[data.draw(st.sampled_from(present))]


def _mutate_huge(data, request, slots):
    strings = [p for p, s in slots if p and s.type_name == "string"] or [("HugeUnknownMember",)]
    path = data.draw(st.sampled_from(strings))
    _put(request, path, data.draw(st.sampled_from(["x" * 300_000, "é" * 100_000, "a" * 3_000_000])))


def _mutate_deep(data, request, slots):
    path = data.draw(st.sampled_from([p for p, _ in slots if p] or [("DeepUnknownMember",)]))
    _put(request, path, _nested(data.draw(st.sampled_from([99, 150, 2500]))))


def _mutate_token(data, request, slots):
    request["NextToken"] = data.draw(JUNK_TOKENS)


def _mutate_timestamp(data, request, slots):
    stamps = [p for p, s in slots if p and s.type_name == "timestamp"]
    path = data.draw(st.sampled_from(stamps)) if stamps else ("CreationTimeAfter",)
    _put(request, path, data.draw(BAD_TIMESTAMPS))


def _mutate_unknown(data, request, slots):
    structs = [p for p, s in slots if s.type_name == "structure"]
    path = data.draw(st.sampled_from(structs))
    owner = request
    for key in path:
        owner = owner[key]
    owner[data.draw(st.sampled_from(["Unknown", "__proto__", "", "🙂"]))] = data.draw(WRONG_VALUES)


MUTATIONS = {
    "wrong type": _mutate_type, "missing required": _mutate_missing, "huge string": _mutate_huge,
    "deep nesting": _mutate_deep, "junk NextToken": _mutate_token, "bad timestamp": _mutate_timestamp,
    "unknown member": _mutate_unknown,
}

BROKEN_BODIES = st.sampled_from([
    b"[]", b'"x"', b"1", b"null", b"{", b'{"a":', b"\xff\xfe", b'{"a": NaN}', b'{"a": Infinity}',
    b'{"a": 1e400}', b"[" * 5000, b'{"a":' * 3000, b"1" * 5000, b'{"a": "\\ud800"}', b"   ", b"",
])


def break_request(data, request: dict, shape: Shape) -> tuple[str, dict]:
    """Apply one drawn mutation to ``request`` (in place); returns its name and the request."""
    slots = _slots(request, shape)
    name = data.draw(st.sampled_from(sorted(MUTATIONS)))
    MUTATIONS[name](data, request, slots)
    return name, request
