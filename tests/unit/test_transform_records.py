"""Batch transform record handling: splitting, batching, filters, joins, assembly (pure)."""

from __future__ import annotations

import gzip
import json

import pytest

from smlocal.runtime.transform_jsonpath import JsonPathError, compile_path
from smlocal.runtime.transform_records import (
    MB,
    Batch,
    RecordError,
    TransformSpec,
    assemble,
    decompress,
    finish_batch,
    join_record,
    parse_csv_row,
    plan_object,
    record_kind,
    serialize,
    split_lines,
    split_outputs,
)


def spec(**kwargs) -> TransformSpec:
    for key in ("input_filter", "output_filter"):
        if key in kwargs and not hasattr(kwargs[key], "apply"):
            kwargs[key] = compile_path(kwargs[key])
    return TransformSpec(**kwargs)


def run(data: bytes, s: TransformSpec, model) -> bytes:
    """Plans an object, answers each request with ``model(payload)`` and assembles the output."""
    plan = plan_object(data, s)
    pieces = []
    for batch in plan.batches:
        body, ctype = model(batch.payload)
        pieces.append(finish_batch(plan, batch, body, ctype, s))
    return assemble(pieces)


def csv_model(payload: bytes):
    """Sums each CSV line, one output line per input line (the built-in algorithms' batch style)."""
    lines = split_lines(payload)
    return b"".join(f"{sum(float(x) for x in line.split(b','))}\n".encode() for line in lines), "text/csv"


def json_model(payload: bytes):
    lines = split_lines(payload)
    out = [json.dumps({"label": sum(json.loads(line))}) for line in lines]
    return ("\n".join(out) + "\n").encode(), "application/jsonlines"


# ---- spec from the request
def test_spec_from_a_request_with_everything():
    s = TransformSpec.from_job({
        "MaxPayloadInMB": 2, "BatchStrategy": "SingleRecord",
        "TransformInput": {"SplitType": "Line", "ContentType": "text/csv", "CompressionType": "Gzip",
                           "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/p"}}},
        "TransformOutput": {"S3OutputPath": "s3://b/o", "Accept": "text/csv", "AssembleWith": "Line"},
        "DataProcessing": {"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"},
    })
    assert (s.split_type, s.strategy, s.max_payload_bytes, s.assemble_with) == ("Line", "SingleRecord", 2 * MB, "Line")
    assert (s.content_type, s.accept, s.compression, s.join_input) == ("text/csv", "text/csv", "Gzip", True)
    assert s.input_filter.text == "$[1:]" and s.output_filter.text == "$[0,-1]"
    assert s.per_record_output


def test_spec_defaults_match_aws():
    s = TransformSpec.from_job({"TransformInput": {}, "TransformOutput": {}})
    assert (s.split_type, s.strategy, s.max_payload_bytes, s.assemble_with) == ("None", "MultiRecord", 6 * MB, "None")
    assert s.input_filter.identity and s.output_filter.identity and not s.join_input
    assert not s.per_record_output
    assert TransformSpec.from_job({"MaxPayloadInMB": 0}).max_payload_bytes == 0


def test_spec_rejects_a_bad_filter():
    with pytest.raises(JsonPathError):
        TransformSpec.from_job({"DataProcessing": {"InputFilter": "$[0:1,3:]"}})


# ---- splitting
@pytest.mark.parametrize(
    "data, lines",
    [
        (b"", []),
        (b"a", [b"a"]),
        (b"a\n", [b"a"]),
        (b"a\nb", [b"a", b"b"]),
        (b"a\r\nb\r\n", [b"a", b"b"]),
        (b"a\n\nb\n", [b"a", b"", b"b"]),
    ],
)
def test_split_lines(data, lines):
    assert split_lines(data) == lines


def test_split_type_none_sends_the_whole_object():
    plan = plan_object(b"1,2\n3,4\n", spec(split_type="None"))
    assert plan.batches == [Batch(b"1,2\n3,4\n", 0, 1)] and plan.records is None


@pytest.mark.parametrize("split", ["RecordIO", "TFRecord"])
def test_binary_split_types_are_rejected(split):
    with pytest.raises(RecordError, match=f"SplitType {split} is not supported by smlocal"):
        plan_object(b"x", spec(split_type=split))


def test_empty_object_has_no_requests():
    assert plan_object(b"", spec(split_type="Line")).batches == []
    assert plan_object(b"", spec(split_type="None")).batches == []


def test_gzip():
    assert decompress(gzip.compress(b"1,2\n"), "Gzip") == b"1,2\n"
    assert decompress(b"raw", "None") == b"raw"
    with pytest.raises(RecordError, match="Gzip"):
        decompress(b"not gzip", "Gzip")


# ---- batching
def test_single_record_sends_one_line_per_request():
    plan = plan_object(b"1,2\n3,4\n5,6", spec(split_type="Line", strategy="SingleRecord"))
    assert [b.payload for b in plan.batches] == [b"1,2", b"3,4", b"5,6"]


def test_multi_record_without_processing_sends_slices_of_the_object():
    data = b"".join(b"%05d\n" % i for i in range(100))  # 6 bytes per line
    plan = plan_object(data, spec(split_type="Line", max_payload_bytes=60))
    assert all(len(b.payload) <= 60 for b in plan.batches)
    assert [len(b.payload) for b in plan.batches] == [60] * 10
    assert b"".join(b.payload for b in plan.batches) == data  # every byte once, in order, cut at line ends


def test_multi_record_fits_everything_in_one_request_when_small():
    data = b"1,2\n3,4\n"
    assert [b.payload for b in plan_object(data, spec(split_type="Line")).batches] == [data]


def test_multi_record_with_no_limit():
    data = b"x" * (7 * MB) + b"\n"
    assert len(plan_object(data, spec(split_type="Line", max_payload_bytes=0)).batches) == 1


def test_a_record_exactly_the_limit_fits():
    data = b"a" * 10 + b"\n" + b"b" * 10 + b"\n"
    plan = plan_object(data, spec(split_type="Line", max_payload_bytes=10))
    assert [b.payload for b in plan.batches] == [b"a" * 10 + b"\n", b"b" * 10 + b"\n"]


@pytest.mark.parametrize("strategy", ["MultiRecord", "SingleRecord"])
@pytest.mark.parametrize("input_filter", [None, "$[0:]"])
def test_a_record_larger_than_the_limit_fails(strategy, input_filter):
    data = b"1\n" + b"9" * 50 + b"\n2\n"
    with pytest.raises(RecordError, match=r"record is \d+ bytes, larger than MaxPayloadInMB"):
        plan_object(data, spec(split_type="Line", strategy=strategy, max_payload_bytes=20, input_filter=input_filter))


def test_an_unsplit_object_larger_than_the_limit_fails():
    with pytest.raises(RecordError, match="The object is 30 bytes, larger than MaxPayloadInMB"):
        plan_object(b"x" * 30, spec(split_type="None", max_payload_bytes=20))


def test_multi_record_packing_of_filtered_records():
    data = b"".join(b"id%d,%d,%d\n" % (i, i, i) for i in range(10))
    plan = plan_object(data, spec(split_type="Line", max_payload_bytes=8, input_filter="$[1:]"))
    assert [b.payload for b in plan.batches] == [b"0,0\n1,1\n", b"2,2\n3,3\n", b"4,4\n5,5\n",
                                                 b"6,6\n7,7\n", b"8,8\n9,9\n"]
    assert [(b.start, b.count) for b in plan.batches] == [(0, 2), (2, 2), (4, 2), (6, 2), (8, 2)]


# ---- formats
@pytest.mark.parametrize(
    "sample, ctype, kind",
    [
        (b"1,2", "text/csv", "csv"),
        (b"{}", "text/csv", "csv"),
        (b"1,2", "application/json", "json"),
        (b"[1]", "application/jsonlines", "json"),
        (b' {"a":1}', None, "json"),
        (b"[1,2]", None, "json"),
        (b"1,2", None, "csv"),
        (b"1,2", "application/x-unknown", "csv"),
    ],
)
def test_record_kind(sample, ctype, kind):
    assert record_kind(sample, ctype) == kind


@pytest.mark.parametrize(
    "text, fields",
    [
        ("1,2,3", ["1", "2", "3"]),
        ('a,"b,c",d', ["a", "b,c", "d"]),
        ('"say ""hi""",2', ['say "hi"', "2"]),
        ("1,,3\r\n", ["1", "", "3"]),
        ("", [""]),
    ],
)
def test_parse_csv_row(text, fields):
    assert parse_csv_row(text) == fields


@pytest.mark.parametrize(
    "value, kind, out",
    [
        (["1", "b,c", 'q"'], "csv", b'1,"b,c","q"""'),
        ("x", "csv", b"x"),
        ([1, None, True, {"a": 1}], "csv", b'1,,true,"{""a"":1}"'),
        ({"a": [1, 2], "é": "ü"}, "json", '{"a":[1,2],"é":"ü"}'.encode()),
        (5, "json", b"5"),
    ],
)
def test_serialize(value, kind, out):
    assert serialize(value, kind) == out


# ---- assembly without processing
def test_assemble_with_line_adds_missing_newlines_only():
    s = spec(split_type="Line", strategy="SingleRecord", assemble_with="Line")
    out = run(b"1,2\n3,4\n", s, lambda p: (str(sum(float(x) for x in p.split(b","))).encode(), "text/csv"))
    assert out == b"3.0\n7.0\n"
    assert run(b"1,2\n3,4\n", s, csv_model) == b"3.0\n7.0\n"  # already newline-terminated


def test_assemble_with_none_concatenates():
    s = spec(split_type="Line", strategy="SingleRecord", assemble_with="None")
    out = run(b"1,2\n3,4\n", s, lambda p: (str(sum(float(x) for x in p.split(b","))).encode(), "text/csv"))
    assert out == b"3.07.0"


def test_multi_record_output_keeps_input_order_across_batches():
    data = b"".join(b"%d,%d\n" % (i, i) for i in range(1000))
    out = run(data, spec(split_type="Line", max_payload_bytes=100, assemble_with="Line"), csv_model)
    assert split_lines(out) == [b"%s" % str(float(2 * i)).encode() for i in range(1000)]


def test_empty_model_response_adds_nothing():
    s = spec(split_type="Line", strategy="SingleRecord", assemble_with="Line")
    assert run(b"1\n2\n", s, lambda p: (b"", None)) == b""


# ---- DataProcessing: the developer guide's examples
def test_input_filter_drops_the_id_column_before_the_model():
    seen = []

    def model(payload):
        seen.append(payload)
        return csv_model(payload)

    s = spec(split_type="Line", input_filter="$[1:]", assemble_with="Line")
    out = run(b"id1,1,2\nid2,3,4\n", s, model)
    assert seen == [b"1,2\n3,4\n"]
    assert out == b"3.0\n7.0\n"


def test_csv_join_appends_the_output_columns_to_the_original_row():
    s = spec(split_type="Line", input_filter="$[1:]", join_input=True, assemble_with="Line",
             content_type="text/csv")
    assert run(b"id1,1,2\nid2,3,4\n", s, csv_model) == b"id1,1,2,3.0\nid2,3,4,7.0\n"


def test_csv_join_with_output_filter_keeps_id_and_prediction():
    s = spec(split_type="Line", input_filter="$[1:]", join_input=True, output_filter="$[0,-1]",
             assemble_with="Line", content_type="text/csv")
    assert run(b"id1,1,2\nid2,3,4\n", s, csv_model) == b"id1,3.0\nid2,7.0\n"


def test_csv_join_single_record_and_multi_column_output():
    s = spec(split_type="Line", strategy="SingleRecord", join_input=True, assemble_with="Line",
             content_type="text/csv")
    out = run(b"1,2\n3,4\n", s, lambda p: (b"0.1,0.9", "text/csv"))
    assert out == b"1,2,0.1,0.9\n3,4,0.1,0.9\n"


def test_output_filter_without_join_selects_from_the_output():
    s = spec(split_type="Line", output_filter="$[1]", assemble_with="Line", content_type="text/csv")
    out = run(b"1,2\n3,4\n", s, lambda p: (b"a,b\nc,d\n", "text/csv"))
    assert out == b"b\nd\n"


def test_json_join_adds_sagemaker_output():
    s = spec(split_type="Line", input_filter="$.features", join_input=True, assemble_with="Line",
             content_type="application/jsonlines")
    data = b'{"id":1,"features":[1,2]}\n{"id":2,"features":[3,4]}\n'
    out = run(data, s, json_model)
    assert [json.loads(line) for line in split_lines(out)] == [
        {"id": 1, "features": [1, 2], "SageMakerOutput": {"label": 3}},
        {"id": 2, "features": [3, 4], "SageMakerOutput": {"label": 7}},
    ]


def test_json_join_with_output_filter_of_names():
    s = spec(split_type="Line", input_filter="$.features", join_input=True,
             output_filter="$['id','SageMakerOutput']", assemble_with="Line", content_type="application/jsonlines")
    out = run(b'{"id":1,"features":[1,2]}\n', s, json_model)
    assert out == b'{"id":1,"SageMakerOutput":{"label":3}}\n'


def test_json_join_of_a_non_object_input():
    s = spec(split_type="Line", join_input=True, assemble_with="Line", content_type="application/jsonlines")
    out = run(b"[1,2]\n", s, json_model)
    assert json.loads(out) == {"SageMakerInput": [1, 2], "SageMakerOutput": {"label": 3}}


def test_json_join_with_csv_output_keeps_numbers():
    assert join_record(b'{"a":1}', b"0.5", "json", "csv") == {"a": 1, "SageMakerOutput": 0.5}
    assert join_record(b'{"a":1}', b"cat", "json", "csv") == {"a": 1, "SageMakerOutput": "cat"}


def test_csv_join_with_json_output_appends_one_field():
    assert join_record(b"1,2", b'{"label":1}', "csv", "json") == ["1", "2", '{"label":1}']


def test_join_of_a_whole_unsplit_json_document():
    s = spec(split_type="None", join_input=True, content_type="application/json")
    out = run(b'{"x":[1,2,3]}', s, lambda p: (b'{"sum":6}', "application/json"))
    assert json.loads(out) == {"x": [1, 2, 3], "SageMakerOutput": {"sum": 6}}


def test_input_filter_on_an_unsplit_json_document():
    s = spec(split_type="None", input_filter="$.x", content_type="application/json")
    plan = plan_object(b'{"x":[1,2,3],"id":9}', s)
    assert plan.batches[0].payload == b"[1,2,3]"


def test_join_with_a_json_array_response():
    s = spec(split_type="Line", join_input=True, assemble_with="Line", content_type="text/csv")
    out = run(b"1\n2\n", s, lambda p: (b"[10, 20]", "application/json"))
    assert out == b"1,10\n2,20\n"


def test_join_fails_when_outputs_do_not_match_records():
    s = spec(split_type="Line", join_input=True, content_type="text/csv")
    with pytest.raises(RecordError, match=r"returned 1 line\(s\) for 2 record\(s\)"):
        run(b"1\n2\n", s, lambda p: (b'{"predictions":[1,2]}', "application/json"))


def test_split_outputs_of_a_one_record_batch_takes_the_body():
    assert split_outputs(b'{"a":\n1}\n', "application/json", 1) == [b'{"a":\n1}']


def test_input_filter_index_outside_the_row_fails():
    with pytest.raises(RecordError, match="InputFilter \\$\\[5\\]: index 5 is outside"):
        plan_object(b"1,2\n", spec(split_type="Line", input_filter="$[5]"))


def test_output_filter_index_outside_the_joined_row_fails():
    s = spec(split_type="Line", join_input=True, output_filter="$[9]", content_type="text/csv")
    with pytest.raises(RecordError, match="OutputFilter"):
        run(b"1,2\n", s, csv_model)


def test_bad_json_record_fails():
    with pytest.raises(RecordError, match="as JSON"):
        plan_object(b"{nope\n", spec(split_type="Line", input_filter="$.x", content_type="application/json"))


def test_quoted_csv_fields_survive_filter_and_join():
    s = spec(split_type="Line", input_filter="$[1:]", join_input=True, output_filter="$[0,-1]",
             assemble_with="Line", content_type="text/csv")
    out = run(b'"Doe, J",1,2\n', s, csv_model)
    assert out == b'"Doe, J",3.0\n'
