"""Services on a local Ray head through Ray Serve, driven by the embedded backend over the
dashboard's HTTP address, through the REST client."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import processes_mentioning
from flows import (
    IRIS_DRIVER,
    build_image,
    iris_data,
    register_iris,
    register_manifest,
    score,
    scoring_meanwhile,
    unique,
    upload,
)
from ray_head import ray_head

from amlmm_magics.api import BadRequestError, OperationFailedError, ResourceExistsError
from amlmm_magics.connection import connect_local
from amlmm_magics.local import daemon
from amlmm_magics.local.home import Home

pytestmark = pytest.mark.ray

VERSIONED = IRIS_DRIVER + """
def run(data):
    return {{"v": {v}, "pred": model.predict(np.asarray(data)).tolist()}}
"""


@pytest.fixture(scope="module")
def head():
    with ray_head() as started:
        yield started
    assert started.leftover == [], "Ray processes outlived `ray stop`"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = Home(tmp_path_factory.mktemp("ray-home"))
    yield home
    daemon.stop(home)
    assert processes_mentioning(str(home.root)) == []


@pytest.fixture(scope="module")
def conn(home, head):
    connection = connect_local(home.root)
    connection.client.set_compute_resource("ray1", dashboard_url=head.dashboard_url,
                                           serve_url=head.serve_url, token=head.token)
    return connection


@pytest.fixture(scope="module")
def images(conn, tmp_path_factory):
    model, _ = register_iris(conn, tmp_path_factory.mktemp("m"))
    return [build_image(conn, register_manifest(
        conn, VERSIONED.format(model=model.name, v=v), [model.id]).id) for v in (1, 2)]


def deploy(conn, image, **settings):
    return conn.client.begin_create_service(
        name=unique("ray"), image_id=image.id, compute_resource={"id": "ray1"},
        **settings).result(timeout=600)


def test_registration_checks_the_cluster_and_never_returns_the_token(conn, head):
    listed = {c.id: c for c in conn.client.list_compute_resources()}
    assert set(listed) == {"local", "ray1"}
    assert listed["ray1"].type == "Ray" and listed["ray1"].tokenSet is True
    assert head.token not in str(conn.client.list_compute_resources())
    with pytest.raises(BadRequestError, match="refused its token"):
        conn.client.set_compute_resource("bad", dashboard_url=head.dashboard_url,
                                         token="wrong")
    with pytest.raises(BadRequestError, match="does not answer"):
        conn.client.set_compute_resource("gone", dashboard_url="http://127.0.0.1:9")
    assert {c.id for c in conn.client.list_compute_resources()} == {"local", "ray1"}
    token_files = list((Path(conn.home) / "compute").iterdir())
    assert [oct(f.stat().st_mode & 0o777) for f in token_files] == ["0o600"]


def test_create_score_update_regenerate_delete(conn, images, head):
    service = deploy(conn, images[0], num_replicas=2)
    assert service.state == "Succeeded"
    assert service.scoringUri == f"{head.serve_url}/{service.name}/score"
    keys = conn.client.get_service_keys(service.id)
    x, _ = iris_data()
    assert score(service, keys.primaryKey, x[:2].tolist()).json()["v"] == 1
    assert score(service, None, x[:1].tolist()).status_code == 401
    assert score(service, keys.primaryKey, "not rows").status_code == 500

    with scoring_meanwhile(service, keys.primaryKey, x[:1].tolist()) as loop:
        updated = conn.client.begin_update_service(service.id, image_id=images[1].id
                                                   ).result(timeout=600)
        deadline = time.monotonic() + 60
        while (not loop.seen or loop.seen[-1] != 2) and time.monotonic() < deadline:
            time.sleep(0.2)
    failures, seen = loop.failures, loop.seen
    assert failures == [] and seen[-1] == 2 and seen[0] == 1
    assert updated.image.id == images[1].id
    statuses = [d.status for d in sorted(conn.client.list_deployments(service_id=service.id),
                                          key=lambda d: d.createdAt)]
    assert statuses == ["Expired", "Running"]

    new = conn.client.regenerate_service_key(service.id, "Primary")
    assert score(service, keys.primaryKey, x[:1].tolist()).status_code == 401
    assert score(service, new.primaryKey, x[:1].tolist()).status_code == 200
    logs = conn.client.get_service_logs(service.id, tail=100)
    assert "POST" in logs and new.primaryKey not in logs

    other = deploy(conn, images[0])
    other_key = conn.client.get_service_keys(other.id).primaryKey
    with pytest.raises(ResourceExistsError, match="Services still run on 'ray1'"):
        conn.client.delete_compute_resource("ray1")
    assert conn.client.delete_service(service.id) is True
    assert score(other, other_key, x[:1].tolist()).status_code == 200
    assert score(service, new.primaryKey, x[:1].tolist()).status_code == 404
    conn.client.delete_service(other.id)


def test_a_requirement_that_fails_to_install_on_the_cluster_is_one_clear_line(conn, tmp_path):
    model, _ = register_iris(conn, tmp_path)
    requirements = upload(conn, b"scikit-learn==0.0.1\n", "requirements.txt")
    manifest = register_manifest(conn, IRIS_DRIVER.format(model=model.name), [model.id],
                                 properties={"pipRequirements": requirements})
    image = build_image(conn, manifest.id)  # locally only a note: another version installed
    with pytest.raises(OperationFailedError) as info:
        deploy(conn, image)
    assert info.value.code == "ServeDeployFailed"
    assert "scikit-learn==0.0.1" in str(info.value) and "\n" not in str(info.value)


def test_more_cpus_than_the_cluster_has_is_refused_clearly(conn, images):
    with pytest.raises(OperationFailedError) as info:
        deploy(conn, images[0], num_replicas=3, container_resource_reservation={"cpu": "1"})
    assert info.value.code == "NotEnoughResources"
    assert "3 replicas x 1 CPU" in str(info.value)


def test_services_survive_a_daemon_restart(conn, home, images):
    service = deploy(conn, images[0])
    key = conn.client.get_service_keys(service.id).primaryKey
    x, _ = iris_data()
    daemon.stop(home)
    assert score(service, key, x[:1].tolist()).status_code == 200  # the cluster serves on
    again = connect_local(home.root)
    restarted = again.client.get_service(service.id)
    deadline = time.monotonic() + 60
    while restarted.state == "Running" and time.monotonic() < deadline:
        time.sleep(0.2)
        restarted = again.client.get_service(service.id)
    assert restarted.state == "Succeeded" and restarted.scoringUri == service.scoringUri
    assert score(service, key, x[:1].tolist()).status_code == 200
    again.client.delete_service(service.id)


def test_the_magics_register_the_cluster_and_deploy_there(home, head, images, monkeypatch):
    from test_magics_shell import make_shell

    monkeypatch.setenv("RAY_TOKEN_FOR_TEST", head.token)
    shell = make_shell(home.root)
    shell.run(f"%amlmm compute add ray2 --ray {head.dashboard_url} --serve-url "
              f"{head.serve_url} --token-env RAY_TOKEN_FOR_TEST")
    name = unique("mray")
    shell.run(f"%amlmm service create --name {name} --image {images[0].id} "
              "--compute-resource ray2")
    frame = shell.run("%amlmm compute list")
    assert frame[frame["id"] == "ray2"].iloc[0]["services"] == name
    x, _ = iris_data()
    shell.ns["rows"] = x[:1]
    assert shell.run(f"%amlmm service score {name} rows") == {"v": 1, "pred": [0]}
    shell.run(f"%amlmm service delete {name}")
    assert str(shell.run("%amlmm compute remove ray2")) == "Removed compute resource 'ray2'."
