"""Pure search logic of hyperparameter tuning: candidate hyperparameters and choosing the best job.

Grid search enumerates every combination of the categorical values and the integers of integer
ranges (continuous ranges cannot be enumerated). Random search samples each range independently:
uniformly, or uniformly in log space for ``Logarithmic`` scaling. ``Bayesian`` and ``Hyperband``
are run as random search (same API behaviour, different choice of points).
"""

from __future__ import annotations

import itertools
import math
import random
from typing import Any, Iterator

from smlocal.errors import ValidationError


def _ranges(config: dict) -> tuple[list, list, list]:
    ranges = config.get("ParameterRanges") or {}
    return (ranges.get("IntegerParameterRanges") or [], ranges.get("ContinuousParameterRanges") or [],
            ranges.get("CategoricalParameterRanges") or [])


def _bounds(item: dict, cast) -> tuple[Any, Any]:
    try:
        low, high = cast(item["MinValue"]), cast(item["MaxValue"])
    except (KeyError, ValueError) as exc:
        raise ValidationError(f"Invalid range for hyperparameter {item.get('Name')}: {exc}") from exc
    if low > high:
        raise ValidationError(f"MinValue of hyperparameter {item['Name']} is larger than its MaxValue.")
    if item.get("ScalingType") == "Logarithmic" and low <= 0:
        raise ValidationError(f"Logarithmic scaling of hyperparameter {item['Name']} needs a MinValue above 0.")
    return low, high


def validate(config: dict) -> None:
    """Checks the ranges and the strategy's constraints (raises ValidationError)."""
    integers, continuous, categorical = _ranges(config)
    for item in integers:
        _bounds(item, int)
    for item in continuous:
        _bounds(item, float)
    for item in categorical:
        if not item.get("Values"):
            raise ValidationError(f"Categorical hyperparameter {item.get('Name')} needs at least one value.")
    if config["Strategy"] == "Grid" and continuous:
        raise ValidationError("Grid search cannot enumerate ContinuousParameterRanges; use Random or Bayesian.")
    names = [item["Name"] for item in integers + continuous + categorical]
    if len(names) != len(set(names)):
        raise ValidationError("A hyperparameter appears in more than one parameter range.")


def _sample(item: dict, rng: random.Random, cast) -> Any:
    low, high = _bounds(item, cast)
    if item.get("ScalingType") == "Logarithmic":
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    elif item.get("ScalingType") == "ReverseLogarithmic" and cast is float and high < 1:
        value = 1 - math.exp(rng.uniform(math.log(1 - high), math.log(1 - low)))
    else:
        value = rng.uniform(low, high)
    return min(high, max(low, round(value))) if cast is int else value


def candidates(config: dict, max_jobs: int) -> Iterator[dict[str, str]]:
    """Hyperparameter sets to train, at most ``max_jobs`` of them, values as strings."""
    integers, continuous, categorical = _ranges(config)
    if config["Strategy"] == "Grid":
        axes = [[(i["Name"], str(v)) for v in range(int(i["MinValue"]), int(i["MaxValue"]) + 1)] for i in integers]
        axes += [[(c["Name"], str(v)) for v in c["Values"]] for c in categorical]
        yield from (dict(combo) for combo in itertools.islice(itertools.product(*axes), max_jobs))
        return
    rng = random.Random(config.get("RandomSeed"))
    for _ in range(max_jobs):
        chosen = {i["Name"]: str(_sample(i, rng, int)) for i in integers}
        chosen.update({c["Name"]: repr(_sample(c, rng, float)) for c in continuous})
        chosen.update({c["Name"]: rng.choice(c["Values"]) for c in categorical})
        yield chosen


def grid_size(config: dict) -> int:
    """How many combinations a grid search has."""
    integers, _, categorical = _ranges(config)
    sizes = [int(i["MaxValue"]) - int(i["MinValue"]) + 1 for i in integers] + [len(c["Values"]) for c in categorical]
    return math.prod(sizes) if sizes else 1


def better(objective: dict, a: float, b: float) -> bool:
    """Whether objective value ``a`` beats ``b``."""
    return a > b if objective.get("Type") == "Maximize" else a < b


def best(objective: dict, summaries: list[dict]) -> dict | None:
    """The summary with the best final objective value among those that have one."""
    scored = [s for s in summaries if s.get("FinalHyperParameterTuningJobObjectiveMetric")]
    if not scored:
        return None
    key = lambda s: s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]  # noqa: E731
    return max(scored, key=key) if objective.get("Type") == "Maximize" else min(scored, key=key)
