"""Kubernetes manifests for a service: what to ``kubectl apply`` after building its image.

From the service as the API describes it (replicas, autoscaler, reservations, the image's
driver and schema) this writes a Deployment (resource requests from the reservation,
readiness and liveness probes on the scoring runtime's liveness route), a Service, a
HorizontalPodAutoscaler when the autoscaler is on, and a Secret holding the keys. The keys
are written to that one file and nowhere else: nothing here prints or logs them.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

from amlmm_magics.layout import APP_DIR_IN_IMAGE, SCHEMA_ASSET, SCORING_PORT, file_name_of

KEYS_MOUNT = "/var/amlmm/keys"
_LABEL_RE = re.compile(r"[^a-z0-9-]+")


def _label(text: str) -> str:
    return _LABEL_RE.sub("-", text.lower()).strip("-")[:63] or "service"


def scoring_command(service: dict[str, Any]) -> list[str]:
    """The container's command: the image's scoring runtime with the service's settings."""
    manifest = service.get("manifest") or {}
    assets = {a.get("id"): a for a in manifest.get("assets") or []}
    driver = _file_name(assets.get(manifest.get("driverProgram"), {}), "score.py")
    if not driver.endswith(".py"):
        driver += ".py"
    command = ["python", "-m", "amlmm_magics.scoring", "--app-dir", APP_DIR_IN_IMAGE,
               "--driver", driver, "--host", "0.0.0.0", "--port", str(SCORING_PORT),
               "--keys-file", f"{KEYS_MOUNT}/keys.json", "--title", service["name"]]
    schema_id = (manifest.get("targetRuntime") or {}).get("properties", {}).get(SCHEMA_ASSET)
    if schema_id in assets:
        command += ["--schema", f"{APP_DIR_IN_IMAGE}/{_file_name(assets[schema_id], schema_id)}"]
    if service.get("maxConcurrentRequestsPerContainer"):
        command += ["--max-concurrent", str(service["maxConcurrentRequestsPerContainer"])]
    if service.get("appInsightsEnabled"):
        command.append("--log-requests")
    return command


def _file_name(asset: dict[str, Any], fallback: str) -> str:
    return file_name_of(asset.get("url", ""), asset.get("id") or fallback)


def manifests(service: dict[str, Any], keys: dict[str, str], image_ref: str,
              namespace: str | None = None) -> list[dict[str, Any]]:
    """The objects for one service, in the order ``kubectl apply`` should create them."""
    name = _label(service["name"])
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "amlmm-magics"}
    meta = {"name": name, "labels": labels, **({"namespace": namespace} if namespace else {})}
    scaler = service.get("autoScaler") or {}
    autoscale = bool(scaler.get("autoscaleEnabled"))
    replicas = (scaler.get("minReplicas") or 1) if autoscale else service.get("numReplicas") or 1
    reservation = service.get("containerResourceReservation") or {}
    requests = {k: reservation[k] for k in ("cpu", "memory") if reservation.get(k)}
    if autoscale and "cpu" not in requests:
        requests["cpu"] = "250m"  # an HPA on CPU utilization needs a CPU request
    probe = {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 10}
    container: dict[str, Any] = {
        "name": "scoring", "image": image_ref, "command": scoring_command(service),
        "ports": [{"name": "http", "containerPort": SCORING_PORT}],
        "readinessProbe": {**probe, "initialDelaySeconds": 2},
        "livenessProbe": {**probe, "initialDelaySeconds": 30, "failureThreshold": 3},
        "volumeMounts": [{"name": "keys", "mountPath": KEYS_MOUNT, "readOnly": True}],
    }
    if requests:
        container["resources"] = {"requests": requests}
    secret_name = f"{name}-keys"
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {**meta, "name": secret_name},
         "type": "Opaque",
         "stringData": {"keys.json": json.dumps({"primaryKey": keys["primaryKey"],
                                                 "secondaryKey": keys["secondaryKey"]})}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": labels}, "spec": {
                "containers": [container],
                "volumes": [{"name": "keys", "secret": {"secretName": secret_name}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {
            "selector": {"app.kubernetes.io/name": name},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}},
    ]
    if autoscale:
        period = scaler.get("refreshPeriodInSeconds") or 15
        objects.append({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                        "metadata": meta, "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": max(1, scaler.get("minReplicas") or 1),
            "maxReplicas": max(1, scaler.get("maxReplicas") or replicas),
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization",
                "averageUtilization": scaler.get("targetUtilization") or 70}}}],
            "behavior": {direction: {"policies": [
                {"type": "Percent", "value": 100, "periodSeconds": period}]}
                for direction in ("scaleUp", "scaleDown")}}})
    return objects


def write(objects: list[dict[str, Any]], folder: Path, notes: str) -> list[Path]:
    """One YAML file per object (the Secret's mode 0600) and a README with the steps."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index, obj in enumerate(objects, start=1):
        path = folder / f"{index:02d}-{obj['kind'].lower()}.yaml"
        text = yaml.safe_dump(obj, sort_keys=False)
        if obj["kind"] == "Secret":
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(text)
        else:
            path.write_text(text)
        written.append(path)
    (folder / "README.md").write_text(notes)
    return written
