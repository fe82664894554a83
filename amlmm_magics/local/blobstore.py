"""An embedded store that speaks the subset of the Azure Blob REST protocol the SDK uploads with.

``BlobStore`` keeps block blobs on disk; ``blob_server`` serves it over HTTP for
``azure-storage-blob``'s ``upload_blob`` and ``download_blob`` (Put Blob, Put Block, Put Block
List, Get Blob with ranges, Get Blob Properties), authorized by service SAS tokens.

On disk, under the root folder::

    <container>/<key>.json                sidecar: properties, names of the files below
    <container>/<key>.<version>.data      the committed bytes of one version
    <container>/<key>.<version>.blocks    its committed block list (blobs made of blocks)
    .staging/<container>/<key>/<n>.staged uncommitted blocks' bytes (see below)
    .staging/<container>/<key>/<block>    one per uncommitted block: [file, offset, size]
    .tmp/                                 bodies being received, blobs being assembled

``key`` is the SHA-256 of the blob name, so no name can reach outside its container folder
whatever it contains; names are still validated so a hostile one fails loudly. A commit
writes a new version's data file, then swaps the sidecar with ``os.replace``: a crash leaves
either the old blob or the new one, never a mix, and readers never see a partial file. Blocks
are written where they will stay: each at the offset its id names when it has an amlmm
uploader's id (``block_ids``), others one after the other as they arrive. A block list naming
blocks in the order they lie in the staging file (what amlmm's uploader sends, and what the
SDK sends when it uploads one block at a time) makes the staging file the new version's data
file without copying a byte; any other list is assembled by copy.
Bodies stream to and from disk in chunks; no blob is ever held in memory whole.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from amlmm_magics.block_ids import block_offset
from amlmm_magics.local.directio import ALIGNMENT, AlignedBuffers, DirectRegion

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
CHUNK_SIZE = MiB
# Received bytes go to disk in writes of this size: the size of the aligned buffers a body
# is read into around the page cache, and of the buffer other bodies are read into.
WRITE_BATCH = 4 * MiB
# Blocks from this size on are written around the page cache (see directio); a few aligned
# buffers stay allocated for them between requests.
DIRECT_MIN_BYTES = MiB
DIRECT_BUFFERS_KEPT = 4
# How far past the blocks already placed a block that names its offset may land: parallel
# uploads run a few blocks ahead; an id naming an offset of exabytes must not make a file
# that size (sparse, but past what the file system allows).
MAX_PLACEMENT_GAP = 1024 * MiB
MAX_BLOCKS = 50_000
MAX_BLOCK_ID_BYTES = 64
MAX_BLOB_NAME = 1024
DEFAULT_CONTENT_TYPE = "application/octet-stream"
STAGING_DIR = ".staging"
STAGED_DATA_SUFFIX = ".staged"
TEMP_DIR = ".tmp"
_CONTAINER_RE = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


class BlobStoreError(Exception):
    """A blob request failed; carries the HTTP status and Azure error code to answer with."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"BlobStoreError({self.status}, {self.code!r}, {self.message!r})"


@dataclass(frozen=True)
class ContentSettings:
    """The HTTP properties stored with a blob and answered on every read."""

    content_type: str = DEFAULT_CONTENT_TYPE
    content_encoding: str | None = None
    content_language: str | None = None
    content_disposition: str | None = None
    cache_control: str | None = None
    content_md5: str | None = None  # base64, as in the Content-MD5 header


@dataclass(frozen=True)
class BlobProperties:
    """One committed blob version, as recorded in its sidecar."""

    container: str
    name: str
    size: int
    etag: str  # quoted, as in the ETag header
    last_modified: datetime
    created: datetime
    content: ContentSettings
    metadata: dict[str, str]
    data_file: str  # file name inside the container folder
    blocks_file: str | None = None  # committed block list, when made of blocks

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["last_modified"] = self.last_modified.isoformat()
        data["created"] = self.created.isoformat()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BlobProperties:
        values = dict(data)
        values["last_modified"] = datetime.fromisoformat(values["last_modified"])
        values["created"] = datetime.fromisoformat(values["created"])
        values["content"] = ContentSettings(**values["content"])
        return cls(**values)


@dataclass(frozen=True)
class BlockRef:
    """One entry of a Put Block List: where to look (``Latest``...) and the block id."""

    kind: str  # "Latest", "Committed" or "Uncommitted"
    block_id: str  # as sent (base64)


# A check run under the store's lock just before a commit becomes visible; it raises
# BlobStoreError to refuse (conditional headers, create-only permission).
CommitCondition = Callable[[BlobProperties | None], None]


def _no_condition(_current: BlobProperties | None) -> None:
    return None


class Receiver:
    """Bytes arriving in chunks, counted and (when ``hashed``) hashed for Content-MD5.

    One thread drives a receiver: the one serving the request it receives.
    """

    def __init__(self, *, hashed: bool) -> None:
        self.size = 0
        self._md5 = hashlib.md5() if hashed else None

    def receive(self, read_into: Callable[[memoryview], int], length: int) -> None:
        """Read ``length`` bytes with ``read_into`` and write them.

        ``read_into(view)`` fills the start of ``view`` and answers how many bytes it put there
        (at least one; it raises where the bytes run out), as a socket's ``recv_into`` does.
        """
        scratch = memoryview(bytearray(min(length, WRITE_BATCH)))
        while length:
            count = read_into(scratch[: min(len(scratch), length)])
            self.write_chunks([scratch[:count]])
            length -= count

    def write_chunks(self, chunks: Sequence[bytes | memoryview]) -> None:
        """Append several received chunks with one system call and no joining copy."""
        pending = [memoryview(chunk) for chunk in chunks if chunk]
        while pending:
            written = self._writev(pending)
            while pending and written >= len(pending[0]):
                written -= len(pending[0])
                self._account(pending.pop(0))
            if written:  # a short write ended inside this chunk
                self._account(pending[0][:written])
                pending[0] = pending[0][written:]

    def _writev(self, buffers: list[memoryview]) -> int:
        raise NotImplementedError

    def _account(self, data: memoryview | bytes | bytearray) -> None:
        if self._md5 is not None:
            self._md5.update(data)
        self.size += len(data)

    @property
    def hashed(self) -> bool:
        return self._md5 is not None

    @property
    def md5(self) -> str:
        """The base64 MD5 of everything written (hashed writers only)."""
        if self._md5 is None:
            raise ValueError("this writer does not hash")
        return base64.b64encode(self._md5.digest()).decode("ascii")

    def finish(self, *, durable: bool = True) -> None:
        raise NotImplementedError

    def discard(self) -> None:
        raise NotImplementedError


class BodyWriter(Receiver):
    """A request body (or an assembled blob) arriving into a temp file.

    A request body is hashed as it arrives (for Content-MD5); an assembled blob is not, so its
    blocks can be copied file to file by the kernel.
    """

    def __init__(self, path: Path, *, hashed: bool = True) -> None:
        super().__init__(hashed=hashed)
        self.path = path
        self._file: BinaryIO = path.open("xb")

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._file.write(data)
        self._account(data)

    def _writev(self, buffers: list[memoryview]) -> int:
        self._file.flush()
        return os.writev(self._file.fileno(), buffers)

    def copy_from(self, source_fd: int, offset: int, size: int) -> None:
        """Append ``size`` bytes of another file from ``offset``."""
        if self._md5 is None and hasattr(os, "copy_file_range"):
            self._file.flush()
            done = _kernel_copy(source_fd, offset, size, self._file.fileno())
            self.size += done
            offset, size = offset + done, size - done
        end = offset + size
        while offset < end:
            data = os.pread(source_fd, min(CHUNK_SIZE, end - offset), offset)
            if not data:
                raise BlobStoreError(
                    500, "InternalError", "A stored block is shorter than recorded."
                )
            self.write(data)
            offset += len(data)

    def finish(self, *, durable: bool = True) -> None:
        """Flush (to stable storage when ``durable``) and close.

        Staged blocks are not durable on their own: a crash before their commit loses the
        upload either way, so only what a commit makes visible is synced.
        """
        self._file.flush()
        if durable:
            os.fsync(self._file.fileno())
        self._file.close()

    def discard(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


class BlockWriter(Receiver):
    """One Put Block's body, written straight into the region of its blob's staging file
    that ``BlobStore.reserve_block`` set aside for it.

    A block list that names the blocks in the order they lie in the file commits the staging
    file itself, with no copy. Nothing is synced here (see BodyWriter.finish): the commit
    syncs what it keeps.
    """

    def __init__(
        self, store: BlobStore, staging: _Staging, offset: int, length: int, *, hashed: bool
    ) -> None:
        super().__init__(hashed=hashed)
        self.store = store
        self.staging = staging
        self.offset = offset
        self.length = length
        self._fd: int | None = os.open(staging.path, os.O_WRONLY)
        self._direct = store.direct_region(staging.path, offset, length, self._fd)

    def __repr__(self) -> str:
        return f"BlockWriter({self.staging.path.name!r}, {self.offset}, {self.length})"

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.write_chunks([bytes(data)])

    def receive(self, read_into: Callable[[memoryview], int], length: int) -> None:
        """As ``Receiver.receive``; a block written around the page cache is read straight
        into the aligned buffer it is written from, with no copy in between."""
        if self._direct is None:
            super().receive(read_into, length)
            return
        self._check_room(length)
        while length:
            space = self._direct.space()
            count = read_into(space[: min(len(space), length)])
            self._account(space[:count])
            self._direct.filled(count)
            length -= count

    def _check_room(self, count: int) -> None:
        if self._fd is None:
            raise ValueError("this block writer is closed")
        if self.size + count > self.length:
            raise _length_mismatch()  # never past the region: the next block's starts there

    def _writev(self, buffers: list[memoryview]) -> int:
        self._check_room(sum(len(b) for b in buffers))
        if self._direct is not None:
            return self._direct.write(buffers)
        assert self._fd is not None  # _check_room refuses a closed writer
        return os.pwritev(self._fd, buffers, self.offset + self.size)

    def finish(self, *, durable: bool = True) -> None:
        del durable  # a staged block is synced by its commit, if any
        if self._direct is not None and self._fd is not None:
            direct, self._direct = self._direct, None
            direct.finish()
            if direct.refused:
                self.store.refuse_direct_writes()
        self._close()

    def discard(self) -> None:
        """Give the region up: it stays a hole in the staging file that no list can name."""
        self._close()
        self.store.release(self)

    def _close(self) -> None:
        if self._direct is not None:
            self._direct.close()
            self._direct = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def validate_container_name(name: str) -> None:
    """Azure's container naming rules: 3-63 of a-z 0-9 and single inner hyphens."""
    if not _CONTAINER_RE.fullmatch(name):
        raise BlobStoreError(
            400,
            "InvalidResourceName",
            f"The container name {name[:80]!r} is not valid: use 3-63 lowercase letters, "
            "digits and single hyphens, starting and ending with a letter or digit.",
        )


def validate_blob_name(name: str) -> None:
    """Refuse names that could mean a path outside the container, or none at all.

    Storage is by hash of the name, so this is defence in depth and a clear error, not the
    only barrier.
    """
    problem = _blob_name_problem(name)
    if problem:
        raise BlobStoreError(
            400, "InvalidResourceName", f"The blob name {name[:80]!r} is not valid: {problem}."
        )


def _blob_name_problem(name: str) -> str | None:
    if not name:
        return "it is empty"
    if len(name) > MAX_BLOB_NAME:
        return f"it is longer than {MAX_BLOB_NAME} characters"
    if _CONTROL_RE.search(name):
        return "it contains a control character"
    if "\\" in name:
        return "it contains a backslash"
    if name.startswith("/") or name.endswith("/"):
        return "it starts or ends with '/'"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return "it has an empty, '.' or '..' path segment"
    return None


def decode_block_id(block_id: str) -> bytes:
    """The bytes a block id stands for; ids are compared in this decoded form."""
    try:
        raw = base64.b64decode(block_id, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if not raw or len(raw) > MAX_BLOCK_ID_BYTES:
        raise BlobStoreError(
            400,
            "InvalidQueryParameterValue",
            "The block id must be base64 of 1 to 64 bytes.",
        )
    return raw


def _blob_key(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


def _now() -> datetime:
    # Whole seconds: HTTP dates carry no more, and conditional requests compare them.
    return datetime.now(UTC).replace(microsecond=0)


def _fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_json_atomic(path: Path, data: Any, temp_dir: Path, *, durable: bool = True) -> None:
    temp = temp_dir / f"{uuid.uuid4().hex}.json"
    with temp.open("x", encoding="utf-8") as handle:
        json.dump(data, handle)
        handle.flush()
        if durable:
            os.fsync(handle.fileno())
    os.replace(temp, path)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Where a listed block's bytes are: (staging file, offset, size), or (None, offset, size) in
# the blob's committed data.
_Piece = tuple[Path | None, int, int]


@dataclass(eq=False)
class _Staging:
    """A blob's current staging file: which regions blocks have, who is writing into it."""

    path: Path
    end: int = 0
    writers: set[BlockWriter] = field(default_factory=set)
    # (start, end) of every region given out and not given back, in order.
    regions: list[tuple[int, int]] = field(default_factory=list)

    def place(self, length: int, wanted: int | None) -> int:
        """Give a block of ``length`` bytes its region: from ``wanted`` when that is free and
        not far past the other blocks, else after every other."""
        start = self.end
        if (wanted is not None and wanted - self.end <= MAX_PLACEMENT_GAP
                and self._free(wanted, wanted + length)):
            start = wanted
        bisect.insort(self.regions, (start, start + length))
        self.end = max(self.end, start + length)
        return start

    def give_back(self, start: int, length: int) -> None:
        self.regions.remove((start, start + length))

    def _free(self, start: int, end: int) -> bool:
        index = bisect.bisect_left(self.regions, (start, end))
        before_ends = self.regions[index - 1][1] if index else 0
        after_starts = self.regions[index][0] if index < len(self.regions) else end
        return before_ends <= start and end <= after_starts


def _staged_entry(folder: Path, hex_id: str) -> _Piece | None:
    """Where a staged block's bytes are, from its entry; None when it has none."""
    try:
        name, offset, size = json.loads((folder / hex_id).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(name, str) or "/" in name or not name.endswith(STAGED_DATA_SUFFIX):
        return None
    return folder / name, int(offset), int(size)


def _kernel_copy(source_fd: int, offset: int, size: int, target_fd: int) -> int:
    """Copy with copy_file_range (no trip through user space); answer the bytes copied.

    Stops early at the source's end, or where the kernel cannot copy between these files
    (the caller copies the rest by hand).
    """
    done = 0
    while done < size:
        try:
            copied = os.copy_file_range(source_fd, target_fd, size - done, offset + done)
        except OSError:
            break
        if copied == 0:
            break
        done += copied
    return done


class BlobStore:
    """Block blobs on disk under ``root``: one folder per container."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._staging = self.root / STAGING_DIR
        self._temp = self.root / TEMP_DIR
        self._temp.mkdir(parents=True, exist_ok=True)
        self._staging.mkdir(exist_ok=True)
        # Guards sidecar swaps and the read of a sidecar together with opening its data file,
        # so a reader never opens a version a concurrent commit has just removed.
        self._lock = threading.Lock()
        # The staging file new blocks of each blob go to (one folder per blob).
        self._staging_files: dict[Path, _Staging] = {}
        self._direct_buffers = AlignedBuffers(WRITE_BATCH, keep=DIRECT_BUFFERS_KEPT)
        self._direct_supported = True  # until the file system refuses O_DIRECT once

    def __repr__(self) -> str:
        return f"BlobStore({str(self.root)!r})"

    # Containers

    def create_container(self, name: str) -> None:
        """Create a container (idempotent)."""
        validate_container_name(name)
        (self.root / name).mkdir(exist_ok=True)

    def container_exists(self, name: str) -> bool:
        return _CONTAINER_RE.fullmatch(name) is not None and (self.root / name).is_dir()

    # Committed blobs

    def exists(self, container: str, blob: str) -> bool:
        try:
            self.properties(container, blob)
        except BlobStoreError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def properties(self, container: str, blob: str) -> BlobProperties:
        """The properties of a committed blob; BlobStoreError 404 when it does not exist."""
        current = self._current(container, blob)
        if current is None:
            raise _blob_not_found()
        return current

    def path_of(self, container: str, blob: str) -> Path:
        """The file holding a committed blob's bytes, to read them in place.

        Valid until the blob is next overwritten (that removes the old version's file).
        """
        properties = self.properties(container, blob)
        return self.root / container / properties.data_file

    def open_blob(self, container: str, blob: str) -> tuple[BlobProperties, BinaryIO]:
        """A committed blob's properties with its data file opened, consistent with each other.

        The open file keeps reading this version even if the blob is overwritten meanwhile.
        """
        with self._lock:
            properties = self.properties(container, blob)
            handle = (self.root / container / properties.data_file).open("rb")
        return properties, handle

    # Writing

    def new_body(self, *, hashed: bool = True) -> BodyWriter:
        """A temp file in the store to receive a request body into."""
        return BodyWriter(self._temp / f"{uuid.uuid4().hex}.part", hashed=hashed)

    def put_blob(
        self,
        container: str,
        blob: str,
        body: BodyWriter,
        content: ContentSettings,
        metadata: Mapping[str, str] | None = None,
        condition: CommitCondition = _no_condition,
    ) -> BlobProperties:
        """Commit a finished body as the blob's new content (Put Blob).

        Uncommitted blocks of the blob are discarded, as Azure does.
        """
        self._check_writable(container, blob)
        properties = self._commit(
            container, blob, body.path, body.size, content, dict(metadata or {}), None, condition
        )
        self._discard_staged(container, blob)
        return properties

    def reserve_block(
        self,
        container: str,
        blob: str,
        length: int,
        *,
        hashed: bool = False,
        block_id: str | None = None,
    ) -> BlockWriter:
        """A writer for a block of ``length`` bytes in the blob's staging file: at the offset
        its id names (``block_ids``) when that region is free, else after the other blocks."""
        wanted = block_offset(decode_block_id(block_id)) if block_id is not None else None
        self._check_writable(container, blob)
        folder = self._staging_folder(container, blob)
        with self._lock:
            staging = self._staging_files.get(folder)
            if staging is None:
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"{secrets.token_hex(8)}{STAGED_DATA_SUFFIX}"
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                staging = self._staging_files[folder] = _Staging(path)
            offset = staging.place(length, wanted)
            writer = BlockWriter(self, staging, offset, length, hashed=hashed)
            staging.writers.add(writer)
        return writer

    def direct_region(
        self, path: Path, offset: int, length: int, buffered_fd: int
    ) -> DirectRegion | None:
        """Where a large block's bytes can go to disk around the page cache (see
        ``directio``); None for small or unaligned blocks, or where the file system refuses."""
        if length < DIRECT_MIN_BYTES or offset % ALIGNMENT or not self._direct_supported:
            return None
        region = DirectRegion.open(path, offset, self._direct_buffers, buffered_fd)
        if region is None:
            self.refuse_direct_writes()
        return region

    def refuse_direct_writes(self) -> None:
        """Buffer every write from now on: this file system does not take O_DIRECT."""
        if self._direct_supported:
            self._direct_supported = False
            logger.info("the file system of %s does not take O_DIRECT: writes are buffered",
                        self.root)

    def release(self, writer: BlockWriter) -> None:
        """Forget a writer that will not be staged (its request failed); its region is
        free again (a retry of the block can have it)."""
        with self._lock:
            if writer in writer.staging.writers:
                writer.staging.writers.discard(writer)
                writer.staging.give_back(writer.offset, writer.length)

    def stage_block(self, container: str, blob: str, block_id: str, writer: BlockWriter) -> None:
        """Keep a finished block as an uncommitted block of the blob (Put Block).

        A block staged again under the same id replaces the earlier one, as in Azure.
        """
        self._check_writable(container, blob)
        raw_id = decode_block_id(block_id)
        folder = self._staging_folder(container, blob)
        if writer.size != writer.length:
            raise _length_mismatch()
        entry = [writer.staging.path.name, writer.offset, writer.length]
        with self._lock:
            writer.staging.writers.discard(writer)
            if self._staging_files.get(folder) is not writer.staging:
                # A commit or Put Blob of this blob discarded its uncommitted blocks while
                # this one was arriving: it went with them.
                raise BlobStoreError(
                    409,
                    "BlockListDiscarded",
                    "The blob was committed while this block was being staged; the block "
                    "was discarded with the other uncommitted blocks. Stage it again.",
                )
            _write_json_atomic(folder / raw_id.hex(), entry, self._temp, durable=False)

    def commit_block_list(
        self,
        container: str,
        blob: str,
        blocks: list[BlockRef],
        content: ContentSettings,
        metadata: Mapping[str, str] | None = None,
        condition: CommitCondition = _no_condition,
    ) -> BlobProperties:
        """Assemble the listed blocks into the blob's new content (Put Block List)."""
        self._check_writable(container, blob)
        if len(blocks) > MAX_BLOCKS:
            raise BlobStoreError(
                400, "InvalidBlockList", f"A block list holds at most {MAX_BLOCKS} blocks."
            )
        # The current version's block list and data are taken together under the lock, so a
        # concurrent commit cannot remove them in between; the open file stays readable after.
        with self._lock:
            current = self._current(container, blob)
            committed = self._committed_blocks(container, current)
            old_data = (self.root / container / current.data_file).open("rb") if current else None
        try:
            pieces = self._resolve_blocks(container, blob, blocks, committed)
            whole = self._whole_staging_file(self._staging_folder(container, blob), pieces)
            if whole is None:
                assembled, block_list = self._assemble(pieces, old_data)
            else:
                block_list = [(hex_id, size) for hex_id, (_, _, size) in pieces]
        finally:
            if old_data is not None:
                old_data.close()
        if whole is not None:
            # The blocks lie in the staging file in the listed order and fill it: it is the
            # blob. Linked, not moved, so a refused commit leaves the blocks staged.
            _fsync_file(whole)
            size = sum(size for _, size in block_list)
            properties = self._commit(container, blob, whole, size, content,
                                      dict(metadata or {}), block_list, condition, link=True)
        else:
            try:
                properties = self._commit(container, blob, assembled.path, assembled.size,
                                          content, dict(metadata or {}), block_list, condition)
            except BaseException:
                assembled.path.unlink(missing_ok=True)
                raise
        self._discard_staged(container, blob)
        return properties

    def sweep(self, max_age_seconds: float = 7 * 24 * 3600) -> None:
        """Remove leftovers older than ``max_age_seconds``: temp files of interrupted requests,
        blocks never committed (Azure drops them after a week), versions a crash orphaned.

        For the daemon to call when nothing is in flight, e.g. at start.
        """
        cutoff = time.time() - max_age_seconds
        for path in self._temp.iterdir():
            if _older_than(path, cutoff):
                path.unlink(missing_ok=True)
        for folder in self._staging.glob("*/*"):
            with self._lock:
                staging = self._staging_files.get(folder)
                if _older_than(folder, cutoff) and not (staging and staging.writers):
                    self._staging_files.pop(folder, None)
                    shutil.rmtree(folder, ignore_errors=True)
        for container in self.root.iterdir():
            if container.is_dir() and _CONTAINER_RE.fullmatch(container.name):
                self._sweep_orphans(container, cutoff)

    # Internals

    def _container_dir(self, container: str) -> Path:
        if not self.container_exists(container):
            raise BlobStoreError(
                404, "ContainerNotFound", "The specified container does not exist."
            )
        return self.root / container

    def _check_writable(self, container: str, blob: str) -> None:
        validate_blob_name(blob)
        self._container_dir(container)

    def _sidecar(self, container: str, blob: str) -> Path:
        validate_blob_name(blob)
        return self._container_dir(container) / f"{_blob_key(blob)}.json"

    def _staging_folder(self, container: str, blob: str) -> Path:
        return self._staging / container / _blob_key(blob)

    def _current(self, container: str, blob: str) -> BlobProperties | None:
        try:
            with self._sidecar(container, blob).open(encoding="utf-8") as handle:
                return BlobProperties.from_json(json.load(handle))
        except FileNotFoundError:
            return None

    def _committed_blocks(
        self, container: str, current: BlobProperties | None
    ) -> dict[str, tuple[int, int]]:
        """Block id (hex) -> (offset, size) in the current version's data file."""
        if current is None or current.blocks_file is None:
            return {}
        with (self.root / container / current.blocks_file).open(encoding="utf-8") as handle:
            entries = json.load(handle)
        offsets: dict[str, tuple[int, int]] = {}
        offset = 0
        for hex_id, size in entries:
            offsets.setdefault(hex_id, (offset, size))
            offset += size
        return offsets

    def _resolve_blocks(
        self,
        container: str,
        blob: str,
        blocks: list[BlockRef],
        committed: dict[str, tuple[int, int]],
    ) -> list[tuple[str, _Piece]]:
        """Each listed block as (hex id, where its bytes are)."""
        folder = self._staging_folder(container, blob)
        pieces: list[tuple[str, _Piece]] = []
        for ref in blocks:
            hex_id = decode_block_id(ref.block_id).hex()
            staged = _staged_entry(folder, hex_id) if ref.kind != "Committed" else None
            if staged is not None:
                pieces.append((hex_id, staged))
            elif ref.kind in ("Latest", "Committed") and hex_id in committed:
                pieces.append((hex_id, (None, *committed[hex_id])))
            else:
                raise BlobStoreError(
                    400,
                    "InvalidBlockList",
                    f"The block list names a block that does not exist: {ref.block_id[:80]}"
                    f" ({ref.kind}).",
                )
        return pieces

    def _whole_staging_file(
        self, folder: Path, pieces: list[tuple[str, _Piece]]
    ) -> Path | None:
        """The staging file when the pieces are all of it, in order, and nothing is still
        writing into it; from then on new blocks go to a new staging file."""
        if not pieces or pieces[0][1][0] is None:
            return None
        path = pieces[0][1][0]
        end = 0
        for _, (source, offset, size) in pieces:
            if source != path or offset != end:
                return None
            end += size
        with self._lock:
            staging = self._staging_files.get(folder)
            current = staging is not None and staging.path == path
            if current and staging.writers:
                return None
            try:
                if path.stat().st_size != end:
                    return None
            except FileNotFoundError:
                return None
            if current:
                del self._staging_files[folder]
        return path

    def _assemble(
        self, pieces: list[tuple[str, _Piece]], old_data: BinaryIO | None
    ) -> tuple[BodyWriter, list[tuple[str, int]]]:
        target = self.new_body(hashed=False)
        block_list: list[tuple[str, int]] = []
        try:
            for hex_id, where in pieces:
                block_list.append((hex_id, self._append_piece(where, old_data, target)))
            target.finish()
        except FileNotFoundError:
            # A concurrent commit of the same blob took the staged blocks first.
            target.discard()
            raise BlobStoreError(
                400, "InvalidBlockList", "The staged blocks were committed by another request."
            ) from None
        except BaseException:
            target.discard()
            raise
        return target, block_list

    @staticmethod
    def _append_piece(where: _Piece, old_data: BinaryIO | None, target: BodyWriter) -> int:
        source, offset, size = where
        if source is not None:
            with source.open("rb") as staged:
                if os.fstat(staged.fileno()).st_size < offset + size:
                    raise FileNotFoundError(source)  # its region was never completed
                target.copy_from(staged.fileno(), offset, size)
            return size
        if old_data is None:  # committed offsets only come from an existing version
            raise BlobStoreError(500, "InternalError", "Committed block without committed data.")
        target.copy_from(old_data.fileno(), offset, size)
        return size

    def _commit(
        self,
        container: str,
        blob: str,
        data_path: Path,
        size: int,
        content: ContentSettings,
        metadata: dict[str, str],
        block_list: list[tuple[str, int]] | None,
        condition: CommitCondition,
        *,
        link: bool = False,
    ) -> BlobProperties:
        folder = self._container_dir(container)
        key = _blob_key(blob)
        version = secrets.token_hex(8).upper()
        data_file = f"{key}.{version}.data"
        blocks_file = f"{key}.{version}.blocks" if block_list is not None else None
        # The new version's files get unique names first; nothing refers to them until the
        # sidecar swap below, which is the single atomic commit point.
        if link:
            os.link(data_path, folder / data_file)
        else:
            os.replace(data_path, folder / data_file)
        if blocks_file is not None:
            _write_json_atomic(folder / blocks_file, block_list, self._temp)
        try:
            with self._lock:
                current = self._current(container, blob)
                condition(current)
                now = _now()
                properties = BlobProperties(
                    container=container,
                    name=blob,
                    size=size,
                    etag=f'"0x{version}"',
                    last_modified=now,
                    created=current.created if current else now,
                    content=content,
                    metadata=metadata,
                    data_file=data_file,
                    blocks_file=blocks_file,
                )
                _write_json_atomic(folder / f"{key}.json", properties.to_json(), self._temp)
        except BaseException:
            self._remove_version_files(folder, data_file, blocks_file)
            raise
        _fsync_dir(folder)
        if current is not None:
            self._remove_version_files(folder, current.data_file, current.blocks_file)
        return properties

    @staticmethod
    def _remove_version_files(folder: Path, data_file: str, blocks_file: str | None) -> None:
        (folder / data_file).unlink(missing_ok=True)
        if blocks_file is not None:
            (folder / blocks_file).unlink(missing_ok=True)

    def _discard_staged(self, container: str, blob: str) -> None:
        folder = self._staging_folder(container, blob)
        with self._lock:
            self._staging_files.pop(folder, None)
            shutil.rmtree(folder, ignore_errors=True)

    def _sweep_orphans(self, folder: Path, cutoff: float) -> None:
        referenced: set[str] = set()
        for sidecar in folder.glob("*.json"):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                data = json.loads(sidecar.read_text(encoding="utf-8"))
                referenced.update(name for name in (data["data_file"], data["blocks_file"]) if name)
        for path in folder.iterdir():
            if (
                path.suffix in (".data", ".blocks")
                and path.name not in referenced
                and _older_than(path, cutoff)
            ):
                path.unlink(missing_ok=True)


def _older_than(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime < cutoff
    except FileNotFoundError:  # removed meanwhile: nothing to sweep
        return False


def _blob_not_found() -> BlobStoreError:
    return BlobStoreError(404, "BlobNotFound", "The specified blob does not exist.")


def _length_mismatch() -> BlobStoreError:
    return BlobStoreError(
        400, "InvalidHeaderValue", "The body does not have the length Content-Length announced."
    )
