"""deployment list | show, operation show | wait."""

from __future__ import annotations

import argparse
from typing import Any

from amlmm_magics.commands.common import listing, resolve, wait_for
from amlmm_magics.commands.context import Context
from amlmm_magics.commands.results import ResourceView, Table

# resourceLocation collection → (client getter, kind)
_GETTERS = {"images": ("get_image", "image"), "services": ("get_service", "service"),
            "models": ("get_model", "model"), "manifests": ("get_manifest", "manifest")}


def deployment_list(args: argparse.Namespace, ctx: Context) -> Table:
    from amlmm_magics.workflow import NotFoundError

    client = ctx.client
    service_id = None
    if args.service_id:
        try:
            service_id = resolve(ctx, "service", args.service_id)["id"]
        except NotFoundError:
            # A deleted service's deployments are still listed by its ID.
            service_id = args.service_id
    return listing(ctx, args, "deployment",
                   lambda count: client.list_deployments(service_id=service_id))


def poller_for(ctx: Context, operation_id: str) -> Any:
    """A poller for an operation known only by its ID (after Ctrl-C, or another session)."""
    from amlmm_magics.api import ModelManagementError, OperationPoller

    client = ctx.client
    first = resolve(ctx, "operation", operation_id)  # an unknown ID fails here

    def get_operation() -> tuple[Any, None]:
        return client.get_operation(operation_id), None

    def get_resource(location: str) -> Any:
        parts = location.split("?")[0].rstrip("/").split("/")
        if len(parts) < 2 or parts[-2] not in _GETTERS:
            raise ModelManagementError(f"The operation names an unknown resource: {location}")
        return getattr(client, _GETTERS[parts[-2]][0])(parts[-1])

    kind = str(first.get("operationType") or "operation").lower()
    poller = OperationPoller(get_operation, get_resource, operation_location=operation_id,
                             operation_id=operation_id, kind=kind)
    poller.operation = None  # poll again: `first` only proved the ID exists
    return poller, kind


def operation_show(args: argparse.Namespace, ctx: Context) -> ResourceView:
    return ResourceView(resolve(ctx, "operation", args.ref), "operation")


def operation_wait(args: argparse.Namespace, ctx: Context) -> ResourceView:
    ctx.target = args.ref
    poller, kind = poller_for(ctx, args.ref)
    result = wait_for(ctx, poller, f"{kind.capitalize()} operation", args.timeout)
    return ResourceView(result, kind if kind in ("image", "service") else "resource")
