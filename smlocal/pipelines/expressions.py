"""Evaluation of SageMaker Pipelines expressions.

A pipeline definition embeds three kinds of expression anywhere in a step's JSON:

* ``{"Get": "<reference>"}`` where the reference is ``Parameters.<name>``,
  ``Execution.<variable>``, ``PipelineExperimentConfig.<ExperimentName|TrialName>`` or
  ``Steps.<step>.<property path>`` (e.g. ``Steps.Pre.ProcessingOutputConfig.Outputs['train']
  .S3Output.S3Uri`` or ``Steps.Tune.TrainingJobSummaries[0].TrainingJobName``);
* ``{"Std:Join": {"On": sep, "Values": [...]}}``;
* ``{"Std:JsonGet": {"PropertyFile": {"Get": "Steps.X.PropertyFiles.Name"}, "Path": "a.b[0]"}}``
  and its S3 form ``{"Std:JsonGet": {"S3Uri": <expr>, "Path": ...}}``.

A dict is an expression only when its single key is ``Get`` or starts with ``Std:``; any other
dict is plain data and is walked recursively. This module is pure: the I/O the expressions need
(step properties, property files, S3 objects) is injected through :class:`EvaluationContext`.

Rendering (see :func:`render_string`): booleans render as ``true``/``false`` (AWS: a Join of a
ConditionStep's ``Outcome`` reads ``...: false`` in the SDK's integration test
``test_two_step_fail_pipeline_with_join_fn``; a Condition step's ``Outcome`` property is a JSON
boolean). Choices where AWS behaviour is not documented: integers as decimal digits, floats with
Python's shortest round-trip ``repr`` (``6.0``, ``0.25``), datetimes as ISO-8601 UTC with
milliseconds.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from smlocal.textscan import closing_bracket

__all__ = [
    "EXECUTION_VARIABLES", "EXPERIMENT_CONFIG_NAMES", "EvaluationContext", "ExpressionError",
    "Reference", "evaluate", "expression_kind", "iter_expressions", "parse_path",
    "parse_reference", "property_file_reference", "referenced_steps", "render_string",
    "resolve_path",
]  # fmt: skip

#: Variables a definition may read with ``{"Get": "Execution.<name>"}`` (SDK ExecutionVariables).
EXECUTION_VARIABLES = frozenset(
    {
        "StartDateTime", "CurrentDateTime", "PipelineName", "PipelineArn", "PipelineExecutionId",
        "PipelineExecutionArn", "TrainingJobName", "ProcessingJobName",
    }
)  # fmt: skip

#: Names readable with ``{"Get": "PipelineExperimentConfig.<name>"}``.
EXPERIMENT_CONFIG_NAMES = frozenset({"ExperimentName", "TrialName"})

FUNCTIONS = frozenset({"Std:Join", "Std:JsonGet"})

# When a list property is indexed by a string (``Outputs['train']``) the element is the one whose
# name field equals the string. The field per list follows the SageMaker API shapes.
LIST_NAME_KEYS: dict[str, str] = {
    "Outputs": "OutputName", "ProcessingInputs": "InputName", "InputDataConfig": "ChannelName",
    "AdditionalModelDataSources": "ChannelName", "FinalMetricDataList": "MetricName",
    "CandidateMetrics": "MetricName", "DebugRuleConfigurations": "RuleConfigurationName",
    "DebugRuleEvaluationStatuses": "RuleConfigurationName",
    "ProfilerRuleConfigurations": "RuleConfigurationName",
    "ProfilerRuleEvaluationStatuses": "RuleConfigurationName",
    "ProductionVariants": "VariantName", "ShadowProductionVariants": "VariantName",
    "TrainingJobSummaries": "TrainingJobName", "TrainingJobDefinitions": "DefinitionName",
    "CollectionConfigurations": "CollectionName", "InstanceGroups": "InstanceGroupName",
    "Alarms": "AlarmName", "OutputParameters": "Name",
}  # fmt: skip


class ExpressionError(Exception):
    """An expression could not be evaluated at run time; the message suits a FailureReason."""


def _no_step_properties(step_name: str) -> Mapping[str, Any] | None:
    raise ExpressionError(f"Step '{step_name}' has no properties available.")


def _no_property_file(step_name: str, property_file: str) -> Any:
    raise ExpressionError(f"Property file '{property_file}' of step '{step_name}' is unavailable.")


def _no_s3(uri: str) -> Any:
    raise ExpressionError(f"Unable to read JSON from {uri}: no S3 reader configured.")


@dataclasses.dataclass
class EvaluationContext:
    """Everything an expression may read while it is evaluated.

    Attributes:
        parameters: Resolved pipeline parameters, name to typed value.
        execution_variables: ``Execution.*`` values by variable name. A value may be a
            zero-argument callable (e.g. for ``CurrentDateTime``); it is called on each read.
            ``datetime`` values are rendered as ISO-8601 strings.
        step_properties: Returns the properties (the Describe* response) of a step that ran, or
            ``None``/raises ``KeyError`` when the step has no properties.
        read_property_file: ``(step_name, property_file_name) -> parsed JSON`` of a property file.
        read_s3_json: ``(s3_uri) -> parsed JSON`` for the ``S3Uri`` form of ``Std:JsonGet``.
        experiment_config: The evaluated ``PipelineExperimentConfig`` object.
    """

    parameters: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    execution_variables: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    step_properties: Callable[[str], Mapping[str, Any] | None] = _no_step_properties
    read_property_file: Callable[[str, str], Any] = _no_property_file
    read_s3_json: Callable[[str], Any] = _no_s3
    experiment_config: Mapping[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class Reference:
    """A parsed ``Get`` reference: ``<scope>.<name>`` plus, for ``Steps``, a property path.

    ``scope`` is ``Parameters``, ``Execution``, ``PipelineExperimentConfig`` or ``Steps``;
    ``path`` holds :func:`parse_path` segments.
    """

    text: str
    scope: str
    name: str
    path: tuple[tuple[str, Any], ...] = ()

    @property
    def property_file(self) -> str | None:
        """The property file name when this is ``Steps.X.PropertyFiles.<name>``, else ``None``."""
        path = self.path
        if len(path) == 2 and path[0] == ("attr", "PropertyFiles") and path[1][0] == "attr":
            return path[1][1]
        return None


_INDEX_RE = re.compile(r"-?\d+")
_SCOPES = ("Parameters", "Execution", "PipelineExperimentConfig", "Steps")


def parse_path(text: str, *, leading_dot: bool = False) -> tuple[tuple[str, Any], ...]:
    """Split a property or JSON path into segments.

    Segments are ``("attr", name)`` for ``.name``, ``("index", n)`` for ``[n]`` and
    ``("key", s)`` for ``['s']`` / ``["s"]`` (quoted keys may contain dots and brackets).

    Args:
        text: The path, e.g. ``ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri``.
        leading_dot: Whether the first attribute starts with ``.`` too (after ``Steps.<name>``).

    Returns:
        The segments, in order.

    Raises:
        ExpressionError: If the path is malformed.
    """
    segments: list[tuple[str, Any]] = []
    i, n = 0, len(text)
    expect_dot = leading_dot
    while i < n:
        char = text[i]
        if char == "[":
            close = closing_bracket(text, i)
            if close < 0:
                raise ExpressionError(f"Invalid path '{text}': unclosed '['.")
            inner = text[i + 1 : close].strip()
            if len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
                segments.append(("key", inner[1:-1]))
            elif _INDEX_RE.fullmatch(inner):
                segments.append(("index", int(inner)))
            else:
                raise ExpressionError(f"Invalid index '[{inner}]' in path '{text}'.")
            i = close + 1
            expect_dot = True
            continue
        if expect_dot:
            if char != ".":
                raise ExpressionError(f"Invalid path '{text}': expected '.' at position {i}.")
            i += 1
        start = i
        while i < n and text[i] not in ".[":
            if text[i] in "]'\"":
                raise ExpressionError(f"Invalid path '{text}': unexpected '{text[i]}'.")
            i += 1
        if i == start:
            raise ExpressionError(f"Invalid path '{text}': empty segment at position {start}.")
        segments.append(("attr", text[start:i]))
        expect_dot = True
    if not segments and not leading_dot:
        raise ExpressionError("Invalid path '': the path is empty.")
    return tuple(segments)


def parse_reference(text: Any) -> Reference:
    """Parse the string of a ``Get`` expression.

    Args:
        text: e.g. ``Parameters.InputData`` or ``Steps.Pre.ProcessingOutputConfig.Outputs['x']``.

    Returns:
        The parsed reference.

    Raises:
        ExpressionError: If the reference is malformed or its scope is unknown.
    """
    if not isinstance(text, str):
        raise ExpressionError(f"Get expects a string reference, got {text!r}.")
    scope, dot, rest = text.partition(".")
    if scope not in _SCOPES or not dot or not rest:
        raise ExpressionError(f"Invalid Get reference '{text}'.")
    if scope != "Steps":
        if not re.fullmatch(r"[A-Za-z0-9_\-]+", rest):
            raise ExpressionError(f"Invalid Get reference '{text}'.")
        return Reference(text, scope, rest)
    end = 0
    while end < len(rest) and rest[end] not in ".[":
        end += 1
    step_name = rest[:end]
    if not step_name:
        raise ExpressionError(f"Invalid Get reference '{text}': missing step name.")
    try:
        path = parse_path(rest[end:], leading_dot=True)
    except ExpressionError as exc:
        raise ExpressionError(f"Invalid Get reference '{text}': {exc}") from None
    return Reference(text, scope, step_name, path)


def expression_kind(value: Any) -> str | None:
    """Return ``Get``/``Std:Join``/``Std:JsonGet`` (or another ``Std:*``) if value is one.

    Args:
        value: Any JSON value.

    Returns:
        The function key of an expression dict, or ``None`` for plain data.
    """
    if isinstance(value, Mapping) and len(value) == 1:
        (key,) = value.keys()
        if key == "Get" or (isinstance(key, str) and key.startswith("Std:")):
            return key
    return None


def iter_expressions(value: Any) -> Iterator[tuple[str, Any]]:
    """Yield every expression in a JSON value, outermost first, as ``(kind, body)`` pairs.

    Expressions nested inside other expressions (a ``Get`` in a ``Join``) are yielded too.

    Args:
        value: Any JSON value.

    Yields:
        ``(kind, body)`` where kind is as returned by :func:`expression_kind`.
    """
    stack = [value]
    while stack:
        current = stack.pop()
        kind = expression_kind(current)
        if kind is not None:
            body = current[kind]
            yield kind, body
            stack.append(body)
        elif isinstance(current, Mapping):
            stack.extend(reversed(list(current.values())))
        elif isinstance(current, list):
            stack.extend(reversed(current))


def property_file_reference(body: Any) -> Any:
    """The reference string in a ``Std:JsonGet``'s ``PropertyFile`` (``{"Get": s}`` or ``s``)."""
    if not isinstance(body, Mapping):
        return None
    prop = body.get("PropertyFile")
    if isinstance(prop, Mapping) and set(prop) == {"Get"}:
        return prop["Get"]
    return prop


def referenced_steps(value: Any) -> set[str]:
    """Names of the steps a JSON value reads through ``Get``/``Std:JsonGet`` expressions.

    Malformed references are ignored here; definition validation reports them.

    Args:
        value: Any JSON value (step arguments, conditions, ...).

    Returns:
        The set of referenced step names.
    """
    names: set[str] = set()
    for kind, body in iter_expressions(value):
        texts = []
        if kind == "Get":
            texts.append(body)
        elif kind == "Std:JsonGet":
            prop = body.get("PropertyFile") if isinstance(body, Mapping) else None
            if isinstance(prop, str):  # the bare-string form is not itself a Get expression
                texts.append(prop)
        for text in texts:
            if isinstance(text, str) and text.startswith("Steps."):
                try:
                    names.add(parse_reference(text).name)
                except ExpressionError:
                    continue
    return names


def render_string(value: Any) -> str:
    """Render a primitive as the string the service substitutes (``Std:Join`` values).

    Args:
        value: A string, number, boolean or datetime.

    Returns:
        ``true``/``false``, integer digits, float ``repr`` (``6.0``), ISO-8601 UTC datetimes.

    Raises:
        ExpressionError: For ``null``, lists and objects.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, _dt.datetime):
        return _format_datetime(value)
    kind = "null" if value is None else type(value).__name__
    raise ExpressionError(f"Cannot convert a {kind} value to a string: {value!r}.")


def _format_datetime(value: _dt.datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _render_path(path: tuple[tuple[str, Any], ...]) -> str:
    text = ""
    for kind, item in path:
        if kind == "attr":
            text += f".{item}" if text else item
        else:
            text += f"[{item}]" if kind == "index" else f"['{item}']"
    return text


def resolve_path(data: Any, path: tuple[tuple[str, Any], ...], *, what: str) -> Any:
    """Follow parsed path segments into JSON data.

    A ``key`` segment applied to a list selects the element whose name field (see
    ``LIST_NAME_KEYS``; otherwise any ``*Name`` field) equals the key; for Callback/Lambda
    ``OutputParameters`` given as ``[{"Name", "Value"}]`` it selects the ``Value``.

    Args:
        data: The JSON value to read from.
        path: Segments from :func:`parse_path`.
        what: Description of the full reference, to start error messages with.

    Returns:
        The value found.

    Raises:
        ExpressionError: Naming ``what`` and the path up to the first missing segment.
    """
    current, list_name = data, None
    for position, (kind, item) in enumerate(path):
        found, current = _step_into(current, kind, item, list_name)
        if not found:
            raise ExpressionError(f"{what}: '{_render_path(path[: position + 1])}' does not exist.")
        list_name = item if kind == "attr" else None
    return current


def _step_into(current: Any, kind: str, item: Any, list_name: str | None) -> tuple[bool, Any]:
    if kind == "index":
        if isinstance(current, list) and -len(current) <= item < len(current):
            return True, current[item]
    elif isinstance(current, Mapping):
        if item in current:
            return True, current[item]
    elif kind == "key" and isinstance(current, list):
        preferred = LIST_NAME_KEYS.get(list_name or "")
        for element in current:
            if not isinstance(element, Mapping):
                continue
            if preferred is not None:
                if element.get(preferred) == item:
                    outputs = list_name == "OutputParameters"  # [{"Name", "Value"}]
                    return True, element.get("Value") if outputs else element
            elif any(k.endswith("Name") and v == item for k, v in element.items()):
                return True, element
    return False, None


def evaluate(value: Any, ctx: EvaluationContext) -> Any:
    """Evaluate every expression in a JSON value.

    Args:
        value: Any JSON value; dicts and lists are copied, expressions replaced by their values.
        ctx: Where parameters, variables, step properties and files come from.

    Returns:
        The value with every expression replaced. Results keep their JSON types.

    Raises:
        ExpressionError: If an expression cannot be evaluated (missing property, bad path, ...).
    """
    kind = expression_kind(value)
    if kind == "Get":
        return _evaluate_get(value["Get"], ctx)
    if kind == "Std:Join":
        return _evaluate_join(value["Std:Join"], ctx)
    if kind == "Std:JsonGet":
        return _evaluate_json_get(value["Std:JsonGet"], ctx)
    if kind is not None:
        raise ExpressionError(f"Unknown function '{kind}'.")
    if isinstance(value, Mapping):
        return {key: evaluate(item, ctx) for key, item in value.items()}
    if isinstance(value, list):
        return [evaluate(item, ctx) for item in value]
    return value


def _evaluate_get(text: Any, ctx: EvaluationContext) -> Any:
    ref = parse_reference(text)
    if ref.scope == "Parameters":
        if ref.name not in ctx.parameters:
            raise ExpressionError(f"Parameter '{ref.name}' referenced by '{text}' is not defined.")
        return ctx.parameters[ref.name]
    if ref.scope == "Execution":
        if ref.name not in ctx.execution_variables:
            raise ExpressionError(f"Execution variable '{ref.name}' ('{text}') is not available.")
        result = ctx.execution_variables[ref.name]
        if callable(result):
            result = result()
        return _format_datetime(result) if isinstance(result, _dt.datetime) else result
    if ref.scope == "PipelineExperimentConfig":
        config = ctx.experiment_config or {}
        if config.get(ref.name) is None:
            raise ExpressionError(f"'{text}' is not set for this pipeline.")
        return config[ref.name]
    if ref.property_file is not None:
        raise ExpressionError(f"'{text}' names a property file; read it with Std:JsonGet.")
    try:
        properties = ctx.step_properties(ref.name)
    except KeyError:
        properties = None
    if properties is None:
        raise ExpressionError(
            f"Unable to resolve '{text}': step '{ref.name}' has no properties (it has not run)."
        )
    return resolve_path(properties, ref.path, what=f"Unable to resolve '{text}'")


def _evaluate_join(body: Any, ctx: EvaluationContext) -> str:
    if not isinstance(body, Mapping) or not isinstance(body.get("Values"), list):
        raise ExpressionError("Std:Join requires a 'Values' list.")
    separator = evaluate(body.get("On", ""), ctx)
    if not isinstance(separator, str):
        raise ExpressionError(f"Std:Join 'On' must be a string, got {separator!r}.")
    parts = []
    for item in body["Values"]:
        resolved = evaluate(item, ctx)
        try:
            parts.append(render_string(resolved))
        except ExpressionError as exc:
            raise ExpressionError(f"Std:Join cannot join {item!r}: {exc}") from None
    return separator.join(parts)


def _call_reader(reader: Callable[..., Any], description: str, *args: Any) -> Any:
    try:
        return reader(*args)
    except ExpressionError:
        raise
    except Exception as exc:  # noqa: BLE001 - injected I/O; its failure becomes the step's
        raise ExpressionError(f"Unable to read {description}: {exc}") from exc


def _evaluate_json_get(body: Any, ctx: EvaluationContext) -> Any:
    if not isinstance(body, Mapping):
        raise ExpressionError("Std:JsonGet requires an object.")
    json_path = evaluate(body.get("Path"), ctx)
    if not isinstance(json_path, str):
        raise ExpressionError(f"Std:JsonGet 'Path' must be a string, got {json_path!r}.")
    if "PropertyFile" in body:
        ref_text = property_file_reference(body)
        ref = parse_reference(ref_text)
        if ref.property_file is None:
            raise ExpressionError(
                "Std:JsonGet PropertyFile must be 'Steps.<step>.PropertyFiles.<name>', "
                f"got {ref_text!r}."
            )
        source = f"property file '{ref.property_file}' of step '{ref.name}'"
        data = _call_reader(ctx.read_property_file, source, ref.name, ref.property_file)
    elif "S3Uri" in body:
        uri = evaluate(body["S3Uri"], ctx)
        if not isinstance(uri, str):
            raise ExpressionError(f"Std:JsonGet 'S3Uri' must evaluate to a string, got {uri!r}.")
        source = uri
        data = _call_reader(ctx.read_s3_json, uri, uri)
    else:
        raise ExpressionError("Std:JsonGet requires 'PropertyFile' or 'S3Uri'.")
    try:
        segments = parse_path(_strip_root(json_path))
    except ExpressionError as exc:
        raise ExpressionError(f"Invalid JSON path '{json_path}' for {source}: {exc}") from None
    return resolve_path(data, segments, what=f"Invalid JSON path '{json_path}' for {source}")


def _strip_root(json_path: str) -> str:
    """Accept JsonPath's optional ``$`` root (``$.a.b`` and ``$['a']`` mean ``a.b`` / ``['a']``)."""
    if json_path.startswith("$."):
        return json_path[2:]
    if json_path.startswith("$["):
        return json_path[1:]
    return json_path
