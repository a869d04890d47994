"""The pure part of the SageMaker Pipelines engine: definitions, expressions, conditions.

Nothing here performs I/O; the executor injects it through
:class:`~smlocal.pipelines.expressions.EvaluationContext`.
"""

from smlocal.pipelines.conditions import (
    condition_metadata,
    evaluate_condition,
    evaluate_conditions,
)
from smlocal.pipelines.definition import (
    CacheConfig,
    ParameterDefinition,
    PipelineDefinition,
    PropertyFileDefinition,
    RetryPolicy,
    StepDefinition,
    branch_owner,
    dependencies,
    parse_definition,
    parse_duration,
    resolve_parameters,
)
from smlocal.pipelines.expressions import (
    EvaluationContext,
    ExpressionError,
    evaluate,
    referenced_steps,
    render_string,
)

__all__ = [
    "CacheConfig",
    "EvaluationContext",
    "ExpressionError",
    "ParameterDefinition",
    "PipelineDefinition",
    "PropertyFileDefinition",
    "RetryPolicy",
    "StepDefinition",
    "branch_owner",
    "condition_metadata",
    "dependencies",
    "evaluate",
    "evaluate_condition",
    "evaluate_conditions",
    "parse_definition",
    "parse_duration",
    "referenced_steps",
    "render_string",
    "resolve_parameters",
]
