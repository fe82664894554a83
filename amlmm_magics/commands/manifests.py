"""manifest create | list | show."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from amlmm_magics.commands.common import listing, resolve
from amlmm_magics.commands.context import Context
from amlmm_magics.commands.results import ResourceView, Table
from amlmm_magics.errors import AmlmmError, AmlmmPackagingError, AmlmmUsageError

_USAGE = "amlmm manifest create: error:"


def _driver_sources(args: argparse.Namespace, cell: str | None) -> None:
    if args.init and not args.run:
        raise AmlmmUsageError(f"{_USAGE} --init needs --run FUNC (a cell driver defines its "
                              "own init())")
    given = [what for what, value in (("a cell body", cell), ("--run", args.run),
                                      ("--driver", args.driver)) if value]
    if len(given) > 1:
        raise AmlmmUsageError(f"{_USAGE} give the driver once, not {' and '.join(given)}")
    if not given:
        raise AmlmmUsageError(f"{_USAGE} give the driver: a cell body (%%amlmm manifest "
                              "create ...), --run FUNC or --driver FILE")


def _read(path: str, what: str, ctx: Context) -> str:
    try:
        return Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise AmlmmError.of(ctx.what, f"cannot read the {what} {path}: {reason}") from None


def _sample(args: argparse.Namespace, ctx: Context) -> Any:
    if not args.sample_input:
        return None
    if args.sample_input.startswith("@"):
        text = _read(args.sample_input[1:], "sample input file", ctx)
        try:
            return json.loads(text)
        except ValueError as exc:
            raise AmlmmError.of(ctx.what, f"the sample input file {args.sample_input[1:]} is "
                                f"not valid JSON: {exc}") from None
    namespace = ctx.need_notebook("--sample-input VAR needs a notebook; in a terminal give "
                                  "--sample-input @FILE.json")
    return namespace.evaluate(args.sample_input, ctx.what)


def _output_on(run: Any, label: str, sample: Any, ctx: Context) -> Any:
    """``run(sample)`` in the notebook: the output schema, and an early failure."""
    try:
        return run(sample)
    except Exception as exc:
        raise AmlmmPackagingError.of(ctx.what, f"{label}(sample) raised in the notebook: "
                                     f"{type(exc).__name__}: {exc}") from None


def _check_session_models(ctx: Context, run: Any, label: str, models: list[Any],
                          refs: list[Any]) -> None:
    """A run function using an object registered this session as a model the manifest does
    not name: say which --model to add (packaging alone can only say it is no model)."""
    code = getattr(run, "__code__", None)
    namespace = ctx.namespace.globals if ctx.namespace is not None else {}
    session = ctx.session.models
    bound = {ref.global_name for ref in refs if ref.global_name}
    in_manifest = [session.by_model_id[m["id"]].obj for m in models
                   if m["id"] in session.by_model_id]
    for name in getattr(code, "co_names", ()):
        if name in bound or name not in namespace:
            continue
        value = namespace[name]
        entry = session.for_object(value)
        if entry is not None and not any(value is obj for obj in in_manifest):
            model = entry.model
            raise AmlmmPackagingError.of(
                ctx.what, f"{label}() uses '{name}', registered in this session as model "
                f"{model['name']}:{model.get('version')}: add --model {model['name']}")


def create(args: argparse.Namespace, ctx: Context) -> ResourceView:
    from amlmm_magics import workflow
    from amlmm_magics.packaging import driver_from_cell, driver_from_functions

    ctx.target = args.name
    cell = ctx.cell if ctx.cell and ctx.cell.strip() else None
    _driver_sources(args, cell)
    refs = [workflow.ModelRef.parse(text) for text in args.model]
    if args.run:
        namespace = ctx.need_notebook("--run FUNC needs a notebook; in a terminal give "
                                      "--driver FILE")
        run = namespace.evaluate(args.run, ctx.what)
        init = namespace.evaluate(args.init, ctx.what) if args.init else None
    models = [resolve(ctx, "model", ref.ref) for ref in refs]
    for ref, model in zip(refs, models, strict=True):
        if ref.global_name and not args.run:
            raise AmlmmPackagingError.of(
                ctx.what, f"--model {ref.ref}={ref.global_name} binds a notebook global, which "
                "only --run FUNC drivers have: load the model in the driver's init() with "
                f"model_path({model['name']!r})")
    sample = _sample(args, ctx)
    output = None
    if args.run:
        _check_session_models(ctx, run, args.run, models, refs)
        bindings = workflow.model_bindings(models, refs, ctx.session.models, namespace.globals)
        driver = driver_from_functions(run, init, namespace=namespace.globals, models=bindings)
        if sample is not None:
            output = _output_on(run, args.run, sample, ctx)
    elif args.driver:
        driver = driver_from_cell(_read(args.driver, "driver file", ctx),
                                  label=Path(args.driver).name)
    else:
        driver = driver_from_cell(cell or "", label="the %%amlmm cell")
    dry_run = ctx.settings.dry_run if args.dry_run is None else args.dry_run
    conn = ctx.connection()
    plan = workflow.plan_manifest(conn, ctx.session.models, name=args.name, driver=driver,
                                  models=models, sample=sample, output=output,
                                  requirements=args.requirements,
                                  description=args.description, dry_run=dry_run)
    if plan.unresolved:
        ctx.out.info(f"Note: no installed distribution provides {', '.join(plan.unresolved)}; "
                     "they are not in the requirements (--requirements FILE adds them).")
    ctx.out.info(f"Dry run in a fresh process: {plan.dry_run_summary()}" if dry_run
                 else "Dry run skipped.")
    manifest = workflow.register_manifest(conn, plan)
    names = ", ".join(f"{m['name']}:{m.get('version')}" for m in models) or "none"
    ctx.out.info(f"Registered manifest {manifest['name']!r} version {manifest.get('version')} "
                 f"({manifest['id']}); models: {names}; requirements: "
                 f"{', '.join(plan.requirements) or 'none'}.")
    return ResourceView(manifest, "manifest")


def list_(args: argparse.Namespace, ctx: Context) -> Table:
    client = ctx.client
    model_id = resolve(ctx, "model", args.model)["id"] if args.model else None
    return listing(ctx, args, "manifest", lambda count: client.list_manifests(
        manifest_name=args.name, model_id=model_id, count=count))
