"""Pollers for the ``begin_*`` operations, built from the ``Operation-Location`` header."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

from amlmm_magics.api.errors import OperationFailedError, OperationTimeoutError
from amlmm_magics.api.resources import Resource, normalize

TERMINAL_STATES = frozenset({"Succeeded", "Failed", "Cancelled"})
ProgressCallback = Callable[["OperationPoller", Resource], None]


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class OperationPoller:
    """Follows one asynchronous operation to its end.

    ``status()`` polls and answers the state; ``wait(timeout)`` polls until the operation
    ends (True) or the timeout passes (False); ``result()`` waits, then answers the created
    or updated resource (following ``resourceLocation``) or raises
    :class:`OperationFailedError` for a Failed or Cancelled operation.
    """

    min_interval = 0.2
    max_interval = 5.0

    def __init__(
        self,
        get_operation: Callable[[], tuple[Any, str | None]],
        get_resource: Callable[[str], Any],
        *,
        operation_location: str,
        operation_id: str,
        kind: str,
        target_name: str | None = None,
        first_delay: float | None = None,
    ) -> None:
        self._get_operation = get_operation
        self._get_resource = get_resource
        self.operation_location = operation_location
        self.operation_id = operation_id
        self.kind = kind
        self.target_name = target_name
        self.operation: Resource | None = None
        self._result: Resource | None = None
        self._callbacks: list[ProgressCallback] = []
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._next_delay = first_delay
        self.started = time.monotonic()

    # -- progress hooks (the widgets use these) --------------------------------------------
    def add_progress_callback(self, callback: ProgressCallback) -> None:
        """Call ``callback(poller, operation)`` after every poll."""
        self._callbacks.append(callback)

    def remove_progress_callback(self, callback: ProgressCallback) -> None:
        with contextlib.suppress(ValueError):
            self._callbacks.remove(callback)

    # -- state -----------------------------------------------------------------------------
    @property
    def state(self) -> str | None:
        """The last state seen, without asking the service."""
        return self.operation.get("state") if self.operation else None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def poll(self) -> Resource:
        """Ask the service once for the operation's status."""
        with self._lock:
            if self.operation is not None and self.state in TERMINAL_STATES:
                return self.operation
            data, retry_after = self._get_operation()
            self.operation = normalize(data)
            self._next_delay = retry_after_seconds(retry_after)
            operation = self.operation
        for callback in list(self._callbacks):
            callback(self, operation)
        return operation

    def status(self) -> str:
        """The operation's state, asked of the service if it has not ended yet."""
        return self.poll().get("state") or "NotStarted"

    def done(self) -> bool:
        return self.status() in TERMINAL_STATES

    def stop_waiting(self) -> None:
        """Make a ``wait`` in another thread return early (the operation goes on)."""
        self._wake.set()

    def wait(self, timeout: float | None = None, interval: float | None = None) -> bool:
        """Poll until the operation ends (True) or ``timeout`` seconds pass (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = self.min_interval if interval is None else interval
        self._wake.clear()
        while True:
            if self.status() in TERMINAL_STATES:
                return True
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return False
            pause = self._next_delay if self._next_delay is not None else delay
            if deadline is not None:
                pause = min(pause, deadline - now)
            if self._wake.wait(max(pause, 0.0)):
                return self.state in TERMINAL_STATES
            if interval is None:
                delay = min(delay * 1.5, self.max_interval)

    def result(self, timeout: float | None = None) -> Resource:
        """The resource the operation created or updated."""
        if self._result is not None:
            return self._result
        if not self.wait(timeout):
            raise OperationTimeoutError(
                f"{self.describe()} has not finished after {timeout:g} s; it goes on in the "
                "service.",
                operation_id=self.operation_id,
            )
        operation = self.operation or Resource()
        state = operation.get("state")
        if state != "Succeeded":
            error = operation.get("error") or {}
            reason = error.get("message") or "no reason given"
            raise OperationFailedError(
                f"{self.describe()} {str(state).lower()}: {reason}",
                operation=operation,
                status_code=error.get("statusCode"),
                code=error.get("code"),
                details=error.get("details"),
            )
        location = operation.get("resourceLocation")
        if not location:
            self._result = operation
        else:
            self._result = normalize(self._get_resource(location))
        return self._result

    def describe(self) -> str:
        target = f" {self.target_name!r}" if self.target_name else ""
        return f"{self.kind.capitalize()} operation{target} ({self.operation_id})"

    def __repr__(self) -> str:
        return f"<OperationPoller {self.describe()} state={self.state or 'unknown'}>"
