"""What the embedded backend does for each operation of the API; the routes are thin on top.

Resources live in the store as the API shows them; the per-service details the API never
shows (port, current deployment, context folder) live in the store's ``internal`` column, so
a restarted daemon can bring every service back as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import secrets
import shutil
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amlmm_magics.layout import SCHEMA_ASSET
from amlmm_magics.local import schemas
from amlmm_magics.local.blobs import LOGS, LocalBlobs
from amlmm_magics.local.blobstore import BlobStore
from amlmm_magics.local.errors import ApiError, bad_request, conflict, not_found
from amlmm_magics.local.home import Home, Secrets, write_private
from amlmm_magics.local.images import BuildInput, BuildLog, ImageBuilder
from amlmm_magics.local.operations import Operations, error_body
from amlmm_magics.local.ray_target import RayServeTarget
from amlmm_magics.local.store import Filter, InvalidSkipToken, Store, new_id, now_iso, scope_of
from amlmm_magics.local.supervisor import ComputeTarget, DeploymentSpec, LocalProcessTarget
from amlmm_magics.scoring.keys import hash_keys

log = logging.getLogger("amlmm_magics.local")

LOCAL = "local"
LOCAL_COMPUTE = {"id": LOCAL, "type": "Local",
                 "description": "Scoring processes on the machine of the embedded backend."}
DEFAULT_PAGE = 100
MAX_PAGE = 1000
SERVICE_LOCK_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Account:
    """The account a request addresses (any names work; each is its own namespace)."""

    subscription: str
    resource_group: str
    name: str

    @property
    def scope(self) -> str:
        return scope_of(self.subscription, self.resource_group, self.name)

    @property
    def path(self) -> str:
        return (f"/api/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
                f"/accounts/{self.name}")

    def location(self, collection: str, id: str) -> str:
        return f"{self.path}/{collection}/{id}"


def page_size(count: str | None) -> int:
    if count is None or count == "":
        return DEFAULT_PAGE
    # isascii: str.isdigit() also accepts digits int() refuses, such as "²".
    if not (count.isascii() and count.isdigit()) or not 1 <= int(count) <= MAX_PAGE:
        raise bad_request(f"count must be a whole number from 1 to {MAX_PAGE}, not {count!r}.",
                          code="InvalidCount")
    return int(count)


def service_out(body: dict[str, Any]) -> dict[str, Any]:
    """A service as the spec's ServiceResponse spells it (``ID``)."""
    out = {"ID": body["id"]}
    out.update((k, v) for k, v in body.items() if k != "id")
    return out


def _clean(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


class Backend:
    def __init__(self, home: Home, secret: Secrets, blob_url: str) -> None:
        self.home = home
        self.store = Store(home.database)
        blob_store = BlobStore(home.blobs)
        blob_store.sweep()
        self.blobs = LocalBlobs(blob_store, secret.account_key, blob_url)
        self.builder = ImageBuilder(home.contexts, home.logs)
        self.local = LocalProcessTarget()
        self._clusters: dict[tuple[str, str], RayServeTarget] = {}
        self._clusters_guard = threading.Lock()
        self.ops = Operations(self.store)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # -- helpers -----------------------------------------------------------------------------
    def _row(self, kind: str, account: Account, id: str) -> Any:
        row = self.store.get(kind, account.scope, id)
        if row is None:
            raise not_found(kind, id)
        return row

    def get(self, kind: str, account: Account, id: str) -> dict[str, Any]:
        body = self._row(kind, account, id).body
        return service_out(body) if kind == "service" else body

    def listing(self, kind: str, account: Account, filters: list[Filter], count: str | None,
                skip_token: str | None) -> tuple[list[dict[str, Any]], str | None]:
        try:
            items, token = self.store.page(kind, account.scope, filters,
                                           count=page_size(count), skip_token=skip_token)
        except InvalidSkipToken:
            raise bad_request("$skipToken is not one this service handed out.",
                              code="InvalidSkipToken") from None
        if kind == "service":
            items = [service_out(i) for i in items]
        return items, token

    def _service_lock(self, service_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(service_id, threading.Lock())

    @contextlib.contextmanager
    def _holding(self, service_id: str) -> Any:
        lock = self._service_lock(service_id)
        if not lock.acquire(timeout=SERVICE_LOCK_TIMEOUT_S):
            raise conflict("Another operation on this service is still running; try again "
                           "when it ends.")
        try:
            yield
        finally:
            lock.release()

    # -- compute resources (an extension of the spec) ----------------------------------------
    def _target(self, scope: str, compute_id: str) -> ComputeTarget:
        """Where services of this account run: ``local``, or a registered Ray cluster."""
        if compute_id == LOCAL:
            return self.local
        row = self.store.latest_by_name("compute", scope, compute_id)
        if row is None:
            known = [LOCAL, *(r.body["id"] for r in self.store.all(
                "compute", [Filter("scope = ?", (scope,))]))]
            raise bad_request(f"Unknown compute resource {compute_id!r}; this account has: "
                              f"{', '.join(known)}.", code="UnknownCompute")
        with self._clusters_guard:
            target = self._clusters.get((scope, compute_id))
            if target is None:
                target = self._cluster(row)
                self._clusters[(scope, compute_id)] = target
        return target

    def _cluster(self, row: Any) -> RayServeTarget:
        def save(apps: dict[str, Any]) -> None:
            self.store.update("compute", row.id, internal={**row.internal, "apps": apps})

        body = row.body
        return RayServeTarget(body["id"], body["dashboardUrl"], body.get("serveUrl"),
                              self._compute_token(row.scope, body["id"]),
                              dict(row.internal.get("apps") or {}), save)

    def _token_file(self, scope: str, name: str) -> Path:
        digest = hashlib.sha256(f"{scope}/{name}".encode()).hexdigest()[:24]
        return self.home.root / "compute" / f"{digest}.token"

    def _compute_token(self, scope: str, name: str) -> str | None:
        path = self._token_file(scope, name)
        return path.read_text() if path.exists() else None

    def list_compute(self, account: Account) -> list[dict[str, Any]]:
        rows = self.store.all("compute", [Filter("scope = ?", (account.scope,))])
        return [LOCAL_COMPUTE, *(row.body for row in rows)]

    def get_compute(self, account: Account, name: str) -> dict[str, Any]:
        if name == LOCAL:
            return LOCAL_COMPUTE
        row = self.store.latest_by_name("compute", account.scope, name)
        if row is None:
            raise not_found("compute resource", name)
        return row.body

    def register_compute(self, account: Account, name: str,
                         req: schemas.ComputeResourceRequest) -> dict[str, Any]:
        """Register (or replace) a Ray cluster after checking it answers with its token."""
        if name == LOCAL:
            raise bad_request("'local' is the built-in compute resource; pick another name.",
                              code="ReservedName")
        probe = RayServeTarget(name, req.dashboardUrl, req.serveUrl, req.token, {},
                               lambda apps: None)
        try:
            probe.check()
        finally:
            probe.shutdown()
        body = _clean({"id": name, "type": req.type, "dashboardUrl": probe.dashboard_url,
                       "serveUrl": probe.serve_url, "createdAt": now_iso(),
                       "tokenSet": bool(req.token)})
        with self.store.transaction() as db:
            existing = self.store.latest_by_name("compute", account.scope, name)
            if existing is not None:
                self.store.update("compute", existing.id, body=body, db=db)
            else:
                self.store.insert("compute", account.scope, body, row_id=new_id(), name=name,
                                  db=db)
        token_file = self._token_file(account.scope, name)
        token_file.parent.mkdir(mode=0o700, exist_ok=True)
        if req.token:
            write_private(token_file, req.token)
        else:
            token_file.unlink(missing_ok=True)
        with self._clusters_guard:
            old = self._clusters.pop((account.scope, name), None)
        if old is not None:
            old.shutdown()
        return self.get_compute(account, name)

    def remove_compute(self, account: Account, name: str) -> bool:
        row = self.store.latest_by_name("compute", account.scope, name)
        if row is None:
            return False
        users = [s.body["name"] for s in self.store.all("service", [
            Filter("scope = ?", (account.scope,)),
            Filter.equals("$.computeResource.id", name)])]
        if users:
            raise conflict(f"Services still run on '{name}': {', '.join(users)}; delete them "
                           "first.")
        self.store.delete("compute", row.id)
        self._token_file(account.scope, name).unlink(missing_ok=True)
        with self._clusters_guard:
            target = self._clusters.pop((account.scope, name), None)
        if target is not None:
            target.shutdown()
        return True

    # -- models and manifests ----------------------------------------------------------------
    def register_model(self, account: Account, req: schemas.ModelRequest) -> dict[str, Any]:
        self.blobs.check_readable(req.url, "model")
        body = _clean({"id": new_id(), **req.model_dump(), "createdAt": now_iso()})
        return self.store.insert("model", account.scope, body, versioned=True)

    def register_manifest(self, account: Account,
                          req: schemas.ManifestRequest) -> dict[str, Any]:
        missing = [m for m in req.modelIds or [] if not self.store.get("model", account.scope, m)]
        if missing:
            raise bad_request(f"The manifest names models that are not registered: "
                              f"{', '.join(missing)}.", code="ModelNotFound")
        for asset in req.assets:
            self.blobs.check_readable(asset.url, f"asset '{asset.id}'")
        properties = req.targetRuntime.properties
        for key in ("pipRequirements", "condaEnvFile"):
            if properties.get(key):
                self.blobs.check_readable(properties[key], key)
        schema_id = properties.get(SCHEMA_ASSET)
        if schema_id and schema_id not in {a.id for a in req.assets}:
            raise bad_request(f"targetRuntime.properties.{SCHEMA_ASSET} '{schema_id}' is not "
                              "the id of one of the assets.", code="InvalidManifest")
        body = req.model_dump(exclude_none=True)
        body["assets"] = [_clean(a) for a in body["assets"]]
        body = {"id": new_id(), **body, "createdTime": now_iso()}
        return self.store.insert("manifest", account.scope, body, versioned=True)

    # -- images ------------------------------------------------------------------------------
    def create_image(self, account: Account, req: schemas.ImageRequest) -> dict[str, Any]:
        manifest = self._row("manifest", account, req.manifestId).body
        self._target(account.scope, req.computeResourceId)
        image_id = new_id()
        log_blob = f"images/{image_id}/build.log"
        body = _clean({
            "id": image_id, "name": req.name, "createdTime": now_iso(),
            "creationState": "NotStarted", "description": req.description,
            "imageType": req.imageType, "manifest": manifest,
            "computeResourceId": req.computeResourceId,
            "imageBuildLogUri": self.blobs.blob_read_url(LOGS, log_blob),
        })
        body = self.store.insert("image", account.scope, body, versioned=True)
        self.blobs.publish(LOGS, log_blob, b"", "text/plain; charset=utf-8")

        def fail(error: dict[str, Any]) -> None:
            self._update_body("image", image_id, creationState="Failed", error=error)

        return self.ops.start(account.scope, "Image", account.location("images", image_id),
                              lambda op: self._build(account, body, log_blob), fail)

    def _update_body(self, kind: str, id: str, **changes: Any) -> dict[str, Any]:
        with self.store.transaction() as db:
            row = self.store.get(kind, None, id, db=db)
            if row is None:
                raise not_found(kind, id)
            row.body.update(changes)
            self.store.update(kind, id, body=_clean(row.body), db=db)
        return row.body

    def _build(self, account: Account, image: dict[str, Any], log_blob: str) -> None:
        self._update_body("image", image["id"], creationState="Running")
        build_log = BuildLog(self.home.logs / "images" / f"{image['id']}.log",
                             lambda data: self.blobs.publish(LOGS, log_blob, data,
                                                             "text/plain; charset=utf-8"))
        manifest = image["manifest"]
        try:
            build_log.line(f"Building image {image['name']}:{image['version']} from manifest "
                           f"{manifest['name']}:{manifest.get('version')} ({manifest['id']})")
            models = [self._row("model", account, m).body for m in manifest.get("modelIds", [])]
            job = BuildInput(image["id"], image["name"], image["version"], manifest, models,
                             self.blobs.fetch)
            result = self.builder.build(job, build_log)
        except ApiError as exc:
            build_log.line(f"FAILED: {exc.message}")
            raise
        except Exception as exc:
            build_log.line(f"FAILED: {type(exc).__name__}: {exc}")
            raise
        finally:
            build_log.flush()
        location = (f"amlmm.local/{image['name'].lower()}:{image['version']}"
                    f"@sha256:{result.digest}")
        with self.store.transaction() as db:
            row = self.store.get("image", None, image["id"], db=db)
            assert row is not None
            row.body.update(creationState="Succeeded", imageLocation=location)
            self.store.update("image", image["id"], body=row.body,
                              internal={"context": str(result.context), "meta": result.meta},
                              db=db)

    # -- services ----------------------------------------------------------------------------
    def _ready_image(self, account: Account, image_id: str) -> Any:
        image = self._row("image", account, image_id)
        state = image.body.get("creationState")
        if state != "Succeeded":
            raise bad_request(f"Image '{image_id}' cannot be deployed: its creationState is "
                              f"{state}.", code="ImageNotReady")
        return image

    def _models_of(self, account: Account, manifest: dict[str, Any]) -> list[dict[str, Any]]:
        found = (self.store.get("model", account.scope, m) for m in manifest.get("modelIds", []))
        return [row.body for row in found if row is not None]

    def _check_replicas(self, settings: dict[str, Any]) -> None:
        if self._replicas(settings) < 1:
            raise bad_request("numReplicas must be at least 1 (a service with no replica "
                              "answers nothing).", code="InvalidReplicas")

    @staticmethod
    def _replicas(settings: dict[str, Any]) -> int:
        scaler = settings.get("autoScaler") or {}
        if scaler.get("autoscaleEnabled"):
            return max(1, scaler.get("minReplicas") or 1)
        replicas = settings.get("numReplicas")
        return 1 if replicas is None else replicas

    def create_service(self, account: Account,
                       req: schemas.ServiceCreateRequest) -> dict[str, Any]:
        target = self._target(account.scope, req.computeResource.id)
        image = self._ready_image(account, req.imageId)
        settings = req.model_dump(exclude_none=True, exclude={"name", "imageId"})
        self._check_replicas(settings)
        existing = self.store.latest_by_name("service", account.scope, req.name)
        if existing is not None:
            raise conflict(f"A service named '{req.name}' already exists (state "
                           f"{existing.body.get('state')}); delete it first or pick another "
                           "name.")
        service_id, deployment_id, now = new_id(), new_id(), now_iso()
        body = _clean({
            "id": service_id, "name": req.name, "createdAt": now, "updatedAt": now,
            "state": "NotStarted", "image": image.body, "manifest": image.body["manifest"],
            "models": self._models_of(account, image.body["manifest"]), **settings,
        })
        primary, secondary = secrets.token_hex(16), secrets.token_hex(16)
        try:
            with self.store.transaction() as db:
                self.store.insert("service", account.scope, body, db=db)
                self.store.set_keys(service_id, primary, secondary, db=db)
                self._insert_deployment(account, db, deployment_id, body, service_id)
        except sqlite3.IntegrityError:
            raise conflict(f"A service named '{req.name}' already exists.") from None
        self._write_keys(service_id, primary, secondary)

        def work(op: str) -> None:
            with self._holding(service_id):
                self._deploy(account, target, service_id, deployment_id, image, settings,
                             previous=None)

        def fail(error: dict[str, Any]) -> None:
            target.remove(service_id)
            self._update_body("service", service_id, state="Failed", error=error,
                              updatedAt=now_iso())
            self._end_deployment(deployment_id, "Failed")

        return self.ops.start(account.scope, "Service",
                              account.location("services", service_id), work, fail)

    def _insert_deployment(self, account: Account, db: sqlite3.Connection, deployment_id: str,
                           service: dict[str, Any], service_id: str) -> None:
        self.store.insert("deployment", account.scope, {
            "id": deployment_id, "serviceName": service["name"],
            "imageId": service["image"]["id"], "status": "Deploying", "createdAt": now_iso(),
        }, internal={"serviceId": service_id}, db=db)

    def _end_deployment(self, deployment_id: str, status: str) -> None:
        with contextlib.suppress(ApiError):
            self._update_body("deployment", deployment_id, status=status, expiredAt=now_iso())

    def _spec(self, service: dict[str, Any], deployment_id: str, image_internal: dict[str, Any],
              settings: dict[str, Any], port: int | None) -> DeploymentSpec:
        """What a target needs to run a deployment; the keys go as salted hashes only."""
        service_dir = self.home.service_dir(service["id"])
        collect = (settings.get("dataCollection") or {}).get("storageEnabled")
        return DeploymentSpec(
            service_id=service["id"], service_name=service["name"],
            deployment_id=deployment_id, context=Path(image_internal["context"]),
            meta=image_internal["meta"], replicas=self._replicas(settings),
            keys_file=service_dir / "keys.json", log_file=service_dir / "service.log",
            max_concurrent=settings.get("maxConcurrentRequestsPerContainer"),
            log_requests=bool(settings.get("appInsightsEnabled")),
            collect_dir=(self.home.data_collection / service["id"]) if collect else None,
            port=port, settings=settings, keys=self._key_hashes(service["id"]),
        )

    def _key_hashes(self, service_id: str) -> dict[str, Any]:
        keys = self.store.get_keys(service_id)
        return hash_keys(list(keys)) if keys else {}

    def _deploy(self, account: Account, target: ComputeTarget, service_id: str,
                deployment_id: str, image: Any, settings: dict[str, Any],
                previous: str | None) -> None:
        """Start a deployment, swap it in, retire the previous one."""
        row = self._row("service", account, service_id)
        self._update_body("service", service_id, state="Running")
        port = row.internal.get("port") or target.port_of(service_id)
        spec = self._spec(row.body, deployment_id, image.internal, settings, port)
        uri = target.deploy(spec, lambda text: self._service_note(spec, text))
        with self.store.transaction() as db:
            current = self.store.get("service", None, service_id, db=db)
            assert current is not None
            current.body.update(state="Succeeded", scoringUri=uri, updatedAt=now_iso())
            current.body.pop("error", None)
            internal = {"port": target.port_of(service_id), "deployment": deployment_id,
                        "imageId": image.body["id"], "settings": settings}
            self.store.update("service", service_id, body=current.body, internal=internal, db=db)
            dep = self.store.get("deployment", None, deployment_id, db=db)
            if dep is not None:
                dep.body["status"] = "Running"
                self.store.update("deployment", deployment_id, body=dep.body, db=db)
        if previous:
            target.retire(service_id, previous)
            self._end_deployment(previous, "Expired")

    @staticmethod
    def _service_note(spec: DeploymentSpec, text: str) -> None:
        spec.log_file.parent.mkdir(parents=True, exist_ok=True)
        with spec.log_file.open("a") as out:
            out.write(f"amlmm: {text}\n")

    def update_service(self, account: Account, service_id: str,
                       req: schemas.ServiceUpdateRequest) -> dict[str, Any]:
        row = self._row("service", account, service_id)
        changes = req.model_dump(exclude_none=True)
        if not changes:
            raise bad_request("Nothing to update: the request sets no field.",
                              code="NothingToUpdate")
        if row.body.get("state") in ("NotStarted", "Running"):
            raise conflict(f"Service '{row.body['name']}' has an operation in progress; try "
                           "again when it ends.")
        if row.body.get("state") == "Failed" or not row.internal.get("deployment"):
            raise bad_request(f"Service '{row.body['name']}' failed to start; delete it and "
                              "create it again.", code="ServiceFailed")
        target = self._target(account.scope, row.body["computeResource"]["id"])
        image = self._ready_image(account, changes.pop("imageId", None)
                                  or row.internal["imageId"])
        settings = {**row.internal.get("settings", {}), **changes}
        if "numReplicas" in changes:
            settings.get("autoScaler", {}).pop("autoscaleEnabled", None)
        elif (changes.get("autoScaler") or {}).get("autoscaleEnabled"):
            settings.pop("numReplicas", None)
        self._check_replicas(settings)
        deployment_id, previous = new_id(), row.internal["deployment"]
        with self.store.transaction() as db:
            current = self.store.get("service", None, service_id, db=db)
            assert current is not None
            body = {**current.body, "state": "NotStarted", "updatedAt": now_iso()}
            self.store.update("service", service_id, body=body, db=db)
            self._insert_deployment(account, db, deployment_id,
                                    {**body, "image": image.body}, service_id)

        def work(op: str) -> None:
            with self._holding(service_id):
                self._deploy(account, target, service_id, deployment_id, image, settings,
                             previous=previous)
                self._update_body(
                    "service", service_id, image=image.body, manifest=image.body["manifest"],
                    models=self._models_of(account, image.body["manifest"]),
                    **{k: settings.get(k) for k in _SETTING_FIELDS})

        def fail(error: dict[str, Any]) -> None:
            # The previous deployment never stopped: the service still answers with it.
            self._update_body("service", service_id, state="Succeeded", updatedAt=now_iso(),
                              error={**error, "message": "The update failed and the service "
                                     "keeps running its previous deployment: "
                                     + error.get("message", "")})
            self._end_deployment(deployment_id, "Failed")

        return self.ops.start(account.scope, "Service",
                              account.location("services", service_id), work, fail)

    def delete_service(self, account: Account, service_id: str) -> bool:
        row = self.store.get("service", account.scope, service_id)
        if row is None:
            return False
        with self._holding(service_id):
            with contextlib.suppress(ApiError):  # its compute resource may be gone
                self._target(account.scope, row.body["computeResource"]["id"]).remove(service_id)
            with self.store.transaction() as db:
                self.store.delete("service", service_id, db=db)
                self.store.delete_keys(service_id, db=db)
            for dep in self.store.all("deployment", [Filter.internal_equals(
                    "$.serviceId", service_id)]):
                if not dep.body.get("expiredAt"):
                    self._end_deployment(dep.id, "Deleted")
        shutil.rmtree(self.home.service_dir(service_id) / "ready", ignore_errors=True)
        (self.home.service_dir(service_id) / "keys.json").unlink(missing_ok=True)
        return True

    # -- keys --------------------------------------------------------------------------------
    def _write_keys(self, service_id: str, primary: str, secondary: str) -> None:
        folder = self.home.service_dir(service_id)
        folder.mkdir(parents=True, exist_ok=True)
        write_private(folder / "keys.json", json.dumps(hash_keys([primary, secondary])))

    def get_keys(self, account: Account, service_id: str) -> dict[str, str]:
        self._row("service", account, service_id)
        keys = self.store.get_keys(service_id)
        if keys is None:
            raise not_found("service", service_id)
        return {"primaryKey": keys[0], "secondaryKey": keys[1]}

    def regenerate_keys(self, account: Account, service_id: str,
                        key_type: str | None) -> dict[str, str]:
        keys = self.get_keys(account, service_id)
        if key_type in (None, "Primary"):
            keys["primaryKey"] = secrets.token_hex(16)
        if key_type in (None, "Secondary"):
            keys["secondaryKey"] = secrets.token_hex(16)
        self.store.set_keys(service_id, keys["primaryKey"], keys["secondaryKey"])
        # Local replicas re-read this file on their next request; other targets are told:
        # the old key is refused from now on either way.
        self._write_keys(service_id, keys["primaryKey"], keys["secondaryKey"])
        row = self._row("service", account, service_id)
        self._target(account.scope, row.body["computeResource"]["id"]).update_keys(
            service_id, self._key_hashes(service_id))
        return keys

    # -- deployments, logs, collected data ---------------------------------------------------
    def list_deployments(self, account: Account, service_id: str | None) -> list[dict[str, Any]]:
        filters = [Filter("scope = ?", (account.scope,))]
        if service_id:
            filters.append(Filter.internal_equals("$.serviceId", service_id))
        return [row.body for row in reversed(self.store.all("deployment", filters))]

    def service_logs(self, account: Account, service_id: str, tail: int) -> str:
        from amlmm_magics.redact import redact_text

        row = self._row("service", account, service_id)
        path = self.home.service_dir(service_id) / "service.log"
        target = self._target(account.scope, row.body["computeResource"]["id"])
        return "\n".join(redact_text(line) for line in target.logs(service_id, path, tail))

    def collected_data(self, account: Account, service_id: str,
                       top: int) -> list[dict[str, Any]]:
        self._row("service", account, service_id)
        folder = self.home.data_collection / service_id
        records: list[dict[str, Any]] = []
        for path in sorted(folder.glob("*.jsonl")) if folder.exists() else []:
            with path.open() as stream:
                for line in stream:
                    with contextlib.suppress(ValueError):
                        records.append(json.loads(line))
        records.sort(key=lambda r: str(r.get("time", "")))
        return records[-top:]

    # -- life cycle --------------------------------------------------------------------------
    def start(self, on_error: Callable[[str], None] = log.error) -> None:
        """Recover what a previous daemon left: fail its operations, restart its services."""
        for tmp in self.home.contexts.glob("tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)
        self.ops.recover()
        interrupted = {"code": "Interrupted", "statusCode": 500,
                       "message": "The embedded backend stopped during this operation."}
        for row in self.store.all("image"):
            if row.body.get("creationState") in ("NotStarted", "Running"):
                self._update_body("image", row.id, creationState="Failed", error=interrupted)
        for row in self.store.all("deployment"):
            if row.body.get("status") == "Deploying":
                self._end_deployment(row.id, "Failed")
        for row in self.store.all("service"):
            if row.internal.get("deployment") and row.body.get("state") != "Failed":
                threading.Thread(target=self._restart, args=(row, on_error),
                                 name=f"restart-{row.id}", daemon=True).start()
            elif row.body.get("state") in ("NotStarted", "Running"):
                self._update_body("service", row.id, state="Failed", error=interrupted)

    def _restart(self, row: Any, on_error: Callable[[str], None]) -> None:
        internal = row.internal
        try:
            target = self._target(row.scope, row.body["computeResource"]["id"])
            image = self.store.get("image", None, internal["imageId"])
            if image is None:
                raise not_found("image", internal["imageId"])
            spec = self._spec(row.body, internal["deployment"], image.internal,
                              internal.get("settings", {}), internal.get("port"))
            with self._holding(row.id):
                uri = target.adopt(spec)
                if uri is None:
                    self._update_body("service", row.id, state="Running")
                    uri = target.deploy(spec, lambda text: self._service_note(spec, text))
                internal["port"] = target.port_of(row.id)
                self.store.update("service", row.id, internal=internal)
                self._update_body("service", row.id, state="Succeeded", scoringUri=uri)
        except Exception as exc:
            on_error(f"service {row.body.get('name')} could not be restarted: {exc}")
            self._update_body("service", row.id, state="Failed", error=error_body(exc))

    def stop(self) -> None:
        self.ops.shutdown()
        self.local.shutdown()
        with self._clusters_guard:
            clusters = list(self._clusters.values())
        for cluster in clusters:
            cluster.shutdown()
        self.store.close()


_SETTING_FIELDS = ("numReplicas", "autoScaler", "containerResourceReservation", "dataCollection",
                   "appInsightsEnabled", "maxConcurrentRequestsPerContainer")
