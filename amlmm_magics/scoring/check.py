"""Dry run of a driver in a fresh process: import it, ``init()``, ``run(sample)``.

``python -m amlmm_magics.scoring.check --app-dir D --driver F [--schema S]``

What an image build and a local dry run execute before anything is served. Prints a short
report to stdout and exits 0; on failure exits 1 with the failure's ``ExceptionType: message``
as the last line of stderr (tracebacks come before it), which callers show to users.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from .app import encode_result
from .driver import DriverError, describe_exception, load_driver, print_driver_traceback
from .schema import SchemaError, decode_input, load_schema

__all__ = ["main"]


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _fail(message: str) -> int:
    sys.stdout.flush()
    sys.stderr.write(_one_line(message) + "\n")
    sys.stderr.flush()
    return 1


def _preview(payload: bytes, limit: int = 200) -> str:
    text = payload.decode("utf-8", "replace")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check(app_dir: Path, driver_file: str, schema_path: Path | None) -> int:
    try:
        schema: dict[str, Any] | None = load_schema(schema_path) if schema_path else None
    except (OSError, SchemaError) as exc:
        return _fail(f"SchemaError: {exc}")

    started = time.perf_counter()
    try:
        driver = load_driver(app_dir, driver_file)
    except DriverError as exc:
        return _fail(str(exc))
    mode = "raw bytes" if driver.raw_input else "JSON"
    print(f"driver: {driver.path.name} (input: {mode})")
    print(f"init(): ok ({time.perf_counter() - started:.2f} s)")

    sample = None if schema is None else schema.get("sample")
    if sample is None:
        print("run(sample): skipped (no sample in the schema)")
        return 0
    if driver.raw_input:
        value: Any = json.dumps(sample).encode()
    else:
        try:
            value = decode_input(schema or {}, sample)
        except SchemaError as exc:
            return _fail(f"SchemaError: the schema's sample does not match its input type: {exc}")
    started = time.perf_counter()
    try:
        result = driver.run(value)
    except (Exception, SystemExit) as exc:
        print_driver_traceback(exc, driver.path)
        return _fail(describe_exception(exc))
    elapsed_ms = (time.perf_counter() - started) * 1000
    try:
        payload, _ = encode_result(result)
    except (TypeError, ValueError) as exc:
        return _fail(describe_exception(exc))
    print(f"run(sample): ok ({elapsed_ms:.1f} ms) -> {_preview(payload)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m amlmm_magics.scoring.check",
        description="Import a driver program, call init() and run(sample) once.",
    )
    parser.add_argument("--app-dir", required=True, type=Path, help="the service's files")
    parser.add_argument("--driver", required=True, help="driver file name in the app dir")
    parser.add_argument("--schema", type=Path, help="schema document (its sample is run)")
    args = parser.parse_args(argv)
    schema = args.schema.resolve() if args.schema else None
    return check(args.app_dir.resolve(), args.driver, schema)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # No interpreter teardown: threads or atexit hooks a driver started must neither hang
    # the check nor print after the final line.
    os._exit(code)
