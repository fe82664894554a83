"""model register | list | show."""

from __future__ import annotations

import argparse
from pathlib import Path

from amlmm_magics.commands.common import NOTEBOOK_VAR_HINT, listing
from amlmm_magics.commands.context import Context
from amlmm_magics.commands.results import ResourceView, Table
from amlmm_magics.errors import AmlmmUsageError

_USAGE = "amlmm model register: error:"


def _check(args: argparse.Namespace, ctx: Context) -> None:
    if args.cell_var and ctx.cell is None:
        raise AmlmmUsageError(f"{_USAGE} --var needs a cell (%%amlmm model register --var VAR) "
                              "whose code defines VAR; on one line give VAR itself")
    if ctx.cell is not None and not args.cell_var:
        raise AmlmmUsageError(f"{_USAGE} with a cell, give --var VAR: the variable the cell "
                              "defines")
    given = [flag for flag, value in (("VAR", args.var), ("--path", args.path),
                                      ("--var", args.cell_var)) if value]
    if len(given) > 1:
        raise AmlmmUsageError(f"{_USAGE} give one model, not {' and '.join(given)}")
    if not given:
        raise AmlmmUsageError(f"{_USAGE} give the model: VAR, --path FILE_OR_DIR, or a cell "
                              "with --var VAR")
    if args.path and args.format:
        raise AmlmmUsageError(f"{_USAGE} --format applies to a variable; a --path file is "
                              "registered as it is")


def register(args: argparse.Namespace, ctx: Context) -> ResourceView:
    from amlmm_magics import workflow

    _check(args, ctx)
    if args.path:
        model = workflow.register_path(ctx.connection(), Path(args.path).expanduser(),
                                       name=args.name, description=args.description,
                                       tags=args.tag, workdir=ctx.session.workdir)
    else:
        expression = args.var or args.cell_var
        namespace = ctx.need_notebook(f"{NOTEBOOK_VAR_HINT}; use --path FILE")
        if ctx.cell is not None:
            namespace.run_cell(ctx.cell)
        obj = namespace.evaluate(expression, ctx.what)
        model = workflow.register_object(
            ctx.connection(), ctx.session.models, obj, name=args.name, label=expression,
            format=args.format, description=args.description, tags=args.tag,
            workdir=ctx.session.workdir).model
    ctx.out.info(f"Registered model {model['name']!r} version {model.get('version')} "
                 f"({model['id']}).")
    return ResourceView(model, "model")


def list_(args: argparse.Namespace, ctx: Context) -> Table:
    client = ctx.client
    return listing(ctx, args, "model",
                   lambda count: client.list_models(name=args.name, tag=args.tag, count=count))
