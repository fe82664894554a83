"""The daemon's use of its own blob store: SAS URLs it hands out, and reading the URLs it gets.

Model and asset URLs registered against the embedded backend point at its blob endpoint;
the daemon reads those blobs from disk (after checking their SAS grants reading) instead of
downloading them from itself. Other http(s) URLs are downloaded, streamed to disk.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from amlmm_magics.local.blobstore import BlobStore, BlobStoreError, ContentSettings
from amlmm_magics.local.errors import ApiError, bad_request
from amlmm_magics.local.sas import SasError, generate_sas, verify_sas

ACCOUNT = "amlmmlocal"
UPLOADS = "amlmm"  # where clients upload models, drivers and requirement files
LOGS = "logs"  # build logs, readable through blob-scoped read-only SAS URLs
SAS_LIFETIME = timedelta(days=365)
DOWNLOAD_TIMEOUT = (10.0, 300.0)


@dataclass(frozen=True)
class LocalBlobRef:
    container: str
    blob: str
    query: dict[str, str]


class LocalBlobs:
    def __init__(self, store: BlobStore, account_key: bytes, public_url: str) -> None:
        self.store = store
        self.account_key = account_key
        self.endpoint = f"{public_url.rstrip('/')}/{ACCOUNT}"
        parts = urlsplit(public_url)
        self._netlocs = {parts.netloc.lower(),
                         parts.netloc.lower().replace("127.0.0.1", "localhost")}
        for container in (UPLOADS, LOGS):
            store.create_container(container)

    def __repr__(self) -> str:
        return f"LocalBlobs({self.endpoint!r})"

    # -- URLs handed out ---------------------------------------------------------------------
    def container_sas_url(self, container: str = UPLOADS) -> str:
        """Read/write/create SAS for clients that upload models and drivers."""
        sas = generate_sas(self.account_key, ACCOUNT, container, permission="rcw",
                           expiry=datetime.now(UTC) + SAS_LIFETIME)
        return f"{self.endpoint}/{container}?{sas}"

    def blob_read_url(self, container: str, blob: str) -> str:
        sas = generate_sas(self.account_key, ACCOUNT, container, blob, permission="r",
                           expiry=datetime.now(UTC) + SAS_LIFETIME)
        return f"{self.endpoint}/{container}/{quote(blob, safe='/')}?{sas}"

    def publish(self, container: str, blob: str, data: bytes, content_type: str) -> None:
        """Commit ``data`` as a blob (replacing it): readers see the old or the new bytes."""
        body = self.store.new_body()
        try:
            body.write(data)
            body.finish()
            self.store.put_blob(container, blob, body, ContentSettings(content_type=content_type))
        except BaseException:
            body.discard()
            raise

    # -- URLs received -----------------------------------------------------------------------
    def local_ref(self, url: str) -> LocalBlobRef | None:
        """Where a URL points in this blob store, or None for any other URL."""
        parts = urlsplit(url)
        if parts.netloc.lower() not in self._netlocs:
            return None
        segments = parts.path.lstrip("/").split("/", 2)
        if len(segments) < 3 or segments[0] != ACCOUNT:
            return None
        return LocalBlobRef(segments[1], unquote(segments[2]), dict(parse_qsl(parts.query)))

    def check_readable(self, url: str, what: str) -> None:
        """400 unless a local blob URL names an existing blob its SAS lets us read."""
        ref = self.local_ref(url)
        if ref is None:
            return
        try:
            verify_sas(self.account_key, ACCOUNT, ref.container, ref.blob, ref.query, "r")
        except SasError as exc:
            raise bad_request(f"The {what} URL's SAS does not allow reading it: {exc.message}",
                              code="InvalidUrl") from None
        if not self.store.exists(ref.container, ref.blob):
            raise bad_request(
                f"The {what} URL points to the embedded blob store, but no blob "
                f"'{ref.container}/{ref.blob}' is there; upload it first.", code="InvalidUrl")

    def fetch(self, url: str, dest: Path, what: str) -> None:
        """Put the bytes at ``url`` into the file ``dest``, streamed, never whole in memory."""
        ref = self.local_ref(url)
        if ref is not None:
            self.check_readable(url, what)
            try:
                source = self.store.path_of(ref.container, ref.blob)
            except BlobStoreError as exc:
                raise ApiError(400, "InvalidUrl", f"The {what} blob is gone: {exc.message}") \
                    from None
            _link_or_copy(source, dest)
            return
        _download(url, dest, what)


def _link_or_copy(source: Path, dest: Path) -> None:
    """A hard link when possible (a committed blob version is never rewritten in place)."""
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)


def _download(url: str, dest: Path, what: str) -> None:
    import requests

    from amlmm_magics.redact import redact_text

    try:
        with requests.get(url, stream=True, timeout=DOWNLOAD_TIMEOUT) as answer:
            if answer.status_code != 200:
                raise ApiError(400, "DownloadFailed",
                               f"Downloading the {what} from {redact_text(url)} answered "
                               f"{answer.status_code} {answer.reason}.")
            with dest.open("wb") as out:
                for chunk in answer.iter_content(chunk_size=1024 * 1024):
                    out.write(chunk)
    except requests.RequestException as exc:
        raise ApiError(400, "DownloadFailed",
                       f"Downloading the {what} from {redact_text(url)} failed: "
                       f"{redact_text(str(exc))}") from None
