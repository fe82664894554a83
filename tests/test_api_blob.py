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

from amlmm_magics.api import blob as blob_module
from amlmm_magics.api.blob import BlobUploadError, blob_url, upload_blob
from amlmm_magics.block_ids import offset_block_id

MiB = 1024 * 1024


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


@pytest.fixture()
def small_blocks(monkeypatch):
    """Blocks of 1 MiB above 1 MiB, so a few MiB make several blocks."""
    monkeypatch.setattr(blob_module, "BLOCK_SIZE", MiB)
    monkeypatch.setattr(blob_module, "SINGLE_PUT_SIZE", MiB)


def test_a_file_goes_in_blocks_named_by_their_offsets(container_sas_url, tmp_path,
                                                      small_blocks):
    data = os.urandom(3 * MiB + 5)
    path = tmp_path / "model.pkl"
    path.write_bytes(data)
    progress = []
    url = upload_blob(container_sas_url, path, "blocks/model.pkl", max_concurrency=3,
                      progress=lambda current, total: progress.append((current, total)))
    blob = BlobClient.from_blob_url(url)
    assert blob.download_blob().readall() == data
    committed, uncommitted = blob.get_block_list("all")
    assert [(b.id, b.size) for b in committed] == [
        (offset_block_id(0), MiB), (offset_block_id(MiB), MiB),
        (offset_block_id(2 * MiB), MiB), (offset_block_id(3 * MiB), 5)]
    assert uncommitted == []
    assert sorted(progress) == progress and progress[-1] == (len(data), len(data))
    assert len(progress) == 4


def test_blocks_do_not_overwrite_an_existing_blob_unless_asked(container_sas_url, tmp_path,
                                                               small_blocks):
    path = tmp_path / "big.bin"
    path.write_bytes(b"1" * (2 * MiB))
    url = upload_blob(container_sas_url, path, "blocks/big.bin")
    path.write_bytes(b"2" * (2 * MiB))
    with pytest.raises(BlobUploadError) as info:
        upload_blob(container_sas_url, path, "blocks/big.bin")
    assert info.value.code == "BlobAlreadyExists"
    assert BlobClient.from_blob_url(url).download_blob().readall() == b"1" * (2 * MiB)
    upload_blob(container_sas_url, path, "blocks/big.bin", overwrite=True)
    assert BlobClient.from_blob_url(url).download_blob().readall() == b"2" * (2 * MiB)


def test_a_refused_block_stops_the_upload_with_one_line(azurite, tmp_path, small_blocks):
    sas = generate_container_sas(AZURITE_ACCOUNT, "models", account_key=AZURITE_KEY,
                                 permission=ContainerSasPermissions(read=True),
                                 expiry=datetime.now(UTC) + timedelta(hours=1))
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(5 * MiB))
    with pytest.raises(BlobUploadError) as info:
        upload_blob(f"{azurite}/models?{sas}", path, "ro/big.bin")
    assert info.value.status_code == 403 and "\n" not in str(info.value)
