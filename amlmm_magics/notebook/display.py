"""Running a command from ``%amlmm`` and presenting its result to IPython.

Listings come back as the DataFrame itself (so ``df = %amlmm model list`` is a DataFrame)
with the footer printed below the cell's result; single resources as objects with
``_repr_html_``; ``-o VAR`` stores the result instead of showing it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from amlmm_magics import errors
from amlmm_magics.errors import AmlmmVariableError


class NotebookNamespace:
    """The notebook's variables, for VAR arguments and ``-o``."""

    def __init__(self, shell: Any, local_ns: Mapping[str, Any] | None) -> None:
        self.shell = shell
        self.local_ns = local_ns if local_ns is not None else shell.user_ns

    @property
    def globals(self) -> Mapping[str, Any]:
        return self.shell.user_ns

    def evaluate(self, expression: str, what: str) -> Any:
        text = expression.strip()
        try:
            code = compile(text, "<amlmm VAR>", "eval")
        except SyntaxError as exc:
            raise AmlmmVariableError.of(
                what, f"cannot evaluate {text!r}: SyntaxError: {exc.msg}") from None
        try:
            return eval(code, self.shell.user_ns, self.local_ns)
        except Exception as exc:
            raise AmlmmVariableError.of(
                what, f"cannot evaluate {text!r}: {type(exc).__name__}: {exc}") from None

    def store(self, name: str, value: Any) -> None:
        self.shell.user_ns[name] = value

    def run_cell(self, source: str) -> None:
        """Run a cell body as IPython would (magics, ``!`` lines), so functions and classes
        it defines have source that packaging can find."""
        shell = self.shell
        transformed = shell.transform_cell(source)
        filename = shell.compile.cache(transformed, shell.execution_count, raw_code=source)
        code = shell.compile(transformed, filename, "exec")
        exec(code, shell.user_global_ns, shell.user_ns)


class NotebookOutput:
    def __init__(self, magics: Any) -> None:
        self.magics = magics

    def info(self, text: str) -> None:
        print(text, flush=True)

    def rich(self, text: str, html: str) -> None:
        from IPython.display import display

        display({"text/plain": text, "text/html": html}, raw=True)
        sys.stdout.flush()

    def after(self, text: str) -> None:
        if self.magics.in_cell:
            self.magics.pending.append(text)
        else:
            print(text)


def _strip_silencing(line: str) -> str:
    # `%amlmm model list;` silences the result (IPython checks that); it is no argument.
    text = line.rstrip()
    return text[:-1] if text.endswith(";") else text


def run(magics: Any, line: str, cell: str | None, local_ns: Any) -> Any:
    from amlmm_magics.commands import execute
    from amlmm_magics.commands.context import Context
    from amlmm_magics.commands.settings import Settings
    from amlmm_magics.grammar import split
    from amlmm_magics.notebook.progress import make_reporter

    errors.SHORT_ERRORS = bool(Settings.resolve(magics.explicit_settings(),
                                                strict=False).short_errors)
    shell = magics.shell
    namespace = NotebookNamespace(shell, local_ns)
    out = NotebookOutput(magics)

    kernel = getattr(shell, "kernel", None) is not None

    def progress(ctx: Context) -> Any:
        mode = ctx.settings.progress
        if kernel and mode in ("auto", "widget"):
            from amlmm_magics.notebook import widgets

            reporter = widgets.widget_progress_factory(ctx.client, mode=mode)
            if reporter is not None:
                return reporter
        return make_reporter(mode, out.info)

    def background(ctx: Context, poller: Any, description: str) -> bool:
        """``--no-wait``: a widget that follows the operation from its own thread."""
        mode = ctx.settings.progress
        if not kernel or mode not in ("auto", "widget"):
            return False
        from amlmm_magics.notebook import widgets

        return widgets.watch(poller, description, client=ctx.client, mode=mode) is not None

    def build(strict: bool) -> Context:
        settings = Settings.resolve(magics.explicit_settings(), strict=strict)
        errors.SHORT_ERRORS = bool(settings.short_errors)
        return Context(settings, magics.session, out, namespace=namespace, cell=cell,
                       prefix="%amlmm", progress_factory=progress, background=background)

    outcome = execute(split(_strip_silencing(line)), build)
    return present(outcome.value, outcome.output, namespace, out)


def present(value: Any, output: str | None, namespace: NotebookNamespace,
            out: NotebookOutput) -> Any:
    from amlmm_magics.commands.results import HelpText, Table

    if isinstance(value, Table):
        if value.footer:
            out.after(value.footer)
        value = value.frame
    elif isinstance(value, HelpText) and output is None:
        print(value)
        return None
    if output:
        namespace.store(output, value)
        return None
    return value
