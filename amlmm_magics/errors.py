"""The errors users see from ``%amlmm`` and ``amlmm``: one line that says what failed and why.

An expected failure raises an :class:`AmlmmError`. In IPython it renders as that one line
(``_render_traceback_``) and still *fails the cell*, so "run all", nbval and papermill stop
there; ``%config AmlmmMagics.short_errors = False`` brings back the full traceback. In a
terminal the command line prints ``amlmm: error: <line>`` and exits 1 (2 for usage errors).

:func:`convert` is the one place library exceptions become these errors. Importing this
module imports nothing heavy: the library exception classes are looked up by module name.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from amlmm_magics.redact import redact_text

# Set by the magics from their ``short_errors`` setting; the command line ignores it.
SHORT_ERRORS = True


def _clause(text: str) -> str:
    """A message as the tail of ``what: reason``: first letter lower-cased unless it starts
    an acronym, no trailing period, one line."""
    text = " ".join(redact_text(str(text)).split())
    text = text.removesuffix(".")
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        text = text[0].lower() + text[1:]
    return text


class AmlmmError(Exception):
    """An expected failure of a command, with one line for the user."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        self.message = " ".join(redact_text(message).split())
        super().__init__(self.message)

    @classmethod
    def of(cls, what: str, reason: Any, **kw: Any) -> AmlmmError:
        """``what: reason``; ``what`` names the failed command (``service create 'x'``)."""
        return cls(f"{what}: {_clause(str(reason))}" if what else _clause(str(reason)), **kw)

    def __str__(self) -> str:
        return self.message

    # IPython looks this attribute up with hasattr(): while short errors are off it is
    # absent, and IPython shows its own full traceback.
    @property
    def _render_traceback_(self) -> Callable[[], list[str]]:
        if not SHORT_ERRORS:
            raise AttributeError("_render_traceback_")
        return self._one_line

    def _one_line(self) -> list[str]:
        return [self.message]


class AmlmmUsageError(AmlmmError):
    """The command line is wrong: unknown command, missing or malformed option."""

    exit_code = 2

    def __init__(self, message: str, usage: str | None = None) -> None:
        super().__init__(message)
        self.usage = usage


class AmlmmVariableError(AmlmmError):
    """A variable or expression of the notebook could not be evaluated or used."""


class AmlmmServiceError(AmlmmError):
    """The Model Management service (or a scoring service) answered with an error."""

    def __init__(self, message: str, status_code: int | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code


class AmlmmNotFoundError(AmlmmServiceError):
    """No resource has the ID, name or name:version given."""

    def __init__(self, message: str, status_code: int | None = 404,
                 code: str | None = "NotFound") -> None:
        super().__init__(message, status_code, code)


class AmlmmOperationError(AmlmmServiceError):
    """An asynchronous operation failed, was cancelled, or did not end in time."""

    def __init__(self, message: str, status_code: int | None = None, code: str | None = None,
                 operation_id: str | None = None, state: str | None = None) -> None:
        super().__init__(message, status_code, code)
        self.operation_id = operation_id
        self.state = state


class AmlmmPackagingError(AmlmmError):
    """Something in the notebook cannot become a model file or a driver program."""


class AmlmmConnectionError(AmlmmError):
    """No connection: the backend did not start, the URL does not answer, no credential."""


def _module_of_innermost_frame(exc: BaseException) -> str:
    tb = exc.__traceback__
    if tb is None:
        return ""
    while tb.tb_next is not None:
        tb = tb.tb_next
    return str(tb.tb_frame.f_globals.get("__name__", ""))


def _is_instance(exc: BaseException, module: str, name: str) -> bool:
    """``isinstance`` against a class of a module only if that module is loaded already."""
    loaded = sys.modules.get(module)
    cls = getattr(loaded, name, None) if loaded is not None else None
    return cls is not None and isinstance(exc, cls)


def convert(exc: BaseException, what: str) -> AmlmmError | None:
    """The :class:`AmlmmError` for an expected library exception, or None for a bug.

    ``what`` is the prefix of the line: the command and, where there is one, its target.
    """
    if isinstance(exc, AmlmmError):
        return exc
    api = "amlmm_magics.api.errors"
    if _is_instance(exc, api, "OperationFailedError"):
        operation = getattr(exc, "operation", {}) or {}
        error = operation.get("error") or {}
        reason = error.get("message") or getattr(exc, "message", str(exc))
        op_id = getattr(exc, "operation_id", None)
        state = str(getattr(exc, "state", "") or "failed").lower()
        return AmlmmOperationError.of(
            what, f"operation {op_id} {state}: {_clause(reason)}",
            status_code=getattr(exc, "status_code", None), code=getattr(exc, "code", None),
            operation_id=op_id, state=getattr(exc, "state", None))
    if _is_instance(exc, api, "OperationTimeoutError"):
        return AmlmmOperationError.of(what, exc, operation_id=getattr(exc, "operation_id", None))
    if _is_instance(exc, api, "CredentialError") or _is_instance(exc, api, "ServiceRequestError"):
        return AmlmmConnectionError.of(what, exc)
    if _is_instance(exc, api, "ResourceNotFoundError"):
        return AmlmmNotFoundError.of(what, exc, code=getattr(exc, "code", None))
    if _is_instance(exc, api, "ModelManagementError"):
        return AmlmmServiceError.of(what, str(exc),
                                    status_code=getattr(exc, "status_code", None),
                                    code=getattr(exc, "code", None))
    if _is_instance(exc, "amlmm_magics.packaging.errors", "PackagingError"):
        return AmlmmPackagingError.of(what, exc)
    if _is_instance(exc, "amlmm_magics.workflow", "NotFoundError"):
        return AmlmmNotFoundError.of(what, exc)
    if _is_instance(exc, "amlmm_magics.workflow", "WorkflowError"):
        return AmlmmError.of(what, exc)
    if _is_instance(exc, "amlmm_magics.local.daemon", "DaemonError"):
        return AmlmmConnectionError.of(what, exc)
    if isinstance(exc, ValueError) and _module_of_innermost_frame(exc).startswith(
            "amlmm_magics.api"):
        # The client checks its arguments before sending anything.
        return AmlmmUsageError.of(what, exc)
    return None
