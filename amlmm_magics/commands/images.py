"""image create | list | show | log."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from typing import Any

from amlmm_magics.commands.common import listing, resolve, started, wait_for
from amlmm_magics.commands.context import Context
from amlmm_magics.commands.results import ResourceView, Table, Text
from amlmm_magics.errors import AmlmmError, AmlmmOperationError, AmlmmUsageError, convert

LOCAL_COMPUTE = "local"


def default_compute(ctx: Context, command: str) -> str:
    """The ``compute_resource`` setting; else ``local`` on the embedded backend (Azure has
    no default)."""
    if ctx.settings.compute_resource:
        return str(ctx.settings.compute_resource)
    if ctx.connection().backend == "local":
        return LOCAL_COMPUTE
    raise AmlmmUsageError(f"amlmm {command}: error: --compute-resource ID is required on Azure "
                          "(the ARM ID of the cluster), or the compute_resource setting")


def location_id(operation: Any) -> str | None:
    """The ID of the resource an operation's ``resourceLocation`` names."""
    location = str((operation or {}).get("resourceLocation") or "").split("?")[0].rstrip("/")
    if not location:
        return None
    return location.rsplit("/", 1)[-1] or None


def create(args: argparse.Namespace, ctx: Context) -> Any:
    from amlmm_magics.api import OperationFailedError

    ctx.target = args.name
    manifest = resolve(ctx, "manifest", args.manifest)
    compute = args.compute_resource or default_compute(ctx, "image create")
    poller = ctx.client.begin_create_image(
        name=args.name, manifest_id=manifest["id"], compute_resource_id=compute,
        description=args.description)
    description = f"Image {args.name!r}"
    if args.no_wait:
        return started(ctx, poller, description)
    try:
        image = wait_for(ctx, poller, description, args.timeout)
    except OperationFailedError as exc:
        error = convert(exc, ctx.what)
        assert isinstance(error, AmlmmOperationError)
        image_id = location_id(exc.operation)
        where = f"{ctx.prefix} image log {image_id}" if image_id else "the image's build log"
        raise AmlmmOperationError(f"{error.message}; build log: {where}",
                                  error.status_code, error.code, error.operation_id,
                                  error.state) from exc
    ctx.out.info(f"Image {image['name']!r} version {image.get('version')} ({image['id']}) is "
                 f"ready: {image.get('imageLocation')}")
    return ResourceView(image, "image")


class _Filtered:
    """A pager's items filtered on the client (images cannot be listed by name)."""

    def __init__(self, pager: Any, keep: Callable[[Any], bool]) -> None:
        self.pager = pager
        self.keep = keep

    def __iter__(self) -> Iterator[Any]:
        return (item for item in self.pager if self.keep(item))

    def to_frame(self, max_items: int | None = None) -> Any:
        from itertools import islice

        from amlmm_magics.api.frames import resources_to_frame

        items = list(self) if max_items is None else list(islice(self, max_items))
        return resources_to_frame(items, self.pager.kind)


def manifest_filter(ctx: Context, ref: str | None) -> dict[str, str | None]:
    """``--manifest REF``: an ID or ``name:version`` filters by ID, a bare name by name
    (every version)."""
    from amlmm_magics.api import ResourceNotFoundError

    if not ref:
        return {"manifest_id": None, "manifest_name": None}
    try:
        return {"manifest_id": ctx.client.get_manifest(ref)["id"], "manifest_name": None}
    except ResourceNotFoundError:
        pass
    if ":" in ref:
        return {"manifest_id": resolve(ctx, "manifest", ref)["id"], "manifest_name": None}
    return {"manifest_id": None, "manifest_name": ref}


def list_(args: argparse.Namespace, ctx: Context) -> Table:
    client = ctx.client
    filters = manifest_filter(ctx, args.manifest)

    def pager(count: int | None) -> Any:
        # Filtering by name happens here, so pages are asked for in the service's size.
        found = client.list_images(count=None if args.name else count, **filters)
        return _Filtered(found, lambda i: i.get("name") == args.name) if args.name else found

    return listing(ctx, args, "image", pager)


def log(args: argparse.Namespace, ctx: Context) -> Text:
    import requests

    image = resolve(ctx, "image", args.ref)
    uri = image.get("imageBuildLogUri")
    if not uri:
        raise AmlmmError.of(ctx.what, f"image {image['name']!r} has no build log")
    try:
        answer = requests.get(uri, timeout=(10, 60))
    except requests.RequestException as exc:
        raise AmlmmError.of(ctx.what, f"cannot fetch the build log ({type(exc).__name__})"
                            ) from None
    if answer.status_code != 200:
        raise AmlmmError.of(ctx.what, f"cannot fetch the build log ({answer.status_code} "
                            f"{answer.reason})")
    lines = answer.text.splitlines()
    return Text("\n".join(lines[-args.tail:]))
