"""Progress of long operations (image builds, service creations and updates).

A :class:`ProgressReporter` is told when waiting starts, after every poll, and how it ended.
:class:`TextProgress` writes one line per state change and a final summary line (the
notebook's cell output, or stderr in a terminal); :class:`NullProgress` is silent.

The widget reporter belongs to the widgets package (notebook/widgets.py), which the notebook
front end asks first when the ``progress`` setting is ``auto`` or ``widget``. Importing this
module imports neither IPython nor ipywidgets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol


class ProgressReporter(Protocol):
    def start(self, poller: Any, description: str) -> None:
        """Waiting for ``poller`` begins; ``description`` is e.g. ``Image 'iris-img'``."""

    def update(self, operation: Any) -> None:
        """The operation as last polled (a Resource with ``state``)."""

    def finish(self, outcome: Any) -> None:
        """The resource made, the exception that ended waiting, or None if interrupted."""


def short_id(operation_id: str) -> str:
    return operation_id[:4] + "…" if len(operation_id) > 6 else operation_id


class TextProgress:
    """One line per state change, never the same line twice, and a summary at the end."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        self._poller: Any = None
        self._description = ""
        self._last_state: str | None = None
        self._started = time.monotonic()

    def _head(self) -> str:
        op = getattr(self._poller, "operation_id", "") or ""
        return f"{self._description} (op {short_id(op)})"

    def start(self, poller: Any, description: str) -> None:
        self._poller = poller
        self._description = description
        self._started = time.monotonic()
        self._last_state = None
        poller.add_progress_callback(self._on_poll)

    def _on_poll(self, poller: Any, operation: Any) -> None:
        self.update(operation)

    def update(self, operation: Any) -> None:
        state = (operation or {}).get("state") or "NotStarted"
        if state == self._last_state or state in ("Succeeded", "Failed", "Cancelled"):
            return  # the end gets its summary line from finish()
        self._last_state = state
        self._write(f"{self._head()}: {state} {time.monotonic() - self._started:.1f} s")

    def finish(self, outcome: Any) -> None:
        if self._poller is not None:
            self._poller.remove_progress_callback(self._on_poll)
        elapsed = time.monotonic() - self._started
        if outcome is None:
            self._write(f"{self._head()}: stopped waiting after {elapsed:.1f} s")
        elif isinstance(outcome, BaseException):
            state = getattr(self._poller, "state", None)
            ended = state in ("Failed", "Cancelled")
            self._write(f"{self._head()}: {state if ended else 'still running'} after "
                        f"{elapsed:.1f} s")
        else:
            self._write(f"{self._head()}: Succeeded in {elapsed:.1f} s")


class NullProgress:
    def start(self, poller: Any, description: str) -> None:
        pass

    def update(self, operation: Any) -> None:
        pass

    def finish(self, outcome: Any) -> None:
        pass


def make_reporter(mode: str, write: Callable[[str], None]) -> ProgressReporter:
    """The text reporter for the ``progress`` setting (``none``: silent). Front ends that
    show widgets ask the widgets package first (notebook/display.py)."""
    return NullProgress() if mode == "none" else TextProgress(write)
