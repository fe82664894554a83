"""The ``amlmm`` command line: the magics' grammar and commands, in a terminal.

Results go to stdout (tables as text, resources as indented JSON with secrets redacted);
messages and progress go to stderr. Exit codes: 0 done, 1 expected failure (one line
``amlmm: error: ...``), 2 usage error, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from amlmm_magics.errors import AmlmmError, AmlmmUsageError
from amlmm_magics.grammar import for_terminal


class TerminalOutput:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def _write(self, text: str) -> None:
        stream = self.stream or sys.stderr
        stream.write(text + "\n")
        stream.flush()

    def info(self, text: str) -> None:
        self._write(text)

    def rich(self, text: str, html: str) -> None:
        self._write(text)

    def after(self, text: str) -> None:
        sys.stdout.write(text + "\n")


def render(value: Any, out: TextIO) -> None:
    """A command's result as text for a terminal."""
    from amlmm_magics.commands.results import HelpText, Table
    from amlmm_magics.redact import redact_value

    if value is None:
        return
    if isinstance(value, Table):
        if not value.frame.empty:
            import pandas as pd

            with pd.option_context("display.width", 200, "display.max_columns", None,
                                   "display.max_colwidth", 60):
                out.write(value.frame.to_string(index=False) + "\n")
        if value.footer:
            out.write(value.footer + "\n")
        return
    to_terminal = getattr(value, "to_terminal", None)
    if isinstance(value, HelpText):
        out.write(for_terminal(str(value)).rstrip("\n") + "\n")
    elif callable(to_terminal):
        out.write(to_terminal().rstrip("\n") + "\n")
    elif isinstance(value, bytes | bytearray):
        out.flush()
        sys.stdout.buffer.write(bytes(value))
    elif type(value).__name__ == "OperationPoller":
        out.write(json.dumps({"operationId": value.operation_id, "state": value.state},
                             indent=2) + "\n")
    else:
        out.write(json.dumps(redact_value(value), indent=2, default=str) + "\n")


def _context(strict: bool) -> Any:
    from amlmm_magics.commands.context import Context, Session
    from amlmm_magics.commands.settings import Settings
    from amlmm_magics.notebook.progress import make_reporter

    def progress(ctx: Context) -> Any:
        return make_reporter(ctx.settings.progress, TerminalOutput().info)

    return Context(Settings.resolve(strict=strict), Session(), TerminalOutput(),
                   namespace=None, cell=None, prefix="amlmm", progress_factory=progress)


def main(argv: Sequence[str] | None = None) -> int:
    from amlmm_magics.commands import execute

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        from amlmm_magics.grammar import manual

        sys.stdout.write(manual(terminal=True) + "\n")
        return 0
    contexts: list[Any] = []

    def build(strict: bool) -> Any:
        contexts.append(_context(strict))
        return contexts[-1]

    try:
        outcome = execute(argv, build)
        render(outcome.value, sys.stdout)
        sys.stdout.flush()
        return 0
    except AmlmmUsageError as error:
        if error.usage:
            sys.stderr.write(error.usage)
        prefixed = error.message.startswith(("amlmm ", "amlmm:"))
        sys.stderr.write(("" if prefixed else "amlmm: error: ") + error.message + "\n")
        return error.exit_code
    except AmlmmError as error:
        sys.stderr.write(f"amlmm: error: {error.message}\n")
        return error.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("amlmm: interrupted\n")
        return 130
    finally:
        for ctx in contexts:
            ctx.session.close()


if __name__ == "__main__":
    sys.exit(main())
