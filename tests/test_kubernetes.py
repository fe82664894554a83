"""Kubernetes manifests of a service: valid against a current Kubernetes schema, keys only in
the Secret's file."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import kubernetes_validate
import pytest
import yaml
from flows import create_service, iris_image

from amlmm_magics import kubernetes

K8S_VERSION = kubernetes_validate.latest_version()


@pytest.fixture(scope="module")
def service(local, tmp_path_factory):
    image, _, _ = iris_image(local, tmp_path_factory.mktemp("k8s"))
    made = create_service(local, image.id, auto_scaler={
        "autoscaleEnabled": True, "minReplicas": 2, "maxReplicas": 5, "targetUtilization": 60,
        "refreshPeriodInSeconds": 20}, container_resource_reservation={
        "cpu": "250m", "memory": "512Mi"}, max_concurrent_requests_per_container=4,
        app_insights_enabled=True)
    yield made
    local.client.delete_service(made.id)


def test_every_manifest_validates_against_a_current_kubernetes(local, service):
    keys = local.client.get_service_keys(service.id)
    objects = kubernetes.manifests(service, keys, "registry.example/iris:1")
    assert [o["kind"] for o in objects] == ["Secret", "Deployment", "Service",
                                            "HorizontalPodAutoscaler"]
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    deployment = objects[1]["spec"]
    container = deployment["template"]["spec"]["containers"][0]
    assert deployment["replicas"] == 2
    assert container["resources"] == {"requests": {"cpu": "250m", "memory": "512Mi"}}
    assert container["readinessProbe"]["httpGet"] == {"path": "/", "port": "http"}
    assert container["command"][-3:] == ["--max-concurrent", "4", "--log-requests"]
    hpa = objects[3]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 5)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 60


def test_export_writes_files_and_the_keys_only_into_the_secret(local, local_home, service,
                                                                tmp_path):
    folder = tmp_path / "k8s"
    done = subprocess.run(
        [sys.executable, "-m", "amlmm_magics.cli", "service", "export", service.name,
         "--kubernetes", str(folder), "--image-ref", "registry.example/iris:1"],
        capture_output=True, text=True, env={**os.environ, "AMLMM_HOME": str(local_home)},
        timeout=120)
    assert done.returncode == 0, done.stderr
    keys = local.client.get_service_keys(service.id)
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["01-secret.yaml", "02-deployment.yaml", "03-service.yaml",
                     "04-horizontalpodautoscaler.yaml", "README.md"]
    secret = folder / "01-secret.yaml"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    stored = json.loads(yaml.safe_load(secret.read_text())["stringData"]["keys.json"])
    assert stored == {"primaryKey": keys.primaryKey, "secondaryKey": keys.secondaryKey}
    for path in folder.iterdir():
        if path != secret:
            assert keys.primaryKey not in path.read_text(), path
        if path.suffix == ".yaml":
            kubernetes_validate.validate(yaml.safe_load(path.read_text()), K8S_VERSION,
                                         strict=True)
    assert keys.primaryKey not in done.stdout + done.stderr
    assert "docker build -t registry.example/iris:1 " in (folder / "README.md").read_text()
    assert str(local_home / "contexts") in (folder / "README.md").read_text()
