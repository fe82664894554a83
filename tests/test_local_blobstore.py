"""The embedded blob store, through the real azure-storage-blob SDK and raw HTTP."""

from __future__ import annotations

import base64
import errno
import gzip
import hashlib
import http.client
import io
import mmap
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, quote

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import (
    BlobBlock,
    BlobClient,
    BlobSasPermissions,
    BlobType,
    BlockState,
    ContainerClient,
    ContainerSasPermissions,
    ContentSettings,
    generate_blob_sas,
    generate_container_sas,
)

from amlmm_magics.api import blob as api_blob
from amlmm_magics.block_ids import block_offset, offset_block_id
from amlmm_magics.local import blob_server as blob_server_module
from amlmm_magics.local.blob_server import BlobServer, BlobService
from amlmm_magics.local.blobstore import (
    WRITE_BATCH,
    BlobStore,
    BlobStoreError,
    BlockRef,
    decode_block_id,
)
from amlmm_magics.local.blobstore import ContentSettings as StoredSettings
from amlmm_magics.local.directio import ALIGNMENT, AlignedBuffers, DirectRegion
from amlmm_magics.local.sas import SasError, generate_sas, string_to_sign, verify_sas

ACCOUNT = "amlmmlocal"
KEY = bytes(range(64))
KEY_B64 = base64.b64encode(KEY).decode()
# A second mount of the same store with tiny body limits, to reach 413 cheaply.
SMALL_ACCOUNT = "smalllimits"
SMALL_LIMIT = 1024
KiB = 1024
MiB = 1024 * KiB


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def in_an_hour() -> datetime:
    return datetime.now(UTC) + timedelta(hours=1)


# ----------------------------------------------------------------------------- the server


@dataclass
class Served:
    port: int
    store: BlobStore
    root: Path
    buffering_port: int  # a server that buffers bodies: the control of the memory test

    @property
    def account_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    def sas(self, container: str = "models", blob: str | None = None, **kwargs) -> str:
        kwargs.setdefault("permission", "racw")
        kwargs.setdefault("expiry", in_an_hour())
        return generate_sas(KEY, ACCOUNT, container, blob, **kwargs)

    def blob(self, name: str, container: str = "models", sas: str | None = None, **kw):
        sas = sas if sas is not None else self.sas(container)
        url = f"{self.account_url}/{container}/{quote(name)}?{sas}"
        return BlobClient.from_blob_url(url, **kw)

    def container(self, container: str = "models", sas: str | None = None) -> ContainerClient:
        sas = sas if sas is not None else self.sas(container)
        return ContainerClient.from_container_url(f"{self.account_url}/{container}?{sas}")

    def raw(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One request as sent, without the SDK's URL handling; (status, headers, body)."""
        conn = self.connection()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            return _answer(conn)
        finally:
            conn.close()

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)


def _answer(conn: http.client.HTTPConnection) -> tuple[int, dict[str, str], bytes]:
    """The response to the request just sent on ``conn``: (status, headers, body)."""
    response = conn.getresponse()
    body = response.read()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


class _BufferingHandler(BaseHTTPRequestHandler):
    """What a server that buffers bodies does: the control of the memory test."""

    protocol_version = "HTTP/1.1"

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        answer = str(len(body)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def blob_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("blobstore")
    store = BlobStore(root / "blobs")
    store.create_container("models")
    store.create_container("other")
    small = BlobService(
        store, SMALL_ACCOUNT, KEY, max_block_bytes=SMALL_LIMIT, max_put_bytes=SMALL_LIMIT
    )
    server = BlobServer({ACCOUNT: BlobService(store, ACCOUNT, KEY), SMALL_ACCOUNT: small})
    buffering = ThreadingHTTPServer(("127.0.0.1", 0), _BufferingHandler)
    thread = threading.Thread(target=buffering.serve_forever, daemon=True)
    server.start()
    thread.start()
    try:
        yield Served(server.server_address[1], store, root, buffering.server_address[1])
    finally:
        server.stop()
        buffering.shutdown()
        buffering.server_close()


# ----------------------------------------------------------------------------- SAS


def test_a_sas_of_the_sdk_verifies_and_matches_ours():
    expiry = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
    start = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    theirs = generate_container_sas(
        ACCOUNT,
        "models",
        account_key=KEY_B64,
        permission=ContainerSasPermissions(read=True, write=True, create=True),
        expiry=expiry,
        start=start,
    )
    ours = generate_sas(KEY, ACCOUNT, "models", permission="rcw", expiry=expiry, start=start)
    # Same fields, same string-to-sign, hence the same signature.
    assert dict(parse_qsl(ours)) == dict(parse_qsl(theirs))
    moment = datetime(2030, 6, 1, tzinfo=UTC)
    for token in (theirs, ours):
        verify_sas(KEY, ACCOUNT, "models", "a/b.bin", dict(parse_qsl(token)), "r", now=moment)


def test_an_sdk_blob_sas_with_header_overrides_verifies_for_that_blob_only():
    token = generate_blob_sas(
        ACCOUNT,
        "models",
        "dir/model.pkl",
        account_key=KEY_B64,
        permission=BlobSasPermissions(read=True),
        expiry=in_an_hour(),
        content_disposition="attachment; filename=model.pkl",
        content_type="application/x-pickle",
    )
    query = dict(parse_qsl(token))
    verify_sas(KEY, ACCOUNT, "models", "dir/model.pkl", query, "r")
    with pytest.raises(SasError) as info:
        verify_sas(KEY, ACCOUNT, "models", "dir/other.pkl", query, "r")
    assert (info.value.status, info.value.code) == (403, "AuthenticationFailed")
    with pytest.raises(SasError):
        verify_sas(KEY, ACCOUNT, "models", None, query, "r")  # not for container requests


def test_our_sas_has_the_documented_shape():
    token = generate_sas(KEY, ACCOUNT, "models", "x", permission="r", expiry=in_an_hour())
    query = dict(parse_qsl(token))
    assert list(query) == ["sv", "se", "sr", "sp", "sig"]
    assert query["sv"] == "2026-10-06" and query["sr"] == "b" and query["sp"] == "r"
    datetime.strptime(query["se"], "%Y-%m-%dT%H:%M:%SZ")
    text = string_to_sign(ACCOUNT, "models", "x", query)
    assert text.split("\n")[3] == f"/blob/{ACCOUNT}/models/x"
    assert len(text.split("\n")) == 16


def _query(**kwargs) -> dict[str, str]:
    kwargs.setdefault("permission", "r")
    kwargs.setdefault("expiry", in_an_hour())
    return dict(parse_qsl(generate_sas(KEY, ACCOUNT, "models", **kwargs)))


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda q: q.pop("sig"), "AuthenticationFailed"),
        (lambda q: q.update(sig=q["sig"][:-4] + "AAA="), "AuthenticationFailed"),
        (lambda q: q.update(sp="rw"), "AuthenticationFailed"),  # widened after signing
        (lambda q: q.update(se="2099-01-01T00:00:00Z"), "AuthenticationFailed"),
        (lambda q: q.update(sig="ü" * 44), "AuthenticationFailed"),
        (lambda q: q.update(si="policy"), "AuthenticationFailed"),
        (lambda q: q.pop("sv"), "AuthenticationFailed"),
    ],
)
def test_a_tampered_sas_is_refused(change, code):
    query = _query()
    change(query)
    with pytest.raises(SasError) as info:
        verify_sas(KEY, ACCOUNT, "models", "a", query, "r")
    assert (info.value.status, info.value.code) == (403, code)


def test_sas_times_are_enforced():
    now = datetime(2030, 1, 1, 12, tzinfo=UTC)
    expired = _query(expiry=now - timedelta(seconds=1))
    future = _query(start=now + timedelta(minutes=5), expiry=now + timedelta(hours=1))
    for query, words in ((expired, "expired"), (future, "not valid yet")):
        with pytest.raises(SasError) as info:
            verify_sas(KEY, ACCOUNT, "models", "a", query, "r", now=now)
        assert info.value.code == "AuthenticationFailed" and words in info.value.message
    verify_sas(KEY, ACCOUNT, "models", "a", future, "r", now=now + timedelta(minutes=6))


def test_sas_permissions_are_enforced():
    query = _query(permission="rc")
    verify_sas(KEY, ACCOUNT, "models", "a", query, "wc")  # create counts for writing
    with pytest.raises(SasError) as info:
        verify_sas(KEY, ACCOUNT, "models", "a", query, "w")
    assert (info.value.status, info.value.code) == (403, "AuthorizationPermissionMismatch")
    with pytest.raises(ValueError):
        generate_sas(KEY, ACCOUNT, "models", permission="rq", expiry=in_an_hour())


def test_sas_protocol_and_ip_restrictions_are_enforced():
    query = dict(parse_qsl(generate_container_sas(
        ACCOUNT, "models", account_key=KEY_B64, permission="r", expiry=in_an_hour(),
        ip="10.0.0.1-10.0.0.9", protocol="https",
    )))  # fmt: skip
    with pytest.raises(SasError) as info:
        verify_sas(KEY, ACCOUNT, "models", "a", query, "r", client_ip="10.0.0.5")
    assert info.value.code == "AuthorizationProtocolMismatch"
    verify_sas(KEY, ACCOUNT, "models", "a", query, "r", client_ip="10.0.0.5", scheme="https")
    with pytest.raises(SasError) as info:
        verify_sas(KEY, ACCOUNT, "models", "a", query, "r", client_ip="127.0.0.1", scheme="https")
    assert info.value.code == "AuthorizationSourceIPMismatch"


def test_sas_errors_do_not_carry_the_signature():
    query = _query()
    query["sp"] = "rw"
    with pytest.raises(SasError) as info:
        verify_sas(KEY, ACCOUNT, "models", "a", query, "r")
    assert query["sig"] not in repr(info.value) and query["sig"] not in str(info.value)


# ----------------------------------------------------------------------------- round trips


def test_a_small_blob_round_trips(blob_server):
    blob = blob_server.blob("iris/1/model.pkl")
    result = blob.upload_blob(b"tiny model")
    assert result["etag"].startswith('"0x') and result["last_modified"] is not None
    assert result["content_md5"] == hashlib.md5(b"tiny model").digest()
    downloaded = blob.download_blob()
    assert downloaded.readall() == b"tiny model"
    assert downloaded.properties.etag == result["etag"]
    assert downloaded.properties.blob_type == BlobType.BLOCKBLOB
    assert blob.exists()
    path = blob_server.store.path_of("models", "iris/1/model.pkl")
    assert path.read_bytes() == b"tiny model"
    assert blob_server.root in path.parents


def test_a_multi_block_upload_round_trips(blob_server):
    data = os.urandom(3 * MiB + 12345)
    blob = blob_server.blob(
        "big/model.bin",
        max_block_size=256 * KiB,
        max_single_put_size=256 * KiB,
        max_chunk_get_size=512 * KiB,
        max_single_get_size=512 * KiB,
    )
    blob.upload_blob(io.BytesIO(data), length=len(data), max_concurrency=2)
    # It went through Put Block / Put Block List, not one Put Blob.
    properties = blob_server.store.properties("models", "big/model.bin")
    assert properties.blocks_file is not None and properties.size == len(data)
    assert sha256(blob.download_blob(max_concurrency=2).readall()) == sha256(data)
    sink = io.BytesIO()
    assert blob.download_blob(max_concurrency=2).readinto(sink) == len(data)
    assert sha256(sink.getvalue()) == sha256(data)


def test_amlmm_uploads_in_parallel_commit_without_a_copy(blob_server, tmp_path, monkeypatch):
    monkeypatch.setattr(api_blob, "BLOCK_SIZE", 256 * KiB)
    monkeypatch.setattr(api_blob, "SINGLE_PUT_SIZE", 256 * KiB)

    def no_copy(*args, **kwargs):
        raise AssertionError("the blocks were assembled by copy")

    monkeypatch.setattr(blob_server.store, "_assemble", no_copy)
    data = os.urandom(3 * MiB + 12345)
    path = tmp_path / "model.bin"
    path.write_bytes(data)
    container_url = f"{blob_server.account_url}/models?{blob_server.sas()}"
    for round_ in range(3):  # each time the 13 blocks arrive in another order
        api_blob.upload_blob(container_url, path, f"parallel/{round_}.bin", max_concurrency=4)
        stored = blob_server.store.path_of("models", f"parallel/{round_}.bin")
        assert sha256(stored.read_bytes()) == sha256(data)


def test_transactional_md5_is_checked_both_ways(blob_server):
    data = os.urandom(700 * KiB)
    blob = blob_server.blob(
        "checked.bin",
        max_block_size=256 * KiB,
        max_single_put_size=256 * KiB,
        max_chunk_get_size=256 * KiB,
        max_single_get_size=256 * KiB,
    )
    blob.upload_blob(data, validate_content=True)
    assert blob.download_blob(validate_content=True).readall() == data


def test_content_settings_and_metadata_round_trip(blob_server):
    data = gzip.compress(b"def run(x):\n    return x\n")
    settings = ContentSettings(
        content_type="text/x-python",
        content_encoding="gzip",
        content_language="en",
        content_disposition="attachment; filename=score.py",
        cache_control="no-cache",
        content_md5=bytearray(hashlib.md5(data).digest()),
    )
    blob = blob_server.blob("driver/score.py")
    blob.upload_blob(data, content_settings=settings, metadata={"origin": "notebook"})
    properties = blob.get_blob_properties()
    got = properties.content_settings
    assert (got.content_type, got.content_encoding, got.content_language) == (
        "text/x-python",
        "gzip",
        "en",
    )
    assert got.content_disposition == "attachment; filename=score.py"
    assert got.cache_control == "no-cache"
    assert bytes(got.content_md5) == hashlib.md5(data).digest()
    assert properties.metadata == {"origin": "notebook"}
    assert properties.size == len(data)
    # The SDK decodes by Content-Encoding, as with Azure; raw bytes when asked not to.
    assert blob.download_blob().readall() == b"def run(x):\n    return x\n"
    assert blob.download_blob(decompress=False).readall() == data


def test_a_sas_can_override_response_headers(blob_server):
    blob_server.blob("report.csv").upload_blob(b"a,b\n1,2\n", overwrite=True)
    token = generate_blob_sas(
        ACCOUNT,
        "models",
        "report.csv",
        account_key=KEY_B64,
        permission="r",
        expiry=in_an_hour(),
        content_type="text/csv",
    )
    properties = blob_server.blob("report.csv", sas=token).get_blob_properties()
    assert properties.content_settings.content_type == "text/csv"


def test_a_zero_byte_blob_round_trips(blob_server):
    blob = blob_server.blob("empty.txt")
    blob.upload_blob(b"")
    downloaded = blob.download_blob()
    assert downloaded.readall() == b""
    assert downloaded.properties.size == 0
    conn = blob_server.connection()
    try:
        for _ in range(2):  # the connection serves on after an empty body
            conn.request("GET", f"/{ACCOUNT}/models/empty.txt?{blob_server.sas()}")
            status, headers, body = _answer(conn)
            assert (status, headers["content-length"], body) == (200, "0", b"")
    finally:
        conn.close()
    status, headers, _body = blob_server.raw(
        "GET",
        f"/{ACCOUNT}/models/empty.txt?{blob_server.sas()}",
        headers={"x-ms-range": "bytes=0-99"},
    )
    assert status == 416 and headers["x-ms-error-code"] == "InvalidRange"


def test_an_existing_blob_is_only_overwritten_when_asked(blob_server):
    blob = blob_server.blob("once.bin")
    blob.upload_blob(b"first")
    with pytest.raises(ResourceExistsError) as info:
        blob.upload_blob(b"second")
    assert info.value.error_code == "BlobAlreadyExists"
    assert blob.download_blob().readall() == b"first"
    # The same through blocks (Put Block List with If-None-Match: *).
    with pytest.raises(ResourceExistsError):
        blob.upload_blob(io.BytesIO(b"x" * 600 * KiB), length=600 * KiB)
    blob.upload_blob(b"second", overwrite=True)
    assert blob.download_blob().readall() == b"second"


def test_committed_blocks_can_be_reused(blob_server):
    blob = blob_server.blob("assembled.bin")
    ids = [base64.b64encode(name.encode()).decode() for name in ("b1", "b2", "b3")]
    blob.stage_block(ids[0], b"one-")
    blob.stage_block(ids[1], b"two-")
    blob.commit_block_list([BlobBlock(ids[0]), BlobBlock(ids[1])])
    assert blob.download_blob().readall() == b"one-two-"
    blob.stage_block(ids[2], b"three")
    blob.commit_block_list(
        [
            BlobBlock(ids[1], state=BlockState.COMMITTED),
            BlobBlock(ids[2], state=BlockState.UNCOMMITTED),
        ]
    )
    assert blob.download_blob().readall() == b"two-three"
    with pytest.raises(HttpResponseError) as info:  # uncommitted blocks went with the commit
        blob.commit_block_list([BlobBlock(ids[0], state=BlockState.UNCOMMITTED)])
    assert (info.value.status_code, info.value.error_code) == (400, "InvalidBlockList")


def test_reads_honour_ranges_and_etags(blob_server):
    data = bytes(range(256)) * 40
    blob = blob_server.blob("ranged.bin")
    etag = blob.upload_blob(data)["etag"]
    assert blob.download_blob(offset=100, length=50).readall() == data[100:150]
    path = f"/{ACCOUNT}/models/ranged.bin?{blob_server.sas()}"
    status, headers, body = blob_server.raw("GET", path, headers={"Range": "bytes=10-19"})
    assert status == 206 and body == data[10:20]
    assert headers["content-range"] == f"bytes 10-19/{len(data)}"
    assert headers["content-length"] == "10" and headers["accept-ranges"] == "bytes"
    assert headers["etag"] == etag and headers["x-ms-blob-type"] == "BlockBlob"
    status, headers, body = blob_server.raw(
        "GET", path, headers={"x-ms-range": "bytes=20-", "Range": "bytes=0-0"}
    )
    assert status == 206 and body == data[20:]
    status, headers, _ = blob_server.raw(
        "GET", path, headers={"x-ms-range": "bytes=0-9", "If-Match": '"0xDEAD"'}
    )
    assert (status, headers["x-ms-error-code"]) == (412, "ConditionNotMet")
    with pytest.raises(ResourceModifiedError):
        blob.download_blob(etag='"0xDEAD"', match_condition=_if_match())
    status, _, body = blob_server.raw("GET", path, headers={"If-None-Match": etag})
    assert status == 304 and body == b""


def _if_match():
    from azure.core import MatchConditions

    return MatchConditions.IfNotModified


def test_responses_carry_the_headers_the_sdk_reads(blob_server):
    blob_server.blob("headers.bin").upload_blob(b"12345", overwrite=True)
    path = f"/{ACCOUNT}/models/headers.bin?{blob_server.sas()}"
    status, headers, body = blob_server.raw(
        "HEAD", path, headers={"x-ms-version": "2025-11-05", "x-ms-client-request-id": "abc"}
    )
    assert status == 200 and body == b""
    assert headers["content-length"] == "5"
    assert headers["x-ms-version"] == "2025-11-05" and headers["x-ms-client-request-id"] == "abc"
    assert headers["x-ms-request-id"] and headers["date"]
    assert headers["last-modified"].endswith(" GMT") and headers["etag"].startswith('"')
    assert headers["content-md5"] == base64.b64encode(hashlib.md5(b"12345").digest()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", blob_server.port, timeout=30)
    try:
        conn.request("HEAD", path)
        names = [name.lower() for name, _ in conn.getresponse().getheaders()]
    finally:
        conn.close()
    assert names.count("date") == 1  # the server's, not a second one from the app


# ----------------------------------------------------------------------------- refusals


def test_an_expired_sas_is_refused(blob_server):
    now = datetime.now(UTC)
    sas = blob_server.sas(start=now - timedelta(hours=2), expiry=now - timedelta(hours=1))
    with pytest.raises(ClientAuthenticationError) as info:
        blob_server.blob("nope.bin", sas=sas).upload_blob(b"x")
    assert (info.value.status_code, info.value.error_code) == (403, "AuthenticationFailed")


def test_a_tampered_signature_is_refused(blob_server):
    query = dict(parse_qsl(blob_server.sas(permission="r")))
    query["sp"] = "rw"  # a reader trying to grant itself writing
    sas = "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
    with pytest.raises(ClientAuthenticationError) as info:
        blob_server.blob("nope.bin", sas=sas).upload_blob(b"x")
    assert info.value.error_code == "AuthenticationFailed"
    assert not blob_server.store.exists("models", "nope.bin")


def test_a_read_only_sas_cannot_write(blob_server):
    blob = blob_server.blob("readonly.bin", sas=blob_server.sas(permission="r"))
    with pytest.raises(HttpResponseError) as info:
        blob.upload_blob(b"x")
    assert (info.value.status_code, info.value.error_code) == (
        403,
        "AuthorizationPermissionMismatch",
    )


def test_a_write_only_sas_cannot_read(blob_server):
    blob_server.blob("secret.bin").upload_blob(b"s", overwrite=True)
    blob = blob_server.blob("secret.bin", sas=blob_server.sas(permission="w"))
    with pytest.raises(HttpResponseError) as info:
        blob.download_blob()
    assert info.value.error_code == "AuthorizationPermissionMismatch"


def test_a_create_only_sas_creates_but_does_not_overwrite(blob_server):
    sas = blob_server.sas(permission="c")
    blob = blob_server.blob("created.bin", sas=sas)
    blob.upload_blob(b"new")
    with pytest.raises(HttpResponseError) as info:
        blob.upload_blob(b"again", overwrite=True)
    assert info.value.error_code == "AuthorizationPermissionMismatch"
    assert blob_server.store.path_of("models", "created.bin").read_bytes() == b"new"


def test_a_sas_for_another_container_is_refused(blob_server):
    other = blob_server.sas(container="other")
    with pytest.raises(ClientAuthenticationError) as info:
        blob_server.container("models", sas=other).upload_blob("stolen.bin", b"x")
    assert info.value.error_code == "AuthenticationFailed"
    # ... and a blob SAS only for its blob.
    only_a = blob_server.sas(blob="a.bin")
    blob_server.blob("a.bin", sas=only_a).upload_blob(b"a", overwrite=True)
    with pytest.raises(ClientAuthenticationError):
        blob_server.blob("b.bin", sas=only_a).upload_blob(b"b")


def test_missing_blobs_and_containers_are_not_found(blob_server):
    blob = blob_server.blob("missing.bin")
    with pytest.raises(ResourceNotFoundError) as info:
        blob.download_blob()
    assert info.value.error_code == "BlobNotFound"
    assert not blob.exists()
    with pytest.raises(ResourceNotFoundError) as info:
        blob_server.blob("x.bin", container="nowhere").upload_blob(b"x")
    assert info.value.error_code == "ContainerNotFound"


def test_blob_names_cannot_escape_the_store(blob_server):
    sas = blob_server.sas()
    for raw_name in ("a/%2E%2E/%2E%2E/%2E%2E/escape", "../../escape", "a/..%5C..%5Cescape"):
        status, headers, body = blob_server.raw(
            "PUT",
            f"/{ACCOUNT}/models/{raw_name}?{sas}",
            body=b"x",
            headers={"x-ms-blob-type": "BlockBlob"},
        )
        assert status == 400, raw_name
        assert headers["x-ms-error-code"] == "InvalidResourceName"
        assert b"<Code>InvalidResourceName</Code>" in body
    # Through the SDK the URL's dot segments collapse before sending: still no blob made.
    with pytest.raises(HttpResponseError):
        BlobClient(blob_server.account_url, "models", "a/../../escape", credential=sas).upload_blob(
            b"x"
        )
    assert not any(p.name == "escape" for p in blob_server.root.parent.rglob("*"))
    for name in ("../escape", "/etc/passwd", "a\\..\\b", "a\x00b", "a//b", ""):
        with pytest.raises(BlobStoreError) as info:
            blob_server.store.path_of("models", name)
        assert info.value.code == "InvalidResourceName"


def test_errors_are_azure_xml(blob_server):
    sas = blob_server.sas()
    status, headers, body = blob_server.raw("GET", f"/{ACCOUNT}/models/missing.bin?{sas}")
    assert status == 404 and headers["x-ms-error-code"] == "BlobNotFound"
    assert body.startswith(b'<?xml version="1.0" encoding="utf-8"?><Error><Code>BlobNotFound')
    assert headers["content-type"].startswith("application/xml")
    status, headers, body = blob_server.raw("HEAD", f"/{ACCOUNT}/models/missing.bin?{sas}")
    assert (status, body, headers["x-ms-error-code"]) == (404, b"", "BlobNotFound")


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status", "code"),
    [
        ("DELETE", "/models/a.bin", {}, None, 405, "UnsupportedHttpVerb"),
        ("POST", "/models/a.bin", {}, b"", 405, "UnsupportedHttpVerb"),
        ("GET", "/models", {}, None, 400, "InvalidUri"),
        ("PUT", "/models?restype=container", {}, b"", 400, "InvalidUri"),
        ("GET", "/", {}, None, 400, "InvalidUri"),
        ("PUT", "/models/a.bin?comp=metadata", {}, b"", 400, "InvalidQueryParameterValue"),
        ("PUT", "/models/a.bin", {}, b"x", 400, "MissingRequiredHeader"),
        ("PUT", "/models/a.bin", {"x-ms-blob-type": "PageBlob"}, b"", 400, "InvalidHeaderValue"),
        ("PUT", "/models/a.bin?comp=block", {}, b"x", 400, "MissingRequiredQueryParameter"),
        ("PUT", "/models/a.bin?comp=block&blockid=%21%21", {}, b"x", 400,
         "InvalidQueryParameterValue"),
        ("PUT", "/models/a.bin?comp=blocklist", {}, b"<BlockList><Latest>QUFB</Latest>"
         b"</BlockList>", 400, "InvalidBlockList"),
        ("PUT", "/models/a.bin?comp=blocklist", {}, b"<nope", 400, "InvalidXmlDocument"),
        ("PUT", "/models/a.bin?comp=blocklist", {}, b"<BlockList><Latest>!!</Latest></BlockList>",
         400, "InvalidBlockId"),
        ("PUT", "/models/a.bin?comp=blocklist", {}, b'<!DOCTYPE x [<!ENTITY a "b">]><BlockList/>',
         400, "InvalidXmlDocument"),
        ("GET", "/models/", {}, None, 400, "InvalidUri"),
        ("PUT", "/models/a.bin", {"x-ms-blob-type": "BlockBlob", "Content-MD5": "AAAA"}, b"x",
         400, "Md5Mismatch"),
        ("PUT", "/models/a.bin", {"x-ms-blob-type": "BlockBlob", "x-ms-copy-source": "http://x"},
         b"", 400, "UnsupportedHeader"),
        ("PUT", "/models/a.bin", {"x-ms-blob-type": "BlockBlob", "x-ms-lease-id": "l"}, b"",
         412, "LeaseNotPresentWithBlobOperation"),
        ("GET", "/models/ranged.bin", {"x-ms-range": "bytes=0-1,4-5"}, None, 400,
         "InvalidHeaderValue"),
        ("GET", "/models/ranged.bin", {"x-ms-range": "bytes=999999-"}, None, 416, "InvalidRange"),
        ("GET", "/models/ranged.bin?snapshot=2020-01-01", {}, None, 400,
         "UnsupportedQueryParameter"),
    ],
)  # fmt: skip
def test_unsupported_or_invalid_requests_get_clear_errors(
    blob_server, method, path, headers, body, status, code
):
    blob_server.blob("ranged.bin").upload_blob(b"0123456789", overwrite=True)
    sep = "&" if "?" in path else "?"
    answer, got_headers, got_body = blob_server.raw(
        method, f"/{ACCOUNT}{path}{sep}{blob_server.sas()}", body=body, headers=headers
    )
    assert (answer, got_headers.get("x-ms-error-code")) == (status, code)
    if method != "HEAD" and status != 304:
        assert f"<Code>{code}</Code>".encode() in got_body


def test_bodies_above_the_limit_are_refused(blob_server):
    sas = generate_sas(KEY, SMALL_ACCOUNT, "models", permission="rw", expiry=in_an_hour())
    url = f"http://127.0.0.1:{blob_server.port}/{SMALL_ACCOUNT}/models/big.bin?{sas}"
    blob = BlobClient.from_blob_url(url)
    blob.upload_blob(b"x" * SMALL_LIMIT, overwrite=True)  # at the limit: fine
    with pytest.raises(HttpResponseError) as info:
        blob.upload_blob(b"x" * (SMALL_LIMIT + 1), overwrite=True)
    assert (info.value.status_code, info.value.error_code) == (413, "RequestBodyTooLarge")
    with pytest.raises(HttpResponseError) as info:
        blob.stage_block(base64.b64encode(b"1").decode(), b"x" * (SMALL_LIMIT + 1))
    assert (info.value.status_code, info.value.error_code) == (413, "RequestBodyTooLarge")


def test_the_account_key_stays_out_of_reprs(blob_server, tmp_path):
    service = BlobService(BlobStore(tmp_path), ACCOUNT, KEY)
    server = BlobServer({ACCOUNT: service})
    try:
        texts = [repr(service), repr(server), repr(server.services), repr(vars(server))]
    finally:
        server.server_close()
    for text in texts:
        assert repr(KEY) not in text and KEY_B64 not in text


def test_a_refused_body_is_read_and_the_connection_serves_on(blob_server):
    data = os.urandom(MiB)
    blob_server.blob("kept.bin").upload_blob(data, overwrite=True)
    read_only = blob_server.sas(permission="r")
    block = quote(offset_block_id(0), safe="")
    conn = blob_server.connection()
    try:
        conn.request("PUT", f"/{ACCOUNT}/models/refused.bin?comp=block&blockid={block}&"
                     f"{read_only}", body=os.urandom(8 * MiB))
        status, headers, _ = _answer(conn)
        assert (status, headers["x-ms-error-code"]) == (403, "AuthorizationPermissionMismatch")
        assert headers.get("connection") != "close"
        conn.request("GET", f"/{ACCOUNT}/models/kept.bin?{read_only}")  # the same connection
        status, _, body = _answer(conn)
        assert (status, body) == (200, data)
    finally:
        conn.close()


def test_a_refused_body_past_the_drain_limit_ends_the_connection(blob_server, monkeypatch):
    monkeypatch.setattr(blob_server_module, "DRAIN_LIMIT", 1024)
    conn = blob_server.connection()
    try:
        conn.request("PUT", f"/{ACCOUNT}/models/x.bin?{blob_server.sas(permission='r')}",
                     body=b"x" * 4096, headers={"x-ms-blob-type": "BlockBlob"})
        status, headers, _ = _answer(conn)
        assert (status, headers["connection"]) == (403, "close")
    finally:
        conn.close()


def test_a_client_gone_mid_body_stages_nothing_and_its_retry_lands(blob_server):
    sas = blob_server.sas()
    block = offset_block_id(0)
    data = os.urandom(4 * MiB)
    with socket.create_connection(("127.0.0.1", blob_server.port)) as sock:
        sock.sendall(f"PUT /{ACCOUNT}/models/gone.bin?comp=block&blockid={quote(block, safe='')}"
                     f"&{sas} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n"
                     .encode() + data[:MiB])
    blob = blob_server.blob("gone.bin")
    with pytest.raises(HttpResponseError) as info:
        blob.commit_block_list([BlobBlock(block)])
    assert info.value.error_code == "InvalidBlockList"  # the half block was never staged
    blob.stage_block(block, data)
    blob.commit_block_list([BlobBlock(block)])
    assert blob.download_blob().readall() == data


@pytest.mark.parametrize(
    ("request_text", "status", "code"),
    [
        ("FOO /{account}/models/a.bin HTTP/1.1\r\n\r\n", 501, "UnsupportedHttpVerb"),
        ("GET /{long} HTTP/1.1\r\n\r\n", 414, "InvalidUri"),
        ("GET /{account}/models/a b.bin HTTP/1.1\r\n\r\n", 400, "InvalidInput"),
        ("PUT /{account}/models/a.bin?{sas} HTTP/1.1\r\nx-ms-blob-type: BlockBlob\r\n"
         "Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", 411,
         "MissingContentLengthHeader"),
        ("PUT /{account}/models/a.bin?{sas} HTTP/1.1\r\nx-ms-blob-type: BlockBlob\r\n"
         "Transfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n1\r\nx\r\n0\r\n\r\n", 411,
         "MissingContentLengthHeader"),
        ("GET /elsewhere/models/a.bin?{sas} HTTP/1.1\r\n\r\n", 400, "InvalidUri"),
    ],
)  # fmt: skip
def test_what_http_itself_refuses_is_answered_in_azure_xml(blob_server, request_text, status,
                                                            code):
    text = request_text.format(account=ACCOUNT, sas=blob_server.sas(), long="x" * 70_000)
    with socket.create_connection(("127.0.0.1", blob_server.port), timeout=30) as sock:
        sock.sendall(text.encode())
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
    assert (response.status, response.getheader("x-ms-error-code")) == (status, code)
    assert body.startswith(b'<?xml version="1.0" encoding="utf-8"?><Error><Code>')
    assert response.getheader("content-type") == "application/xml"


# ----------------------------------------------------------------------------- the store


def _body(store: BlobStore, data: bytes):
    body = store.new_body()
    body.write(data)
    body.finish()
    return body


def _block_id(name: str) -> str:
    return base64.b64encode(name.encode()).decode()


def _stage(store: BlobStore, blob: str, name: str, data: bytes) -> Path:
    """Stage ``data`` as block ``name`` of models/``blob``; answer its staging file."""
    writer = store.reserve_block("models", blob, len(data), block_id=_block_id(name))
    writer.write(data)
    writer.finish()
    store.stage_block("models", blob, _block_id(name), writer)
    return writer.staging.path


def _commit(store: BlobStore, blob: str, *names: str, condition=None):
    blocks = [BlockRef("Latest", _block_id(name)) for name in names]
    extra = (None, condition) if condition else ()
    return store.commit_block_list("models", blob, blocks, StoredSettings(), *extra)


@pytest.fixture()
def store(tmp_path) -> BlobStore:
    store = BlobStore(tmp_path)
    store.create_container("models")
    return store


def test_blocks_committed_in_arrival_order_become_the_blob_without_a_copy(store):
    staging = _stage(store, "m.bin", "a", b"first-")
    assert _stage(store, "m.bin", "b", b"second-") == staging
    _stage(store, "m.bin", "c", b"third")
    inode = staging.stat().st_ino
    properties = _commit(store, "m.bin", "a", "b", "c")
    committed = store.path_of("models", "m.bin")
    assert committed.read_bytes() == b"first-second-third" and properties.size == 18
    assert committed.stat().st_ino == inode  # the staging file itself, linked
    assert not staging.parent.exists()  # nothing left staged
    assert list((store.root / ".tmp").iterdir()) == []


@pytest.mark.parametrize(
    "names, expected",
    [
        (("b", "a"), b"two-one-"),  # another order
        (("b",), b"two-"),  # not from the start
        (("a",), b"one-"),  # not to the end
        (("a", "a", "b"), b"one-one-two-"),  # a block twice
    ],
)
def test_other_block_lists_are_assembled_by_copy(store, names, expected):
    staging = _stage(store, "m.bin", "a", b"one-")
    _stage(store, "m.bin", "b", b"two-")
    inode = staging.stat().st_ino
    _commit(store, "m.bin", *names)
    committed = store.path_of("models", "m.bin")
    assert committed.read_bytes() == expected
    assert committed.stat().st_ino != inode
    assert list((store.root / ".tmp").iterdir()) == []


def test_blocks_named_by_offset_land_in_place_whatever_order_they_arrive_in(store):
    # What amlmm's uploader does with parallel requests (block_ids).
    names = [offset_block_id(offset) for offset in (0, 4, 8)]
    staging = _stage(store, "m.bin", names[2], b"three")
    _stage(store, "m.bin", names[0], b"one-")
    _stage(store, "m.bin", names[1], b"two-")
    inode = staging.stat().st_ino
    _commit(store, "m.bin", *names)
    committed = store.path_of("models", "m.bin")
    assert committed.read_bytes() == b"one-two-three"
    assert committed.stat().st_ino == inode


def test_a_block_whose_named_region_is_taken_goes_after_the_others(store):
    first = store.reserve_block("models", "m.bin", 4, block_id=_block_id(offset_block_id(0)))
    # Same place, other id (a client not keeping to the convention): not on top of the first.
    second = store.reserve_block("models", "m.bin", 6, block_id=_block_id(offset_block_id(2)))
    assert (first.offset, second.offset) == (0, 4)
    for writer, data, name in ((first, b"abcd", "x"), (second, b"efghij", "y")):
        writer.write(data)
        writer.finish()
        store.stage_block("models", "m.bin", _block_id(name), writer)
    _commit(store, "m.bin", "y", "x")
    assert store.path_of("models", "m.bin").read_bytes() == b"efghijabcd"


def test_a_block_naming_an_offset_far_past_the_others_goes_after_them(store):
    far = offset_block_id(10**19)
    staging = _stage(store, "m.bin", far, b"tail")
    assert staging.stat().st_size == 4
    _commit(store, "m.bin", far)
    assert store.path_of("models", "m.bin").read_bytes() == b"tail"


def test_a_failed_block_gives_its_named_region_back_for_the_retry(store):
    name = offset_block_id(0)
    failed = store.reserve_block("models", "m.bin", 4, block_id=_block_id(name))
    failed.write(b"ab")
    failed.discard()
    staging = _stage(store, "m.bin", name, b"abcd")
    _stage(store, "m.bin", offset_block_id(4), b"efg")
    inode = staging.stat().st_ino
    _commit(store, "m.bin", name, offset_block_id(4))
    committed = store.path_of("models", "m.bin")
    assert committed.read_bytes() == b"abcdefg" and committed.stat().st_ino == inode


def test_offset_block_ids_survive_the_wire_and_other_ids_name_no_offset():
    wire = _block_id(offset_block_id(16 * MiB))  # the SDK base64-encodes ids
    assert block_offset(decode_block_id(wire)) == 16 * MiB
    assert len(offset_block_id(0)) == len(offset_block_id(10**19))  # one length per blob
    assert block_offset(b"00000000000000000000000000000000") is None
    assert block_offset(b"amlmm-offset-12") is None
    with pytest.raises(ValueError):
        offset_block_id(-1)


def _skip_without_o_direct(folder: Path) -> None:
    (folder / "probe").touch()
    probe = DirectRegion.open(folder / "probe", 0, AlignedBuffers(ALIGNMENT, keep=0), -1)
    if probe is None:
        pytest.skip("this file system refuses O_DIRECT")
    probe.close()


def test_large_aligned_blocks_go_to_disk_around_the_page_cache(store, tmp_path):
    _skip_without_o_direct(tmp_path)
    data = os.urandom(2 * WRITE_BATCH + ALIGNMENT + 123)  # whole buffers, then a ragged end
    name = offset_block_id(0)
    writer = store.reserve_block("models", "m.bin", len(data), block_id=_block_id(name))
    assert writer._direct is not None
    for start in range(0, len(data), 300_007):  # chunks that straddle the buffer's edges
        writer.write_chunks([data[start : start + 300_007]])
    writer.finish()
    store.stage_block("models", "m.bin", _block_id(name), writer)
    small = store.reserve_block("models", "m.bin", 10, block_id=_block_id("s"))
    assert small._direct is None  # small, and not aligned either
    small.discard()
    _commit(store, "m.bin", name)
    assert store.path_of("models", "m.bin").read_bytes() == data


def test_a_received_block_is_read_straight_into_the_aligned_buffer_it_is_written_from(
    store, tmp_path
):
    _skip_without_o_direct(tmp_path)
    data = os.urandom(2 * WRITE_BATCH + ALIGNMENT + 123)
    source = io.BytesIO(data)
    targets = []

    def read_into(view: memoryview) -> int:
        targets.append(view.obj)
        return source.readinto(view[:300_007])  # reads that straddle the buffer's edges

    writer = store.reserve_block("models", "r.bin", len(data), block_id=_block_id("r"))
    writer.receive(read_into, len(data))
    writer.finish()
    store.stage_block("models", "r.bin", _block_id("r"), writer)
    _commit(store, "r.bin", "r")
    assert store.path_of("models", "r.bin").read_bytes() == data
    assert targets and all(isinstance(target, mmap.mmap) for target in targets)


def test_a_received_body_lands_whole_whatever_the_read_sizes(store):
    data = os.urandom(WRITE_BATCH + 12_345)
    source = io.BytesIO(data)
    body = store.new_body()
    body.receive(lambda view: source.readinto(view[:65_537]), len(data))
    body.finish()
    store.put_blob("models", "b.bin", body, StoredSettings())
    assert store.path_of("models", "b.bin").read_bytes() == data
    assert base64.b64decode(body.md5) == hashlib.md5(data).digest()


def test_blocks_are_buffered_where_the_file_system_refuses_o_direct(store, monkeypatch):
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    data = os.urandom(WRITE_BATCH + 5)
    staging = _stage(store, "m.bin", "a", data)
    assert store._direct_supported is False
    _commit(store, "m.bin", "a")
    assert store.path_of("models", "m.bin").read_bytes() == data
    assert not staging.exists()


def test_a_refused_direct_write_turns_direct_writes_off(store, direct_writes_refused):
    data = os.urandom(WRITE_BATCH + 5)
    _stage(store, "m.bin", "a", data)
    assert store._direct_supported is False
    _commit(store, "m.bin", "a")
    assert store.path_of("models", "m.bin").read_bytes() == data


def test_a_block_staged_again_replaces_the_earlier_one(store):
    _stage(store, "m.bin", "a", b"old-")
    _stage(store, "m.bin", "b", b"two")
    _stage(store, "m.bin", "a", b"new-")
    _commit(store, "m.bin", "a", "b")
    assert store.path_of("models", "m.bin").read_bytes() == b"new-two"


def test_a_block_still_arriving_keeps_the_commit_off_its_staging_file(store):
    staging = _stage(store, "m.bin", "a", b"done")
    arriving = store.reserve_block("models", "m.bin", 5)
    arriving.write(b"ha")
    _commit(store, "m.bin", "a")  # by copy: the staging file is still being written
    committed = store.path_of("models", "m.bin")
    assert committed.read_bytes() == b"done"
    assert committed.stat().st_ino != os.fstat(arriving._fd).st_ino
    arriving.write(b"lf")
    arriving.write(b"!")
    arriving.finish()
    with pytest.raises(BlobStoreError) as info:  # its fellow blocks went with the commit
        store.stage_block("models", "m.bin", _block_id("b"), arriving)
    assert (info.value.status, info.value.code) == (409, "BlockListDiscarded")
    assert store.path_of("models", "m.bin").read_bytes() == b"done"
    assert not staging.exists()


def test_a_failed_block_leaves_a_hole_that_no_list_reaches(store):
    _stage(store, "m.bin", "a", b"one-")
    failed = store.reserve_block("models", "m.bin", 100)
    failed.write(b"partial")
    failed.discard()
    _stage(store, "m.bin", "c", b"three")
    _commit(store, "m.bin", "a", "c")
    assert store.path_of("models", "m.bin").read_bytes() == b"one-three"


def test_a_block_cannot_grow_past_its_reservation(store):
    writer = store.reserve_block("models", "m.bin", 3)
    with pytest.raises(BlobStoreError) as info:
        writer.write(b"four")
    assert info.value.code == "InvalidHeaderValue"
    writer.discard()
    short = store.reserve_block("models", "m.bin", 3)
    short.write(b"ab")
    short.finish()
    with pytest.raises(BlobStoreError):
        store.stage_block("models", "m.bin", _block_id("s"), short)
    with pytest.raises(BlobStoreError) as info:
        _commit(store, "m.bin", "s")
    assert info.value.code == "InvalidBlockList"


def test_a_refused_commit_of_the_staging_file_leaves_the_blocks_staged(store):
    def refuse(current):
        raise BlobStoreError(412, "ConditionNotMet", "no")

    _stage(store, "m.bin", "a", b"one-")
    _stage(store, "m.bin", "b", b"two")
    with pytest.raises(BlobStoreError):
        _commit(store, "m.bin", "a", "b", condition=refuse)
    assert not store.exists("models", "m.bin")
    assert [p.suffix for p in (store.root / "models").iterdir()] == []
    _stage(store, "m.bin", "c", b"!")  # a new block meanwhile goes to a new staging file
    _commit(store, "m.bin", "a", "b")
    assert store.path_of("models", "m.bin").read_bytes() == b"one-two"


def test_blocks_staged_before_a_restart_can_be_committed_after_it(store):
    _stage(store, "m.bin", "a", b"before-")
    restarted = BlobStore(store.root)
    _stage(restarted, "m.bin", "b", b"after")
    _commit(restarted, "m.bin", "a", "b")
    assert restarted.path_of("models", "m.bin").read_bytes() == b"before-after"


def test_a_refused_commit_leaves_the_old_blob_and_no_debris(tmp_path):
    store = BlobStore(tmp_path)
    store.create_container("models")
    store.put_blob("models", "m.bin", _body(store, b"old"), StoredSettings())

    def refuse(current):
        assert current is not None and current.size == 3
        raise BlobStoreError(412, "ConditionNotMet", "no")

    for commit in (
        lambda: store.put_blob("models", "m.bin", _body(store, b"new"), StoredSettings(),
                               condition=refuse),
        lambda: _stage_and_commit(store, refuse),
    ):  # fmt: skip
        with pytest.raises(BlobStoreError):
            commit()
        assert store.path_of("models", "m.bin").read_bytes() == b"old"
        assert len(list((tmp_path / "models").iterdir())) == 2  # sidecar + data
    assert list((tmp_path / ".tmp").iterdir()) == []


def _stage_and_commit(store: BlobStore, condition) -> None:
    _stage(store, "m.bin", "1", b"new")
    _commit(store, "m.bin", "1", condition=condition)


def test_an_overwrite_keeps_open_readers_on_their_version(tmp_path):
    store = BlobStore(tmp_path)
    store.create_container("models")
    store.put_blob("models", "m.bin", _body(store, b"version one"), StoredSettings())
    properties, handle = store.open_blob("models", "m.bin")
    with handle:
        store.put_blob("models", "m.bin", _body(store, b"version two"), StoredSettings())
        assert handle.read() == b"version one"
    assert store.properties("models", "m.bin").etag != properties.etag
    assert store.path_of("models", "m.bin").read_bytes() == b"version two"
    assert len(list((tmp_path / "models").iterdir())) == 2  # the old version is gone


def test_sweep_removes_stale_leftovers_only(tmp_path):
    store = BlobStore(tmp_path)
    store.create_container("models")
    store.put_blob("models", "kept.bin", _body(store, b"kept"), StoredSettings())
    _stage(store, "never.bin", "1", b"x")
    leftover = store.new_body()
    leftover.write(b"interrupted")
    leftover.finish()
    orphan = tmp_path / "models" / "0123.ABCDEF.data"
    orphan.write_bytes(b"crash debris")
    store.sweep(max_age_seconds=3600)  # nothing is that old yet
    assert leftover.path.exists() and orphan.exists()
    assert list((tmp_path / ".staging").glob("*/*"))
    store.sweep(max_age_seconds=-1)
    assert not leftover.path.exists() and not orphan.exists()
    assert list((tmp_path / ".staging").glob("*/*")) == []  # the never-committed block
    assert store.path_of("models", "kept.bin").read_bytes() == b"kept"


# ----------------------------------------------------------------------------- memory


def _reset_peak_rss() -> int:
    """Reset this process's peak RSS to its current RSS; answer that, in bytes."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pytest.skip("this kernel does not let a process reset its peak RSS")
    return _status_kib("VmHWM") * 1024


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} missing from /proc/self/status")


def _stream_put(port: int, path: str, chunk: bytes, count: int, headers: dict[str, str]) -> int:
    """PUT ``count`` copies of ``chunk`` without ever holding more than one in memory."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.putrequest("PUT", path)
        for name, value in {**headers, "Content-Length": str(len(chunk) * count)}.items():
            conn.putheader(name, value)
        conn.endheaders()
        for _ in range(count):
            conn.send(chunk)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _stream_get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        digest = hashlib.sha256()
        while data := response.read(MiB):
            digest.update(data)
        return response.status, digest.hexdigest()
    finally:
        conn.close()


def test_a_64_mib_blob_streams_through_without_being_buffered(blob_server):
    chunk = os.urandom(MiB)
    count = 64
    digest = hashlib.sha256()
    for _ in range(count):
        digest.update(chunk)
    expected = digest.hexdigest()
    headers = {"x-ms-blob-type": "BlockBlob", "x-ms-version": "2026-10-06"}

    # The control: a server that buffers the body grows by the body's size, so the
    # measurement below would catch our store doing the same.
    base = _reset_peak_rss()
    assert _stream_put(blob_server.buffering_port, "/buffering", chunk, count, headers) == 200
    assert _status_kib("VmHWM") * 1024 - base > 48 * MiB

    path = f"/{ACCOUNT}/models/huge.bin?{blob_server.sas()}"
    base = _reset_peak_rss()
    assert _stream_put(blob_server.port, path, chunk, count, headers) == 201
    upload_growth = _status_kib("VmHWM") * 1024 - base
    assert upload_growth < 32 * MiB, f"upload grew the process by {upload_growth / MiB:.1f} MiB"

    base = _reset_peak_rss()
    status, got = _stream_get(blob_server.port, path)
    download_growth = _status_kib("VmHWM") * 1024 - base
    assert (status, got) == (200, expected)
    assert download_growth < 32 * MiB, f"download grew by {download_growth / MiB:.1f} MiB"
    assert blob_server.store.properties("models", "huge.bin").size == count * MiB
