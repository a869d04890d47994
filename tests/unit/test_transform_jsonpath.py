"""The JSONPath subset of batch transform filters (developer guide: Supported JSONPath Operators)."""

from __future__ import annotations

import pytest

from smlocal.runtime.transform_jsonpath import JsonPathError, compile_path

ROW = ["id7", "1.5", "2.5", "3.5", "4.5", "5.5", "6.5"]
DOC = {"id": 7, "features": [1, 2, 3], "meta": {"a": 1, "b": 2}, "SageMakerOutput": {"label": 1}}


@pytest.mark.parametrize("text", [None, "$", " $ "])
def test_identity(text):
    path = compile_path(text)
    assert path.identity
    assert path.apply(ROW) is ROW


@pytest.mark.parametrize(
    "text, expected",
    [
        ("$[0]", "id7"),
        ("$[-1]", "6.5"),
        ("$[1,3,5]", ["1.5", "3.5", "5.5"]),
        ("$[0,-1]", ["id7", "6.5"]),
        ("$[1:]", ROW[1:]),
        ("$[2:]", ROW[2:]),
        # the developer guide: the colon includes "all of the elements between two values, inclusive"
        ("$[1:4]", ROW[1:5]),
        ("$[:5]", ROW[:6]),
        ("$[2:5]", ROW[2:6]),
        ("$[-2:]", ROW[-2:]),
        ("$[:-2]", ROW[:-1]),
        ("$[0,5:]", ["id7", "5.5", "6.5"]),
        ("$[1:100]", ROW[1:]),
        ("$[*]", ROW),
        ("$[ 0 , 2 ]", ["id7", "2.5"]),
    ],
)
def test_index_selectors_on_a_csv_row(text, expected):
    path = compile_path(text)
    assert path.index_only
    assert path.apply(ROW) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("$.features", [1, 2, 3]),
        ("$.id", 7),
        ("$['id']", 7),
        ('$["id"]', 7),
        ("$['id','SageMakerOutput']", {"id": 7, "SageMakerOutput": {"label": 1}}),
        ("$.meta.*", [1, 2]),
        ("$.meta.['a','b']", {"a": 1, "b": 2}),
        ("$.meta['b']", 2),
        ("$.features[1]", 2),
        ("$.features[-1]", 3),
        ("$.features[0:1]", [1, 2]),
        ("$.SageMakerOutput.label", 1),
    ],
)
def test_name_selectors_on_json(text, expected):
    path = compile_path(text)
    assert not path.index_only
    assert path.apply(DOC) == expected


def test_steps_after_a_collection_apply_to_each_element():
    rows = [{"x": 1, "y": [1, 2]}, {"x": 2, "y": [3, 4]}]
    assert compile_path("$[*].x").apply(rows) == [1, 2]
    assert compile_path("$[*].y[0]").apply(rows) == [1, 3]
    assert compile_path("$[*].y[*]").apply(rows) == [1, 2, 3, 4]


def test_two_ranges_are_rejected_with_the_aws_message():
    with pytest.raises(JsonPathError) as info:
        compile_path("$[0:2,246:]")
    assert str(info.value) == (
        "Invalid JsonPath: $[0:2,246:]: only single range filters of format (eg: [1:5]) are supported. "
        "Format [0:2,246:] is not supported"
    )


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("features", "must start with $"),
        ("$..id", "deep-scan"),
        ("$[?(@.x > 1)]", "filter and script"),
        ("$[0", "unclosed"),
        ("$[]", "empty brackets"),
        ("$[a]", "'a' is not an index"),
        ("$[1:2:3]", "slice steps"),
        ("$['a',1]", "cannot mix"),
        ("$[0,,1]", "empty element"),
        ("$.", "expected a name"),
        ("$x", "unexpected 'x'"),
    ],
)
def test_invalid_paths(text, fragment):
    with pytest.raises(JsonPathError) as info:
        compile_path(text)
    assert str(info.value).startswith(f"Invalid JsonPath: {text}")
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "text, value, fragment",
    [
        ("$[7]", ROW, "index 7 is outside the record, which has 7 elements"),
        ("$[-8]", ROW, "index -8 is outside"),
        ("$.id", ROW, "CSV rows are arrays"),
        ("$['missing']", DOC, "missing property 'missing'"),
        ("$['id','nope']", DOC, "missing property 'nope'"),
        ("$[0]", DOC, "index selectors apply to arrays"),
        ("$.id.*", DOC, "cannot apply *"),
    ],
)
def test_paths_that_do_not_fit_the_record(text, value, fragment):
    with pytest.raises(JsonPathError) as info:
        compile_path(text).apply(value)
    assert fragment in str(info.value)
