"""Contract tests of the client: exact requests of every operation, against a strict fake."""

from __future__ import annotations

import pytest
from fake_mms import FakeMMS, Reply, accepted

from amlmm_magics.api import ModelManagementClient, RetryPolicy

SVC = {"ID": "svc-1", "name": "iris-svc", "state": "Succeeded",
       "computeResource": {"id": "local"}, "scoringUri": "http://127.0.0.1:1/score"}


@pytest.fixture
def fake():
    server = FakeMMS().start()
    yield server
    server.stop()
    assert server.violations == [], server.violations


@pytest.fixture
def client(fake):
    with ModelManagementClient(
        fake.base_url, "sub-1", "rg-1", "acct-1", "test-token",
        retry=RetryPolicy(total=3, backoff_factor=0.01, backoff_jitter=0.0),
    ) as c:
        yield c


def only(fake: FakeMMS):
    assert len(fake.requests) == 1, [(r.method, r.path) for r in fake.requests]
    return fake.requests[0]


def test_every_request_carries_api_version_bearer_and_request_id(fake, client):
    fake.on("GET", "/models/m1", Reply(200, {"id": "m1", "name": "iris"}))
    client.get_model("m1")
    rec = only(fake)
    assert rec.query == {"api-version": ["2017-09-01-preview"]}
    assert rec.headers["Authorization"] == "Bearer test-token"
    assert rec.headers["Accept"] == "application/json"
    assert len(rec.headers["x-ms-client-request-id"]) == 36


def test_register_model_sends_spec_fields(fake, client):
    fake.on("POST", "/models", Reply(200, {"id": "m1", "name": "iris", "version": 1,
                                          "URL": "http://blob/x?sv=1&sig=SECRET"}))
    model = client.register_model(name="iris", url="http://blob/x", mime_type="application/json",
                                  description="d", tags=["a=1"], unpack=False)
    rec = only(fake)
    assert (rec.method, rec.path) == ("POST", fake.account_path + "/models")
    assert rec.body == {"name": "iris", "url": "http://blob/x", "mimeType": "application/json",
                        "description": "d", "tags": ["a=1"], "unpack": False}
    assert rec.headers["Content-Type"] == "application/json"
    assert model.id == "m1" and model.url.endswith("sig=SECRET")  # URL accepted as url
    assert "SECRET" not in repr(model)


def test_register_model_leaves_out_unset_optional_fields(fake, client):
    fake.on("POST", "/models", Reply(200, {"id": "m1"}))
    client.register_model(name="iris", url="http://blob/x", mime_type="application/json")
    assert set(only(fake).body) == {"name", "url", "mimeType"}


def test_list_models_filters_and_count(fake, client):
    fake.on("GET", "/models", Reply(200, {"value": [{"id": "m1"}]}))
    assert [m.id for m in client.list_models(name="iris", tag="t=1", count=5)] == ["m1"]
    assert only(fake).query == {"api-version": ["2017-09-01-preview"], "name": ["iris"],
                                "tag": ["t=1"], "count": ["5"]}


def test_get_model_encodes_the_id(fake, client):
    fake.on("GET", "/models/a b/c", Reply(200, {"id": "a b/c"}))
    client.get_model("a b/c")
    assert "/models/a%20b%2Fc?" in only(fake).raw_url


def test_register_manifest_sends_spec_fields_with_lower_case_asset_ids(fake, client):
    fake.on("POST", "/manifests", Reply(200, {"id": "mf1", "name": "m"}))
    client.register_manifest(
        name="m", driver_program="driver",
        assets=[{"ID": "driver", "URL": "http://blob/score.py",
                 "mimeType": "application/x-python"}],
        target_runtime={"runtimeType": "Python", "properties": {"pipRequirements": "http://r"}},
        model_ids=["m1"], model_type="Registered", description="d", webservice_type="Realtime",
    )
    assert only(fake).body == {
        "name": "m", "driverProgram": "driver",
        "assets": [{"id": "driver", "url": "http://blob/score.py",
                    "mimeType": "application/x-python"}],
        "targetRuntime": {"runtimeType": "Python", "properties": {"pipRequirements": "http://r"}},
        "modelIds": ["m1"], "modelType": "Registered", "description": "d",
        "webserviceType": "Realtime",
    }


def test_list_and_get_manifests(fake, client):
    fake.on("GET", "/manifests", Reply(200, {"value": []}))
    fake.on("GET", "/manifests/mf1", Reply(200, {"id": "mf1"}))
    assert list(client.list_manifests(model_id="m1", manifest_name="mf", count=2)) == []
    assert client.get_manifest("mf1").id == "mf1"
    first, second = fake.requests
    assert first.query == {"api-version": ["2017-09-01-preview"], "modelId": ["m1"],
                           "manifestName": ["mf"], "count": ["2"]}
    assert second.path.endswith("/manifests/mf1")


def test_begin_create_image_posts_and_polls_operation_location(fake, client):
    fake.on("POST", "/images", accepted(fake, "op-1"))
    fake.on("GET", "/operations/op-1", Reply(200, {"id": "op-1", "state": "Running"}))
    poller = client.begin_create_image(name="img", manifest_id="mf1", compute_resource_id="local",
                                       description="d")
    post = only(fake)
    assert post.body == {"name": "img", "manifestId": "mf1", "computeResourceId": "local",
                         "imageType": "Docker", "description": "d"}
    assert poller.operation_id == "op-1"
    assert poller.status() == "Running"
    assert fake.requests[-1].path.endswith("/operations/op-1")


def test_list_and_get_images(fake, client):
    fake.on("GET", "/images", Reply(200, {"value": [{"id": "i1", "manifest": {"ID": "mf1"}}]}))
    fake.on("GET", "/images/i1", Reply(200, {"id": "i1"}))
    images = list(client.list_images(manifest_id="mf1", manifest_name="mf", count=10))
    assert images[0].manifest.id == "mf1"  # nested ID normalized too
    assert client.get_image("i1").id == "i1"
    assert fake.requests[0].query["manifestId"] == ["mf1"]
    assert fake.requests[0].query["manifestName"] == ["mf"]


def test_begin_create_service_sends_every_spec_field(fake, client):
    fake.on("POST", "/services", accepted(fake, "o"))
    client.begin_create_service(
        name="svc", image_id="i1", compute_resource={"ID": "local"}, num_replicas=2,
        auto_scaler=None, container_resource_reservation={"cpu": "250m", "memory": "1Gi"},
        data_collection={"storageEnabled": True}, app_insights_enabled=True,
        max_concurrent_requests_per_container=4,
    )
    assert only(fake).body == {
        "name": "svc", "imageId": "i1", "computeResource": {"id": "local"}, "numReplicas": 2,
        "containerResourceReservation": {"cpu": "250m", "memory": "1Gi"},
        "dataCollection": {"storageEnabled": True}, "appInsightsEnabled": True,
        "maxConcurrentRequestsPerContainer": 4,
    }


def test_list_services_sends_every_filter_under_its_own_name(fake, client):
    fake.on("GET", "/services", Reply(200, {"value": [SVC]}))
    services = list(client.list_services(
        service_name="s", model_id="mid", model_name="mname", manifest_id="mfid",
        manifest_name="mfname", image_id="iid", compute_resource_id="local", count=3))
    assert services[0].id == "svc-1" and "ID" not in services[0]
    q = only(fake).query
    assert q == {"api-version": ["2017-09-01-preview"], "serviceName": ["s"], "modelId": ["mid"],
                 "modelName": ["mname"], "manifestId": ["mfid"], "manifestName": ["mfname"],
                 "imageId": ["iid"], "computeResourceId": ["local"], "count": ["3"]}


def test_get_and_update_service(fake, client):
    fake.on("GET", "/services/svc-1", Reply(200, SVC))
    fake.on("PUT", "/services/svc-1", accepted(fake, "o"))
    assert client.get_service("svc-1").name == "iris-svc"
    poller = client.begin_update_service("svc-1", image_id="i2", num_replicas=3,
                                         app_insights_enabled=False)
    put = fake.requests[-1]
    assert put.method == "PUT" and put.body == {"imageId": "i2", "numReplicas": 3,
                                                "appInsightsEnabled": False}
    assert poller.operation_id == "o"


def test_update_with_nothing_to_change_sends_nothing(fake, client):
    with pytest.raises(ValueError, match="Nothing to update"):
        client.begin_update_service("svc-1")
    assert fake.requests == []


def test_delete_service_200_is_true_and_204_is_false(fake, client):
    fake.on("DELETE", "/services/svc-1", Reply(200))
    fake.on("DELETE", "/services/gone", Reply(204))
    assert client.delete_service("svc-1") is True
    assert client.delete_service("gone") is False
    assert [r.method for r in fake.requests] == ["DELETE", "DELETE"]


def test_keys_get_and_regenerate(fake, client):
    keys = {"primaryKey": "PRIMARYSECRET123", "secondaryKey": "SECONDARYSECRET4"}
    fake.on("GET", "/services/svc-1/keys", Reply(200, keys))
    fake.on("POST", "/services/svc-1/regenerateKeys", Reply(200, keys))
    got = client.get_service_keys("svc-1")
    assert got.primaryKey == "PRIMARYSECRET123"
    assert "PRIMARYSECRET123" not in repr(got) and "SECONDARYSECRET4" not in repr(got)
    client.regenerate_service_key("svc-1", "Secondary")
    assert fake.requests[-1].body == {"keyType": "Secondary"}
    with pytest.raises(ValueError, match="Primary"):
        client.regenerate_service_key("svc-1", "primary")
    assert len(fake.requests) == 2


def test_regenerate_falls_back_to_the_older_keys_path(fake, client):
    fake.on("POST", "/services/svc-1/regenerateKeys", Reply(404, raw=b"Not Found",
                                                            headers={"Content-Type": "text/plain"}))
    fake.on("POST", "/services/svc-1/keys", Reply(200, {"primaryKey": "p", "secondaryKey": "s"}))
    assert client.regenerate_service_key("svc-1", "Primary").secondaryKey == "s"
    assert [r.path.rsplit("/", 1)[-1] for r in fake.requests] == ["regenerateKeys", "keys"]


def test_deployments_are_a_bare_array(fake, client):
    fake.on("GET", "/deployments", Reply(200, [{"id": "d1", "serviceName": "s"}]))
    fake.on("GET", "/deployments/d1", Reply(200, {"id": "d1"}))
    assert [d.id for d in client.list_deployments(service_id="svc-1")] == ["d1"]
    assert fake.requests[0].query["serviceId"] == ["svc-1"]
    assert client.get_deployment("d1").id == "d1"


def test_get_operation(fake, client):
    fake.on("GET", "/operations/op-1", Reply(200, {"id": "op-1", "state": "Succeeded",
                                                  "operationType": "Image"}))
    assert client.get_operation("op-1").operationType == "Image"


def test_all_nineteen_operations_exist():
    names = ["register_model", "list_models", "get_model", "register_manifest",
             "list_manifests", "get_manifest", "begin_create_image", "list_images", "get_image",
             "begin_create_service", "list_services", "get_service", "begin_update_service",
             "delete_service", "get_service_keys", "regenerate_service_key", "list_deployments",
             "get_deployment", "get_operation"]
    assert len(names) == 19
    assert all(callable(getattr(ModelManagementClient, n)) for n in names)


def test_the_strict_fake_itself_rejects_a_wrong_field(fake):
    import requests
    answer = requests.post(fake.url("/models") + "?api-version=2017-09-01-preview",
                           json={"name": "x", "url": "u", "mime_type": "m"},
                           headers={"Authorization": "Bearer test-token"})
    assert answer.status_code == 418
    assert any("mime_type is not a field of Model" in v for v in fake.violations)
    fake.violations.clear()
