"""What a command handler gets: settings, the session (lazy connection), the notebook's
namespace (None in a terminal), the cell body, a progress reporter and an output sink."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from amlmm_magics.commands.settings import Settings
from amlmm_magics.errors import AmlmmUsageError

if TYPE_CHECKING:
    from amlmm_magics.connection import Connection
    from amlmm_magics.notebook.progress import ProgressReporter
    from amlmm_magics.workflow import SessionModels


class Output(Protocol):
    """Where a command's messages go (its result is returned, not written here)."""

    def info(self, text: str) -> None:
        """A line for the user (notebook: the cell's output; terminal: stderr)."""

    def rich(self, text: str, html: str) -> None:
        """A message with an HTML form where the front end shows HTML (device-code sign-in)."""

    def after(self, text: str) -> None:
        """A line to show below the result (a listing's footer)."""


class Namespace(Protocol):
    """The notebook's variables; absent in a terminal."""

    def evaluate(self, expression: str, what: str) -> Any:
        """The value of a variable name or expression; raises AmlmmVariableError whose
        line starts with ``what``."""

    def store(self, name: str, value: Any) -> None: ...

    def run_cell(self, source: str) -> None:
        """Run a cell body in the notebook (its errors propagate as they are)."""

    @property
    def globals(self) -> Mapping[str, Any]: ...


_WORKDIR_PREFIX = "amlmm-session-"


def _remove_orphaned_workdirs() -> None:
    for folder in Path(tempfile.gettempdir()).glob(f"{_WORKDIR_PREFIX}*-*"):
        pid = folder.name[len(_WORKDIR_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Session:
    """What outlives one command in a notebook: the connection and the models registered."""

    connection: Connection | None = None
    # The settings a lazy connection was made from (None: made by `connect`, kept as is).
    connection_key: tuple[Any, ...] | None = None
    _models: SessionModels | None = None
    _workdir: Path | None = None

    @property
    def models(self) -> SessionModels:
        if self._models is None:
            from amlmm_magics.workflow import SessionModels

            self._models = SessionModels()
        return self._models

    @property
    def workdir(self) -> Path:
        """A private folder for model files of this session, removed at exit; folders of
        sessions whose process died without exiting (a killed kernel) are removed here."""
        if self._workdir is None:
            _remove_orphaned_workdirs()
            self._workdir = Path(tempfile.mkdtemp(prefix=f"{_WORKDIR_PREFIX}{os.getpid()}-"))
            atexit.register(shutil.rmtree, self._workdir, True)
        return self._workdir

    def disconnect(self) -> None:
        if self.connection is not None:
            self.connection.client.close()
            self.connection = None
        self.connection_key = None

    def close(self) -> None:
        self.disconnect()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None


@dataclass
class Context:
    settings: Settings
    session: Session
    out: Output
    namespace: Namespace | None = None
    cell: str | None = None
    prefix: str = "%amlmm"  # how to write a command for this front end (resume hints)
    progress_factory: Callable[[Context], ProgressReporter] | None = None
    # --no-wait: shows the operation going on in the background; False when it cannot.
    background: Callable[[Context, Any, str], bool] | None = None
    command: str = ""  # "service create", set by the dispatcher
    target: str | None = None  # the resource a command acts on, for error lines

    @property
    def what(self) -> str:
        """How error lines start: ``service create 'iris-svc'``."""
        return f"{self.command} {self.target!r}" if self.target else self.command

    @property
    def in_notebook(self) -> bool:
        return self.namespace is not None

    def need_notebook(self, hint: str) -> Namespace:
        if self.namespace is None:
            raise AmlmmUsageError(f"{self.what}: {hint}")
        return self.namespace

    def connection(self) -> Connection:
        """The session's connection, made on first use: the embedded backend unless the
        settings name an Azure account. A lazy connection follows the settings: when they
        change (``%config AmlmmMagics.home = ...``) the next command connects anew."""
        from amlmm_magics.commands.connect import connect_from_settings

        session = self.session
        if self.current_connection() is None:
            session.connection = connect_from_settings(self)
            session.connection_key = self._connection_key()
        assert session.connection is not None
        return session.connection

    def _connection_key(self) -> tuple[Any, ...]:
        from amlmm_magics.commands.connect import CONNECTION_SETTINGS

        return tuple(self.settings.values[name] for name in CONNECTION_SETTINGS)

    def current_connection(self) -> Connection | None:
        """The connection if there is one that still fits the settings; never connects."""
        session = self.session
        if session.connection is not None and session.connection_key not in (
                None, self._connection_key()):
            session.disconnect()
        return session.connection

    @property
    def client(self) -> Any:
        return self.connection().client

    def progress(self) -> ProgressReporter:
        from amlmm_magics.notebook.progress import NullProgress

        if self.progress_factory is None:
            return NullProgress()
        return self.progress_factory(self)
