"""Large received bodies written to disk around the page cache (``O_DIRECT``).

Why: a model blob is written once, then read once by the scoring process that loads it, so
its pages are not worth caching; and filling the page cache is what makes a large buffered
write slow on virtual machines that hand free memory back to their host. There, each page
the cache takes for the first time costs a fault in the host: measured on the 2-core VM this
project is built on, a 1 GiB body received over loopback took 5.6-6.5 s to land in files that
stay, through buffered writes, and 1.5-2.3 s through ``O_DIRECT`` from one reused buffer (the
disk itself writes about 1 GB/s). Object stores do the same for large objects (MinIO writes
them with ``O_DIRECT``).

``O_DIRECT`` needs the buffer, the file offset and the length aligned to the disk's block
size: bytes are gathered in a page-aligned buffer (copied in with ``write``, or read into it
straight from a socket through ``space`` and ``filled``) and written out in whole buffers,
and the last, unaligned few bytes go through the page cache as usual.
"""

from __future__ import annotations

import errno
import mmap
import os
import threading
from collections.abc import Sequence
from pathlib import Path

# At least the logical block size of any disk (512 or 4096) and the page size.
ALIGNMENT = 4096
_UNSUPPORTED = (errno.EINVAL, errno.EOPNOTSUPP)


class AlignedBuffers:
    """Page-aligned buffers of one size, reused: memory that was touched before is fast to
    fill again, where fresh memory costs the same faults as fresh page cache."""

    def __init__(self, size: int, *, keep: int) -> None:
        if size <= 0 or size % ALIGNMENT:
            raise ValueError(f"buffer size must be a positive multiple of {ALIGNMENT}")
        self.size = size
        self._keep = keep
        self._free: list[memoryview] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"AlignedBuffers(size={self.size}, free={len(self._free)})"

    def take(self) -> memoryview:
        with self._lock:
            if self._free:
                return self._free.pop()
        return memoryview(mmap.mmap(-1, self.size))

    def give(self, buffer: memoryview) -> None:
        with self._lock:
            if len(self._free) < self._keep:
                self._free.append(buffer)
                return
        owner = buffer.obj
        buffer.release()
        if isinstance(owner, mmap.mmap):
            owner.close()


class DirectRegion:
    """Sequential writes filling a file from ``offset`` on, around the page cache.

    Bytes wait in an aligned buffer until it is full, then go to disk in one ``O_DIRECT``
    write; ``finish`` writes what is left, its unaligned end through ``buffered_fd`` (an
    ordinary descriptor of the same file, which the caller keeps). A file system that took
    ``O_DIRECT`` when the file was opened but refuses the writes gets them all buffered
    instead (``refused`` tells). Not thread-safe: one writer drives it.
    """

    def __init__(self, fd: int, offset: int, buffers: AlignedBuffers, buffered_fd: int) -> None:
        if offset % ALIGNMENT:
            raise ValueError(f"offset {offset} is not a multiple of {ALIGNMENT}")
        self.refused = False
        self._fd: int | None = fd
        self._buffered_fd = buffered_fd
        self._buffers = buffers
        self._buffer: memoryview | None = buffers.take()
        self._start = offset  # where the buffer's first byte goes in the file
        self._fill = 0

    @classmethod
    def open(
        cls, path: Path, offset: int, buffers: AlignedBuffers, buffered_fd: int
    ) -> DirectRegion | None:
        """A region of ``path`` from ``offset``; None where the file system refuses
        ``O_DIRECT`` (tmpfs before Linux 6.6, some network and FUSE file systems)."""
        flag = getattr(os, "O_DIRECT", 0)
        if not flag:
            return None
        try:
            fd = os.open(path, os.O_WRONLY | flag)
        except OSError as exc:
            if exc.errno in _UNSUPPORTED:
                return None
            raise
        return cls(fd, offset, buffers, buffered_fd)

    def write(self, chunks: Sequence[memoryview]) -> int:
        """Take all of ``chunks``; answer how many bytes that was."""
        taken = 0
        for chunk in chunks:
            while chunk:
                space = self.space()
                count = min(len(space), len(chunk))
                space[:count] = chunk[:count]
                self.filled(count)
                taken += count
                chunk = chunk[count:]
        return taken

    def space(self) -> memoryview:
        """The part of the buffer still free, to put the next bytes in (then ``filled``)."""
        return self._open_buffer()[self._fill :]

    def filled(self, count: int) -> None:
        """``count`` more bytes are in the buffer, at the start of what ``space`` answered;
        a full buffer goes to disk."""
        buffer = self._open_buffer()
        if not 0 <= count <= len(buffer) - self._fill:
            raise ValueError(f"{count} bytes do not fit in the {len(buffer) - self._fill} free")
        self._fill += count
        if self._fill == len(buffer):
            self._write_out(len(buffer))

    def finish(self) -> None:
        """Write what the buffer still holds, then let go of the buffer and descriptor."""
        try:
            buffer = self._open_buffer()
            self._write_out(self._fill - self._fill % ALIGNMENT)
            self._write_all(self._buffered_fd, buffer[: self._fill], self._start)
            self._fill = 0
        finally:
            self.close()

    def close(self) -> None:
        """Let go without writing (a failed request)."""
        if self._buffer is not None:
            self._buffers.give(self._buffer)
            self._buffer = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open_buffer(self) -> memoryview:
        if self._buffer is None or self._fd is None:
            raise ValueError("this region is closed")
        return self._buffer

    def _write_out(self, count: int) -> None:
        """Write the buffer's first ``count`` bytes (a multiple of ALIGNMENT) and move the
        rest of what it holds to its start."""
        buffer = self._open_buffer()
        assert self._fd is not None
        try:
            self._write_all(self._buffered_fd if self.refused else self._fd, buffer[:count],
                            self._start)
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                raise
            self.refused = True
            self._write_all(self._buffered_fd, buffer[:count], self._start)
        rest = self._fill - count
        if rest:
            buffer[:rest] = buffer[count : self._fill]
        self._start += count
        self._fill = rest

    @staticmethod
    def _write_all(fd: int, data: memoryview, position: int) -> None:
        while data:
            written = os.pwrite(fd, data, position)
            data, position = data[written:], position + written
