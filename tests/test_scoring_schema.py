"""The schema format: inference, decoding, JSON encoding and swagger of scoring inputs."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pandas as pd
import pytest

from amlmm_magics.scoring.schema import (
    SchemaError,
    decode_input,
    infer_schema,
    load_schema,
    make_decoder,
    to_json_schema,
    to_json_value,
    to_swagger,
    validate_schema,
)


def _mixed_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "n": np.array([1, 2, 3], dtype="int64"),
            "x": [0.5, np.nan, 2.0],
            "flag": [True, False, True],
            "name": pd.Series(["a", None, "c"], dtype="str"),  # pandas 3's default str dtype
            "label": pd.Series(["u", "v", "w"], dtype=object),
            "kind": pd.Categorical(["p", "q", "p"]),
            "when": pd.to_datetime(
                ["2024-01-02T03:04:05", None, "2024-03-01T00:00:00.25"], format="ISO8601"
            ),
        }
    )


def _roundtrip(sample: object) -> tuple[dict, object]:
    schema = json.loads(json.dumps(infer_schema(sample)))  # survives a trip through a file
    validate_schema(schema)
    return schema, decode_input(schema, schema["sample"])


# --- dataframes ---------------------------------------------------------------------------


def test_dataframe_schema_lists_columns_in_order_with_dtypes() -> None:
    schema = infer_schema(_mixed_frame())
    assert schema["version"] == 1
    assert schema["output"] is None
    assert schema["input"] == {
        "type": "dataframe",
        "columns": [
            {"name": "n", "dtype": "int64"},
            {"name": "x", "dtype": "float64"},
            {"name": "flag", "dtype": "bool"},
            {"name": "name", "dtype": "str"},
            {"name": "label", "dtype": "str"},
            {"name": "kind", "dtype": "str"},
            {"name": "when", "dtype": "datetime64[us]"},
        ],
    }
    assert schema["sample"] == [
        {"n": 1, "x": 0.5, "flag": True, "name": "a", "label": "u", "kind": "p",
         "when": "2024-01-02T03:04:05"},
        {"n": 2, "x": None, "flag": False, "name": None, "label": "v", "kind": "q",
         "when": None},
        {"n": 3, "x": 2.0, "flag": True, "name": "c", "label": "w", "kind": "p",
         "when": "2024-03-01T00:00:00.250000"},
    ]  # fmt: skip


def test_dataframe_roundtrip_keeps_columns_order_and_dtypes() -> None:
    frame = _mixed_frame()
    _, decoded = _roundtrip(frame)
    # Categories and object columns of strings come back as the str dtype (by design).
    expected = frame.assign(label=frame["label"].astype("str"), kind=frame["kind"].astype("str"))
    pd.testing.assert_frame_equal(decoded, expected)
    assert str(decoded["name"].dtype) == "str"


def test_all_float_frame_roundtrip_and_int_values_in_float_columns() -> None:
    frame = pd.DataFrame({"a": [1.5, 2.5], "b": [3.0, 4.0]})
    schema, decoded = _roundtrip(frame)
    pd.testing.assert_frame_equal(decoded, frame)
    decoded = decode_input(schema, [{"a": 1, "b": None}])
    assert decoded["a"].dtype == np.float64
    assert decoded["a"].tolist() == [1.0]
    assert math.isnan(decoded["b"][0])


def test_timezone_aware_and_nullable_columns_roundtrip() -> None:
    frame = pd.DataFrame(
        {
            "at": pd.to_datetime(["2024-05-01T12:00:00", "2024-05-02T08:30:00"]).tz_localize(
                "Europe/Paris"
            ),
            "count": pd.array([1, None], dtype="Int64"),
            "ok": pd.array([True, None], dtype="boolean"),
        }
    )
    schema, decoded = _roundtrip(frame)
    assert [c["dtype"] for c in schema["input"]["columns"]] == [
        "datetime64[us, Europe/Paris]",
        "Int64",
        "boolean",
    ]
    assert schema["sample"][0]["at"] == "2024-05-01T12:00:00+02:00"
    pd.testing.assert_frame_equal(decoded, frame)


def test_empty_records_give_an_empty_frame_with_the_schema_dtypes() -> None:
    schema = infer_schema(_mixed_frame())
    decoded = decode_input(schema, [])
    assert list(decoded.columns) == ["n", "x", "flag", "name", "label", "kind", "when"]
    assert len(decoded) == 0
    assert decoded["n"].dtype == np.int64
    assert str(decoded["when"].dtype) == "datetime64[us]"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"n": 1}, "expected a list of row objects (records), got {'n': 1}"),
        ([{"n": 1, "x": 1.0}, [1, 2]], "row 1: expected an object of column values, got [1, 2]"),
        ([{"n": 1, "x": 1.0}, {"n": 2}], "row 1: missing column 'x'"),
        ([{"n": 1, "x": 1.0, "y": 0}], "row 0: unexpected column 'y'"),
        ([{"n": 1, "xx": 1.0}], "row 0: missing column 'x' (got unexpected column 'xx')"),
        ([{"n": 1.5, "x": 1.0}], "row 0, column 'n': expected int64, got 1.5"),
        ([{"n": None, "x": 1.0}], "row 0, column 'n': expected int64, got None"),
        ([{"n": True, "x": 1.0}], "row 0, column 'n': expected int64, got True"),
        (
            [{"n": 1, "x": 1.0}, {"n": 2, "x": 2}, {"n": 3, "x": 3.5}, {"n": 4, "x": "abc"}],
            "row 3, column 'x': expected float64, got 'abc'",
        ),
        ([{"n": 1, "x": False}], "row 0, column 'x': expected float64, got False"),
    ],
)
def test_dataframe_errors_name_row_and_column(value: object, message: str) -> None:
    schema = infer_schema(pd.DataFrame({"n": [1], "x": [1.0]}))
    with pytest.raises(SchemaError) as info:
        decode_input(schema, value)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"small": 300, "flag": True, "name": "a", "when": None},
         "row 0, column 'small': expected int8, got 300"),
        ({"small": 1, "flag": 1, "name": "a", "when": None},
         "row 0, column 'flag': expected bool, got 1"),
        ({"small": 1, "flag": True, "name": 5, "when": None},
         "row 0, column 'name': expected str, got 5"),
        ({"small": 1, "flag": True, "name": "a", "when": "not a date"},
         "row 0, column 'when': expected datetime64[us], got 'not a date'"),
        ({"small": 1, "flag": True, "name": "a", "when": 1700000000},
         "row 0, column 'when': expected datetime64[us], got 1700000000"),
    ],
)  # fmt: skip
def test_dataframe_dtype_errors(row: dict, message: str) -> None:
    frame = pd.DataFrame(
        {
            "small": np.array([1], dtype="int8"),
            "flag": [True],
            "name": ["a"],
            "when": pd.to_datetime(["2024-01-01"]),
        }
    )
    with pytest.raises(SchemaError) as info:
        decode_input(infer_schema(frame), [row])
    assert str(info.value) == message


def test_homogeneous_int8_frame_reports_out_of_range_values() -> None:
    schema = infer_schema(pd.DataFrame({"a": np.array([1], "int8"), "b": np.array([2], "int8")}))
    ok = decode_input(schema, [{"a": -128, "b": 127}])
    assert ok.dtypes.tolist() == [np.dtype("int8")] * 2
    with pytest.raises(SchemaError) as info:
        decode_input(schema, [{"a": 1, "b": 2}, {"a": 1, "b": 128}])
    assert str(info.value) == "row 1, column 'b': expected int8, got 128"


# --- ndarrays -----------------------------------------------------------------------------


def test_float32_matrix_roundtrip() -> None:
    arr = np.arange(8, dtype="float32").reshape(2, 4) / 3
    schema, decoded = _roundtrip(arr)
    assert schema["input"] == {"type": "ndarray", "dtype": "float32", "shape": [None, 4]}
    assert decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded, arr)
    # Any number of rows, ints allowed in a float array.
    more = decode_input(schema, [[1, 2, 3, 4], [5, 6, 7, 8], [0.5, 0, 0, None]])
    assert more.shape == (3, 4)
    assert more.dtype == np.float32
    assert math.isnan(more[2, 3])


def test_int64_vector_roundtrip() -> None:
    arr = np.array([3, 1, 2], dtype="int64")
    schema, decoded = _roundtrip(arr)
    assert schema["input"] == {"type": "ndarray", "dtype": "int64", "shape": [None]}
    assert decoded.dtype == np.int64
    np.testing.assert_array_equal(decoded, arr)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([[1, 2, 3, 4], [1, 2, 3]], "index [1]: expected 4 values in dimension 1, got 3"),
        ([1, 2, 3, 4], "index [0]: expected 2 dimensions, got 1"),
        (5, "expected 2 dimensions, got 0"),
        ([[[1], 2, 3, 4]], "index [0, 0]: expected 2 dimensions, got more"),
        ([[1, 2, "abc", 4]], "index [0, 2]: expected float32, got 'abc'"),
        ([[1, 2, 3, True]], "index [0, 3]: expected float32, got True"),
    ],
)
def test_ndarray_errors(value: object, message: str) -> None:
    schema = infer_schema(np.zeros((2, 4), dtype="float32"))
    with pytest.raises(SchemaError) as info:
        decode_input(schema, value)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([1, 2.5], "index [1]: expected int64, got 2.5"),
        ([1, None], "index [1]: expected int64, got None"),
        ([1, 2**70], f"index [1]: expected int64, got {2**70}"),
    ],
)
def test_int_vector_errors(value: object, message: str) -> None:
    schema = infer_schema(np.array([1, 2], dtype="int64"))
    with pytest.raises(SchemaError) as info:
        decode_input(schema, value)
    assert str(info.value) == message


# --- plain JSON ---------------------------------------------------------------------------


def test_dict_and_list_samples_infer_json_schema_and_pass_through() -> None:
    sample = {"features": [1, 2.5, 3], "name": "x", "options": {"top": 3}, "tags": []}
    schema, decoded = _roundtrip(sample)
    assert schema["input"] == {
        "type": "json",
        "schema": {
            "type": "object",
            "properties": {
                "features": {"type": "array", "items": {"type": "number"}},
                "name": {"type": "string"},
                "options": {
                    "type": "object",
                    "properties": {"top": {"type": "integer"}},
                    "required": ["top"],
                },
                "tags": {"type": "array", "items": {}},
            },
            "required": ["features", "name", "options", "tags"],
        },
    }
    assert decoded == sample

    rows = [{"a": 1}, {"a": 2, "b": "x"}]
    schema, decoded = _roundtrip(rows)
    assert schema["input"]["schema"] == {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
            "required": ["a"],
        },
    }
    assert decoded == rows


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([1], "$: expected object, got [1]"),
        ({"features": [1, "x"], "name": "n"}, "$.features[1]: expected number, got 'x'"),
        ({"features": [1]}, "$: missing property 'name'"),
        ({"features": [1], "name": None}, "$.name: expected string, got None"),
    ],
)
def test_json_errors_name_the_path(value: object, message: str) -> None:
    schema = infer_schema({"features": [1.0, 2.0], "name": "n"})
    with pytest.raises(SchemaError) as info:
        decode_input(schema, value)
    assert str(info.value) == message


def test_scalar_sample() -> None:
    schema, decoded = _roundtrip("hello")
    assert schema["input"] == {"type": "json", "schema": {"type": "string"}}
    assert decoded == "hello"
    with pytest.raises(SchemaError, match=r"^\$: expected string, got 3$"):
        decode_input(schema, 3)


# --- to_json_value ------------------------------------------------------------------------


def test_to_json_value_converts_numpy_pandas_and_datetimes() -> None:
    value = {
        "i": np.int32(3),
        "f": np.float32(0.5),
        "nan": float("nan"),
        "inf": np.float64("inf"),
        "b": np.bool_(True),
        "arr": np.array([[1.0, np.nan]]),
        "ints": np.array([1, 2], dtype="uint8"),
        "dt": dt.datetime(2024, 1, 2, 3, 4, 5),
        "d": dt.date(2024, 1, 2),
        "ts": pd.Timestamp("2024-01-02T03:04:05Z"),
        "nat": pd.NaT,
        "npdt": np.datetime64("2024-01-02T03:04"),
        "series": pd.Series([1.5, None]),
        "tuple": (1, "a"),
        7: "int key",
    }
    assert to_json_value(value) == {
        "i": 3,
        "f": 0.5,
        "nan": None,
        "inf": None,
        "b": True,
        "arr": [[1.0, None]],
        "ints": [1, 2],
        "dt": "2024-01-02T03:04:05",
        "d": "2024-01-02",
        "ts": "2024-01-02T03:04:05+00:00",
        "nat": None,
        "npdt": "2024-01-02T03:04",
        "series": [1.5, None],
        "tuple": [1, "a"],
        "7": "int key",
    }
    json.dumps(to_json_value(value), allow_nan=False)  # plain, strict JSON


def test_to_json_value_frame_is_records_and_rejects_unknown_objects() -> None:
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    assert to_json_value(frame) == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    with pytest.raises(TypeError, match="Object of type object is not JSON serializable"):
        to_json_value({"x": object()})
    with pytest.raises(TypeError, match="bytes"):
        to_json_value(b"raw")


def test_output_schema_from_what_run_returned() -> None:
    schema = infer_schema(pd.DataFrame({"a": [1.0]}), output=np.array([0, 1]))
    assert schema["output"] == {"type": "ndarray", "dtype": "int64", "shape": [None]}
    schema = infer_schema([1, 2], output={"label": "setosa", "p": 0.9})
    assert schema["output"]["type"] == "json"


# --- documents and swagger ----------------------------------------------------------------


def test_load_schema_validates(tmp_path) -> None:  # type: ignore[no-untyped-def]
    good = tmp_path / "good.json"
    good.write_text(json.dumps(infer_schema(pd.DataFrame({"a": [1.0]}))))
    assert load_schema(good)["input"]["columns"] == [{"name": "a", "dtype": "float64"}]

    cases = {
        "not json": "schema.json: not valid JSON",
        json.dumps({"version": 2, "input": {}}): "unsupported schema version 2",
        json.dumps({"version": 1, "input": {"type": "table"}}): "input: unknown type 'table'",
        json.dumps(
            {"version": 1, "input": {"type": "dataframe", "columns": [{"name": "a", "dtype": "x"}]}}
        ): "input: unsupported dtype 'x'",
        json.dumps(
            {"version": 1, "input": {"type": "ndarray", "dtype": "float64", "shape": [-1]}}
        ): "input: 'shape' must be a list of sizes",
    }
    for text, message in cases.items():
        bad = tmp_path / "schema.json"
        bad.write_text(text)
        with pytest.raises(SchemaError) as info:
            load_schema(bad)
        assert message in str(info.value)


def test_make_decoder_matches_decode_input() -> None:
    schema = infer_schema(pd.DataFrame({"a": [1.0], "b": [2.0]}))
    decode = make_decoder(schema)
    pd.testing.assert_frame_equal(decode(schema["sample"]), decode_input(schema, schema["sample"]))


def test_swagger_document() -> None:
    frame = pd.DataFrame({"sepal_length": [5.1], "species_id": [0]})
    schema = infer_schema(frame, output=np.array([0]))
    doc = to_swagger(schema, "iris-svc")
    assert doc["swagger"] == "2.0"
    assert doc["info"]["title"] == "iris-svc"
    assert doc["paths"]["/"]["get"]["responses"]["200"]["description"] == "Healthy"
    post = doc["paths"]["/score"]["post"]
    assert post["parameters"][0]["in"] == "body"
    assert post["security"] == [{"Bearer": []}]
    body = doc["definitions"]["ServiceInput"]
    assert body["example"] == schema["sample"]
    assert body["type"] == "array"
    assert body["items"]["properties"] == {
        "sepal_length": {"type": "number", "format": "double", "x-nullable": True},
        "species_id": {"type": "integer", "format": "int64"},
    }
    assert body["items"]["required"] == ["sepal_length", "species_id"]
    assert doc["definitions"]["ServiceOutput"] == {
        "type": "array",
        "items": {"type": "integer", "format": "int64"},
    }
    json.dumps(doc)


def test_ndarray_json_schema_fixes_inner_sizes() -> None:
    schema = infer_schema(np.zeros((1, 3, 2), dtype="float32"))
    assert to_json_schema(schema["input"]) == {
        "type": "array",
        "items": {
            "type": "array",
            "minItems": 3,
            "maxItems": 3,
            "items": {
                "type": "array",
                "minItems": 2,
                "maxItems": 2,
                "items": {"type": ["number", "null"], "format": "float"},
            },
        },
    }
