"""Every operation of the embedded backend through the client: answers, paging, filters,
validation, unknown IDs, auth and api-version."""

from __future__ import annotations

import uuid

import pytest
import requests
from flows import build_image, iris_image, register_iris, register_manifest, unique, upload

from amlmm_magics.api import (
    BadRequestError,
    ModelManagementClient,
    ResourceExistsError,
    ResourceNotFoundError,
)
from amlmm_magics.connection import LOCAL_ACCOUNT

DRIVER = "def run(x):\n    return x\n"


@pytest.fixture(scope="module")
def built(local, tmp_path_factory):
    """One image (and its model and manifest) reused by the tests that only read."""
    image, model, _ = iris_image(local, tmp_path_factory.mktemp("iris"))
    return image, model


@pytest.fixture(scope="module")
def raw(local):
    """Requests straight to the backend, for what the client would not send."""
    client = local.client
    session = requests.Session()
    session.headers["Authorization"] = client._transport.tokens.get()

    def call(method: str, path: str, *, token: str | None = "default", version: str | None =
             "2017-09-01-preview", **kw):
        headers = dict(kw.pop("headers", {}))
        if token == "default":
            headers["Authorization"] = f"Bearer {client._transport.tokens.get()}"
        elif token is not None:
            headers["Authorization"] = f"Bearer {token}"
        params = dict(kw.pop("params", {}))
        if version is not None:
            params["api-version"] = version
        return requests.request(method, client.account_url + path, params=params,
                                headers=headers, timeout=30, **kw)
    return call


# -- models ---------------------------------------------------------------------------------

def test_model_versions_count_up_per_name_and_answers_have_spec_fields(local):
    name = unique("m")
    url = upload(local, b"weights", "w.bin")
    first = local.client.register_model(name=name, url=url, mime_type="application/x-bin",
                                        tags=["t=1"], description="d", unpack=False)
    second = local.client.register_model(name=name, url=url, mime_type="application/x-bin")
    assert (first.version, second.version) == (1, 2)
    assert set(first) == {"id", "name", "version", "createdAt", "mimeType", "url", "tags",
                          "description", "unpack"}
    assert first.createdAt.endswith("Z")
    assert local.client.get_model(first.id) == first


def test_model_listing_filters_by_name_and_tag(local):
    name = unique("filt")
    url = upload(local, b"w", "w.bin")
    a = local.client.register_model(name=name, url=url, mime_type="a/b", tags=["stage=dev"])
    b = local.client.register_model(name=name, url=url, mime_type="a/b", tags=["stage=prod"])
    assert [m.id for m in local.client.list_models(name=name)] == [b.id, a.id]  # newest first
    assert [m.id for m in local.client.list_models(name=name, tag="stage=prod")] == [b.id]
    assert list(local.client.list_models(tag=f"none-{uuid.uuid4().hex}")) == []


def test_paging_follows_absolute_next_links_with_skip_tokens(local):
    name = unique("page")
    url = upload(local, b"w", "w.bin")
    ids = [local.client.register_model(name=name, url=url, mime_type="a/b").id
           for _ in range(7)]
    pages = list(local.client.list_models(name=name, count=3).by_page())
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [m.id for p in pages for m in p] == ids[::-1]
    assert pages[0].next_link.startswith(local.client.base_url + "/api/subscriptions/")
    assert "%24skipToken=" in pages[0].next_link or "$skipToken=" in pages[0].next_link
    resumed = list(local.client.list_models(name=name, count=3).by_page(
        continuation_token=pages[1].continuation_token))
    assert [m.id for p in resumed for m in p] == ids[:1]


@pytest.mark.parametrize(("params", "message"), [
    ({"count": "0"}, "count must be a whole number from 1 to 1000, not '0'."),
    ({"count": "1001"}, "count must be a whole number from 1 to 1000, not '1001'."),
    ({"count": "ten"}, "count must be a whole number from 1 to 1000, not 'ten'."),
    ({"count": "²"}, "count must be a whole number from 1 to 1000, not '²'."),
    ({"$skipToken": "garbage"}, "$skipToken is not one this service handed out."),
])
def test_bad_paging_parameters_are_400(raw, params, message):
    answer = raw("GET", "/models", params=params)
    assert answer.status_code == 400
    assert answer.json()["message"] == message


# -- validation -------------------------------------------------------------------------------

GOOD_MODEL = {"name": "ok", "mimeType": "application/octet-stream", "url": "http://x.example/m"}


@pytest.mark.parametrize(("body", "message"), [
    ({}, "Invalid request: name is required (and 2 more problem(s))."),
    ({**GOOD_MODEL, "name": "bad name"},
     "Invalid request: name has an invalid format: use letters, digits, '.', '_' and '-', "
     "starting with a letter or digit."),
    ({**GOOD_MODEL, "mime_type": "x/y"}, "Invalid request: mime_type is not a field of this "
                                          "request."),
    ({**GOOD_MODEL, "url": "ftp://x/y"}, "Invalid request: url: must be an http(s) URL."),
    ({**GOOD_MODEL, "tags": "a=1"}, "Invalid request: tags: input should be a valid list."),
    ({**GOOD_MODEL, "unpack": "yes"}, "Invalid request: unpack: input should be a valid "
                                      "boolean."),
    ({**GOOD_MODEL, "mimeType": "octet"}, "Invalid request: mimeType has an invalid format: a "
                                          "MIME type such as application/octet-stream."),
])
def test_invalid_model_bodies_are_one_clear_400(raw, body, message):
    answer = raw("POST", "/models", json=body)
    assert answer.status_code == 400
    error = answer.json()
    assert (error["code"], error["message"], error["statusCode"]) == ("BadRequest", message, 400)


def test_read_only_fields_and_upper_case_spellings_are_accepted(raw):
    body = {"name": unique("ro"), "mimeType": "a/b", "URL": "http://x.example/m",
            "id": "ignored", "version": 99, "createdAt": "2017-01-01T00:00:00Z"}
    answer = raw("POST", "/models", json=body)
    assert answer.status_code == 200
    made = answer.json()
    assert made["url"] == "http://x.example/m" and made["version"] == 1
    assert made["id"] != "ignored"


def test_bad_json_is_400_not_422(raw):
    answer = raw("POST", "/models", data=b"{not json",
                 headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and answer.json()["code"] == "InvalidJson"


def test_a_local_blob_url_must_exist(local):
    url = upload(local, b"w", "w.bin")
    missing = url.replace("/w.bin?", "/nothing.bin?")
    with pytest.raises(BadRequestError, match=r"no blob .* is there; upload it first"):
        local.client.register_model(name=unique("m"), url=missing, mime_type="a/b")
    forged = url.split("sig=")[0] + "sig=AAAA"
    with pytest.raises(BadRequestError, match="SAS does not allow reading it"):
        local.client.register_model(name=unique("m"), url=forged, mime_type="a/b")


def test_manifest_needs_registered_models_and_its_driver_among_assets(local):
    with pytest.raises(BadRequestError, match="not registered: nope"):
        register_manifest(local, DRIVER, ["nope"])
    url = upload(local, DRIVER.encode(), "score.py")
    with pytest.raises(BadRequestError, match="driverProgram 'main' must be the id of one"):
        local.client.register_manifest(
            name=unique("mf"), driver_program="main", assets=[{"id": "driver", "url": url}],
            target_runtime={"runtimeType": "Python", "properties": {}})


def test_manifest_listing_filters(local, built):
    image, model = built
    manifest = image.manifest
    by_model = [m.id for m in local.client.list_manifests(model_id=model.id)]
    assert by_model == [manifest.id]
    by_name = list(local.client.list_manifests(manifest_name=manifest.name))
    assert [m.id for m in by_name] == [manifest.id]
    assert local.client.get_manifest(manifest.id).driverProgram == "driver"


def test_image_listing_filters_and_answers(local, built):
    image, _ = built
    assert [i.id for i in local.client.list_images(manifest_id=image.manifest.id)] == [image.id]
    assert [i.id for i in local.client.list_images(manifest_name=image.manifest.name)] == [
        image.id]
    got = local.client.get_image(image.id)
    assert got.creationState == "Succeeded" and got.imageType == "Docker"
    assert got.computeResourceId == "local" and got.manifest.id == image.manifest.id
    operation = local.client.list_images(manifest_id=image.manifest.id).take(1)[0]
    blob_endpoint = local.storage_sas_url.split("/amlmmlocal/")[0]  # the blob server's own port
    assert blob_endpoint != local.client.base_url
    assert operation.imageBuildLogUri.startswith(blob_endpoint + "/amlmmlocal/logs/")


def test_image_of_an_unknown_manifest_or_compute_is_refused(local, built):
    image, _ = built
    with pytest.raises(ResourceNotFoundError, match="Manifest 'nope' was not found"):
        local.client.begin_create_image(name="x", manifest_id="nope",
                                        compute_resource_id="local")
    with pytest.raises(BadRequestError, match=r"Unknown compute resource 'mars'; this account "
                                              r"has: local\."):
        local.client.begin_create_image(name="x", manifest_id=image.manifest.id,
                                        compute_resource_id="mars")


# -- services ---------------------------------------------------------------------------------

def test_service_life_cycle_answers_and_filters(local, built):
    image, model = built
    name = unique("svc")
    poller = local.client.begin_create_service(
        name=name, image_id=image.id, compute_resource={"id": "local"},
        container_resource_reservation={"cpu": "250m", "memory": "512Mi"},
        max_concurrent_requests_per_container=8)
    assert poller.status() in ("NotStarted", "Running", "Succeeded")
    service = poller.result(timeout=180)
    operation = local.client.get_operation(poller.operation_id)
    assert operation.operationType == "Service" and operation.state == "Succeeded"
    assert operation.resourceLocation.endswith(f"/services/{service.id}")
    assert service.containerResourceReservation == {"cpu": "250m", "memory": "512Mi"}
    assert service.maxConcurrentRequestsPerContainer == 8
    for kwargs in ({"service_name": name}, {"model_id": model.id}, {"model_name": model.name},
                   {"manifest_id": image.manifest.id}, {"manifest_name": image.manifest.name},
                   {"image_id": image.id}, {"compute_resource_id": "local"}):
        assert service.id in [s.id for s in local.client.list_services(**kwargs)], kwargs
    assert list(local.client.list_services(model_name=model.id)) == []  # names, not IDs
    with pytest.raises(ResourceExistsError, match=f"A service named '{name}' already exists"):
        local.client.begin_create_service(name=name, image_id=image.id,
                                          compute_resource={"id": "local"})
    deployment = local.client.list_deployments(service_id=service.id).take(1)[0]
    assert local.client.get_deployment(deployment.id).serviceName == name
    assert local.client.delete_service(service.id) is True


def test_regenerate_keys_both_paths_and_both_keys(local, built, raw):
    image, _ = built
    service = local.client.begin_create_service(
        name=unique("keys"), image_id=image.id,
        compute_resource={"id": "local"}).result(timeout=180)
    before = local.client.get_service_keys(service.id)
    legacy = raw("POST", f"/services/{service.id}/keys", json={"keyType": "Secondary"})
    assert legacy.status_code == 200
    assert legacy.json()["primaryKey"] == before.primaryKey
    assert legacy.json()["secondaryKey"] != before.secondaryKey
    both = raw("POST", f"/services/{service.id}/regenerateKeys", json={})
    assert both.status_code == 200
    assert both.json()["primaryKey"] != before.primaryKey
    assert both.json()["secondaryKey"] != legacy.json()["secondaryKey"]
    bad = raw("POST", f"/services/{service.id}/regenerateKeys", json={"keyType": "Tertiary"})
    assert bad.status_code == 400
    local.client.delete_service(service.id)


@pytest.mark.parametrize(("settings", "message"), [
    ({"num_replicas": 0}, "numReplicas must be at least 1 (a service with no replica answers "
                          "nothing)."),
    ({"num_replicas": 2, "auto_scaler": {"autoscaleEnabled": True, "maxReplicas": 3}},
     "Invalid request: numReplicas cannot be given when the autoscaler is enabled."),
    ({"auto_scaler": {"minReplicas": 3, "maxReplicas": 2}},
     "Invalid request: autoScaler: minReplicas must not exceed maxReplicas."),
    ({"container_resource_reservation": {"cpu": "lots"}},
     "Invalid request: containerResourceReservation.cpu has an invalid format: a Kubernetes "
     "CPU quantity such as 250m."),
    ({"max_concurrent_requests_per_container": 0},
     "Invalid request: maxConcurrentRequestsPerContainer: input should be greater than or "
     "equal to 1."),
])
def test_invalid_service_settings_are_refused_before_anything_starts(local, built, settings,
                                                                     message):
    image, _ = built
    name = unique("bad")
    with pytest.raises(BadRequestError) as info:
        local.client.begin_create_service(name=name, image_id=image.id,
                                          compute_resource={"id": "local"}, **settings)
    assert info.value.message == message
    assert list(local.client.list_services(service_name=name)) == []


def test_a_service_name_must_be_a_dns_label(local, built):
    image, _ = built
    with pytest.raises(BadRequestError, match="a service name is a DNS label"):
        local.client.begin_create_service(name="Iris_Svc", image_id=image.id,
                                          compute_resource={"id": "local"})


def test_a_failed_image_cannot_be_deployed(local, tmp_path):
    model, _ = register_iris(local, tmp_path)
    manifest = register_manifest(local, "def init():\n    1/0\ndef run(x):\n    return x\n",
                                 [model.id])
    with pytest.raises(Exception, match="ZeroDivisionError"):
        build_image(local, manifest.id)
    failed = local.client.list_images(manifest_id=manifest.id).take(1)[0]
    with pytest.raises(BadRequestError, match="its creationState is Failed"):
        local.client.begin_create_service(name=unique("s"), image_id=failed.id,
                                          compute_resource={"id": "local"})


def test_update_of_nothing_or_of_an_unknown_service(local, raw):
    answer = raw("PUT", "/services/nope", json={"numReplicas": 1})
    assert answer.status_code == 404 and answer.json()["code"] == "NotFound"


@pytest.mark.parametrize("path", ["/models/nope", "/manifests/nope", "/images/nope",
                                  "/services/nope", "/services/nope/keys",
                                  "/deployments/nope", "/operations/nope",
                                  "/services/nope/logs", "/services/nope/collectedData"])
def test_unknown_ids_are_404_error_responses(raw, path):
    answer = raw("GET", path)
    assert answer.status_code == 404
    assert answer.json()["code"] == "NotFound" and "'nope' was not found" in answer.json()[
        "message"]


def test_delete_of_an_unknown_service_is_204(raw):
    assert raw("DELETE", "/services/nope").status_code == 204


# -- auth, api-version, routes --------------------------------------------------------------

@pytest.mark.parametrize("token", [None, "wrong"])
def test_every_api_route_needs_the_token(raw, token):
    for method, path in [("GET", "/models"), ("POST", "/models"), ("GET", "/images/x"),
                         ("DELETE", "/services/x"), ("GET", "/operations/x")]:
        answer = raw(method, path, token=token, json={})
        assert answer.status_code == 401, (method, path)
        assert answer.headers["WWW-Authenticate"] == "Bearer"
        assert answer.json()["code"] == "Unauthorized"


@pytest.mark.parametrize(("version", "message"), [
    (None, "Invalid request: api-version is required."),
    ("2018-01-01", "Invalid request: api-version: input should be '2017-09-01-preview'."),
])
def test_every_api_route_needs_the_api_version(raw, version, message):
    answer = raw("GET", "/models", version=version)
    assert answer.status_code == 400 and answer.json()["message"] == message


def test_unknown_routes_and_methods_are_error_responses(raw):
    assert raw("GET", "/unicorns").json()["code"] == "RouteNotFound"
    answer = raw("PATCH", "/models")
    assert answer.status_code == 405 and answer.json()["code"] == "MethodNotAllowed"


def test_accounts_are_separate_namespaces(local):
    other = ModelManagementClient(local.client.base_url, "sub-2", "rg-2", "acct-2",
                                  local.client._transport.tokens.get())
    url = upload(local, b"w", "w.bin")
    mine = local.client.register_model(name=unique("ns"), url=url, mime_type="a/b")
    with pytest.raises(ResourceNotFoundError):
        other.get_model(mine.id)
    assert LOCAL_ACCOUNT == ("local", "local", "local")


def test_swagger_json_is_published_without_auth(local):
    doc = requests.get(local.client.base_url + "/swagger.json", timeout=10).json()
    paths = doc["paths"]
    assert any(p.endswith("/services/{id}/regenerateKeys") for p in paths)
    logs = next(v for p, v in paths.items() if p.endswith("/services/{id}/logs"))
    assert "Extension" in logs["get"]["description"]


@pytest.mark.parametrize("path", ["/models/%2F", "/models/", "/services/%2F/keys"])
def test_a_stray_slash_is_no_route_not_a_redirect(raw, path):
    answer = raw("GET", path, allow_redirects=False)
    assert answer.status_code == 404 and answer.json()["code"] == "RouteNotFound"
