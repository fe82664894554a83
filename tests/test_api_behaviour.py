"""Paging, polling, retries, error mapping, tokens and secrets of the client."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import urlencode

import pandas as pd
import pytest
from fake_mms import FakeMMS, Recorded, Reply, accepted

from amlmm_magics.api import (
    AuthenticationError,
    BadRequestError,
    ModelManagementClient,
    ModelManagementError,
    OperationFailedError,
    OperationTimeoutError,
    PermissionDeniedError,
    ResourceExistsError,
    ResourceNotFoundError,
    RetryPolicy,
    ServiceError,
    ServiceRequestError,
    ThrottledError,
)
from amlmm_magics.api.auth import AccessToken

FAST = RetryPolicy(total=3, backoff_factor=0.01, backoff_jitter=0.0)


@pytest.fixture
def fake():
    server = FakeMMS().start()
    yield server
    server.stop()
    assert server.violations == [], server.violations


def make_client(fake, credential="test-token", retry=FAST):
    return ModelManagementClient(fake.base_url, "sub-1", "rg-1", "acct-1", credential,
                                 retry=retry)


@pytest.fixture
def client(fake):
    with make_client(fake) as c:
        yield c


# -- paging ---------------------------------------------------------------------------------

def paged_models(fake: FakeMMS, total: int, page: int):
    """Answer /models in pages of ``page`` with absolute nextLinks carrying $skipToken."""

    def answer(rec: Recorded) -> Reply:
        start = int(rec.query.get("$skipToken", ["0"])[0])
        items = [{"id": f"m{i}", "name": "iris", "version": i + 1,
                  "createdAt": f"2026-11-{1 + i % 28:02d}T10:00:00Z",
                  "url": f"http://blob/m{i}?sv=1&sig=SIG{i}", "mimeType": "a/b"}
                 for i in range(start, min(start + page, total))]
        body = {"value": items}
        if start + page < total:
            query = {"api-version": "2017-09-01-preview", "count": str(page),
                     "$skipToken": str(start + page)}
            body["nextLink"] = fake.url("/models") + "?" + urlencode(query)
        return Reply(200, body)

    fake.on("GET", "/models", answer)


def test_iteration_follows_next_links_across_pages(fake, client):
    paged_models(fake, total=7, page=3)
    items = list(client.list_models(count=3))
    assert [m.id for m in items] == [f"m{i}" for i in range(7)]
    assert len(fake.requests) == 3
    assert fake.requests[1].query["$skipToken"] == ["3"]


def test_pages_are_fetched_lazily_and_by_page_exposes_tokens(fake, client):
    paged_models(fake, total=7, page=3)
    pager = client.list_models(count=3)
    assert fake.requests == []
    pages = pager.by_page()
    first = next(pages)
    assert len(first) == 3 and first.continuation_token == "3"
    assert len(fake.requests) == 1
    assert client.list_models(count=3).take(4)[-1].id == "m3"
    assert len(fake.requests) == 3  # take(4) needed two pages


def test_by_page_resumes_from_a_continuation_token(fake, client):
    paged_models(fake, total=7, page=3)
    pages = list(client.list_models(count=3).by_page(continuation_token="6"))
    assert [[m.id for m in p] for p in pages] == [["m6"]]
    assert fake.requests[0].query["$skipToken"] == ["6"]


def test_to_frame_has_chosen_columns_and_dtypes(fake, client):
    paged_models(fake, total=5, page=2)
    frame = client.list_models(count=2).to_frame()
    assert list(frame.columns[:4]) == ["id", "name", "version", "createdAt"]
    assert len(frame) == 5
    assert str(frame["version"].dtype) == "Int64"
    assert isinstance(frame["createdAt"].dtype, pd.DatetimeTZDtype)
    assert frame["createdAt"].iloc[0] == pd.Timestamp("2026-11-01T10:00:00Z")
    assert not frame["url"].str.contains("SIG").any()  # SAS signatures never shown


def test_a_next_link_to_another_host_is_refused(fake, client):
    fake.on("GET", "/models", Reply(200, {"value": [{"id": "a"}],
                                          "nextLink": "http://evil.example/steal?x=1"}))
    with pytest.raises(ModelManagementError, match="another host"):
        list(client.list_models())


def test_a_next_link_without_api_version_gets_one(fake, client):
    fake.on("GET", "/models", lambda rec: Reply(200, {
        "value": [{"id": "x"}],
        **({} if "$skipToken" in rec.query else
           {"nextLink": fake.url("/models") + "?%24skipToken=1"})}))
    assert len(list(client.list_models())) == 2
    assert fake.requests[1].query["api-version"] == ["2017-09-01-preview"]


# -- polling --------------------------------------------------------------------------------

def script_operation(fake: FakeMMS, states: list[str], *, error=None, retry_after=None,
                     location="/images/img-1"):
    fake.on("POST", "/images", accepted(fake, "op-9"))
    replies = []
    for state in states:
        body = {"id": "op-9", "state": state, "operationType": "Image"}
        if state in ("Succeeded",):
            body["resourceLocation"] = fake.account_path + location
        if state in ("Failed", "Cancelled") and error:
            body["error"] = error
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        replies.append(Reply(200, body, headers))
    fake.on("GET", "/operations/op-9", *replies)
    fake.on("GET", "/images/img-1", Reply(200, {"id": "img-1", "name": "img",
                                                "creationState": "Succeeded"}))


def begin_image(client):
    return client.begin_create_image(name="img", manifest_id="mf", compute_resource_id="local")


def test_poller_goes_through_states_and_result_follows_resource_location(fake, client):
    script_operation(fake, ["NotStarted", "Running", "Running", "Succeeded"])
    poller = begin_image(client)
    seen = []
    poller.add_progress_callback(lambda p, op: seen.append(op["state"]))
    image = poller.result(timeout=30)
    assert image.id == "img-1"
    assert seen == ["NotStarted", "Running", "Running", "Succeeded"]
    assert poller.done() and poller.state == "Succeeded"
    assert fake.requests[-1].path.endswith("/images/img-1")
    assert len(fake.calls("GET", "/operations/op-9")) == 4  # no poll after the end


def test_failed_operation_raises_with_the_operations_error(fake, client):
    error = {"code": "DriverFailed", "message": "init() raised KeyError: 'x'",
             "details": [{"code": "Log", "message": "see build log"}]}
    script_operation(fake, ["Running", "Failed"], error=error)
    with pytest.raises(OperationFailedError) as info:
        begin_image(client).result(timeout=30)
    exc = info.value
    assert exc.code == "DriverFailed" and exc.state == "Failed" and exc.operation_id == "op-9"
    assert str(exc) == ("DriverFailed: Image operation 'img' (op-9) failed: init() raised "
                        "KeyError: 'x' (Log: see build log)")


def test_cancelled_operation_raises(fake, client):
    script_operation(fake, ["Cancelled"], error={"code": "Cancelled", "message": "stopped"})
    with pytest.raises(OperationFailedError, match="cancelled: stopped"):
        begin_image(client).result()


def test_wait_times_out_and_result_says_the_operation_goes_on(fake, client):
    script_operation(fake, ["Running"])
    poller = begin_image(client)
    assert poller.wait(timeout=0.3, interval=0.05) is False
    with pytest.raises(OperationTimeoutError, match="goes on in the service") as info:
        poller.result(timeout=0.1)
    assert info.value.operation_id == "op-9"


def test_poller_honours_retry_after_of_the_operation(fake, client):
    script_operation(fake, ["Running", "Succeeded"], retry_after=1)
    begin_image(client).result(timeout=30)
    polls = fake.calls("GET", "/operations/op-9")
    assert len(polls) == 2
    assert polls[1].at - polls[0].at >= 0.95  # waited as told, not the 0.2 s default


def test_stop_waiting_returns_wait_early(fake, client):
    script_operation(fake, ["Running"])
    poller = begin_image(client)
    threading.Timer(0.3, poller.stop_waiting).start()
    started = time.monotonic()
    assert poller.wait(timeout=20, interval=5) is False
    assert time.monotonic() - started < 10


# -- retries --------------------------------------------------------------------------------

def test_get_is_retried_on_429_with_retry_after_and_on_503(fake, client):
    fake.on("GET", "/models/m1", Reply(429, {"code": "TooMany", "message": "slow"},
                                       {"Retry-After": "1"}),
            Reply(503, {"code": "Busy", "message": "b"}), Reply(200, {"id": "m1"}))
    assert client.get_model("m1").id == "m1"
    assert len(fake.requests) == 3


def test_post_is_retried_on_429_and_503_with_retry_after(fake, client):
    fake.on("POST", "/models",
            Reply(429, {"code": "T", "message": "m"}, {"Retry-After": "0"}),
            Reply(503, {"code": "B", "message": "m"}, {"Retry-After": "0"}),
            Reply(200, {"id": "m"}))
    client.register_model(name="n", url="http://u", mime_type="a/b")
    assert len(fake.requests) == 3


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_post_is_not_retried_when_the_service_may_have_acted(fake, client, status):
    fake.on("POST", "/models", Reply(status, {"code": "Oops", "message": "broken"}))
    with pytest.raises(ServiceError, match=f"{status} Oops: broken"):
        client.register_model(name="n", url="http://u", mime_type="a/b")
    assert len(fake.requests) == 1


def test_a_dropped_connection_retries_a_get_but_not_a_post(fake, client):
    fake.on("GET", "/models/m1", Reply(drop=True), Reply(200, {"id": "m1"}))
    assert client.get_model("m1").id == "m1"
    assert len(fake.calls("GET")) == 2
    fake.on("POST", "/models", Reply(drop=True), Reply(200, {"id": "m1"}))
    with pytest.raises(ServiceRequestError, match="got no answer"):
        client.register_model(name="n", url="http://u", mime_type="a/b")
    assert len(fake.calls("POST")) == 1


def test_a_refused_connection_retries_even_a_post():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fake = FakeMMS()
    fake.on("POST", "/models", Reply(200, {"id": "m1"}))
    timer = threading.Timer(0.6, fake.start, kwargs={"port": port})
    timer.start()
    client = ModelManagementClient(f"http://127.0.0.1:{port}", "sub-1", "rg-1", "acct-1",
                                   "test-token", retry=RetryPolicy(total=6, backoff_factor=0.2,
                                                                   backoff_jitter=0.0))
    try:
        assert client.register_model(name="n", url="http://u", mime_type="a/b").id == "m1"
        assert len(fake.requests) == 1
    finally:
        timer.join()
        fake.stop()
    assert fake.violations == []


def test_connection_refused_gives_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = ModelManagementClient(f"http://127.0.0.1:{port}", "s", "r", "a", "t",
                                   retry=RetryPolicy(total=1, backoff_factor=0.01))
    with pytest.raises(ServiceRequestError) as info:
        client.get_model("m")
    assert str(info.value).endswith("got no answer: connection refused (is the service running?)")
    assert str(info.value).startswith(f"GET http://127.0.0.1:{port}/api/subscriptions/s/")


# -- errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "cls"), [
    (400, BadRequestError), (401, AuthenticationError), (403, PermissionDeniedError),
    (404, ResourceNotFoundError), (409, ResourceExistsError), (429, ThrottledError),
])
def test_status_codes_map_to_typed_errors(fake, status, cls):
    client = make_client(fake, retry=RetryPolicy(total=0))
    fake.on("GET", "/models/m1", Reply(status, {"code": "Code", "message": "what happened",
                                                "statusCode": status},
                                       {"x-ms-request-id": "req-42"}))
    with pytest.raises(cls) as info:
        client.get_model("m1")
    exc = info.value
    assert (exc.status_code, exc.code, exc.message, exc.request_id) == (
        status, "Code", "what happened", "req-42")
    assert str(exc) == f"{status} Code: what happened [request id req-42]"
    assert "\n" not in str(exc)


def test_error_details_are_part_of_the_one_line(fake, client):
    fake.on("POST", "/models", Reply(400, {"code": "BadArgument", "message": "Invalid model",
                                           "details": [{"code": "Name", "message": "too long"}]}))
    with pytest.raises(BadRequestError) as info:
        client.register_model(name="n", url="http://u", mime_type="a/b")
    assert str(info.value) == "400 BadArgument: Invalid model (Name: too long)"
    assert info.value.details == [{"code": "Name", "message": "too long"}]


def test_a_non_json_error_body_still_gives_a_clear_message(fake, client):
    html = b"<html><body><h1>502 Bad Gateway</h1><p>upstream died</p></body></html>"
    fake.on("GET", "/models/m1", Reply(502, raw=html, headers={"Content-Type": "text/html"}))
    with pytest.raises(ServiceError) as info:
        client.get_model("m1")
    assert str(info.value) == "502 BadGateway: 502 Bad Gateway upstream died"


def test_an_empty_error_body_names_the_request(fake, client):
    fake.on("GET", "/models/m1", Reply(404, raw=b""))
    with pytest.raises(ResourceNotFoundError) as info:
        client.get_model("m1")
    assert str(info.value) == ("404 NotFound: Not Found (no error details in the answer to GET "
                               "/api/subscriptions/sub-1/resourceGroups/rg-1/accounts/acct-1"
                               "/models/m1)")


# -- credentials and secrets ----------------------------------------------------------------

class CountingCredential:
    def __init__(self, lifetime: int) -> None:
        self.lifetime = lifetime
        self.calls = 0

    def get_token(self, *scopes, **kwargs):
        self.calls += 1
        self.scopes = scopes
        return AccessToken(f"token-{self.calls}", int(time.time()) + self.lifetime)


def test_a_credential_token_is_cached_until_near_expiry(fake):
    fake.token = "token-1"
    fake.on("GET", "/models/m1", Reply(200, {"id": "m1"}))
    cred = CountingCredential(lifetime=3600)
    client = make_client(fake, cred)
    for _ in range(3):
        client.get_model("m1")
    assert cred.calls == 1
    assert cred.scopes == ("https://management.core.windows.net/.default",)


def test_a_token_near_expiry_is_refreshed_before_use(fake):
    cred = CountingCredential(lifetime=60)  # inside the refresh margin: refresh every time
    fake.on("GET", "/models/m1", Reply(200, {"id": "m1"}))
    client = make_client(fake, cred)
    fake.token = "token-1"
    client.get_model("m1")
    fake.token = "token-2"
    client.get_model("m1")
    assert cred.calls == 2


def test_a_401_asks_the_credential_again_once(fake):
    cred = CountingCredential(lifetime=3600)
    client = make_client(fake, cred)
    fake.token = "token-2"  # the service rotated: token-1 is refused
    fake.on("GET", "/models/m1", Reply(200, {"id": "m1"}))
    assert client.get_model("m1").id == "m1"
    assert cred.calls == 2 and fake.auth_failures == 1
    fake.token = "token-9"  # refused again: one more ask, then the error
    with pytest.raises(AuthenticationError, match="401 Unauthorized: bad token"):
        client.get_model("m1")
    assert cred.calls == 3 and fake.auth_failures == 3


def test_a_static_token_is_not_asked_again_after_401(fake):
    fake.token = "other"
    with pytest.raises(AuthenticationError):
        make_client(fake, "test-token").get_model("m1")
    assert len(fake.requests) == 1


def test_static_token_comes_from_the_environment(fake, monkeypatch):
    monkeypatch.setenv("AMLMM_ACCESS_TOKEN", "test-token")
    fake.on("GET", "/models/m1", Reply(200, {"id": "m1"}))
    assert make_client(fake, None).get_model("m1").id == "m1"


def test_secrets_never_appear_in_reprs_errors_or_logs(fake, caplog):
    secret = "test-token"
    caplog.set_level(logging.DEBUG)
    client = make_client(fake, secret)
    fake.on("GET", "/services/s/keys", Reply(200, {"primaryKey": "PK-0123456789",
                                                   "secondaryKey": "SK-0123456789"}))
    fake.on("GET", "/models/m1", Reply(404, {"code": "NotFound",
                                             "message": f"Bearer {secret} was used"}))
    fake.on("GET", "/models", Reply(200, {"value": [{"id": "m", "url": "http://b/x?sv=1&sig=S1G"}]}))
    keys = client.get_service_keys("s")
    with pytest.raises(ResourceNotFoundError) as info:
        client.get_model("m1")
    frame = client.list_models().to_frame()
    shown = " ".join([repr(client), repr(client.credential), repr(keys), str(keys.redacted()),
                      str(info.value), repr(info.value), frame.to_string(), caplog.text])
    for leaked in (secret, "PK-0123456789", "SK-0123456789", "S1G"):
        assert leaked not in shown, leaked
    assert "GET" in caplog.text  # the client does log its requests


def test_importing_the_package_stays_light():
    code = ("import sys, amlmm_magics, amlmm_magics.api; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pandas', 'ipywidgets', 'azure', 'fastapi', 'uvicorn', 'IPython')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
