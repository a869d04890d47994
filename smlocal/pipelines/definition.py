"""Parsing and validation of SageMaker Pipelines definitions.

:func:`parse_definition` turns a ``PipelineDefinition`` JSON into frozen dataclasses (step
``Arguments`` stay raw) and raises :class:`smlocal.errors.ValidationError` for what CreatePipeline
rejects: bad JSON, duplicate names, unknown step/condition types, references to steps,
parameters, property files or variables that do not exist, cycles, mistyped defaults, and (via
:mod:`smlocal.pipelines.validation`) unknown step properties, DependsOn on a FailStep, step names
against their pattern, a wrong ``Version`` and incomparable condition operands. Steps in a
Condition step's ``IfSteps``/``ElseSteps`` are pipeline steps too (one namespace); see
:func:`branch_owner`. :func:`resolve_parameters` applies StartPipelineExecution parameters.
"""

from __future__ import annotations

import copy
import dataclasses
import graphlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from smlocal.errors import ValidationError
from smlocal.pipelines import expressions as ex
from smlocal.pipelines import validation
from smlocal.pipelines.conditions import validate_conditions

__all__ = [
    "PARAMETER_TYPES", "STEP_TYPES", "CacheConfig", "ParameterDefinition", "PipelineDefinition",
    "PropertyFileDefinition", "RetryPolicy", "StepDefinition", "branch_owner", "dependencies",
    "parse_definition", "parse_duration", "resolve_parameters",
]  # fmt: skip

#: Step ``Type`` values (the SageMaker Python SDK's StepTypeEnum).
STEP_TYPES = frozenset(
    {
        "Condition", "Model", "Processing", "RegisterModel", "Training", "Transform",
        "Callback", "Tuning", "Lambda", "QualityCheck", "ClarifyCheck", "EMR", "Fail",
        "AutoML", "EndpointConfig", "Endpoint", "InferenceComponent", "Lineage",
    }
)  # fmt: skip
PARAMETER_TYPES = frozenset({"String", "Integer", "Float", "Boolean"})
RETRY_EXCEPTION_TYPES = frozenset(
    {
        "Step.SERVICE_FAULT", "Step.THROTTLING", "SageMaker.JOB_INTERNAL_ERROR",
        "SageMaker.CAPACITY_ERROR", "SageMaker.RESOURCE_LIMIT", "Emr.RESOURCE_LIMIT",
    }
)  # fmt: skip
# MlflowConfig: SDK v3 (sagemaker.mlops Pipeline.definition) always writes it, null without MLflow tracking
_TOP_LEVEL_KEYS = frozenset(
    {"Version", "Metadata", "Parameters", "PipelineExperimentConfig", "MlflowConfig", "Steps"}
)
_PARAMETER_KEYS = frozenset({"Name", "Type", "DefaultValue", "EnumValues", "Description"})
_INT_RE = re.compile(r"[+-]?\d+")
_FLOAT_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_MAX_PARAMETER_VALUE = 1024
_DATE_UNITS = (("Y", 31_536_000), ("M", 2_592_000), ("W", 604_800), ("D", 86_400))
_TIME_UNITS = (("H", 3600), ("M", 60), ("S", 1))


def _invalid(message: str) -> ValidationError:
    return ValidationError(f"Unable to parse pipeline definition. {message}")


@dataclasses.dataclass(frozen=True)
class ParameterDefinition:
    """A pipeline parameter. ``default`` is typed (``Float`` defaults are floats)."""

    name: str
    type: str
    default: Any = None
    has_default: bool = False
    enum_values: tuple[str, ...] | None = None
    description: str | None = None


@dataclasses.dataclass(frozen=True)
class PropertyFileDefinition:
    """A ``PropertyFiles`` entry of a Processing step."""

    name: str
    output_name: str
    file_path: str


@dataclasses.dataclass(frozen=True)
class CacheConfig:
    """A step's ``CacheConfig``; ``expire_after_seconds`` is ``None`` when not set."""

    enabled: bool
    expire_after: str | None = None
    expire_after_seconds: int | None = None


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """One entry of a step's ``RetryPolicies``."""

    exception_types: tuple[str, ...]
    interval_seconds: int = 1
    backoff_rate: float = 2.0
    max_attempts: int | None = None
    expire_after_min: int | None = None


@dataclasses.dataclass(frozen=True)
class StepDefinition:
    """A step; for ``Condition`` steps also its conditions and branch steps.

    ``arguments`` is the raw ``Arguments`` object and ``raw`` the whole step object (some step
    types carry fields beside ``Arguments``, e.g. Lambda's ``FunctionArn``).
    """

    name: str
    type: str
    arguments: Mapping[str, Any]
    depends_on: tuple[str, ...] = ()
    display_name: str | None = None
    description: str | None = None
    property_files: tuple[PropertyFileDefinition, ...] = ()
    cache_config: CacheConfig | None = None
    retry_policies: tuple[RetryPolicy, ...] = ()
    conditions: tuple[Mapping[str, Any], ...] = ()
    if_steps: tuple[StepDefinition, ...] = ()
    else_steps: tuple[StepDefinition, ...] = ()
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def property_file(self, name: str) -> PropertyFileDefinition | None:
        """The property file called ``name``, or ``None``."""
        return next((pf for pf in self.property_files if pf.name == name), None)


@dataclasses.dataclass(frozen=True)
class PipelineDefinition:
    """A parsed pipeline definition. ``steps`` holds the top-level steps only."""

    version: str | None
    metadata: Mapping[str, Any]
    parameters: tuple[ParameterDefinition, ...]
    steps: tuple[StepDefinition, ...]
    experiment_config: Mapping[str, Any] | None = None

    def all_steps(self) -> Iterator[StepDefinition]:
        """Every step, branch steps included, depth first in definition order."""
        stack = list(reversed(self.steps))
        while stack:
            step = stack.pop()
            yield step
            stack.extend(reversed(step.if_steps + step.else_steps))

    def step(self, name: str) -> StepDefinition:
        """The step called ``name`` (top-level or in a branch); ``KeyError`` if none."""
        for step in self.all_steps():
            if step.name == name:
                return step
        raise KeyError(name)


def parse_duration(text: str) -> int:
    """Convert an ISO-8601 duration (``P30D``, ``PT12H``; ``p30d``, ``T12H`` as the SDK shows).

    A year counts 365 days, a month 30 days, a week 7 days. Fractions are rounded.

    Args:
        text: The duration.

    Returns:
        The duration in whole seconds.

    Raises:
        ValidationError: If ``text`` is not a duration.
    """
    body = str(text).strip().upper()
    body = body[1:] if body.startswith("P") else body
    date_part, has_time, time_part = body.partition("T")
    if (has_time and not time_part) or not (date_part or time_part):
        raise _invalid(f"Invalid ISO-8601 duration '{text}'.")
    seconds = _duration_part(date_part, _DATE_UNITS, text)
    return round(seconds + _duration_part(time_part, _TIME_UNITS, text))


def _duration_part(part: str, units: tuple[tuple[str, int], ...], text: str) -> float:
    total, allowed = 0.0, list(units)
    for number, unit in re.findall(r"(\d+(?:[.,]\d+)?)([A-Z])", part):
        while allowed and allowed[0][0] != unit:
            allowed.pop(0)
        if not allowed:
            raise _invalid(f"Invalid ISO-8601 duration '{text}'.")
        total += float(number.replace(",", ".")) * allowed.pop(0)[1]
    if re.sub(r"\d+(?:[.,]\d+)?[A-Z]", "", part):
        raise _invalid(f"Invalid ISO-8601 duration '{text}'.")
    return total


def _json_type_ok(kind: str, value: Any) -> bool:
    if isinstance(value, bool):
        return kind == "Boolean"
    expected = {"String": str, "Integer": int, "Float": (int, float), "Boolean": bool}[kind]
    return isinstance(value, expected)


def _parse_parameter(raw: Any, seen: set[str]) -> ParameterDefinition:
    if not isinstance(raw, Mapping):
        raise _invalid("Each entry of Parameters must be an object.")
    for key in raw:
        if key not in _PARAMETER_KEYS:
            raise _invalid(f"Cannot parse object, unknown property '{key}'.")
    name, kind = raw.get("Name"), raw.get("Type", "String")
    if not validation.is_parameter_name(name):
        raise _invalid(f"Invalid parameter name {name!r}.")
    if name in seen:
        raise _invalid(f"Duplicate parameter name '{name}'.")
    seen.add(name)
    if kind not in PARAMETER_TYPES:
        raise _invalid(f"Parameter '{name}' has unknown Type {kind!r}.")
    enum_values = raw.get("EnumValues")
    if enum_values is not None:
        if kind != "String" or not isinstance(enum_values, list) or not all(
            isinstance(v, str) for v in enum_values
        ):
            raise _invalid(f"EnumValues of parameter '{name}' must be a list of strings.")
        enum_values = tuple(enum_values)
    default = raw.get("DefaultValue")
    if default is not None:
        if not _json_type_ok(kind, default):
            raise _invalid(
                f"Default value {json.dumps(default)} of parameter '{name}' is not of type {kind}."
            )
        default = float(default) if kind == "Float" else default
        if enum_values is not None and default not in enum_values:
            raise _invalid(f"Default value '{default}' of parameter '{name}' is not in EnumValues.")
    description = raw.get("Description")
    return ParameterDefinition(name, kind, default, default is not None, enum_values, description)


def _parse_cache_config(raw: Any, step: str) -> CacheConfig | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or not isinstance(raw.get("Enabled", False), bool):
        raise _invalid(f"CacheConfig of step '{step}' must be an object with a boolean Enabled.")
    expire = raw.get("ExpireAfter")
    if expire is not None and not isinstance(expire, str):
        raise _invalid(f"CacheConfig.ExpireAfter of step '{step}' must be a string.")
    seconds = None if expire is None else parse_duration(expire)
    return CacheConfig(raw.get("Enabled", False), expire, seconds)


def _parse_retry_policy(raw: Any, step: str) -> RetryPolicy:
    if not isinstance(raw, Mapping):
        raise _invalid(f"RetryPolicies of step '{step}' must be objects.")
    types = raw.get("ExceptionType", [])
    types = [types] if isinstance(types, str) else types
    if not isinstance(types, list) or not types:
        raise _invalid(f"RetryPolicy of step '{step}' requires ExceptionType.")
    for kind in types:
        if kind not in RETRY_EXCEPTION_TYPES:
            raise _invalid(f"Unknown retry ExceptionType {kind!r} in step '{step}'.")
    backoff = raw.get("BackoffRate", 2.0)
    if not isinstance(backoff, (int, float)) or isinstance(backoff, bool) or backoff < 0:
        raise _invalid(f"RetryPolicy BackoffRate of step '{step}' must be a non-negative number.")
    bounds = {"IntervalSeconds": (0, None), "MaxAttempts": (1, 20), "ExpireAfterMin": (0, 14400)}
    for key, (low, high) in bounds.items():
        value = raw.get(key, low)
        if type(value) is not int or value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high else f"at least {low}"
            raise _invalid(f"RetryPolicy {key} of step '{step}' must be an integer {bound}.")
    return RetryPolicy(
        exception_types=tuple(types),
        interval_seconds=raw.get("IntervalSeconds", 1),
        backoff_rate=float(backoff),
        max_attempts=raw.get("MaxAttempts"),
        expire_after_min=raw.get("ExpireAfterMin"),
    )


def _parse_property_file(raw: Any, step: str) -> PropertyFileDefinition:
    keys = ("PropertyFileName", "OutputName", "FilePath")
    if not isinstance(raw, Mapping) or not all(isinstance(raw.get(k), str) for k in keys):
        raise _invalid(f"PropertyFiles of step '{step}' need PropertyFileName/OutputName/FilePath.")
    return PropertyFileDefinition(*(raw[k] for k in keys))


def _list_field(raw: Mapping, key: str, step: str) -> list:
    value = raw.get(key)
    value = [] if value is None else value
    if not isinstance(value, list):
        raise _invalid(f"{key} of step '{step}' must be a list.")
    return value


def _parse_step(raw: Any, seen: set[str]) -> StepDefinition:
    if not isinstance(raw, Mapping):
        raise _invalid("Each step must be an object.")
    name, kind, arguments = raw.get("Name"), raw.get("Type"), raw.get("Arguments")
    if not isinstance(name, str) or not name:
        raise _invalid(f"Invalid step name {name!r}.")
    validation.check_step_name(name)
    if name in seen:
        raise _invalid(f"Step names must be unique; '{name}' is used more than once.")
    seen.add(name)
    if kind not in STEP_TYPES:
        raise _invalid(f"Step '{name}' has unknown Type {kind!r}.")
    if not isinstance(arguments, Mapping):
        raise _invalid(f"Step '{name}' requires an Arguments object.")
    depends_on = _list_field(raw, "DependsOn", name)
    if not all(isinstance(target, str) for target in depends_on):
        raise _invalid(f"DependsOn of step '{name}' must be a list of step names.")
    conditions, branches = (), ((), ())
    if kind == "Condition":
        validate_conditions(arguments.get("Conditions"), f"Step '{name}' Conditions")
        conditions = tuple(arguments["Conditions"])
        branches = tuple(
            tuple(_parse_step(child, seen) for child in _list_field(arguments, key, name))
            for key in ("IfSteps", "ElseSteps")
        )
    return StepDefinition(
        name=name,
        type=kind,
        arguments=arguments,
        depends_on=tuple(dict.fromkeys(depends_on)),
        display_name=raw.get("DisplayName"),
        description=raw.get("Description"),
        property_files=tuple(
            _parse_property_file(p, name) for p in _list_field(raw, "PropertyFiles", name)
        ),
        cache_config=_parse_cache_config(raw.get("CacheConfig"), name),
        retry_policies=tuple(
            _parse_retry_policy(p, name) for p in _list_field(raw, "RetryPolicies", name)
        ),
        conditions=conditions,
        if_steps=branches[0],
        else_steps=branches[1],
        raw=raw,
    )


def _own_content(step: StepDefinition) -> dict[str, Any]:
    """The step object without ``DependsOn`` and without its branch steps (steps of their own)."""
    content = {k: v for k, v in step.raw.items() if k != "DependsOn"}
    if step.type == "Condition":
        content["Arguments"] = {
            k: v for k, v in step.arguments.items() if k not in ("IfSteps", "ElseSteps")
        }
    return content


def parse_definition(source: str | bytes | Mapping[str, Any]) -> PipelineDefinition:
    """Parse and validate a pipeline definition.

    Args:
        source: The definition as JSON text or as an already decoded object.

    Returns:
        The parsed definition.

    Raises:
        ValidationError: If AWS would reject the definition at CreatePipeline time.
    """
    document = copy.deepcopy(source)  # the definition must not change under the caller's edits
    if isinstance(source, (str, bytes, bytearray)):
        try:
            document = json.loads(source)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _invalid(f"Invalid JSON: {exc}") from None
    if not isinstance(document, Mapping):
        raise _invalid("The definition must be a JSON object.")
    for key in document:
        if key not in _TOP_LEVEL_KEYS:
            raise _invalid(f"Cannot parse object, unknown property '{key}'.")
    raw_parameters, raw_steps = document.get("Parameters", []), document.get("Steps")
    raw_parameters = [] if raw_parameters is None else raw_parameters
    if not isinstance(raw_parameters, list) or not isinstance(raw_steps, list):
        raise _invalid("Parameters and Steps must be lists.")
    metadata, experiment = document.get("Metadata", {}), document.get("PipelineExperimentConfig")
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, Mapping) or not isinstance(experiment, (Mapping, type(None))):
        raise _invalid("Metadata and PipelineExperimentConfig must be objects.")
    seen_parameters: set[str] = set()
    parameters = tuple(_parse_parameter(p, seen_parameters) for p in raw_parameters)
    seen_steps: set[str] = set()
    steps = tuple(_parse_step(s, seen_steps) for s in raw_steps)
    version = document.get("Version")
    validation.check_version(version)
    definition = PipelineDefinition(version, metadata, parameters, steps, experiment)
    _validate_references(definition)
    _check_acyclic(definition)
    return definition


def _validate_references(definition: PipelineDefinition) -> None:
    steps = {step.name: step for step in definition.all_steps()}
    parameters = {p.name for p in definition.parameters}
    places = [("PipelineExperimentConfig", definition.experiment_config)]
    places += [(f"step '{s.name}'", _own_content(s)) for s in steps.values()]
    for step in steps.values():
        for target in step.depends_on:
            if target not in steps:
                raise _invalid(f"Step '{step.name}' DependsOn '{target}', which does not exist.")
            validation.check_depends_on(step.name, target, steps[target].type)
    for where, content in places:
        for kind, body in ex.iter_expressions(content):
            if kind == "Get":
                _validate_get(body, where, steps, parameters)
            elif kind in ("Std:Join", "Std:JsonGet"):
                _validate_function(kind, body, where, steps, parameters)
            else:
                raise _invalid(f"Unknown function '{kind}' in {where}.")
    parameter_types = {p.name: p.type for p in definition.parameters}
    step_types = {name: step.type for name, step in steps.items()}
    for step in steps.values():
        if step.type == "Condition":
            validation.check_condition_operands(step.name, list(step.conditions), parameter_types, step_types)


def _validate_function(kind: str, body: Any, where: str, steps: dict, parameters: set) -> None:
    allowed = {"On", "Values"} if kind == "Std:Join" else {"PropertyFile", "S3Uri", "Path"}
    if not isinstance(body, Mapping):
        raise _invalid(f"{kind} in {where} must be an object.")
    for key in body:
        if key not in allowed:
            raise _invalid(f"Cannot parse object, unknown property '{key}'.")
    if kind == "Std:Join":
        if not isinstance(body.get("Values"), list):
            raise _invalid(f"Std:Join in {where} requires a Values list.")
        return
    if "Path" not in body or ("PropertyFile" in body) == ("S3Uri" in body):
        raise _invalid(f"Std:JsonGet in {where} requires a Path and one of PropertyFile or S3Uri.")
    if "PropertyFile" in body:
        text = ex.property_file_reference(body)
        if not (isinstance(text, str) and text.startswith("Steps.") and ".PropertyFiles." in text):
            raise _invalid(
                f"PropertyFile in {where} must be 'Steps.<step>.PropertyFiles.<name>': {text!r}."
            )
        _validate_get(text, where, steps, parameters)


def _validate_get(text: Any, where: str, steps: dict, parameters: set) -> None:
    try:
        ref = ex.parse_reference(text)
    except ex.ExpressionError as exc:
        raise _invalid(f"{exc} (in {where})") from None
    problem = None
    if ref.scope == "Parameters" and ref.name not in parameters:
        problem = f"parameter '{ref.name}', which is not defined"
    elif ref.scope == "Execution" and ref.name not in ex.EXECUTION_VARIABLES:
        problem = f"unknown execution variable '{ref.name}'"
    elif ref.scope == "PipelineExperimentConfig" and ref.name not in ex.EXPERIMENT_CONFIG_NAMES:
        problem = f"unknown property '{ref.name}'"
    elif ref.scope == "Steps" and ref.name not in steps:
        problem = f"step '{ref.name}', which does not exist"
    elif ref.scope == "Steps" and ref.path[:1] == (("attr", "PropertyFiles"),):
        if ref.property_file is None or steps[ref.name].property_file(ref.property_file) is None:
            problem = f"a property file that step '{ref.name}' does not define"
    elif ref.scope == "Steps":
        problem = validation.property_problem(ref.name, steps[ref.name].type, ref.path)
    if problem:
        raise _invalid(f"'{text}' in {where} references {problem}.")


def dependencies(
    definition: PipelineDefinition, *, include_branch_owner: bool = False
) -> dict[str, set[str]]:
    """The steps each step waits for.

    Args:
        definition: A parsed definition.
        include_branch_owner: Also make each branch step depend on its Condition step.

    Returns:
        For every step (branch steps included): its ``DependsOn`` plus every step whose
        properties or property files its arguments (or conditions) read.
    """
    owners = branch_owner(definition) if include_branch_owner else {}
    graph = {}
    for step in definition.all_steps():
        graph[step.name] = set(step.depends_on) | ex.referenced_steps(_own_content(step))
        if step.name in owners:
            graph[step.name].add(owners[step.name][0])
    return graph


def branch_owner(definition: PipelineDefinition) -> dict[str, tuple[str, str]]:
    """Map each branch step to ``(condition_step_name, "if" | "else")``.

    Only the innermost owner is given; a nested Condition step has its own entry.

    Args:
        definition: A parsed definition.

    Returns:
        The owner of every step that sits in an ``IfSteps``/``ElseSteps`` list.
    """
    owners: dict[str, tuple[str, str]] = {}
    for step in definition.all_steps():
        owners.update({child.name: (step.name, "if") for child in step.if_steps})
        owners.update({child.name: (step.name, "else") for child in step.else_steps})
    return owners


def branch_taken(outcome: object) -> str:
    """The branch (``"if"`` or ``"else"``) a Condition step with ``outcome`` takes: ``IfSteps`` only when
    its conditions all held (``Outcome`` True), ``ElseSteps`` otherwise."""
    return "if" if outcome is True else "else"


def _check_acyclic(definition: PipelineDefinition) -> None:
    try:
        graph = dependencies(definition, include_branch_owner=True)
        graphlib.TopologicalSorter({k: sorted(v) for k, v in graph.items()}).prepare()
    except graphlib.CycleError as exc:
        cycle = " -> ".join(reversed(exc.args[1]))
        raise _invalid(f"Cycle detected in pipeline step graph: {cycle}.") from None


def _typed_value(parameter: ParameterDefinition, value: str) -> Any:
    text = value.strip()
    if parameter.type == "Integer" and _INT_RE.fullmatch(text):
        return int(text)
    if parameter.type == "Float" and _FLOAT_RE.fullmatch(text):
        return float(text)
    if parameter.type == "Boolean" and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if parameter.type == "String":
        if parameter.enum_values is not None and value not in parameter.enum_values:
            raise ValidationError(
                f"Value '{value}' for parameter '{parameter.name}' is not one of the "
                f"allowed values {list(parameter.enum_values)}."
            )
        return value
    raise ValidationError(
        f"Value '{value}' for parameter '{parameter.name}' is not a valid {parameter.type}."
    )


def resolve_parameters(
    definition: PipelineDefinition, supplied: Sequence[Mapping[str, Any]] | None
) -> dict[str, Any]:
    """Apply StartPipelineExecution ``PipelineParameters`` to a definition's parameters.

    Args:
        definition: A parsed definition.
        supplied: ``[{"Name": ..., "Value": "..."}]``; values are strings, as on the wire.

    Returns:
        Every parameter's typed value (supplied, else its default).

    Raises:
        ValidationError: For unknown or repeated names, empty, over-long or mistyped values,
            values outside ``EnumValues`` and parameters with neither value nor default.
    """
    declared = {p.name: p for p in definition.parameters}
    values: dict[str, Any] = {}
    for item in supplied or []:
        if not isinstance(item, Mapping) or "Name" not in item or "Value" not in item:
            raise ValidationError("Each pipeline parameter requires a Name and a Value.")
        name, value = item["Name"], item["Value"]
        if name not in declared:
            raise ValidationError(f"Unknown parameter '{name}'")
        if name in values:
            raise ValidationError(f"Parameter '{name}' is specified more than once.")
        if not isinstance(value, str):
            raise ValidationError(f"Value of parameter '{name}' must be a string.")
        if value == "":
            raise ValidationError('[string "" is too short (length: 0, required minimum: 1)]')
        if len(value) > _MAX_PARAMETER_VALUE:
            raise ValidationError(
                f"Value of parameter '{name}' is too long (length: {len(value)}, "
                f"maximum allowed: {_MAX_PARAMETER_VALUE})."
            )
        values[name] = _typed_value(declared[name], value)
    for name, parameter in declared.items():
        if name not in values:
            if not parameter.has_default:
                raise ValidationError(f"Parameter '{name}' is undefined.")
            values[name] = parameter.default
    return values
