"""Checks CreatePipeline/UpdatePipeline make on a definition beyond its JSON shape.

:func:`smlocal.pipelines.definition.parse_definition` parses the document and checks its
references (steps, parameters, property files, cycles); this module adds what AWS checks on top:

* the ``Version`` (``2020-12-01``, the only version the SDK writes);
* step names against the API's ``StepName`` (``[A-Za-z0-9\\-_]*``, at most 64 characters);
* no step depends on a FailStep (AWS: "CondStep can not depends on FailStep", from the SDK's
  integration test ``test_invalid_pipeline_depended_on_fail_step``);
* ``Steps.<name>.<path>`` names a property the step type has: the tree of a job step is the
  botocore output shape of its Describe* call (the shapes the SDK's ``Properties`` are built
  from), a Condition step has ``Outcome``, Lambda/Callback steps ``OutputParameters``,
  QualityCheck/ClarifyCheck steps their baseline URIs, a FailStep nothing;
* the operands of a condition have types the condition can compare.

Everything here is pure: the property trees are read from botocore's bundled service models
(package data, like the SDK does), never from the network.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

import botocore.session

from smlocal.errors import ValidationError
from smlocal.pipelines import expressions as ex
from smlocal.pipelines.conditions import COMPARISON_TYPES, describe_operand, iter_comparisons

__all__ = [
    "DEFINITION_VERSIONS", "NAME_PATTERN", "PARAMETER_NAME_MAX_LENGTH", "STEP_NAME_MAX_LENGTH",
    "check_condition_operands", "check_depends_on", "check_step_name", "check_version",
    "is_parameter_name", "operand_type", "property_problem", "property_type",
]  # fmt: skip

#: ``Version`` values a definition may declare (the SDK writes ``2020-12-01``).
DEFINITION_VERSIONS = ("2020-12-01",)
#: The API's name constraints: botocore's ``StepName`` (at most 64 characters) and
#: ``PipelineParameterName`` (1 to 256) share this pattern.
NAME_PATTERN = r"[A-Za-z0-9\-_]*"
STEP_NAME_MAX_LENGTH = 64
PARAMETER_NAME_MAX_LENGTH = 256
_NAME_RE = re.compile(NAME_PATTERN)

#: Botocore output shapes holding each job-like step type's properties (as the SDK's steps use).
_SHAPE_ROOTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Training": ("sagemaker", ("DescribeTrainingJobResponse",)),
    "Processing": ("sagemaker", ("DescribeProcessingJobResponse",)),
    "Transform": ("sagemaker", ("DescribeTransformJobResponse",)),
    "Tuning": ("sagemaker", ("DescribeHyperParameterTuningJobResponse",
                             "ListTrainingJobsForHyperParameterTuningJobResponse")),
    "Model": ("sagemaker", ("DescribeModelOutput",)),
    "RegisterModel": ("sagemaker", ("DescribeModelPackageOutput",)),
    "AutoML": ("sagemaker", ("DescribeAutoMLJobResponse",)),
    "EndpointConfig": ("sagemaker", ("DescribeEndpointConfigOutput",)),
    "Endpoint": ("sagemaker", ("DescribeEndpointOutput",)),
    "InferenceComponent": ("sagemaker", ("DescribeInferenceComponentOutput",)),
    "EMR": ("emr", ("Step",)),
}  # fmt: skip

_OUTPUT_PARAMETERS = {"OutputParameters": ("map", "string")}
_QUALITY = ("CalculatedBaselineConstraints", "CalculatedBaselineStatistics",
            "BaselineUsedForDriftCheckStatistics", "BaselineUsedForDriftCheckConstraints")
#: Property trees of the other step types: a dict is a structure, a string a primitive type.
_FIXED_TREES: dict[str, Mapping[str, Any]] = {
    "Condition": {"Outcome": "boolean"},
    "Lambda": _OUTPUT_PARAMETERS,
    "Callback": _OUTPUT_PARAMETERS,
    "QualityCheck": {name: "string" for name in _QUALITY},
    "ClarifyCheck": {name: "string" for name in _QUALITY if "Statistics" not in name},
    "Fail": {},
}  # fmt: skip

# Botocore primitive types as the operand types the Pipelines docs use.
_OPERAND_TYPES = {
    "string": "String", "timestamp": "String", "blob": "String", "boolean": "Boolean",
    "integer": "Integer", "long": "Integer", "float": "Float", "double": "Float",
    "structure": "Object", "map": "Object", "list": "List",
}  # fmt: skip
_NUMBERS = frozenset({"Integer", "Float"})
_PRIMITIVES = frozenset({"String", "Boolean", *_NUMBERS})


def _invalid(message: str) -> ValidationError:
    return ValidationError(f"Unable to parse pipeline definition. {message}")


@functools.cache
def _service_model(service: str) -> Any:
    return botocore.session.get_session().get_service_model(service)


def check_version(version: Any) -> None:
    """Refuse a ``Version`` other than the ones AWS knows (it may be left out).

    Args:
        version: The definition's ``Version`` member, ``None`` when absent.

    Raises:
        ValidationError: In the wording of AWS's model validation of enums.
    """
    if version is not None and version not in DEFINITION_VERSIONS:
        allowed = ", ".join(DEFINITION_VERSIONS)
        raise _invalid(
            f"Model Validation failed: Value '{version}' for 'Version' failed to satisfy enum "
            f"value set: [{allowed}]"
        )


def check_step_name(name: str) -> None:
    """Check a step name against the API's ``StepName`` pattern and length.

    Args:
        name: The step's ``Name``.

    Raises:
        ValidationError: With AWS's constraint wording.
    """
    if len(name) > STEP_NAME_MAX_LENGTH:
        raise _invalid(
            f"Value '{name}' at 'Steps.Name' failed to satisfy constraint: Member must have "
            f"length less than or equal to {STEP_NAME_MAX_LENGTH}"
        )
    if not _NAME_RE.fullmatch(name):
        raise _invalid(
            f"Value '{name}' at 'Steps.Name' failed to satisfy constraint: Member must satisfy "
            f"regular expression pattern: {NAME_PATTERN}"
        )


def is_parameter_name(name: Any) -> bool:
    """Whether ``name`` fits the API's ``PipelineParameterName`` (pattern, 1 to 256 characters).

    Args:
        name: A parameter's ``Name``.

    Returns:
        True when it fits.
    """
    return (isinstance(name, str) and 1 <= len(name) <= PARAMETER_NAME_MAX_LENGTH
            and _NAME_RE.fullmatch(name) is not None)


def check_depends_on(step_name: str, target: str, target_type: str) -> None:
    """Refuse a ``DependsOn`` naming a FailStep (a FailStep ends the execution).

    Args:
        step_name: The depending step.
        target: The step it names in ``DependsOn``.
        target_type: That step's ``Type``.

    Raises:
        ValidationError: "Step X can not depends on FailStep Y." (AWS's phrase).
    """
    if target_type == "Fail":
        raise _invalid(f"Step {step_name} can not depends on FailStep {target}.")


def _walk(node: Any, path: Sequence[tuple[str, Any]]) -> tuple[int, Any]:
    """Follow ``path`` through a property tree; ``(len(path), leaf)`` or ``(bad index, None)``.

    A leaf of ``None`` means "anything below here" (documents, unknown shapes).
    """
    for index, (kind, item) in enumerate(path):
        node = _child(node, kind, item)
        if node is _MISSING:
            return index, None
        if node is None:
            return len(path), None
    return len(path), node


_MISSING = object()


def _child(node: Any, kind: str, item: Any) -> Any:
    if isinstance(node, str):  # a primitive has no children
        return _MISSING
    if isinstance(node, tuple):  # ("map", value)
        return node[1] if kind in ("key", "attr") else _MISSING
    if isinstance(node, Mapping):
        return node.get(item, _MISSING) if kind == "attr" else _MISSING
    if getattr(node, "metadata", {}).get("document"):
        return None
    type_name = node.type_name
    if type_name == "structure":
        return node.members.get(item, _MISSING) if kind == "attr" else _MISSING
    if type_name == "list":
        return node.member if kind in ("index", "key") else _MISSING
    if type_name == "map":
        return node.value if kind in ("key", "attr") else _MISSING
    return _MISSING


def _leaf_type(node: Any) -> str | None:
    if node is None:
        return None
    if isinstance(node, str):
        return _OPERAND_TYPES.get(node)
    if isinstance(node, (tuple, Mapping)):
        return "Object"
    if node.metadata.get("document"):
        return None
    return _OPERAND_TYPES.get(node.type_name)


def _roots(step_type: str) -> list[Any] | None:
    if step_type in _FIXED_TREES:
        return [_FIXED_TREES[step_type]]
    if step_type not in _SHAPE_ROOTS:
        return None
    service, shapes = _SHAPE_ROOTS[step_type]
    model = _service_model(service)
    return [model.shape_for(name) for name in shapes]


def _render(path: Sequence[tuple[str, Any]]) -> str:
    text = ""
    for kind, item in path:
        text += f".{item}" if kind == "attr" else f"[{item}]" if kind == "index" else f"['{item}']"
    return text.lstrip(".")


def property_problem(step_name: str, step_type: str, path: Sequence[tuple[str, Any]]) -> str | None:
    """Why ``Steps.<step_name><path>`` names no property of a step of ``step_type``, if it does not.

    Args:
        step_name: The referenced step.
        step_type: Its ``Type``.
        path: The reference's path segments (:func:`smlocal.pipelines.expressions.parse_path`).

    Returns:
        ``None`` when the property exists (or the type's properties are not known), else the end
        of a sentence "... references <problem>".
    """
    if step_type == "Fail":
        return f"step '{step_name}', a FailStep, which has no properties"
    roots = _roots(step_type)
    if roots is None:
        return None
    if not path:
        return f"step '{step_name}' without naming one of its properties"
    reached = max(_walk(root, path)[0] for root in roots)
    if reached == len(path):
        return None
    wrong = _render(path[: reached + 1])
    return f"property '{wrong}', which a {step_type} step such as '{step_name}' does not have"


def property_type(step_type: str, path: Sequence[tuple[str, Any]]) -> str | None:
    """The operand type (``String``, ``Integer``, ...) of a step property, ``None`` if not known.

    Args:
        step_type: The referenced step's ``Type``.
        path: The property path.

    Returns:
        The type name, or ``None`` when it cannot be told before the step runs.
    """
    for root in _roots(step_type) or ():
        reached, leaf = _walk(root, path)
        if reached == len(path):
            return _leaf_type(leaf)
    return None


def operand_type(value: Any, parameters: Mapping[str, str], step_types: Mapping[str, str]) -> str | None:
    """The type a condition operand has before the pipeline runs, ``None`` when unknown.

    Args:
        value: The operand (a literal or an expression).
        parameters: Declared parameter types by name.
        step_types: Step ``Type`` by step name.

    Returns:
        ``String``/``Integer``/``Float``/``Boolean``/``Null``/``List``/``Object``, or ``None``
        for values only known at run time (``Std:JsonGet``, unknown properties).
    """
    kind = ex.expression_kind(value)
    if kind == "Std:Join":
        return "String"
    if kind == "Get":
        try:
            ref = ex.parse_reference(value["Get"])
        except ex.ExpressionError:
            return None
        if ref.scope == "Parameters":
            return parameters.get(ref.name)
        if ref.scope in ("Execution", "PipelineExperimentConfig"):
            return "String"
        return property_type(step_types.get(ref.name, ""), ref.path)
    if kind is not None:
        return None
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Float"
    if isinstance(value, str):
        return "String"
    return "List" if isinstance(value, list) else "Object"


def _comparable(kind: str, left: str | None, right: str | None) -> bool:
    if left is None or right is None:
        return True
    if kind in COMPARISON_TYPES - {"Equals"}:  # orderings: numbers and strings only
        return {left, right} <= {"String", *_NUMBERS}
    if left in _PRIMITIVES and right in _PRIMITIVES:
        return not ({left, right} & {"Boolean"} and {left, right} & _NUMBERS)
    return left == right


def check_condition_operands(
    step_name: str,
    conditions: Any,
    parameters: Mapping[str, str],
    step_types: Mapping[str, str],
) -> None:
    """Refuse conditions whose operands' types cannot be compared.

    Orderings (``GreaterThan``...) take numbers or strings; ``Equals``/``In`` refuse a boolean
    against a number and a list or object against anything else. Operands known only at run time
    (``Std:JsonGet``) are not checked here.

    Args:
        step_name: The Condition step.
        conditions: Its ``Conditions`` list (already structurally valid).
        parameters: Declared parameter types by name.
        step_types: Step ``Type`` by step name.

    Raises:
        ValidationError: Naming the condition type and both operands with their types.
    """
    for kind, left, right in iter_comparisons(conditions):
        left_type = operand_type(left, parameters, step_types)
        right_type = operand_type(right, parameters, step_types)
        if not _comparable(kind, left_type, right_type):
            raise _invalid(
                f"Condition of type {kind} in step '{step_name}' is not supported between "
                f"{describe_operand(left, left_type)} and {describe_operand(right, right_type)}."
            )
