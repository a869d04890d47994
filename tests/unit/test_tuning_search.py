"""Candidate generation and best-job choice of hyperparameter tuning (pure)."""

from __future__ import annotations

import math

import pytest

from smlocal.errors import ValidationError
from smlocal.service import tuning_search as search


def _config(strategy: str, **ranges) -> dict:
    return {"Strategy": strategy, "ParameterRanges": ranges, "RandomSeed": 3}


def test_grid_enumerates_integers_and_categories_in_order():
    config = _config("Grid", IntegerParameterRanges=[{"Name": "depth", "MinValue": "1", "MaxValue": "3"}],
                     CategoricalParameterRanges=[{"Name": "kind", "Values": ["a", "b"]}])
    found = list(search.candidates(config, 100))
    assert search.grid_size(config) == 6 and len(found) == 6
    assert found[0] == {"depth": "1", "kind": "a"} and found[-1] == {"depth": "3", "kind": "b"}
    assert len(list(search.candidates(config, 4))) == 4


def test_random_respects_bounds_scaling_and_seed():
    config = _config("Random", ContinuousParameterRanges=[
        {"Name": "eta", "MinValue": "0.001", "MaxValue": "1", "ScalingType": "Logarithmic"}],
        IntegerParameterRanges=[{"Name": "rounds", "MinValue": "10", "MaxValue": "20"}])
    first = list(search.candidates(config, 200))
    assert first == list(search.candidates(config, 200))  # RandomSeed makes it repeatable
    etas = [float(c["eta"]) for c in first]
    assert all(0.001 <= e <= 1 for e in etas)
    assert sum(e < 0.0316 for e in etas) > 60  # log-uniform: about half below the geometric middle
    assert {int(c["rounds"]) for c in first} <= set(range(10, 21))


@pytest.mark.parametrize("config, fragment", [
    (_config("Grid", ContinuousParameterRanges=[{"Name": "x", "MinValue": "0", "MaxValue": "1"}]), "Grid search"),
    (_config("Random", IntegerParameterRanges=[{"Name": "x", "MinValue": "5", "MaxValue": "1"}]), "larger than"),
    (_config("Random", ContinuousParameterRanges=[{"Name": "x", "MinValue": "0", "MaxValue": "1",
                                                   "ScalingType": "Logarithmic"}]), "above 0"),
    (_config("Random", CategoricalParameterRanges=[{"Name": "x", "Values": []}]), "at least one value"),
    (_config("Random", IntegerParameterRanges=[{"Name": "x", "MinValue": "1", "MaxValue": "2"}],
             CategoricalParameterRanges=[{"Name": "x", "Values": ["a"]}]), "more than one"),
])  # fmt: skip
def test_invalid_ranges(config, fragment):
    with pytest.raises(ValidationError, match=fragment):
        search.validate(config)


def test_best_follows_the_objective_type():
    jobs = [{"TrainingJobName": n, "FinalHyperParameterTuningJobObjectiveMetric": {"Value": v}}
            for n, v in (("a", 0.5), ("b", 0.9), ("c", 0.1))] + [{"TrainingJobName": "failed"}]
    assert search.best({"Type": "Maximize"}, jobs)["TrainingJobName"] == "b"
    assert search.best({"Type": "Minimize"}, jobs)["TrainingJobName"] == "c"
    assert search.best({"Type": "Minimize"}, jobs[-1:]) is None
    assert search.better({"Type": "Minimize"}, 1.0, 2.0) and not search.better({"Type": "Maximize"}, 1.0, 2.0)
    assert math.isclose(0.1, min(j["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] for j in jobs[:3]))
