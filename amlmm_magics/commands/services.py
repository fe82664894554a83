"""service create | list | show | update | delete | keys | regenerate-key | usage | logs |
score."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from amlmm_magics.commands.common import NOTEBOOK_VAR_HINT, listing, resolve, started, wait_for
from amlmm_magics.commands.context import Context
from amlmm_magics.commands.images import default_compute, location_id, manifest_filter
from amlmm_magics.commands.results import ResourceView, ServiceKeys, Table, Text, UsageSnippets
from amlmm_magics.errors import (
    AmlmmConnectionError,
    AmlmmError,
    AmlmmOperationError,
    AmlmmServiceError,
    AmlmmUsageError,
    convert,
)

_AUTOSCALE_OPTIONS = (("min_replicas", "--min-replicas", "minReplicas"),
                      ("max_replicas", "--max-replicas", "maxReplicas"),
                      ("target_utilization", "--target-utilization", "targetUtilization"),
                      ("refresh_period", "--refresh-period", "refreshPeriodInSeconds"))


def service_settings(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """The request fields the scaling and resource options give (snake_case, for the client)."""
    usage = f"amlmm {command}: error:"
    body: dict[str, Any] = {}
    stray = [flag for dest, flag, _ in _AUTOSCALE_OPTIONS if getattr(args, dest) is not None]
    if stray and not args.autoscale:
        raise AmlmmUsageError(f"{usage} {', '.join(stray)} can only be used with --autoscale")
    if args.replicas is not None:
        body["num_replicas"] = args.replicas
    if args.autoscale:
        if (args.min_replicas is not None and args.max_replicas is not None
                and args.min_replicas > args.max_replicas):
            raise AmlmmUsageError(f"{usage} --min-replicas ({args.min_replicas}) is more than "
                                  f"--max-replicas ({args.max_replicas})")
        scaler = {"autoscaleEnabled": True}
        scaler.update({field: getattr(args, dest) for dest, _, field in _AUTOSCALE_OPTIONS
                       if getattr(args, dest) is not None})
        body["auto_scaler"] = scaler
    reservation = {k: v for k, v in (("cpu", args.cpu), ("memory", args.memory)) if v}
    if reservation:
        body["container_resource_reservation"] = reservation
    if args.max_concurrent_requests is not None:
        body["max_concurrent_requests_per_container"] = args.max_concurrent_requests
    if args.app_insights is not None:
        body["app_insights_enabled"] = args.app_insights
    if args.collect_data is not None:
        body["data_collection"] = {"storageEnabled": args.collect_data}
    return body


def _failed(ctx: Context, exc: Exception, tail: str) -> AmlmmOperationError:
    error = convert(exc, ctx.what)
    assert isinstance(error, AmlmmOperationError)
    return AmlmmOperationError(f"{error.message}; {tail}", error.status_code, error.code,
                               error.operation_id, error.state)


def create(args: argparse.Namespace, ctx: Context) -> Any:
    from amlmm_magics.api import OperationFailedError

    ctx.target = args.name
    settings = service_settings(args, "service create")
    image = resolve(ctx, "image", args.image)
    compute = {"id": args.compute_resource or default_compute(ctx, "service create")}
    client = ctx.client
    poller = client.begin_create_service(name=args.name, image_id=image["id"],
                                         compute_resource=compute, **settings)
    description = f"Service {args.name!r}"
    if args.no_wait:
        return started(ctx, poller, description)
    try:
        service = wait_for(ctx, poller, description, args.timeout)
    except OperationFailedError as exc:
        # Nothing half-created: a service that failed to start is deleted, so the same
        # command can run again; say so, or say what remains.
        service_id = location_id(exc.operation)
        try:
            if service_id:
                client.delete_service(service_id)
            tail = "the failed service was deleted"
        except Exception:
            tail = f"the failed service remains: {ctx.prefix} service delete {args.name}"
        raise _failed(ctx, exc, tail) from exc
    ctx.out.info(f"Service {service['name']!r} is ready at {service.get('scoringUri')} (keys: "
                 f"{ctx.prefix} service keys {service['name']}).")
    return ResourceView(service, "service")


def list_(args: argparse.Namespace, ctx: Context) -> Table:
    client = ctx.client
    filters = manifest_filter(ctx, args.manifest)
    image_id = resolve(ctx, "image", args.image)["id"] if args.image else None
    model_id = model_name = None
    if args.model:
        from amlmm_magics.api import ResourceNotFoundError

        try:
            model_id = client.get_model(args.model)["id"]
        except ResourceNotFoundError:
            if ":" in args.model:
                model_id = resolve(ctx, "model", args.model)["id"]
            else:
                model_name = args.model
    return listing(ctx, args, "service", lambda count: client.list_services(
        service_name=args.name, image_id=image_id, model_id=model_id, model_name=model_name,
        count=count, **filters))


def _service(ctx: Context, ref: str) -> Any:
    ctx.target = ref
    service = resolve(ctx, "service", ref)
    ctx.target = service.get("name") or ref
    return service


def update(args: argparse.Namespace, ctx: Context) -> Any:
    from amlmm_magics.api import OperationFailedError

    settings = service_settings(args, "service update")
    if not settings and not args.image:
        raise AmlmmUsageError("amlmm service update: error: nothing to update: give --image "
                              "or a setting (--replicas, --autoscale, --cpu, --memory, ...)")
    service = _service(ctx, args.ref)
    image_id = resolve(ctx, "image", args.image)["id"] if args.image else None
    poller = ctx.client.begin_update_service(service["id"], image_id=image_id, **settings)
    poller.target_name = service["name"]
    description = f"Service {service['name']!r}"
    if args.no_wait:
        return started(ctx, poller, description)
    try:
        updated = wait_for(ctx, poller, description, args.timeout)
    except OperationFailedError as exc:
        raise _failed(ctx, exc, "the service keeps running as it was") from exc
    ctx.out.info(f"Service {updated['name']!r} updated.")
    return ResourceView(updated, "service")


def delete(args: argparse.Namespace, ctx: Context) -> None:
    from amlmm_magics.workflow import NotFoundError

    ctx.target = args.ref
    try:
        service = resolve(ctx, "service", args.ref)
    except NotFoundError:
        ctx.out.info(f"No service {args.ref!r}: nothing to delete.")
        return None
    ctx.target = service["name"]
    if ctx.client.delete_service(service["id"]):
        ctx.out.info(f"Deleted service {service['name']!r} ({service['id']}).")
    else:
        ctx.out.info(f"Service {service['name']!r} was gone already: nothing to delete.")
    return None


def show(args: argparse.Namespace, ctx: Context) -> ResourceView:
    return ResourceView(resolve(ctx, "service", args.ref), "service")


def keys(args: argparse.Namespace, ctx: Context) -> ServiceKeys:
    service = _service(ctx, args.ref)
    return ServiceKeys(service["name"], ctx.client.get_service_keys(service["id"]), args.show)


def regenerate_key(args: argparse.Namespace, ctx: Context) -> ServiceKeys:
    service = _service(ctx, args.ref)
    answer = ctx.client.regenerate_service_key(service["id"], args.key.capitalize())
    ctx.out.info(f"Regenerated the {args.key} key of service {service['name']!r}; the old one "
                 "is refused from now on.")
    return ServiceKeys(service["name"], answer, args.show)


def _scoring_uri(ctx: Context, service: Any) -> str:
    uri = service.get("scoringUri")
    if not uri:
        raise AmlmmError.of(ctx.what, f"the service has no scoring URI (state "
                            f"{service.get('state')})")
    return str(uri)


def _sample_of(uri: str) -> Any:
    """The schema's sample from the service's swagger.json, if it has one."""
    import requests

    swagger = uri.rsplit("/", 1)[0] + "/swagger.json"
    try:
        answer = requests.get(swagger, timeout=5)
        if answer.ok:
            return answer.json()["definitions"]["ServiceInput"]["example"]
    except (requests.RequestException, ValueError, KeyError, TypeError):
        pass
    return "<input JSON>"


def usage(args: argparse.Namespace, ctx: Context) -> UsageSnippets:
    service = _service(ctx, args.ref)
    uri = _scoring_uri(ctx, service)
    key = ctx.client.get_service_keys(service["id"]).get("primaryKey") or ""
    return UsageSnippets(service["name"], uri, key, _sample_of(uri), args.show)


def logs(args: argparse.Namespace, ctx: Context) -> Text:
    service = _service(ctx, args.ref)
    return Text(ctx.client.get_service_logs(service["id"], tail=args.tail))


def data(args: argparse.Namespace, ctx: Context) -> Table:
    """What data collection recorded (embedded backend): time, input, output, status."""
    import pandas as pd

    service = _service(ctx, args.ref)
    records = ctx.client.get_collected_data(service["id"], top=args.top or ctx.settings.top)
    frame = pd.DataFrame(records, columns=["time", "input", "output", "status"])
    frame["time"] = pd.to_datetime(frame["time"], utc=True, format="ISO8601", errors="coerce")
    footer = None if records else (f"nothing recorded: data collection is "
                                   f"{'on' if _collecting(service) else 'off'} for this service")
    return Table(frame, footer)


def _collecting(service: Any) -> bool:
    return bool((service.get("dataCollection") or {}).get("storageEnabled"))


# -- score ---------------------------------------------------------------------------------------

def _json_text(text: str, what: str, ctx: Context) -> str:
    try:
        json.loads(text)
    except ValueError as exc:
        raise AmlmmUsageError.of(ctx.what, f"{what} is not valid JSON: {exc}") from None
    return text


def _payload(args: argparse.Namespace, ctx: Context) -> bytes:
    cell = ctx.cell if ctx.cell is not None and ctx.cell.strip() else None
    given = [what for what, value in (("VAR", args.var), ("--data", args.data),
                                      ("a cell body", cell)) if value is not None]
    if len(given) > 1:
        raise AmlmmUsageError(f"amlmm service score: error: give the input once, not "
                              f"{' and '.join(given)}")
    if not given:
        raise AmlmmUsageError("amlmm service score: error: give the input: VAR, --data JSON "
                              "(@FILE, or - for standard input) or a cell body")
    if cell is not None:
        return _json_text(cell, "the cell body", ctx).encode()
    if args.data is not None:
        if args.data == "-":
            return _json_text(sys.stdin.read(), "standard input", ctx).encode()
        if args.data.startswith("@"):
            path = Path(args.data[1:]).expanduser()
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or str(exc)
                raise AmlmmError.of(ctx.what, f"cannot read {path}: {reason}") from None
            return _json_text(text, str(path), ctx).encode()
        return _json_text(args.data, "--data", ctx).encode()
    from amlmm_magics.scoring.schema import to_json_value

    namespace = ctx.need_notebook(f"{NOTEBOOK_VAR_HINT}; use --data JSON, --data @FILE.json "
                                  "or --data -")
    value = namespace.evaluate(args.var, ctx.what)
    try:
        return json.dumps(to_json_value(value), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise AmlmmUsageError.of(ctx.what, f"{args.var} cannot be sent as JSON: {exc}") from None


def _decode(answer: Any) -> Any:
    kind = answer.headers.get("Content-Type", "").split(";")[0].strip()
    if kind == "application/json":
        return answer.json()
    if kind.startswith("text/"):
        return answer.text
    return answer.content


def _scoring_error(ctx: Context, answer: Any) -> AmlmmServiceError:
    code, message = answer.reason, answer.text.strip()[:300]
    try:
        error = answer.json().get("error") or {}
        code, message = error.get("code") or code, error.get("message") or message
    except (ValueError, AttributeError):
        pass
    return AmlmmServiceError.of(ctx.what, f"{answer.status_code} {code}: {message}",
                                status_code=answer.status_code, code=code)


def score(args: argparse.Namespace, ctx: Context) -> Any:
    import requests

    ctx.target = args.ref
    payload = _payload(args, ctx)
    service = _service(ctx, args.ref)
    uri = _scoring_uri(ctx, service)
    key = ctx.client.get_service_keys(service["id"]).get("primaryKey") or ""
    try:
        answer = requests.post(uri, data=payload, timeout=args.timeout or None,
                               headers={"Content-Type": "application/json",
                                        "Authorization": f"Bearer {key}"})
    except requests.Timeout:
        raise AmlmmServiceError.of(ctx.what, f"no answer within {args.timeout:g} s (--timeout)"
                                   ) from None
    except requests.RequestException as exc:
        raise AmlmmConnectionError.of(ctx.what, f"cannot reach {uri} ({type(exc).__name__})"
                                      ) from None
    if not answer.ok:
        raise _scoring_error(ctx, answer)
    return _decode(answer)
