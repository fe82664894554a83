"""Pieces every command uses: name resolution, listings, waiting for operations."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from amlmm_magics.commands.context import Context
from amlmm_magics.commands.results import ResourceView, Table
from amlmm_magics.errors import AmlmmOperationError

NOTEBOOK_VAR_HINT = "a variable needs a notebook"


def resolve(ctx: Context, kind: str, ref: str) -> Any:
    """The resource an ID, a name (latest version) or ``name:version`` refers to."""
    from amlmm_magics import workflow

    return workflow.resolve(ctx.client, kind, ref)


def show(kind: str) -> Callable[[argparse.Namespace, Context], ResourceView]:
    def handler(args: argparse.Namespace, ctx: Context) -> ResourceView:
        return ResourceView(resolve(ctx, kind, args.ref), kind)
    return handler


def listing(ctx: Context, args: argparse.Namespace, kind: str,
            make_pager: Callable[[int | None], Any]) -> Table:
    """The first ``--top`` (default: the ``top`` setting) items, or ``--all``, as a
    DataFrame; one more item is asked for to know whether there are more."""
    top = None if args.all else (args.top or ctx.settings.top)
    page_size = None if top is None else min(top + 1, 1000)
    frame = make_pager(page_size).to_frame(max_items=None if top is None else top + 1)
    footer = None
    if top is not None and len(frame) > top:
        frame = frame.iloc[:top]
        footer = f"showing {top} of more; use --all"
    elif frame.empty:
        footer = f"no {kind}s"
    return Table(frame, footer)


def resume_hint(ctx: Context, operation_id: str) -> str:
    return f"Resume with: {ctx.prefix} operation wait {operation_id}"


def wait_for(ctx: Context, poller: Any, description: str, timeout: float | None) -> Any:
    """Wait in the foreground with progress; Ctrl-C stops waiting, not the operation.

    Answers the resource made; raises the poller's OperationFailedError (for the caller to
    explain) or :class:`AmlmmOperationError` when ``timeout`` passes.
    """
    reporter = ctx.progress()
    reporter.start(poller, description)
    limit = ctx.settings.timeout if timeout is None else timeout
    op_id = poller.operation_id
    try:
        done = poller.wait(limit or None)
        if not done:
            raise AmlmmOperationError(
                f"{ctx.what}: still running after {limit:g} s; operation {op_id} goes on. "
                f"{resume_hint(ctx, op_id)}", operation_id=op_id, state=poller.state)
        result = poller.result()
    except KeyboardInterrupt:
        reporter.finish(None)
        ctx.out.info(f"Stopped waiting; operation {op_id} goes on. {resume_hint(ctx, op_id)}")
        raise
    except BaseException as exc:
        reporter.finish(exc)
        raise
    reporter.finish(result)
    return result


def started(ctx: Context, poller: Any, description: str) -> Any:
    """``--no-wait``: say what started and how to wait for it (a widget keeps following it
    where the front end shows widgets); answer the poller."""
    if ctx.background is None or not ctx.background(ctx, poller, description):
        ctx.out.info(f"{description}: started (operation {poller.operation_id}). Wait with: "
                     f"{ctx.prefix} operation wait {poller.operation_id}")
    return poller
