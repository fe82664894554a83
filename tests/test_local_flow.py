"""The whole flow against the real embedded backend: real blobs, builds, scoring processes."""

from __future__ import annotations

import io
import json
import os
import signal
import tarfile
import time

import pytest
import requests
from azure.storage.blob import BlobClient
from conftest import processes_mentioning
from flows import (
    IRIS_DRIVER,
    build_image,
    create_service,
    iris_data,
    iris_image,
    register_iris,
    register_manifest,
    score,
    scoring_meanwhile,
    unique,
    upload,
)

from amlmm_magics.api import OperationFailedError
from amlmm_magics.connection import connect_local
from amlmm_magics.local import daemon
from amlmm_magics.local.home import Home

VERSIONED_DRIVER = IRIS_DRIVER + """
def run(data):
    return {{"v": {v}, "pred": model.predict(np.asarray(data)).tolist()}}
"""


def test_register_build_deploy_score_delete(local, tmp_path):
    image, model, clf = iris_image(local, tmp_path)
    assert image.creationState == "Succeeded"
    assert image.imageLocation.startswith(f"amlmm.local/{image.name}:1@sha256:")
    build_log = requests.get(image.imageBuildLogUri, timeout=10).text
    assert "init(): ok" in build_log and "Build context sha256:" in build_log
    service = create_service(local, image.id, num_replicas=2)
    assert service.state == "Succeeded" and service.scoringUri.startswith("http://127.0.0.1:")
    assert [m.id for m in service.models] == [model.id]
    keys = local.client.get_service_keys(service.id)
    x, _ = iris_data()
    answer = score(service, keys.primaryKey, x[:5].tolist())
    assert answer.status_code == 200
    assert answer.json() == clf.predict(x[:5]).tolist()
    assert score(service, keys.secondaryKey, x[:1].tolist()).status_code == 200
    assert score(service, None, x[:1].tolist()).status_code == 401
    assert score(service, "wrong", x[:1].tolist()).status_code == 401
    assert local.client.delete_service(service.id) is True
    with pytest.raises(requests.ConnectionError):
        score(service, keys.primaryKey, x[:1].tolist())
    assert local.client.delete_service(service.id) is False
    statuses = {d.status for d in local.client.list_deployments(service_id=service.id)}
    assert statuses == {"Deleted"}


def test_a_blob_uploaded_with_azure_storage_blob_is_what_the_service_loads(local, tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    url = upload(local, data, "weights.bin")
    assert BlobClient.from_blob_url(url).download_blob().readall() == data
    driver = ("import hashlib\nfrom amlmm_magics.scoring import model_path\n"
              "def run(x):\n"
              "    return hashlib.sha256(open(model_path('w'), 'rb').read()).hexdigest()\n")
    model = local.client.register_model(name=unique("w").replace("w-", "w"), url=url,
                                        mime_type="application/octet-stream")
    manifest = register_manifest(local, driver.replace("'w'", repr(model.name)), [model.id])
    service = create_service(local, build_image(local, manifest.id).id)
    keys = local.client.get_service_keys(service.id)
    import hashlib
    assert score(service, keys.primaryKey, 1).json() == hashlib.sha256(data).hexdigest()
    local.client.delete_service(service.id)


def test_update_swaps_without_a_failed_request(local, tmp_path):
    model, _ = register_iris(local, tmp_path)
    images = [build_image(local, register_manifest(
        local, VERSIONED_DRIVER.format(model=model.name, v=v), [model.id]).id) for v in (1, 2)]
    service = create_service(local, images[0].id)
    key = local.client.get_service_keys(service.id).primaryKey
    x, _ = iris_data()
    with scoring_meanwhile(service, key, x[:1].tolist(), threads=2) as loop:
        time.sleep(0.5)
        updated = local.client.begin_update_service(service.id, image_id=images[1].id,
                                                    app_insights_enabled=True).result(timeout=180)
        time.sleep(0.5)
    failures, seen = loop.failures, loop.seen
    assert failures == []
    assert seen[0] == 1 and seen[-1] == 2 and 1 in seen and 2 in seen
    assert updated.image.id == images[1].id and updated.appInsightsEnabled is True
    assert updated.scoringUri == service.scoringUri
    deployments = sorted(local.client.list_deployments(service_id=service.id),
                         key=lambda d: d.createdAt)
    assert [d.status for d in deployments] == ["Expired", "Running"]
    assert deployments[0].expiredAt and not deployments[1].get("expiredAt")
    logs = local.client.get_service_logs(service.id, tail=50)
    assert "POST /score 200" in logs and key not in logs
    local.client.delete_service(service.id)


def test_a_regenerated_key_is_refused_at_once(local, tmp_path):
    image, _, _ = iris_image(local, tmp_path)
    service = create_service(local, image.id)
    old = local.client.get_service_keys(service.id)
    x, _ = iris_data()
    assert score(service, old.primaryKey, x[:1].tolist()).status_code == 200
    new = local.client.regenerate_service_key(service.id, "Primary")
    assert new.primaryKey != old.primaryKey and new.secondaryKey == old.secondaryKey
    assert score(service, old.primaryKey, x[:1].tolist()).status_code == 401
    assert score(service, new.primaryKey, x[:1].tolist()).status_code == 200
    assert score(service, old.secondaryKey, x[:1].tolist()).status_code == 200
    local.client.delete_service(service.id)


def test_a_broken_driver_fails_the_image_with_its_error_and_log(local, tmp_path):
    model, _ = register_iris(local, tmp_path)
    driver = "def init():\n    raise KeyError('weights')\n\ndef run(x):\n    return x\n"
    manifest = register_manifest(local, driver, [model.id])
    with pytest.raises(OperationFailedError) as info:
        build_image(local, manifest.id)
    assert info.value.code == "DriverFailed"
    assert "KeyError: 'weights'" in str(info.value)
    image = local.client.list_images(manifest_id=manifest.id).take(1)[0]
    assert image.creationState == "Failed" and "KeyError" in image.error.message
    log = requests.get(image.imageBuildLogUri, timeout=10).text
    assert "Traceback" in log and "FAILED" in log


def _tar(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return out.getvalue()


@pytest.mark.parametrize("archive", [
    _tar({"../evil.txt": b"x"}),
    _tar({"/etc/evil.txt": b"x"}),
    _tar({"ok.txt": b"x"}, links={"escape": "/etc/passwd"}),
    _tar({"ok.txt": b"x"}, links={"up": "../../outside"}),
], ids=["dotdot", "absolute", "absolute-link", "relative-link"])
def test_archives_escaping_the_app_folder_are_refused(local, archive):
    url = upload(local, archive, "bundle.tar.gz", "application/gzip")
    model = local.client.register_model(name=unique("bundle"), url=url,
                                        mime_type="application/gzip", unpack=True)
    manifest = register_manifest(local, "def run(x):\n    return x\n", [model.id])
    with pytest.raises(OperationFailedError) as info:
        build_image(local, manifest.id)
    assert info.value.code == "UnsafeArchive"


def test_a_safe_archive_is_unpacked_beside_the_driver(local):
    url = upload(local, _tar({"bundle/a.txt": b"alpha", "bundle/sub/b.txt": b"beta"}),
                 "bundle.tar.gz", "application/gzip")
    model = local.client.register_model(name=unique("bundle"), url=url,
                                        mime_type="application/gzip", unpack=True)
    driver = ("import os\nfrom amlmm_magics.scoring import model_path\n"
              f"def run(x):\n    d = model_path({model.name!r})\n"
              "    return [open(os.path.join(d, 'a.txt')).read(), "
              "open('bundle/sub/b.txt').read()]\n")
    service = create_service(local, build_image(local, register_manifest(
        local, driver, [model.id]).id).id)
    key = local.client.get_service_keys(service.id).primaryKey
    assert score(service, key, 0).json() == ["alpha", "beta"]
    local.client.delete_service(service.id)


def test_data_collection_records_inputs_and_outputs(local, tmp_path):
    image, _, clf = iris_image(local, tmp_path)
    service = create_service(local, image.id, data_collection={"storageEnabled": True})
    key = local.client.get_service_keys(service.id).primaryKey
    x, _ = iris_data()
    for row in x[:3]:
        assert score(service, key, [row.tolist()]).status_code == 200
    records = local.client.get_collected_data(service.id)
    assert [r["input"] for r in records] == [[row.tolist()] for row in x[:3]]
    assert [r["output"] for r in records] == [clf.predict([row]).tolist() for row in x[:3]]
    local.client.delete_service(service.id)


def test_kill_9_and_restart_loses_nothing(tmp_path):
    home = Home(tmp_path / "home")
    conn = connect_local(home.root)
    try:
        image, model, clf = iris_image(conn, tmp_path)
        service = create_service(conn, image.id, num_replicas=2)
        key = conn.client.get_service_keys(service.id).primaryKey
        x, _ = iris_data()
        assert score(service, key, x[:2].tolist()).status_code == 200
        pid = json.loads(home.state_file.read_text())["pid"]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while processes_mentioning(str(home.root)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_mentioning(str(home.root)) == [], "scoring processes outlived -9"

        again = connect_local(home.root)
        assert json.loads(home.state_file.read_text())["pid"] != pid
        assert again.client.get_model(model.id).version == model.version
        assert again.client.get_image(image.id).creationState == "Succeeded"
        deadline = time.monotonic() + 60
        restarted = again.client.get_service(service.id)
        while restarted.state == "Running" and time.monotonic() < deadline:
            time.sleep(0.2)  # the daemon restarts its services in the background
            restarted = again.client.get_service(service.id)
        assert restarted.state == "Succeeded" and restarted.scoringUri == service.scoringUri
        answer = score(service, key, x[:2].tolist())
        assert answer.status_code == 200 and answer.json() == clf.predict(x[:2]).tolist()
    finally:
        daemon.stop(home)
    assert processes_mentioning(str(home.root)) == []
