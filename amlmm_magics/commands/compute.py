"""compute add | list | remove (where services run), and service export (Kubernetes)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from amlmm_magics.commands.common import resolve
from amlmm_magics.commands.context import Context
from amlmm_magics.commands.results import ResourceView, Table, Text
from amlmm_magics.errors import AmlmmError, AmlmmUsageError


def add(args: argparse.Namespace, ctx: Context) -> ResourceView:
    ctx.target = args.name
    token = None
    if args.token_env:
        # The token is read here, where the command runs, and handed to the backend only.
        token = os.environ.get(args.token_env)
        if not token:
            raise AmlmmUsageError.of(ctx.what, f"the environment variable {args.token_env} "
                                     "is not set (or empty)")
    resource = ctx.client.set_compute_resource(args.name, dashboard_url=args.ray,
                                               serve_url=args.serve_url, token=token)
    ctx.out.info(f"Compute resource {args.name!r} registered: services can run there with "
                 f"--compute-resource {args.name}.")
    return ResourceView(resource, "compute resource")


def list_(args: argparse.Namespace, ctx: Context) -> Table:
    """Each compute resource, with the services that run on it."""
    import pandas as pd

    client = ctx.client
    running: dict[str, list[str]] = {}
    for service in client.list_services():
        target = (service.get("computeResource") or {}).get("id") or "?"
        running.setdefault(target, []).append(service.get("name") or service["id"])
    rows = [{"id": c["id"], "type": c.get("type"), "dashboardUrl": c.get("dashboardUrl"),
             "serveUrl": c.get("serveUrl"), "services": ", ".join(running.get(c["id"], []))}
            for c in client.list_compute_resources()]
    return Table(pd.DataFrame(rows, columns=["id", "type", "dashboardUrl", "serveUrl",
                                             "services"]), None)


def remove(args: argparse.Namespace, ctx: Context) -> Text:
    ctx.target = args.name
    if ctx.client.delete_compute_resource(args.name):
        return Text(f"Removed compute resource {args.name!r}.")
    return Text(f"No compute resource {args.name!r}: nothing to remove.")


def export(args: argparse.Namespace, ctx: Context) -> Text:
    """Kubernetes manifests for a service; its keys go only into the Secret's file."""
    from amlmm_magics import kubernetes

    ctx.target = args.ref
    service = resolve(ctx, "service", args.ref)
    ctx.target = service["name"]
    image = service.get("image") or {}
    image_ref = args.image_ref or _default_ref(image)
    keys = ctx.client.get_service_keys(service["id"])
    folder = Path(args.kubernetes).expanduser()
    if folder.exists() and not folder.is_dir():
        raise AmlmmError.of(ctx.what, f"{folder} exists and is not a folder")
    written = kubernetes.write(kubernetes.manifests(service, keys, image_ref), folder,
                               _notes(service, image, image_ref, _context_dir(ctx, image)))
    return Text(f"Wrote {len(written)} manifests for service {service['name']!r} to {folder} "
                f"(the keys are in {written[0].name} only). Build and push {image_ref}, then: "
                f"kubectl apply -f {folder}")


def _default_ref(image: dict[str, Any]) -> str:
    location = str(image.get("imageLocation") or "")
    if location and "@" not in location:
        return location
    return f"{str(image.get('name') or 'service').lower()}:{image.get('version') or 1}"


def _context_dir(ctx: Context, image: dict[str, Any]) -> Path | None:
    """The image's build context, when the embedded backend of this machine holds it."""
    location = str(image.get("imageLocation") or "")
    home = getattr(ctx.current_connection(), "home", None)
    if "@sha256:" not in location or home is None:
        return None
    folder = Path(home) / "contexts" / f"sha256-{location.rsplit(':', 1)[-1]}"
    return folder if folder.is_dir() else None


def _notes(service: dict[str, Any], image: dict[str, Any], ref: str,
           context: Path | None) -> str:
    where = str(context) if context else "<the image's build context>"
    return "\n".join([
        f"# Service {service['name']} on Kubernetes",
        "",
        f"Image {image.get('name')}:{image.get('version')} ({image.get('imageLocation')}).",
        "",
        "```bash",
        f"docker build -t {ref} {where}",
        f"docker push {ref}",
        "kubectl apply -f .",
        "```",
        "",
        "`01-secret.yaml` holds the service's keys: keep it out of version control. The",
        "scoring route is POST /score with `Authorization: Bearer <key>`; GET / is the",
        "liveness route the probes use.",
        "",
    ])
