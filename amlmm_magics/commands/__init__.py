"""The commands, implemented once for the magics and the command line.

:func:`execute` parses a command line with the shared grammar, builds the context (settings
resolved once the command is known), runs the command's handler, and turns library
exceptions into :class:`~amlmm_magics.errors.AmlmmError` lines that start with what failed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from amlmm_magics.errors import AmlmmError, AmlmmUsageError, convert

if TYPE_CHECKING:
    # Only for annotations: `%load_ext` imports commands.settings, which must stay cheap.
    from amlmm_magics.commands.context import Context

Handler = Callable[[argparse.Namespace, "Context"], Any]
# Commands that must work even when an AMLMM_* variable is malformed (to show or fix it).
LENIENT = frozenset({("config",), ("help",)})


@dataclass
class Outcome:
    """What a command answered, and the notebook variable to store it in (``-o VAR``)."""

    value: Any
    output: str | None = None


def _handlers() -> dict[tuple[str, ...], Handler]:
    from amlmm_magics.commands import (
        common,
        compute,
        connect,
        images,
        manifests,
        models,
        operations,
        services,
    )
    from amlmm_magics.commands.results import HelpText
    from amlmm_magics.grammar import help_text

    return {
        ("connect",): connect.connect,
        ("status",): connect.status,
        ("config",): connect.config,
        ("local", "start"): connect.local_start,
        ("local", "stop"): connect.local_stop,
        ("local", "status"): connect.local_status,
        ("model", "register"): models.register,
        ("model", "list"): models.list_,
        ("model", "show"): common.show("model"),
        ("manifest", "create"): manifests.create,
        ("manifest", "list"): manifests.list_,
        ("manifest", "show"): common.show("manifest"),
        ("image", "create"): images.create,
        ("image", "list"): images.list_,
        ("image", "show"): common.show("image"),
        ("image", "log"): images.log,
        ("service", "create"): services.create,
        ("service", "list"): services.list_,
        ("service", "show"): services.show,
        ("service", "update"): services.update,
        ("service", "delete"): services.delete,
        ("service", "keys"): services.keys,
        ("service", "regenerate-key"): services.regenerate_key,
        ("service", "usage"): services.usage,
        ("service", "logs"): services.logs,
        ("service", "score"): services.score,
        ("deployment", "list"): operations.deployment_list,
        ("deployment", "show"): common.show("deployment"),
        ("operation", "show"): operations.operation_show,
        ("operation", "wait"): operations.operation_wait,
        ("service", "data"): services.data,
        ("service", "export"): compute.export,
        ("compute", "add"): compute.add,
        ("compute", "list"): compute.list_,
        ("compute", "remove"): compute.remove,
        ("panel",): panel,
        ("help",): lambda args, ctx: HelpText(help_text(args.topic)),
    }


def panel(args: argparse.Namespace, ctx: Context) -> Any:
    """The dashboard widget; the cell shows it (text in front ends without widgets)."""
    ctx.need_notebook("the panel is a notebook widget; in a terminal use the list commands")
    from amlmm_magics.notebook import widgets

    return widgets.make_panel(ctx.client, mode=ctx.settings.progress)


def execute(argv: Sequence[str], build: Callable[[bool], Context]) -> Outcome:
    """Run one command. ``build(strict)`` makes the context once the command is known."""
    from amlmm_magics.commands.results import HelpText
    from amlmm_magics.grammar import HelpRequested, manual, parse

    if not argv:
        return Outcome(HelpText(manual()))
    try:
        args = parse(argv)
    except HelpRequested as request:
        return Outcome(HelpText(request.text))
    path: tuple[str, ...] = args._path
    ctx = build(path not in LENIENT)
    ctx.command = " ".join(path)
    output = getattr(args, "output", None)
    if output and ctx.namespace is None:
        raise AmlmmUsageError(f"amlmm {ctx.command}: error: -o VAR needs a notebook")
    handler = _handlers()[path]
    try:
        value = handler(args, ctx)
    except (AmlmmError, KeyboardInterrupt):
        raise
    except Exception as exc:
        error = convert(exc, ctx.what)
        if error is None:
            raise  # a bug: its traceback is what a report needs
        raise error from exc
    return Outcome(value, output)
