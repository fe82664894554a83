"""Blob upload of the client against Azurite, the official Azure Storage emulator."""

from __future__ import annotations

import hashlib
import io
import logging
import os
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob import (
    BlobClient,
    BlobServiceClient,
    ContainerSasPermissions,
    generate_container_sas,
)
from conftest import AZURITE_ACCOUNT, AZURITE_KEY

from amlmm_magics.api.blob import BlobUploadError, blob_url, upload_blob


@pytest.fixture(scope="module")
def container_sas_url(azurite):
    service = BlobServiceClient(azurite, credential={"account_name": AZURITE_ACCOUNT,
                                                     "account_key": AZURITE_KEY})
    service.create_container("models")
    sas = generate_container_sas(AZURITE_ACCOUNT, "models", account_key=AZURITE_KEY,
                                 permission=ContainerSasPermissions(read=True, write=True,
                                                                    create=True),
                                 expiry=datetime.now(UTC) + timedelta(hours=1))
    return f"{azurite}/models?{sas}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_multi_block_file_round_trips(container_sas_url, tmp_path):
    data = os.urandom(20 * 1024 * 1024 + 123)  # more than one 16 MiB block
    path = tmp_path / "model.joblib"
    path.write_bytes(data)
    progress = []
    url = upload_blob(container_sas_url, path, "iris/1/model.joblib",
                      content_type="application/octet-stream",
                      progress=lambda current, total: progress.append((current, total)))
    assert url.split("?")[0].endswith("/models/iris/1/model.joblib")
    assert url.split("?")[1] == container_sas_url.split("?")[1]
    assert progress[-1] == (len(data), len(data)) and len(progress) >= 2
    blob = BlobClient.from_blob_url(url)
    assert sha256(blob.download_blob().readall()) == sha256(data)
    assert blob.get_blob_properties().content_settings.content_type == "application/octet-stream"


def test_a_stream_uploads_too(container_sas_url):
    url = upload_blob(container_sas_url, io.BytesIO(b"def run(x): return x\n"), "drv/score.py")
    assert BlobClient.from_blob_url(url).download_blob().readall() == b"def run(x): return x\n"


def test_an_existing_blob_is_not_overwritten_unless_asked(container_sas_url, tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"one")
    upload_blob(container_sas_url, path, "dup/f.bin")
    with pytest.raises(BlobUploadError) as info:
        upload_blob(container_sas_url, path, "dup/f.bin")
    assert info.value.code == "BlobAlreadyExists"
    path.write_bytes(b"two")
    url = upload_blob(container_sas_url, path, "dup/f.bin", overwrite=True)
    assert BlobClient.from_blob_url(url).download_blob().readall() == b"two"


def test_a_refused_sas_gives_one_line_without_the_signature(azurite, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    sas = generate_container_sas(AZURITE_ACCOUNT, "models", account_key=AZURITE_KEY,
                                 permission=ContainerSasPermissions(read=True),
                                 expiry=datetime.now(UTC) + timedelta(hours=1))
    signature = next(p for p in sas.split("&") if p.startswith("sig=")).split("=", 1)[1]
    path = tmp_path / "f.bin"
    path.write_bytes(b"x")
    with pytest.raises(BlobUploadError) as info:
        upload_blob(f"{azurite}/models?{sas}", path, "ro/f.bin")
    assert info.value.status_code == 403
    assert str(info.value).startswith("403 AuthorizationPermissionMismatch: Upload of 'ro/f.bin'")
    assert "\n" not in str(info.value)
    for text in (str(info.value), caplog.text):
        assert signature not in text and signature.replace("%2B", "+") not in text


def test_blob_url_quotes_the_name_and_keeps_the_sas():
    assert blob_url("http://h/acct/c?sv=1&sig=x", "a b/c#.pkl") == (
        "http://h/acct/c/a%20b/c%23.pkl?sv=1&sig=x")


@pytest.mark.parametrize(
    "url, loopback",
    [
        ("http://127.0.0.1:10000/acct/c?sig=x", True),
        ("http://localhost:8080/acct/c", True),
        ("http://[::1]:8080/acct/c", True),
        ("https://acct.blob.core.windows.net/c?sig=x", False),
        ("https://127.example.com/c", False),
    ],
)
def test_uploads_to_this_machine_send_one_block_at_a_time(url, loopback):
    from amlmm_magics.api.blob import _is_loopback

    assert _is_loopback(url) is loopback
