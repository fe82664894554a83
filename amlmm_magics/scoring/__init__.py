"""The scoring runtime: serves one driver program and its models over HTTP.

Writing a driver program
------------------------
A driver is a Python file (``score.py``) with two functions::

    import joblib
    from amlmm_magics.scoring import model_path

    def init():                      # optional: runs once per process, before any request
        global model
        model = joblib.load(model_path("iris"))

    def run(input):                  # runs for every POST /score
        return model.predict(input)

- ``init()`` loads what every request needs. If it raises, the service does not start and
  its ``ExceptionType: message`` is the error shown to you (the traceback is in the log).
  The working directory is the app directory, which holds the driver, the model files and
  any other files deployed with it, so ``open("model.pkl")`` works too.
- ``run(input)`` gets the request body decoded from JSON. With a schema (generated from a
  sample input), it gets the same kind of value as the sample: a pandas DataFrame with the
  sample's columns and dtypes (the body is a list of row objects), a numpy ndarray of the
  sample's dtype and rank (the body is nested lists), or the JSON value checked against
  the sample's structure. A body that does not match gets a 400 naming the bad
  row/column/index, and ``run`` is not called.
- Raw input: set ``RAW_INPUT = True`` at module level and ``run`` receives the request body
  as ``bytes`` (no JSON decoding, no schema), e.g. for images or CSV.
- ``model_path(name)`` is the absolute path of a registered model's file (or folder) in
  the app directory; with several versions of one name, the highest. Drivers written for
  Azure ML that read ``AZUREML_MODEL_DIR`` find the app directory there (when it is unset).
- ``run`` may be called from several threads at once (2 by default; ``--threads``, or the
  service's maxConcurrentRequestsPerContainer, sets how many); keep it free of
  unsynchronised shared state, or serve with ``--threads 1``.

What callers get back
---------------------
- 200 with ``run``'s result as JSON: DataFrames as lists of row objects, ndarrays and
  Series as lists, numpy scalars as numbers, datetimes as ISO 8601 strings, NaN as null.
  A ``str`` result is a JSON string; a ``bytes`` result is sent as is
  (``application/octet-stream``).
- Errors are ``{"error": {"code": ..., "message": ...}}``: 400 ``InvalidJson`` /
  ``InvalidInput``, 401 ``Unauthorized``, 413 ``PayloadTooLarge``, 503 ``ServiceBusy``,
  500 ``RunFailed`` (message: the ``ExceptionType: message`` ``run`` raised; the
  traceback goes to the service log) and 500 ``OutputNotSerializable``.

This package is self-contained (standard library + uvicorn; numpy/pandas only when a
schema needs them) because it is copied as is into every image.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["model_path"]

MODELS_FILE = "models.json"


def _app_dir() -> Path:
    return Path(os.environ.get("AMLMM_APP_DIR") or os.getcwd()).resolve()


def model_path(name: str) -> str:
    """Absolute path of the registered model ``name`` in the app directory.

    Looks ``name`` up in the app directory's ``models.json``
    (``{"models": [{"name", "version", "id", "path"}, ...]}``); several versions of one name
    answer the highest. Raises ``LookupError`` for an unknown name (listing the known ones)
    and ``FileNotFoundError`` when the listed file is missing.
    """
    app = _app_dir()
    manifest = app / MODELS_FILE
    try:
        entries = json.loads(manifest.read_text(encoding="utf-8")).get("models", [])
    except FileNotFoundError:
        raise LookupError(
            f"no model named {name!r}: {manifest} does not exist (no models deployed)"
        ) from None
    matches = [e for e in entries if isinstance(e, dict) and e.get("name") == name]
    if not matches:
        known = sorted({str(e.get("name")) for e in entries if isinstance(e, dict)})
        listed = ", ".join(repr(k) for k in known) if known else "none"
        raise LookupError(f"no model named {name!r} in {MODELS_FILE}; known models: {listed}")
    best = max(matches, key=lambda e: int(e.get("version") or 0))
    path = app / str(best.get("path") or name)
    if not path.exists():
        raise FileNotFoundError(
            f"model {name!r} version {best.get('version')} is listed in {MODELS_FILE} "
            f"as {best.get('path')!r}, but {path} does not exist"
        )
    return str(path)
