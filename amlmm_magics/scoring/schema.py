"""The input/output schema of a scoring service, shared by the whole project.

A schema is a JSON document::

    {"version": 1, "input": <type>, "output": <type or null>, "sample": <JSON or null>}

where a type is one of::

    {"type": "dataframe", "columns": [{"name": "sepal_length", "dtype": "float64"}, ...]}
    {"type": "ndarray", "dtype": "float32", "shape": [null, 4]}
    {"type": "json", "schema": <JSON Schema: type, properties/required, items>}

A dataframe travels as records (a list of row objects), an ndarray as nested lists. Column
dtypes: numpy ints/uints/floats (``int64``, ``float32``...), ``bool``, ``str`` (pandas 3's
default string dtype, object columns of strings and categoricals of strings), ``string``
(pandas' NA-backed string dtype), ``datetime64[<unit>]`` and ``datetime64[<unit>, <tz>]``
(ISO 8601 strings on the wire), the nullable ``Int64``/``Float64``/``boolean`` family, and
``object`` (any JSON value). ndarray dtypes: numeric, ``bool`` and ``str``.

numpy and pandas are imported only when a schema or a value needs them, so the runtime stays
light for drivers that take plain JSON.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import json
import math
import re
import sys
import uuid
from collections.abc import Callable, Iterable
from itertools import chain
from pathlib import Path
from typing import Any

__all__ = [
    "SCHEMA_VERSION",
    "SchemaError",
    "decode_input",
    "infer_schema",
    "load_schema",
    "make_decoder",
    "to_json_schema",
    "to_json_value",
    "to_swagger",
    "validate_schema",
]

SCHEMA_VERSION = 1

_NoneType = type(None)
_INT = frozenset({int})
_NUM = frozenset({int, float})
_NUM_OR_NULL = frozenset({int, float, _NoneType})
_INT_OR_NULL = frozenset({int, _NoneType})
_BOOL = frozenset({bool})
_BOOL_OR_NULL = frozenset({bool, _NoneType})
_STR = frozenset({str})
_STR_OR_NULL = frozenset({str, _NoneType})

_NP_INTS = frozenset({"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"})
_NP_FLOATS = frozenset({"float16", "float32", "float64"})
_NULLABLE_INTS = frozenset(
    {"Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64"}
)
_NULLABLE_FLOATS = frozenset({"Float32", "Float64"})
_DATETIME_RE = re.compile(r"^datetime64\[(s|ms|us|ns)(?:, (.+))?\]$")


class SchemaError(ValueError):
    """The input does not match the schema, or a schema document is malformed.

    The message names the offending row, column, index or property, so it can be shown to
    the caller of the service as is.
    """


# ---------------------------------------------------------------------------------------
# lazy imports: only a dataframe or ndarray schema (or such a value) needs them


def _np() -> Any:
    import numpy

    return numpy


def _pd() -> Any:
    import pandas

    return pandas


def _loaded(name: str) -> Any:
    # A value can only be a DataFrame/ndarray if its library is already imported.
    return sys.modules.get(name)


# ---------------------------------------------------------------------------------------
# to_json_value


def to_json_value(obj: Any) -> Any:
    """Convert ``obj`` to plain JSON data (dict/list/str/int/float/bool/None).

    DataFrame → list of row objects; Series and ndarray → (nested) lists; datetimes → ISO
    8601 strings; numpy scalars → Python scalars; NaN, infinities, NaT and NA → None.
    Raises ``TypeError`` for values that have no JSON form (bytes, arbitrary objects).
    """
    t = type(obj)
    if t is str or t is int or t is bool or obj is None:
        return obj
    if t is float:
        return obj if math.isfinite(obj) else None
    if t is dict:
        return {_json_key(k): to_json_value(v) for k, v in obj.items()}
    if t is list or t is tuple:
        return [to_json_value(v) for v in obj]
    return _to_json_slow(obj)


def _json_key(key: Any) -> str:
    if type(key) is str:
        return key
    # Same spelling json.dumps uses for non-string keys.
    value = to_json_value(key)
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value)
    raise TypeError(f"keys of type {type(key).__name__} cannot be JSON object keys")


def _to_json_slow(obj: Any) -> Any:
    pd = _loaded("pandas")
    if pd is not None:
        if obj is pd.NaT or obj is pd.NA:
            return None
        if isinstance(obj, pd.DataFrame):
            return _frame_to_records(obj)
        if isinstance(obj, pd.Series | pd.Index):
            return _series_to_list(obj)
    np = _loaded("numpy")
    if np is not None:
        if isinstance(obj, np.ndarray):
            return _ndarray_to_list(obj)
        if isinstance(obj, np.generic):
            return _np_scalar(obj)
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, _dt.datetime | _dt.date | _dt.time):
        return obj.isoformat()
    if isinstance(obj, dict):
        return {_json_key(k): to_json_value(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_json_value(v) for v in obj]
    if isinstance(obj, decimal.Decimal):
        return float(obj) if obj.is_finite() else None
    if isinstance(obj, uuid.UUID):
        return str(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _np_scalar(value: Any) -> Any:
    np = _np()
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else str(np.datetime_as_string(value))
    if isinstance(value, np.floating):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, np.complexfloating | np.timedelta64 | np.bytes_ | np.void):
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
    return to_json_value(value.item())


def _ndarray_to_list(arr: Any) -> Any:
    np = _np()
    kind = arr.dtype.kind
    if kind in "iub":
        return arr.tolist()
    if kind == "f":
        finite = np.isfinite(arr)
        if not finite.all():
            arr = arr.astype(object)
            arr[~finite] = None
        return arr.tolist()
    if kind == "U":
        return arr.tolist()
    if kind == "M":
        text = np.datetime_as_string(arr).astype(object)
        text[np.isnat(arr)] = None
        return text.tolist()
    if kind == "O":
        return to_json_value(arr.tolist())
    raise TypeError(f"Object of type ndarray with dtype {arr.dtype} is not JSON serializable")


def _series_to_list(series: Any) -> list[Any]:
    pd = _pd()
    np = _np()
    dtype = series.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or (isinstance(dtype, np.dtype) and dtype.kind == "M"):
        return [None if x is pd.NaT else x.isoformat() for x in series]
    if isinstance(dtype, np.dtype) and dtype.kind in "iubf":
        return _ndarray_to_list(series.to_numpy())
    return [to_json_value(x) for x in series.astype(object).tolist()]


def _frame_to_records(frame: Any) -> list[dict[str, Any]]:
    names = [_json_key(c) for c in frame.columns]
    if not names:
        return [{} for _ in range(len(frame))]
    columns = [_series_to_list(frame.iloc[:, i]) for i in range(len(names))]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


# ---------------------------------------------------------------------------------------
# infer_schema


def infer_schema(sample: Any, output: Any = None) -> dict[str, Any]:
    """The schema document of a service whose ``run`` takes values like ``sample``.

    ``output`` (optional) is an example of what ``run`` returns; it only documents the
    service (swagger) and is not enforced.
    """
    return validate_schema(
        {
            "version": SCHEMA_VERSION,
            "input": infer_type(sample),
            "output": None if output is None else infer_type(output),
            "sample": to_json_value(sample),
        }
    )


def infer_type(value: Any) -> dict[str, Any]:
    """The schema type (dataframe, ndarray or json) describing ``value``."""
    pd = _loaded("pandas")
    if pd is not None and isinstance(value, pd.DataFrame):
        return {
            "type": "dataframe",
            "columns": [
                {"name": _json_key(name), "dtype": _column_dtype(name, value.iloc[:, i])}
                for i, name in enumerate(value.columns)
            ],
        }
    np = _loaded("numpy")
    if np is not None and isinstance(value, np.ndarray):
        dtype = _ndarray_dtype(value.dtype)
        if dtype is not None:
            shape: list[int | None] = list(value.shape)
            if shape:
                shape[0] = None
            return {"type": "ndarray", "dtype": dtype, "shape": shape}
    return {"type": "json", "schema": _infer_json_schema(to_json_value(value))}


def _ndarray_dtype(dtype: Any) -> str | None:
    if dtype.kind in "iuf":
        return str(dtype.name)
    if dtype.kind == "b":
        return "bool"
    if dtype.kind == "U":
        return "str"
    return None


def _column_dtype(name: Any, series: Any) -> str:
    pd = _pd()
    np = _np()
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        inner = dtype.categories.dtype
        if inner.kind in "iufb" and isinstance(inner, np.dtype):
            return str(inner.name) if inner.kind != "b" else "bool"
        return "str"
    text = str(dtype)
    if text in ("str", "string"):
        return text
    if text in _NULLABLE_INTS or text in _NULLABLE_FLOATS or text == "boolean":
        return text
    if isinstance(dtype, pd.DatetimeTZDtype) or (isinstance(dtype, np.dtype) and dtype.kind == "M"):
        return text
    if isinstance(dtype, np.dtype):
        if dtype.kind in "iuf":
            return str(dtype.name)
        if dtype.kind == "b":
            return "bool"
        if dtype.kind == "U":
            return "str"
        if dtype.kind == "O":
            values = series.dropna()
            if all(isinstance(v, str) for v in values):
                return "str"
            return "object"
    raise TypeError(f"column {name!r}: dtype {text} is not supported in a schema")


def _infer_json_schema(value: Any) -> dict[str, Any]:
    if value is None:
        return {"type": "null"}
    t = type(value)
    if t is bool:
        return {"type": "boolean"}
    if t is int:
        return {"type": "integer"}
    if t is float:
        return {"type": "number"}
    if t is str:
        return {"type": "string"}
    if t is dict:
        return {
            "type": "object",
            "properties": {k: _infer_json_schema(v) for k, v in value.items()},
            "required": list(value),
        }
    return {"type": "array", "items": _merge_json_schemas([_infer_json_schema(v) for v in value])}


def _merge_json_schemas(schemas: list[dict[str, Any]]) -> dict[str, Any]:
    """One schema that every element of a sample array satisfies (``{}`` = anything)."""
    if not schemas:
        return {}
    nullable = any(s == {"type": "null"} for s in schemas)
    rest = [s for s in schemas if s != {"type": "null"}]
    if not rest:
        return {"type": "null"}
    merged = _merge_non_null(rest)
    if nullable and "type" in merged:
        merged = {**merged, "type": [merged["type"], "null"]}
    elif nullable:
        merged = {}
    return merged


def _merge_non_null(schemas: list[dict[str, Any]]) -> dict[str, Any]:
    first = schemas[0]
    if all(s == first for s in schemas):
        return first
    types = {s.get("type") for s in schemas}
    if types <= {"integer", "number"}:
        return {"type": "number"}
    if types == {"object"}:
        keys: dict[str, list[dict[str, Any]]] = {}
        for s in schemas:
            for k, sub in s["properties"].items():
                keys.setdefault(k, []).append(sub)
        required = [k for k in keys if all(k in s["properties"] for s in schemas)]
        return {
            "type": "object",
            "properties": {k: _merge_json_schemas(subs) for k, subs in keys.items()},
            "required": required,
        }
    if types == {"array"}:
        return {"type": "array", "items": _merge_json_schemas([s["items"] for s in schemas])}
    return {}


# ---------------------------------------------------------------------------------------
# schema documents


def load_schema(path: str | Path) -> dict[str, Any]:
    """Read and validate a schema document."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{path}: not valid JSON ({exc})") from None
    return validate_schema(doc)


def validate_schema(doc: Any) -> dict[str, Any]:
    """Check a schema document's structure; return it unchanged."""
    if not isinstance(doc, dict):
        raise SchemaError("a schema document must be a JSON object")
    if doc.get("version") != SCHEMA_VERSION:
        raise SchemaError(
            f"unsupported schema version {doc.get('version')!r} "
            f"(this runtime reads version {SCHEMA_VERSION})"
        )
    if "input" not in doc:
        raise SchemaError("a schema document needs an 'input' type")
    _validate_type(doc["input"], "input")
    if doc.get("output") is not None:
        _validate_type(doc["output"], "output")
    return doc


def _validate_type(spec: Any, where: str) -> None:
    if not isinstance(spec, dict):
        raise SchemaError(f"{where}: a type must be an object")
    kind = spec.get("type")
    if kind == "dataframe":
        columns = spec.get("columns")
        if not isinstance(columns, list):
            raise SchemaError(f"{where}: 'columns' must be a list")
        seen = set()
        for col in columns:
            if not isinstance(col, dict) or not isinstance(col.get("name"), str):
                raise SchemaError(f"{where}: every column needs a string 'name'")
            if col["name"] in seen:
                raise SchemaError(f"{where}: duplicate column {col['name']!r}")
            seen.add(col["name"])
            _column_codec(str(col.get("dtype")), where)
    elif kind == "ndarray":
        _ndarray_codec(str(spec.get("dtype")), where)
        shape = spec.get("shape")
        if not isinstance(shape, list) or not all(
            d is None or (type(d) is int and d >= 0) for d in shape
        ):
            raise SchemaError(f"{where}: 'shape' must be a list of sizes (null = any)")
    elif kind == "json":
        if not isinstance(spec.get("schema"), dict):
            raise SchemaError(f"{where}: a json type needs a JSON Schema object in 'schema'")
    else:
        raise SchemaError(f"{where}: unknown type {kind!r} (dataframe, ndarray or json)")


def _input_type(schema: dict[str, Any]) -> dict[str, Any]:
    # Accept the whole document or just its input type.
    if "input" in schema and "type" not in schema:
        return schema["input"]
    return schema


# ---------------------------------------------------------------------------------------
# decode_input


def decode_input(schema: dict[str, Any], value: Any) -> Any:
    """Turn a JSON request value into what ``run`` expects, or raise ``SchemaError``.

    ``schema`` is a schema document (its ``input`` is used) or a type. A dataframe type
    gives a DataFrame with the schema's columns in order and with its dtypes; an ndarray
    type an ndarray of its dtype and rank; a json type the value itself once validated.
    """
    return make_decoder(schema)(value)


def make_decoder(schema: dict[str, Any]) -> Callable[[Any], Any]:
    """``decode_input`` for one schema, with the per-schema work done once (for servers)."""
    spec = _input_type(schema)
    kind = spec.get("type")
    if kind == "dataframe":
        return _FrameDecoder(spec)
    if kind == "ndarray":
        return lambda value: _decode_ndarray(spec, value)
    if kind == "json":
        js = spec["schema"]

        def decode_json(value: Any) -> Any:
            _validate_json(js, value, "$")
            return value

        return decode_json
    raise SchemaError(f"unknown type {kind!r} (dataframe, ndarray or json)")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _first_bad(values: list[Any], allowed: frozenset[type]) -> int | None:
    if set(map(type, values)) <= allowed:
        return None
    for i, v in enumerate(values):
        if type(v) not in allowed:
            return i
    return None  # pragma: no cover - the set said otherwise


class _ColumnCodec:
    """How one dataframe column is checked and built."""

    def __init__(
        self, dtype: str, allowed: frozenset[type] | None, build: Callable[[list[Any]], Any]
    ) -> None:
        self.dtype = dtype
        self.allowed = allowed  # None: any JSON value
        self.build = build


def _column_codec(dtype: str, where: str = "column") -> _ColumnCodec:
    if dtype in _NP_INTS:
        return _ColumnCodec(dtype, _INT, lambda v: _np().array(v, dtype=dtype))
    if dtype in _NP_FLOATS:
        return _ColumnCodec(dtype, _NUM_OR_NULL, lambda v: _np().array(v, dtype=dtype))
    if dtype == "bool":
        return _ColumnCodec(dtype, _BOOL, lambda v: _np().array(v, dtype=bool))
    if dtype in ("str", "string"):
        return _ColumnCodec(dtype, _STR_OR_NULL, lambda v: _pd().array(v, dtype=dtype))
    if dtype in _NULLABLE_INTS:
        return _ColumnCodec(dtype, _INT_OR_NULL, lambda v: _pd().array(v, dtype=dtype))
    if dtype in _NULLABLE_FLOATS:
        return _ColumnCodec(dtype, _NUM_OR_NULL, lambda v: _pd().array(v, dtype=dtype))
    if dtype == "boolean":
        return _ColumnCodec(dtype, _BOOL_OR_NULL, lambda v: _pd().array(v, dtype=dtype))
    if dtype == "object":
        return _ColumnCodec(dtype, None, _object_array)
    m = _DATETIME_RE.match(dtype)
    if m:
        unit, tz = m.group(1), m.group(2)
        return _ColumnCodec(dtype, _STR_OR_NULL, lambda v: _datetimes(v, unit, tz))
    raise SchemaError(f"{where}: unsupported dtype {dtype!r}")


def _object_array(values: list[Any]) -> Any:
    arr = _np().empty(len(values), dtype=object)
    arr[:] = values
    return arr


def _datetimes(values: list[Any], unit: str, tz: str | None) -> Any:
    pd = _pd()
    raw = pd.Series(values, dtype=object)
    try:
        parsed = pd.to_datetime(raw, format="ISO8601")
    except (ValueError, TypeError):
        # Mixed UTC offsets parse only as UTC; an unparseable string is found by the caller.
        parsed = pd.to_datetime(raw, format="ISO8601", utc=True)
    aware = isinstance(parsed.dtype, pd.DatetimeTZDtype)
    if tz is not None:
        parsed = parsed.dt.tz_convert(tz) if aware else parsed.dt.tz_localize(tz)
    elif aware:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.dt.as_unit(unit).array


def _bad_datetime(values: list[Any]) -> int | None:
    pd = _pd()
    for i, v in enumerate(values):
        if v is None:
            continue
        try:
            pd.to_datetime([v], format="ISO8601")
        except (ValueError, TypeError):
            return i
    return None


class _FrameDecoder:
    """Records → DataFrame for one dataframe type."""

    def __init__(self, spec: dict[str, Any]) -> None:
        pd = _pd()
        self.names: list[str] = [c["name"] for c in spec["columns"]]
        self.name_set = frozenset(self.names)
        self.codecs = [_column_codec(c["dtype"]) for c in spec["columns"]]
        self.index = pd.Index(self.names)
        dtypes = {c.dtype for c in self.codecs}
        # All columns of one numpy dtype (the usual all-float features): one 2-D block is
        # several times cheaper to build than a frame from separate columns.
        self.block_dtype = None
        if self.names and len(dtypes) == 1:
            (dtype,) = dtypes
            if dtype in _NP_INTS or dtype in _NP_FLOATS or dtype == "bool":
                self.block_dtype = dtype
                self.block_allowed = self.codecs[0].allowed

    def __call__(self, rows: Any) -> Any:
        if type(rows) is not list:
            raise SchemaError(f"expected a list of row objects (records), got {_show(rows)}")
        names, name_set = self.names, self.name_set
        for i, row in enumerate(rows):
            if type(row) is not dict:
                raise SchemaError(f"row {i}: expected an object of column values, got {_show(row)}")
            if row.keys() != name_set:
                missing = [name for name in names if name not in row]
                unexpected = [name for name in row if name not in name_set]
                if missing:
                    # A misspelt column is both: name the spelling that came too.
                    extra = f" (got unexpected column {unexpected[0]!r})" if unexpected else ""
                    raise SchemaError(f"row {i}: missing column {missing[0]!r}{extra}")
                raise SchemaError(f"row {i}: unexpected column {unexpected[0]!r}")
        if self.block_dtype is not None and rows:
            matrix = [[row[name] for name in names] for row in rows]
            if set(map(type, chain.from_iterable(matrix))) <= self.block_allowed:
                try:
                    block = _np().array(matrix, dtype=self.block_dtype)
                except OverflowError:
                    pass  # the column-wise path names the culprit
                else:
                    return _pd().DataFrame(block, columns=self.index, copy=False)
        return self._by_column(rows)

    def _by_column(self, rows: list[dict[str, Any]]) -> Any:
        data = {}
        for name, codec in zip(self.names, self.codecs, strict=True):
            values = [row[name] for row in rows]
            if codec.allowed is not None:
                bad = _first_bad(values, codec.allowed)
                if bad is not None:
                    raise SchemaError(
                        f"row {bad}, column {name!r}: expected {codec.dtype}, "
                        f"got {_show(values[bad])}"
                    )
            try:
                data[name] = codec.build(values)
            except (OverflowError, ValueError, TypeError) as exc:
                bad = _bad_datetime(values) if codec.dtype.startswith("datetime") else None
                if bad is None:
                    bad = _first_out_of_range(values, codec.dtype)
                if bad is None:
                    raise SchemaError(f"column {name!r}: {exc}") from None
                raise SchemaError(
                    f"row {bad}, column {name!r}: expected {codec.dtype}, got {_show(values[bad])}"
                ) from None
        return _pd().DataFrame(data, columns=self.index, copy=False)


def _first_out_of_range(values: Iterable[Any], dtype: str) -> int | None:
    np = _np()
    try:
        info = np.iinfo(np.dtype(dtype.lower()))
    except (TypeError, ValueError):
        return None
    for i, v in enumerate(values):
        if type(v) is int and not info.min <= v <= info.max:
            return i
    return None


# ndarray -------------------------------------------------------------------------------


def _ndarray_codec(dtype: str, where: str = "ndarray") -> frozenset[type]:
    if dtype in _NP_INTS:
        return _INT
    if dtype in _NP_FLOATS:
        return _NUM_OR_NULL
    if dtype == "bool":
        return _BOOL
    if dtype == "str":
        return _STR
    raise SchemaError(f"{where}: unsupported ndarray dtype {dtype!r}")


def _dims(n: int) -> str:
    return f"{n} dimension" if n == 1 else f"{n} dimensions"


def _at(index: tuple[int, ...]) -> str:
    return f"index [{', '.join(map(str, index))}]: " if index else ""


def _decode_ndarray(spec: dict[str, Any], value: Any) -> Any:
    np = _np()
    dtype: str = spec["dtype"]
    shape: list[int | None] = list(spec["shape"])
    allowed = _ndarray_codec(dtype)
    rank = len(shape)
    if rank == 0:
        if type(value) not in allowed:
            raise SchemaError(f"expected {dtype}, got {_show(value)}")
    else:
        _check_nested(value, shape, allowed, dtype)
    try:
        return np.array(value, dtype=dtype)
    except OverflowError:
        index = _find_out_of_range(value, rank, dtype)
        leaf = value
        for i in index:
            leaf = leaf[i]
        raise SchemaError(f"{_at(index)}expected {dtype}, got {_show(leaf)}") from None


def _check_nested(
    value: Any, shape: list[int | None], allowed: frozenset[type], dtype: str
) -> None:
    rank = len(shape)
    # A null size is fixed by the first list met in that dimension: arrays are rectangular.
    sizes = list(shape)

    def walk(v: Any, depth: int, index: tuple[int, ...]) -> None:
        if type(v) is not list:
            raise SchemaError(f"{_at(index)}expected {_dims(rank)}, got {depth}")
        want = sizes[depth]
        if want is None:
            if depth > 0:
                sizes[depth] = len(v)
        elif len(v) != want:
            raise SchemaError(
                f"{_at(index)}expected {want} values in dimension {depth}, got {len(v)}"
            )
        if depth == rank - 1:
            bad = _first_bad(v, allowed)
            if bad is not None:
                leaf = v[bad]
                if type(leaf) is list:
                    raise SchemaError(f"{_at((*index, bad))}expected {_dims(rank)}, got more")
                raise SchemaError(f"{_at((*index, bad))}expected {dtype}, got {_show(leaf)}")
            return
        for j, item in enumerate(v):
            walk(item, depth + 1, (*index, j))

    walk(value, 0, ())


def _find_out_of_range(value: Any, rank: int, dtype: str) -> tuple[int, ...]:
    np = _np()
    info = np.iinfo(np.dtype(dtype))

    def walk(v: Any, index: tuple[int, ...]) -> tuple[int, ...] | None:
        if len(index) == rank:
            return None if info.min <= v <= info.max else index
        for j, item in enumerate(v):
            found = walk(item, (*index, j))
            if found is not None:
                return found
        return None

    return walk(value, ()) or ()


# json ----------------------------------------------------------------------------------

_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "null": lambda v: v is None,
    "boolean": lambda v: type(v) is bool,
    "integer": lambda v: type(v) is int,
    "number": lambda v: type(v) is int or type(v) is float,
    "string": lambda v: type(v) is str,
    "object": lambda v: type(v) is dict,
    "array": lambda v: type(v) is list,
}


def _validate_json(js: dict[str, Any], value: Any, path: str) -> None:
    expected = js.get("type")
    if expected is not None:
        names = expected if isinstance(expected, list) else [expected]
        if not any(_JSON_TYPES.get(n, lambda v: True)(value) for n in names):
            raise SchemaError(f"{path}: expected {' or '.join(names)}, got {_show(value)}")
    if type(value) is dict:
        for key in js.get("required", ()):
            if key not in value:
                raise SchemaError(f"{path}: missing property {key!r}")
        props = js.get("properties", {})
        for key, sub in props.items():
            if key in value:
                _validate_json(sub, value[key], f"{path}.{key}")
        if js.get("additionalProperties") is False:
            for key in value:
                if key not in props:
                    raise SchemaError(f"{path}: unexpected property {key!r}")
    elif type(value) is list:
        items = js.get("items")
        if isinstance(items, dict) and items:
            for i, item in enumerate(value):
                _validate_json(items, item, f"{path}[{i}]")


# ---------------------------------------------------------------------------------------
# JSON Schema / swagger

_FORMATS = {
    "int8": ("integer", "int32"),
    "int16": ("integer", "int32"),
    "int32": ("integer", "int32"),
    "int64": ("integer", "int64"),
    "uint8": ("integer", "int32"),
    "uint16": ("integer", "int32"),
    "uint32": ("integer", "int64"),
    "uint64": ("integer", "int64"),
    "float16": ("number", "float"),
    "float32": ("number", "float"),
    "float64": ("number", "double"),
}


def _scalar_json_schema(dtype: str) -> dict[str, Any]:
    out = _scalar_json_type(dtype)
    if out and dtype not in _NP_INTS and dtype != "bool":
        out["type"] = [out["type"], "null"]  # floats, strings, datetimes, nullable dtypes
    return out


def _scalar_json_type(dtype: str) -> dict[str, Any]:
    base = dtype.lower() if dtype in _NULLABLE_INTS or dtype in _NULLABLE_FLOATS else dtype
    if base in _FORMATS:
        kind, fmt = _FORMATS[base]
        return {"type": kind, "format": fmt}
    if dtype in ("bool", "boolean"):
        return {"type": "boolean"}
    if dtype in ("str", "string"):
        return {"type": "string"}
    if dtype.startswith("datetime64"):
        return {"type": "string", "format": "date-time"}
    return {}


def to_json_schema(spec: dict[str, Any] | None) -> dict[str, Any]:
    """The JSON Schema of a schema type's wire form (``{}`` when ``spec`` is None)."""
    if spec is None:
        return {}
    kind = spec.get("type")
    if kind == "dataframe":
        return {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {c["name"]: _scalar_json_schema(c["dtype"]) for c in spec["columns"]},
                "required": [c["name"] for c in spec["columns"]],
            },
        }
    if kind == "ndarray":
        out = _scalar_json_schema(spec["dtype"])
        for size in reversed(spec["shape"]):
            out = {"type": "array", "items": out}
            if size is not None:
                out["minItems"] = out["maxItems"] = size
        return out
    if kind == "json":
        return spec["schema"]
    raise SchemaError(f"unknown type {kind!r} (dataframe, ndarray or json)")


def _swagger_schema(js: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI 2.0 schemas have one type and no 'null': use x-nullable instead."""
    out = dict(js)
    kind = out.get("type")
    if isinstance(kind, list):
        others = [k for k in kind if k != "null"]
        if len(others) == 1:
            out["type"] = others[0]
        else:
            del out["type"]
        if "null" in kind:
            out["x-nullable"] = True
    elif kind == "null":
        del out["type"]
        out["x-nullable"] = True
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: _swagger_schema(v) for k, v in out["properties"].items()}
        if not out.get("required"):
            out.pop("required", None)
    if isinstance(out.get("items"), dict):
        out["items"] = _swagger_schema(out["items"])
    return out


def to_swagger(schema: dict[str, Any], title: str) -> dict[str, Any]:
    """An OpenAPI 2.0 document for a scoring service with this schema."""
    body = _swagger_schema(to_json_schema(schema.get("input")))
    if schema.get("sample") is not None:
        body["example"] = schema["sample"]
    output = _swagger_schema(to_json_schema(schema.get("output")))
    error = {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                "required": ["code", "message"],
            }
        },
        "required": ["error"],
    }
    return {
        "swagger": "2.0",
        "info": {"title": title, "description": f"Scoring API of {title}", "version": "1.0"},
        "schemes": ["http"],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "securityDefinitions": {
            "Bearer": {
                "type": "apiKey",
                "name": "Authorization",
                "in": "header",
                "description": "'Bearer <key>' with the primary or secondary service key",
            }
        },
        "paths": {
            "/": {
                "get": {
                    "operationId": "ServiceHealthCheck",
                    "description": "Liveness: answers 'Healthy' once the service is up",
                    "produces": ["text/plain"],
                    "responses": {"200": {"description": "Healthy", "schema": {"type": "string"}}},
                }
            },
            "/score": {
                "post": {
                    "operationId": "RunMLService",
                    "description": "Run the model on the request body",
                    "security": [{"Bearer": []}],
                    "parameters": [
                        {
                            "name": "serviceInputPayload",
                            "in": "body",
                            "required": True,
                            "schema": {"$ref": "#/definitions/ServiceInput"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "Success",
                            "schema": {"$ref": "#/definitions/ServiceOutput"},
                        },
                        "default": {
                            "description": "Failure",
                            "schema": {"$ref": "#/definitions/ErrorResponse"},
                        },
                    },
                }
            },
        },
        "definitions": {"ServiceInput": body, "ServiceOutput": output, "ErrorResponse": error},
    }
