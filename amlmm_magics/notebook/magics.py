"""``%amlmm`` / ``%%amlmm``: the magics class, its settings, and loading it into IPython.

Only what registering needs is imported here (IPython's Magics machinery and traitlets,
both loaded in any IPython already); commands, pandas, the client and azure are imported
by the first command that needs them.
"""

from __future__ import annotations

import sys
from typing import Any

from IPython.core.magic import (
    Magics,
    line_cell_magic,
    magics_class,
    needs_local_scope,
    no_var_expand,
    output_can_be_silenced,
)
from traitlets import Bool, Enum, Float, Int, Unicode, observe
from traitlets.config import Configurable

from amlmm_magics import errors
from amlmm_magics.commands.settings import PROGRESS_MODES, SPECS

MAGIC = "amlmm"


def _help(name: str) -> str:
    spec = SPECS[name]
    return f"{spec.help} (environment: {' / '.join((spec.env, *spec.fallback_env))})"


def _text(name: str) -> Unicode:
    return Unicode(SPECS[name].default, allow_none=True, help=_help(name)).tag(config=True)


@magics_class
class AmlmmMagics(Magics, Configurable):
    """The ``%amlmm`` line and ``%%amlmm`` cell magic; ``%amlmm?`` is the manual."""

    top = Int(SPECS["top"].default, min=1, help=_help("top")).tag(config=True)
    short_errors = Bool(SPECS["short_errors"].default, help=_help("short_errors")).tag(
        config=True)
    timeout = Float(SPECS["timeout"].default, min=0.0, help=_help("timeout")).tag(config=True)
    progress = Enum(PROGRESS_MODES, default_value=SPECS["progress"].default,
                    help=_help("progress")).tag(config=True)
    home = _text("home")
    base_url = _text("base_url")
    subscription = _text("subscription")
    resource_group = _text("resource_group")
    account = _text("account")
    api_version = _text("api_version")
    credential = Enum(SPECS["credential"].choices, default_value=SPECS["credential"].default,
                      help=_help("credential")).tag(config=True)
    scope = _text("scope")
    compute_resource = _text("compute_resource")
    storage_sas_url_env = _text("storage_sas_url_env")
    dry_run = Bool(SPECS["dry_run"].default, help=_help("dry_run")).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        from amlmm_magics.commands.context import Session

        # Before the config is loaded (in super().__init__): its values count as set.
        self._set_here: set[str] = set()
        super().__init__(shell=shell, **kwargs)
        self.session = Session()
        self.pending: list[str] = []  # footers shown after the cell's result
        self.in_cell = False

    @observe(*SPECS)
    def _remember(self, change: Any) -> None:
        self._set_here.add(change["name"])
        if change["name"] == "short_errors":
            errors.SHORT_ERRORS = bool(change["new"])

    def explicit_settings(self) -> dict[str, Any]:
        """Settings given in this session (``%config``, a config file, assignment)."""
        section = self.config.get(type(self).__name__) or {}
        names = self._set_here | {name for name in SPECS if name in section}
        return {name: getattr(self, name) for name in names if name in SPECS}

    @no_var_expand
    @needs_local_scope
    @output_can_be_silenced
    @line_cell_magic
    def amlmm(self, line: str = "", cell: str | None = None, local_ns: Any = None) -> Any:
        from amlmm_magics.notebook.display import run

        return run(self, line, cell, local_ns)

    # -- cell events: footers go below the cell's result -------------------------------
    def pre_run_cell(self, *args: Any) -> None:
        self.in_cell = True

    def post_run_cell(self, *args: Any) -> None:
        self.in_cell = False
        pending, self.pending = self.pending, []
        for text in pending:
            print(text)


def load(shell: Any) -> None:
    """Register the magics once (``%load_ext`` twice, or after a reload, is harmless)."""
    if AmlmmMagics.__name__ in shell.magics_manager.registry:
        return
    from amlmm_magics.grammar import manual

    AmlmmMagics.amlmm.__doc__ = manual()
    magics = AmlmmMagics(shell=shell)
    shell.register_magics(magics)
    shell.events.register("pre_run_cell", magics.pre_run_cell)
    shell.events.register("post_run_cell", magics.post_run_cell)
    completer = getattr(shell, "Completer", None)
    if completer is not None:
        from amlmm_magics.notebook.completion import matcher

        completer.custom_matchers.append(matcher)


def unload(shell: Any) -> None:
    magics = shell.magics_manager.registry.pop(AmlmmMagics.__name__, None)
    if magics is None:
        return
    for kind in ("line", "cell"):
        shell.magics_manager.magics[kind].pop(MAGIC, None)
    if magics in shell.configurables:
        shell.configurables.remove(magics)
    for event, callback in (("pre_run_cell", magics.pre_run_cell),
                            ("post_run_cell", magics.post_run_cell)):
        if callback in shell.events.callbacks[event]:
            shell.events.unregister(event, callback)
    completer = getattr(shell, "Completer", None)
    if completer is not None:
        from amlmm_magics.notebook.completion import matcher

        if matcher in completer.custom_matchers:
            completer.custom_matchers.remove(matcher)
    magics.session.close()
    errors.SHORT_ERRORS = True
    widgets = sys.modules.get("amlmm_magics.notebook.widgets")
    if widgets is not None:  # only if a command used widgets: importing it is not free
        widgets.stop_all()
