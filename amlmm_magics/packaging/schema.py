"""Schemas from a notebook's sample input (and, when known, ``run``'s output on it).

The format and its decoding belong to the scoring runtime (``amlmm_magics.scoring.schema``),
which serves ``/swagger.json`` from it and decodes requests into the sample's type; this is
the notebook-side entry point.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from amlmm_magics.packaging.errors import PackagingError
from amlmm_magics.scoring.schema import SchemaError, infer_schema

SCHEMA_FILE = "schema.json"


def schema_from_sample(sample: Any, output: Any = None) -> dict[str, Any]:
    """The schema document for ``sample`` (a DataFrame, ndarray, list/dict or scalar)."""
    try:
        return infer_schema(sample, output)
    except (SchemaError, TypeError, ValueError) as exc:
        raise PackagingError(f"Cannot make a schema from the sample input: {exc}") from None


def write_schema(schema: dict[str, Any], directory: Path) -> Path:
    path = Path(directory) / SCHEMA_FILE
    path.write_text(json.dumps(schema, indent=2) + "\n")
    return path
