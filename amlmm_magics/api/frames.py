"""Listings as pandas DataFrames: chosen columns per resource, flattened, with real dtypes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

# (column, path into the resource, kind) per resource; ids, names, versions, state and
# times first. Nested objects are flattened to dotted columns, as pandas.json_normalize does.
_TIME, _INT, _BOOL, _URL, _TEXT, _LIST = "time", "int", "bool", "url", "text", "list"

COLUMNS: dict[str, list[tuple[str, tuple[str, ...], str]]] = {
    "model": [
        ("id", ("id",), _TEXT),
        ("name", ("name",), _TEXT),
        ("version", ("version",), _INT),
        ("createdAt", ("createdAt",), _TIME),
        ("mimeType", ("mimeType",), _TEXT),
        ("unpack", ("unpack",), _BOOL),
        ("tags", ("tags",), _LIST),
        ("description", ("description",), _TEXT),
        ("url", ("url",), _URL),
    ],
    "manifest": [
        ("id", ("id",), _TEXT),
        ("name", ("name",), _TEXT),
        ("version", ("version",), _INT),
        ("createdTime", ("createdTime",), _TIME),
        ("driverProgram", ("driverProgram",), _TEXT),
        ("modelIds", ("modelIds",), _LIST),
        ("targetRuntime.runtimeType", ("targetRuntime", "runtimeType"), _TEXT),
        ("webserviceType", ("webserviceType",), _TEXT),
        ("description", ("description",), _TEXT),
    ],
    "image": [
        ("id", ("id",), _TEXT),
        ("name", ("name",), _TEXT),
        ("version", ("version",), _INT),
        ("creationState", ("creationState",), _TEXT),
        ("createdTime", ("createdTime",), _TIME),
        ("imageType", ("imageType",), _TEXT),
        ("manifest.id", ("manifest", "id"), _TEXT),
        ("manifest.name", ("manifest", "name"), _TEXT),
        ("imageLocation", ("imageLocation",), _TEXT),
        ("computeResourceId", ("computeResourceId",), _TEXT),
        ("description", ("description",), _TEXT),
        ("error.message", ("error", "message"), _TEXT),
    ],
    "service": [
        ("id", ("id",), _TEXT),
        ("name", ("name",), _TEXT),
        ("state", ("state",), _TEXT),
        ("createdAt", ("createdAt",), _TIME),
        ("updatedAt", ("updatedAt",), _TIME),
        ("scoringUri", ("scoringUri",), _TEXT),
        ("image.id", ("image", "id"), _TEXT),
        ("image.name", ("image", "name"), _TEXT),
        ("computeResource.id", ("computeResource", "id"), _TEXT),
        ("numReplicas", ("numReplicas",), _INT),
        ("autoScaler.autoscaleEnabled", ("autoScaler", "autoscaleEnabled"), _BOOL),
        ("error.message", ("error", "message"), _TEXT),
    ],
    "deployment": [
        ("id", ("id",), _TEXT),
        ("serviceName", ("serviceName",), _TEXT),
        ("status", ("status",), _TEXT),
        ("imageId", ("imageId",), _TEXT),
        ("createdAt", ("createdAt",), _TIME),
        ("expiredAt", ("expiredAt",), _TIME),
    ],
    "operation": [
        ("id", ("id",), _TEXT),
        ("operationType", ("operationType",), _TEXT),
        ("state", ("state",), _TEXT),
        ("createdTime", ("createdTime",), _TIME),
        ("endTime", ("endTime",), _TIME),
        ("resourceLocation", ("resourceLocation",), _TEXT),
        ("error.message", ("error", "message"), _TEXT),
    ],
}


def _dig(item: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(item, dict):
            return None
        item = item.get(key)
    return item


def _column(values: list[Any], kind: str) -> Any:
    if kind == _TIME:
        return pd.to_datetime(pd.Series(values, dtype=object), utc=True, format="ISO8601",
                              errors="coerce")
    if kind == _INT:
        return pd.array(values, dtype="Int64")
    if kind == _BOOL:
        return pd.array(values, dtype="boolean")
    if kind == _URL:
        # Listings show where a blob is, not the SAS query that grants access to it.
        return [v.partition("?")[0] if isinstance(v, str) else v for v in values]
    return values


def resources_to_frame(items: Sequence[dict[str, Any]], kind: str) -> pd.DataFrame:
    """The DataFrame of a listing; unknown kinds get every top-level field."""
    spec = COLUMNS.get(kind)
    if spec is None:
        return pd.DataFrame([dict(i) for i in items])
    data = {}
    get = dict.get  # unbound: several times faster than Resource.get on big listings
    for column, path, ckind in spec:
        if len(path) == 1:
            key = path[0]
            values = [get(i, key) for i in items]
        else:
            values = [_dig(i, path) for i in items]
        data[column] = _column(values, ckind)
    return pd.DataFrame(data)
