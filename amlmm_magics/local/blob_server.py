"""The embedded blob store over HTTP: the subset of the Azure Blob REST protocol the SDK uses.

``BlobServer`` serves a ``BlobStore`` to ``azure-storage-blob``'s ``upload_blob`` and
``download_blob`` (Put Blob, Put Block, Put Block List, Get Blob with ranges, Get Blob
Properties), authorized by service SAS tokens, at path-style URLs like Azurite's:
``http://127.0.0.1:PORT/{account}/{container}/{blob}``.

It is the standard library's threaded HTTP server (one thread per connection) on a loopback
port of its own, as Azure serves blobs from a host of their own, and not a route of the
daemon's uvicorn app. Why: here a body is read from the socket straight into the aligned
buffer it is written to disk from (``BlockWriter.receive``), and a blob is read out with
``sendfile``, each system call with the GIL released. On the event loop every uploaded byte
was copied three more times, on its one thread, between requests that took turns on it.
Measured on the 2-core VM this project is built on, 1 GiB uploaded by ``api.blob`` (16 MiB
blocks, two at a time; medians of 6): 1.12-1.18 s through the event loop, 0.76-0.93 s here,
where the disk itself writes 1 GiB in 0.63-0.79 s (``dd oflag=direct``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
import sys
import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any, BinaryIO
from urllib.parse import parse_qsl, unquote, urlsplit
from xml.sax.saxutils import escape

from amlmm_magics.local.blobstore import (
    CHUNK_SIZE,
    MAX_BLOCKS,
    BlobProperties,
    BlobStore,
    BlobStoreError,
    BlockRef,
    CommitCondition,
    ContentSettings,
    Receiver,
    decode_block_id,
    validate_blob_name,
    validate_container_name,
)
from amlmm_magics.local.sas import DEFAULT_VERSION, SasError, verify_sas
from amlmm_magics.redact import redact_text

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
DEFAULT_MAX_BLOCK_BYTES = 4000 * MiB
DEFAULT_MAX_PUT_BYTES = 5000 * MiB
# 50,000 entries of the longest block id fit well inside this.
MAX_BLOCK_LIST_BYTES = 16 * MiB
# Azure computes a range's MD5 only for ranges up to 4 MiB.
MAX_RANGE_MD5_BYTES = 4 * MiB
_RANGE_RE = re.compile(r"bytes=(\d+)-(\d*)")
# Request headers asking for features this store lacks. Ignoring them would store the wrong
# bytes (a copy source, a structured body) or drop what the caller relies on (tags, keys).
_UNSUPPORTED_WRITE_HEADERS = (
    "x-ms-copy-source",
    "x-ms-structured-body",
    "x-ms-encryption-key",
    "x-ms-encryption-scope",
    "x-ms-tags",
    "x-ms-immutability-policy-until-date",
    "x-ms-legal-hold",
)
# Blob properties: (field, header on writes, plain header also accepted by Put Blob,
# header on reads).
_SETTINGS = (
    ("content_type", "x-ms-blob-content-type", "content-type", "content-type"),
    ("content_encoding", "x-ms-blob-content-encoding", "content-encoding", "content-encoding"),
    ("content_language", "x-ms-blob-content-language", "content-language", "content-language"),
    ("content_disposition", "x-ms-blob-content-disposition", None, "content-disposition"),
    ("cache_control", "x-ms-blob-cache-control", "cache-control", "cache-control"),
)
# SAS fields that override response headers of reads (Azure's rsc* parameters).
_SAS_OVERRIDES = {
    "rsct": "content-type",
    "rsce": "content-encoding",
    "rscl": "content-language",
    "rscd": "content-disposition",
    "rscc": "cache-control",
}
# An unread body this small is read and dropped after an early answer (a refused block), so
# the client, still sending it, gets to read the answer; a larger one ends the connection.
DRAIN_LIMIT = 64 * MiB
# A connection that sends nothing for this long is closed (its thread ends).
IDLE_TIMEOUT_S = 300
# Azure's codes for what the HTTP layer itself refuses.
_PROTOCOL_ERROR_CODES = {
    HTTPStatus.REQUEST_URI_TOO_LONG: "InvalidUri",
    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE: "RequestHeaderFieldsTooLarge",
    HTTPStatus.NOT_IMPLEMENTED: "UnsupportedHttpVerb",
}


# Bodies are read by their Content-Length only (as Azure's Put Blob and Put Block require).
_NO_LENGTH = BlobStoreError(
    411, "MissingContentLengthHeader",
    "Bodies sent with Transfer-Encoding are not supported: send a Content-Length header.",
)


class ClientGone(Exception):
    """The client closed the connection (or went silent) before sending the whole body."""


@dataclass(frozen=True)
class BlobRequest:
    """One request, as the handlers read it."""

    method: str
    path: str  # percent-decoded, without the query
    # The last of repeated parameters. Kept out of the repr: it holds the SAS signature.
    query: dict[str, str] = field(repr=False)
    headers: dict[str, str]  # names in lower case; the first of repeated headers
    client_host: str = field(repr=False)
    # Fills the start of a view with body bytes (never past the body); answers how many.
    read_into: Callable[[memoryview], int] = field(repr=False)
    scheme: str = field(default="http", repr=False)


@dataclass
class BlobResponse:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    # An open file, the offset and length of the bytes to send from it; closed once sent.
    file: tuple[BinaryIO, int, int] | None = None


def http_date(moment: datetime) -> str:
    """RFC 1123 date, as in Last-Modified."""
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def _error_body(code: str, message: str, request_id: str) -> bytes:
    time_text = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    detail = f"{message}\nRequestId:{request_id}\nTime:{time_text}"
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(detail)}</Message></Error>"
    ).encode()


@dataclass
class _Call:
    """What every answer to one request needs to echo."""

    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    version: str = DEFAULT_VERSION
    client_request_id: str | None = None

    @classmethod
    def of(cls, request: BlobRequest) -> _Call:
        version = request.headers.get("x-ms-version") or request.query.get("sv")
        return cls(
            version=version or DEFAULT_VERSION,
            client_request_id=request.headers.get("x-ms-client-request-id"),
        )

    def headers(self) -> dict[str, str]:
        # Date comes from the server (send_response adds it); adding it here would duplicate it.
        headers = {"x-ms-request-id": self.request_id, "x-ms-version": self.version}
        if self.client_request_id:
            headers["x-ms-client-request-id"] = self.client_request_id
        return headers


def _error_response(exc: BlobStoreError | SasError, call: _Call, head: bool) -> BlobResponse:
    headers = call.headers() | {"x-ms-error-code": exc.code}
    if head or exc.status == 304:
        return BlobResponse(exc.status, headers)
    body = _error_body(exc.code, exc.message, call.request_id)
    return BlobResponse(exc.status, headers | {"content-type": "application/xml"}, body)


def _declared_length(request: BlobRequest, limit: int) -> int:
    """The body size the client announced, refusing what cannot or must not be received."""
    text = request.headers.get("content-length")
    if text is None:
        raise BlobStoreError(
            411, "MissingContentLengthHeader", "The Content-Length header is required."
        )
    if not (text.isascii() and text.isdigit()):  # isdigit alone accepts "²"
        raise BlobStoreError(400, "InvalidHeaderValue", "The Content-Length header is invalid.")
    length = int(text)
    if length > limit:
        raise BlobStoreError(
            413,
            "RequestBodyTooLarge",
            f"The request body is too large: {length} bytes, at most {limit} are accepted.",
        )
    return length


def _receive_body(request: BlobRequest, body: Receiver, length: int) -> str | None:
    """Read the body's ``length`` bytes into ``body``; answer their base64 MD5 if ``body``
    hashes. On any failure the body is discarded."""
    try:
        body.receive(request.read_into, length)
        body.finish()
    except BaseException:
        body.discard()
        raise
    md5 = body.md5 if body.hashed else None
    if md5 is not None:
        try:
            _check_md5(request, md5)
        except BlobStoreError:
            body.discard()
            raise
    return md5


def _read_all(request: BlobRequest, length: int) -> bytes:
    """The whole body (of a size the caller has bounded)."""
    data = bytearray(length)
    view, done = memoryview(data), 0
    while done < length:
        done += request.read_into(view[done:])
    return bytes(data)


def _check_md5(request: BlobRequest, md5: str) -> None:
    claimed = request.headers.get("content-md5")
    if claimed is not None and claimed != md5:
        raise BlobStoreError(
            400, "Md5Mismatch", "The MD5 value specified in the request did not match the body."
        )


def _content_settings(request: BlobRequest, plain_headers: bool) -> ContentSettings:
    """Blob properties from x-ms-blob-* headers (and, for Put Blob, their plain forms)."""
    headers = request.headers
    values: dict[str, str] = {}
    for name, blob_header, plain_header, _ in _SETTINGS:
        value = headers.get(blob_header)
        if value is None and plain_headers and plain_header is not None:
            value = headers.get(plain_header)
        if value:
            values[name] = value
    md5 = headers.get("x-ms-blob-content-md5")
    if md5 is not None:
        if not _is_md5(md5):
            raise BlobStoreError(
                400, "InvalidHeaderValue", "x-ms-blob-content-md5 is not a base64 MD5."
            )
        values["content_md5"] = md5
    return ContentSettings(**values)


def _is_md5(text: str) -> bool:
    try:
        return len(base64.b64decode(text, validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


def _metadata(request: BlobRequest) -> dict[str, str]:
    prefix = "x-ms-meta-"
    return {
        name[len(prefix) :]: value
        for name, value in request.headers.items()
        if name.startswith(prefix) and len(name) > len(prefix)
    }


def _check_write_headers(request: BlobRequest) -> None:
    for name in _UNSUPPORTED_WRITE_HEADERS:
        if name in request.headers:
            raise BlobStoreError(
                400, "UnsupportedHeader", f"The header {name} is not supported by this store."
            )
    if "x-ms-lease-id" in request.headers:
        raise BlobStoreError(
            412,
            "LeaseNotPresentWithBlobOperation",
            "There is currently no lease on the blob.",
        )


def _etags(header: str) -> list[str]:
    """The entity tags of an If-Match / If-None-Match header, normalized to quoted form."""
    tags = []
    for item in header.split(","):
        tag = item.strip().removeprefix("W/")
        if tag and tag != "*" and not tag.startswith('"'):
            tag = f'"{tag}"'
        if tag:
            tags.append(tag)
    return tags


def _matches(header: str, current: BlobProperties | None) -> bool:
    tags = _etags(header)
    return current is not None and ("*" in tags or current.etag in tags)


def _header_date(request: BlobRequest, name: str) -> datetime | None:
    text = request.headers.get(name)
    if not text:
        return None
    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError):
        # RFC 9110: a conditional header with an invalid date is ignored.
        return None


def _condition_failed() -> BlobStoreError:
    return BlobStoreError(
        412,
        "ConditionNotMet",
        "The condition specified using HTTP conditional header(s) is not met.",
    )


def _write_condition(request: BlobRequest, create_only: bool) -> CommitCondition:
    """The checks a write's conditional headers (and a create-only SAS) ask for."""
    if_match = request.headers.get("if-match")
    if_none_match = request.headers.get("if-none-match")
    modified_since = _header_date(request, "if-modified-since")
    unmodified_since = _header_date(request, "if-unmodified-since")

    def check(current: BlobProperties | None) -> None:
        if create_only and current is not None:
            raise BlobStoreError(
                403,
                "AuthorizationPermissionMismatch",
                "The SAS only allows creating new blobs (c) and this blob exists.",
            )
        if if_none_match is not None and current is not None:
            if if_none_match.strip() == "*":
                raise BlobStoreError(409, "BlobAlreadyExists", "The specified blob already exists.")
            if _matches(if_none_match, current):
                raise _condition_failed()
        if if_match is not None and not _matches(if_match, current):
            raise _condition_failed()
        if current is not None:
            if modified_since is not None and current.last_modified <= modified_since:
                raise _condition_failed()
            if unmodified_since is not None and current.last_modified > unmodified_since:
                raise _condition_failed()

    return check


def _read_condition(request: BlobRequest, current: BlobProperties) -> None:
    """Conditional headers of a read: 412 for the If-Match family, 304 for If-None-Match."""
    if_match = request.headers.get("if-match")
    if if_match is not None and not _matches(if_match, current):
        raise _condition_failed()
    unmodified_since = _header_date(request, "if-unmodified-since")
    if unmodified_since is not None and current.last_modified > unmodified_since:
        raise _condition_failed()
    if_none_match = request.headers.get("if-none-match")
    modified_since = _header_date(request, "if-modified-since")
    if (if_none_match is not None and _matches(if_none_match, current)) or (
        modified_since is not None and current.last_modified <= modified_since
    ):
        raise BlobStoreError(304, "ConditionNotMet", "Not modified.")


def _requested_range(request: BlobRequest, size: int) -> tuple[int, int] | None:
    """The inclusive byte range asked for (x-ms-range wins over Range), clamped to the blob."""
    text = request.headers.get("x-ms-range") or request.headers.get("range")
    if not text:
        return None
    match = _RANGE_RE.fullmatch(text.strip())
    if match is None:
        raise BlobStoreError(
            400,
            "InvalidHeaderValue",
            "The range must be 'bytes=start-end' or 'bytes=start-' (one range).",
        )
    start = int(match.group(1))
    end = int(match.group(2)) if match.group(2) else size - 1
    if start >= size or end < start:
        raise BlobStoreError(416, "InvalidRange", "The range specified is invalid for the blob.")
    return start, min(end, size - 1)


def _range_md5(handle: BinaryIO, start: int, length: int) -> str:
    digest = hashlib.md5()
    offset, end = start, start + length
    while offset < end:
        data = os.pread(handle.fileno(), min(CHUNK_SIZE, end - offset), offset)
        if not data:
            break
        digest.update(data)
        offset += len(data)
    return base64.b64encode(digest.digest()).decode("ascii")


def _property_headers(properties: BlobProperties, overrides: Mapping[str, str]) -> dict[str, str]:
    content = properties.content
    headers = {
        "etag": properties.etag,
        "last-modified": http_date(properties.last_modified),
        "x-ms-creation-time": http_date(properties.created),
        "x-ms-blob-type": "BlockBlob",
        "accept-ranges": "bytes",
        "x-ms-lease-state": "available",
        "x-ms-lease-status": "unlocked",
        # Stored as plain files: say so rather than claim encryption at rest.
        "x-ms-server-encrypted": "false",
    }
    for name, _, _, response_header in _SETTINGS:
        value = getattr(content, name)
        if value:
            headers[response_header] = value
    for name, value in properties.metadata.items():
        headers[f"x-ms-meta-{name}"] = value
    for sas_field, header in _SAS_OVERRIDES.items():
        value = overrides.get(sas_field)
        if value:
            headers[header] = _latin1(value, sas_field)
    return headers


def _latin1(value: str, name: str) -> str:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise BlobStoreError(
            400, "InvalidQueryParameterValue", f"{name} cannot be sent as a header value."
        ) from None
    return value


class BlobService:
    """The requests of one account. Holds the account key: keep it out of reprs and logs.

    ``max_block_bytes`` and ``max_put_bytes`` bound one Put Block and one Put Blob body.
    """

    def __init__(
        self,
        store: BlobStore,
        account: str,
        account_key: bytes,
        *,
        max_block_bytes: int = DEFAULT_MAX_BLOCK_BYTES,
        max_put_bytes: int = DEFAULT_MAX_PUT_BYTES,
    ) -> None:
        self.store = store
        self.account = account
        self._account_key = account_key
        self.max_block_bytes = max_block_bytes
        self.max_put_bytes = max_put_bytes

    def __repr__(self) -> str:
        return f"BlobService(account={self.account!r}, store={self.store!r})"

    def answer(self, request: BlobRequest, container: str, blob: str) -> BlobResponse:
        """The answer to a request for ``/{account}/{container}/{blob}``; raises ClientGone
        only, when there is nobody left to answer."""
        call = _Call.of(request)
        head = request.method == "HEAD"
        try:
            return self._dispatch(request, call, container, blob)
        except (BlobStoreError, SasError) as exc:
            return _error_response(exc, call, head)
        except ClientGone:
            raise
        except Exception:
            # The path only: the query string carries the SAS signature.
            logger.exception("Blob request failed: %s %s", request.method, request.path)
            error = BlobStoreError(
                500, "InternalError", "The server encountered an internal error."
            )
            return _error_response(error, call, head)

    def not_a_blob(self, request: BlobRequest) -> BlobResponse:
        error = BlobStoreError(
            400,
            "InvalidUri",
            "This store serves blob requests only (/{account}/{container}/{blob}); "
            "container and account operations are not supported.",
        )
        return _error_response(error, _Call.of(request), request.method == "HEAD")

    def _dispatch(
        self, request: BlobRequest, call: _Call, container: str, blob: str
    ) -> BlobResponse:
        if not blob:  # "/{container}/": a container request
            return self.not_a_blob(request)
        validate_container_name(container)
        validate_blob_name(blob)
        if request.method in ("GET", "HEAD"):
            return self._read(request, call, container, blob)
        if request.method != "PUT":
            raise BlobStoreError(
                405, "UnsupportedHttpVerb", f"{request.method} is not supported on blobs here."
            )
        comp = request.query.get("comp")
        if comp is None:
            return self._put_blob(request, call, container, blob)
        if comp == "block":
            return self._put_block(request, call, container, blob)
        if comp == "blocklist":
            return self._put_block_list(request, call, container, blob)
        raise BlobStoreError(
            400, "InvalidQueryParameterValue", f"comp={comp[:40]} is not supported on blobs here."
        )

    def _authorize(self, request: BlobRequest, container: str, blob: str, required: str) -> str:
        """Check the SAS; answer the permissions it grants."""
        verify_sas(
            self._account_key,
            self.account,
            container,
            blob,
            request.query,
            required,
            client_ip=request.client_host,
            scheme=request.scheme,
        )
        return request.query.get("sp", "")

    def _require_container(self, container: str) -> None:
        if not self.store.container_exists(container):
            raise BlobStoreError(
                404, "ContainerNotFound", "The specified container does not exist."
            )

    # Writes

    def _prepare_write(self, request: BlobRequest, container: str, blob: str) -> bool:
        """Authorize a write and check its headers; answer whether it may only create."""
        granted = self._authorize(request, container, blob, "wc")
        self._require_container(container)
        _check_write_headers(request)
        return "w" not in granted

    def _put_blob(
        self, request: BlobRequest, call: _Call, container: str, blob: str
    ) -> BlobResponse:
        create_only = self._prepare_write(request, container, blob)
        blob_type = request.headers.get("x-ms-blob-type")
        if blob_type is None:
            raise BlobStoreError(400, "MissingRequiredHeader", "x-ms-blob-type is required.")
        if blob_type != "BlockBlob":
            raise BlobStoreError(
                400, "InvalidHeaderValue", f"Only BlockBlob is supported, not {blob_type[:40]}."
            )
        length = _declared_length(request, self.max_put_bytes)
        content = _content_settings(request, plain_headers=True)
        condition = _write_condition(request, create_only)
        # Fail before receiving what may be gigabytes; checked again at the commit.
        condition(self._current_or_none(container, blob))
        body = self.store.new_body(hashed=True)
        md5 = _receive_body(request, body, length)
        if content.content_md5 is None:
            content = replace(content, content_md5=md5)
        try:
            properties = self.store.put_blob(
                container, blob, body, content, _metadata(request), condition
            )
        except BaseException:
            body.discard()
            raise
        return _created(call, properties, md5)

    def _put_block(
        self, request: BlobRequest, call: _Call, container: str, blob: str
    ) -> BlobResponse:
        self._prepare_write(request, container, blob)
        block_id = request.query.get("blockid")
        if not block_id:
            raise BlobStoreError(
                400, "MissingRequiredQueryParameter", "The blockid query parameter is required."
            )
        decode_block_id(block_id)
        length = _declared_length(request, self.max_block_bytes)
        # A block's MD5 is computed only when the client sent one to check (Azure answers it,
        # but the SDK does not read it): it costs a large upload dearly.
        writer = self.store.reserve_block(
            container, blob, length, hashed="content-md5" in request.headers, block_id=block_id
        )
        md5 = _receive_body(request, writer, length)
        try:
            self.store.stage_block(container, blob, block_id, writer)
        except BaseException:
            writer.discard()
            raise
        return _created(call, None, md5)

    def _put_block_list(
        self, request: BlobRequest, call: _Call, container: str, blob: str
    ) -> BlobResponse:
        create_only = self._prepare_write(request, container, blob)
        length = _declared_length(request, MAX_BLOCK_LIST_BYTES)
        payload = _read_all(request, length)
        md5 = base64.b64encode(hashlib.md5(payload).digest()).decode("ascii")
        _check_md5(request, md5)
        blocks = parse_block_list(payload)
        condition = _write_condition(request, create_only)
        condition(self._current_or_none(container, blob))
        properties = self.store.commit_block_list(
            container,
            blob,
            blocks,
            _content_settings(request, plain_headers=False),
            _metadata(request),
            condition,
        )
        return _created(call, properties, md5)

    def _current_or_none(self, container: str, blob: str) -> BlobProperties | None:
        try:
            return self.store.properties(container, blob)
        except BlobStoreError as exc:
            if exc.code == "BlobNotFound":
                return None
            raise

    # Reads

    def _read(
        self, request: BlobRequest, call: _Call, container: str, blob: str
    ) -> BlobResponse:
        if "snapshot" in request.query or "versionid" in request.query:
            raise BlobStoreError(
                400, "UnsupportedQueryParameter", "Snapshots and versions are not supported here."
            )
        comp = request.query.get("comp")
        if comp is not None:
            raise BlobStoreError(
                400, "InvalidQueryParameterValue", f"comp={comp[:40]} is not supported here."
            )
        self._authorize(request, container, blob, "r")
        self._require_container(container)
        properties, handle = self.store.open_blob(container, blob)
        try:
            return self._read_response(request, call, properties, handle)
        except BaseException:
            handle.close()
            raise

    def _read_response(
        self, request: BlobRequest, call: _Call, properties: BlobProperties, handle: BinaryIO
    ) -> BlobResponse:
        headers = call.headers() | _property_headers(properties, request.query)
        try:
            _read_condition(request, properties)
        except BlobStoreError as exc:
            if exc.status != 304:
                raise
            handle.close()
            headers = call.headers() | {
                "etag": properties.etag,
                "last-modified": http_date(properties.last_modified),
            }
            return BlobResponse(304, headers)
        md5 = properties.content.content_md5
        if request.method == "HEAD":
            handle.close()
            if md5:
                headers["content-md5"] = md5
            headers["content-length"] = str(properties.size)
            return BlobResponse(200, headers)
        byte_range = _requested_range(request, properties.size)
        want_range_md5 = request.headers.get("x-ms-range-get-content-md5", "").lower() == "true"
        if byte_range is None:
            if want_range_md5:
                raise BlobStoreError(
                    400, "InvalidHeaderValue", "x-ms-range-get-content-md5 needs a range."
                )
            start, length, status = 0, properties.size, 200
            if md5:
                headers["content-md5"] = md5
        else:
            start, end = byte_range
            length, status = end - start + 1, 206
            headers["content-range"] = f"bytes {start}-{end}/{properties.size}"
            if md5:
                headers["x-ms-blob-content-md5"] = md5
            if want_range_md5:
                if length > MAX_RANGE_MD5_BYTES:
                    raise BlobStoreError(
                        400,
                        "InvalidHeaderValue",
                        "x-ms-range-get-content-md5 is only served for ranges up to 4 MiB.",
                    )
                headers["content-md5"] = _range_md5(handle, start, length)
        headers["content-length"] = str(length)
        return BlobResponse(status, headers, file=(handle, start, length))


def _created(call: _Call, properties: BlobProperties | None, md5: str | None) -> BlobResponse:
    # Stored as plain files: say so rather than claim encryption at rest.
    headers = call.headers() | {"x-ms-request-server-encrypted": "false"}
    if md5 is not None:
        headers["content-md5"] = md5
    if properties is not None:
        headers["etag"] = properties.etag
        headers["last-modified"] = http_date(properties.last_modified)
    return BlobResponse(201, headers)


def parse_block_list(payload: bytes) -> list[BlockRef]:
    """The entries of a Put Block List body, in order."""
    # No document type declarations: they are the door to entity-expansion attacks.
    if b"<!DOCTYPE" in payload or b"<!ENTITY" in payload:
        raise BlobStoreError(400, "InvalidXmlDocument", "DTDs are not allowed in a block list.")
    try:
        root = ET.fromstring(payload)
    except ET.ParseError:
        raise BlobStoreError(400, "InvalidXmlDocument", "The block list is not XML.") from None
    if root.tag != "BlockList":
        raise BlobStoreError(400, "InvalidXmlDocument", "The root element must be BlockList.")
    blocks = []
    for element in root:
        if element.tag not in ("Latest", "Committed", "Uncommitted"):
            raise BlobStoreError(
                400, "InvalidXmlNodeValue", f"Unexpected element {element.tag[:40]} in BlockList."
            )
        block_id = (element.text or "").strip()
        try:
            decode_block_id(block_id)
        except BlobStoreError:
            raise BlobStoreError(
                400,
                "InvalidBlockId",
                f"The block id {block_id[:80]!r} is not base64 of 1-64 bytes.",
            ) from None
        blocks.append(BlockRef(element.tag, block_id))
    if len(blocks) > MAX_BLOCKS:
        raise BlobStoreError(
            400, "InvalidBlockList", f"A block list holds at most {MAX_BLOCKS} blocks."
        )
    return blocks


class _Handler(BaseHTTPRequestHandler):
    """One connection's requests, in the thread the server gave it."""

    protocol_version = "HTTP/1.1"
    server_version = "amlmm-blob"
    timeout = IDLE_TIMEOUT_S
    # Answers go out as a header write and a body write: without this the second waits for
    # the client's delayed ACK of the first.
    disable_nagle_algorithm = True
    server: BlobServer
    _unread = 0

    def version_string(self) -> str:
        return self.server_version  # not the Python version after it

    def do_GET(self) -> None:
        self._serve()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        request = BlobRequest(
            method=self.command,
            path=unquote(parts.path),
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers={},
            client_host=self.client_address[0],
            read_into=self._read_into,
        )
        for name, value in self.headers.items():
            request.headers.setdefault(name.lower(), value)
        # Transfer-Encoding would win over a Content-Length; bodies framed so are not read.
        length_framed = "transfer-encoding" not in request.headers
        announced = _content_length(request.headers) if length_framed else None
        if announced is None:
            self.close_connection = True  # no way to tell where the body ends
        self._unread = announced or 0
        try:
            if length_framed:
                response = self.server.answer(request)
            else:
                response = _error_response(_NO_LENGTH, _Call.of(request), self.command == "HEAD")
        except ClientGone:
            self.close_connection = True
            return
        self._skip_unread_body()
        self._send(response)

    def _read_into(self, view: memoryview) -> int:
        if len(view) > self._unread:
            view = view[: self._unread]
        if not view:
            raise ValueError("the request body has been read to its end")
        try:
            count = self.rfile.readinto(view)
        except OSError as exc:  # reset, or silent for IDLE_TIMEOUT_S
            raise ClientGone from exc
        if not count:
            raise ClientGone
        self._unread -= count
        return count

    def _skip_unread_body(self) -> None:
        """Read what an early answer left of the body, or end the connection after it."""
        if not self._unread:
            return
        if self._unread > DRAIN_LIMIT:
            self.close_connection = True
            return
        scratch = memoryview(bytearray(min(self._unread, CHUNK_SIZE)))
        try:
            while self._unread:
                self._read_into(scratch)
        except ClientGone:
            self.close_connection = True

    def _send(self, response: BlobResponse) -> None:
        file = response.file
        try:
            self.send_response(response.status)
            headers = response.headers
            if "content-length" not in headers and response.status != HTTPStatus.NOT_MODIFIED:
                headers["content-length"] = str(len(response.body))
            for name, value in headers.items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("connection", "close")
            self.end_headers()
            if self.command == "HEAD":
                return
            if file is not None:
                handle, start, length = file
                if length:  # sendfile takes a count of 0 for "to the end"
                    self.connection.sendfile(handle, start, length)
            elif response.body:
                self.wfile.write(response.body)
        except OSError:  # the client went away while being answered
            self.close_connection = True
        finally:
            if file is not None:
                file[0].close()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """What the HTTP layer refuses (bad request line, too long a URL, an unknown method),
        answered in Azure's XML shape like everything else."""
        del explain
        status = HTTPStatus(code)
        self.log_error("code %d, message %s", code, message)
        error = BlobStoreError(
            code, _PROTOCOL_ERROR_CODES.get(status, "InvalidInput"), message or status.phrase
        )
        self.close_connection = True
        self._send(_error_response(error, _Call(), head=self.command == "HEAD"))

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # The path only: the query string carries the SAS signature.
        del size
        # Before a request line is read whole (a refused one), there is no method or path.
        path = urlsplit(getattr(self, "path", "")).path
        logger.info('%s - "%s %s" %s', self.client_address[0], self.command or "-", path or "-",
                    int(code))

    def log_message(self, format: str, *args: Any) -> None:
        logger.warning("%s - %s", self.client_address[0], redact_text(format % args))


def _content_length(headers: Mapping[str, str]) -> int | None:
    """The Content-Length of a request (0 without a body); None where it is not a number."""
    text = headers.get("content-length")
    if text is None:
        return 0
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else None


class BlobServer(ThreadingHTTPServer):
    """Blob services by account name, on 127.0.0.1; ``start`` serves from a thread."""

    daemon_threads = True
    block_on_close = False  # a stop does not wait for connections still open
    request_queue_size = 128

    def __init__(self, services: Mapping[str, BlobService] | None = None, port: int = 0) -> None:
        self.services = dict(services or {})
        self._thread: threading.Thread | None = None
        super().__init__(("127.0.0.1", port), _Handler)

    def __repr__(self) -> str:
        return f"BlobServer({self.url!r}, accounts={sorted(self.services)})"

    def server_bind(self) -> None:
        # HTTPServer's own looks its host name up, which can hang where there is no DNS.
        TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> BlobServer:
        self._thread = threading.Thread(target=self.serve_forever, name="blob-server",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()

    def answer(self, request: BlobRequest) -> BlobResponse:
        """Route ``/{account}/{container}/{blob}`` to the account's service."""
        account, _, rest = request.path.removeprefix("/").partition("/")
        service = self.services.get(account)
        if service is None:
            error = BlobStoreError(
                400, "InvalidUri",
                f"No account {account[:40]!r} here; this store serves "
                + ", ".join(f"/{name}/{{container}}/{{blob}}" for name in sorted(self.services)),
            )
            return _error_response(error, _Call.of(request), request.method == "HEAD")
        container, slash, blob = rest.partition("/")
        if not slash:  # "/{account}", "/{account}/" or "/{account}/{container}"
            return service.not_a_blob(request)
        return service.answer(request, container, blob)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The base prints the traceback to stderr.
        if isinstance(sys.exception(), ConnectionError):  # a client that went away
            logger.info("Blob connection from %s ended: %s", client_address[0], sys.exception())
            return
        logger.exception("Blob connection from %s failed", client_address[0])
