"""Load a driver program (``init()`` + ``run(input)``) the way the scoring runtime serves it."""

from __future__ import annotations

import importlib.util
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

__all__ = ["Driver", "DriverError", "describe_exception", "load_driver", "print_driver_traceback"]

_FALLBACK_MODULE_NAME = "amlmm_driver"


class DriverError(Exception):
    """The driver program cannot be served.

    ``str(error)`` is one line fit for a user: for an exception raised by the driver itself it
    is exactly ``ExceptionType: message`` (its traceback has gone to stderr). ``stage`` says
    where it failed: ``"load"`` (file missing, no ``run``), ``"import"``, ``"init"`` or
    ``"run"``.
    """

    def __init__(self, message: str, stage: str) -> None:
        super().__init__(message)
        self.stage = stage


@dataclass(frozen=True)
class Driver:
    """A loaded driver program."""

    path: Path
    module: ModuleType
    run: Callable[[Any], Any]
    raw_input: bool


def describe_exception(exc: BaseException) -> str:
    """``ExceptionType: message`` (just the type when the message is empty)."""
    try:
        message = str(exc)
    except Exception:  # a broken __str__ must not hide the original failure
        message = "<exception str() failed>"
    name = type(exc).__name__
    return f"{name}: {message}" if message else name


def _driver_frames(tb: TracebackType | None, path: Path) -> TracebackType | None:
    # Hide the runtime's own frames: the log should start where the user's code starts.
    start = tb
    while start is not None and Path(start.tb_frame.f_code.co_filename) != path:
        start = start.tb_next
    return start or tb


def print_driver_traceback(exc: BaseException, path: Path | None = None) -> None:
    """Write the traceback of a driver's exception to stderr in one write."""
    tb = _driver_frames(exc.__traceback__, path) if path is not None else exc.__traceback__
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    sys.stderr.write(text)
    sys.stderr.flush()


def _module_name(path: Path) -> str:
    # Import under the file's own name, as a plain `import score` would, so pickles and
    # tracebacks that mention it make sense; fall back when that name is taken.
    name = path.stem
    if (
        name.isidentifier()
        and name not in sys.modules
        and name not in sys.stdlib_module_names
        and name not in sys.builtin_module_names
    ):
        return name
    return _FALLBACK_MODULE_NAME


def load_driver(
    app_dir: str | os.PathLike[str], driver: str | os.PathLike[str], *, call_init: bool = True
) -> Driver:
    """Import ``driver`` (relative to ``app_dir``), call its ``init()``, find its ``run``.

    Side effects the driver relies on: the working directory becomes ``app_dir``, the
    driver's directory goes first on ``sys.path``, and ``AMLMM_APP_DIR`` (and
    ``AZUREML_MODEL_DIR`` when unset, for drivers written for Azure ML) name ``app_dir``.
    Raises ``DriverError``.
    """
    app = Path(app_dir).resolve()
    if not app.is_dir():
        raise DriverError(f"app directory not found: {app}", "load")
    path = (app / driver).resolve()
    if not path.is_file():
        raise DriverError(f"driver program not found: {path}", "load")

    os.chdir(app)
    os.environ["AMLMM_APP_DIR"] = str(app)
    os.environ.setdefault("AZUREML_MODEL_DIR", str(app))
    if str(path.parent) not in sys.path[:1]:
        sys.path.insert(0, str(path.parent))

    name = _module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise DriverError(f"cannot import driver program {path.name}", "load")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        sys.modules.pop(name, None)
        print_driver_traceback(exc, path)
        raise DriverError(describe_exception(exc), "import") from exc

    run = getattr(module, "run", None)
    if not callable(run):
        raise DriverError(
            f"driver program {path.name} does not define a function run(input)", "load"
        )
    init = getattr(module, "init", None)
    if call_init and init is not None:
        if not callable(init):
            raise DriverError(f"driver program {path.name}: init is not a function", "load")
        try:
            init()
        except (Exception, SystemExit) as exc:
            print_driver_traceback(exc, path)
            raise DriverError(describe_exception(exc), "init") from exc
    return Driver(
        path=path, module=module, run=run, raw_input=getattr(module, "RAW_INPUT", False) is True
    )
