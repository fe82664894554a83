"""Writes around the page cache: aligned buffers, whole-buffer writes, the ragged end."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from amlmm_magics.local.directio import ALIGNMENT, AlignedBuffers, DirectRegion


@pytest.fixture()
def target(tmp_path) -> Path:
    path = tmp_path / "blob.staged"
    path.touch()
    probe = DirectRegion.open(path, 0, AlignedBuffers(ALIGNMENT, keep=0), -1)
    if probe is None:
        pytest.skip("this file system refuses O_DIRECT")
    probe.close()
    return path


@pytest.fixture()
def buffered_fd(target) -> Iterator[int]:
    fd = os.open(target, os.O_WRONLY)
    yield fd
    os.close(fd)


def _write_in_odd_pieces(region: DirectRegion, data: bytes) -> int:
    return sum(region.write([memoryview(data)[i : i + 5000]]) for i in range(0, len(data), 5000))


def test_a_region_writes_every_byte_in_place(target, buffered_fd):
    buffers = AlignedBuffers(4 * ALIGNMENT, keep=1)
    target.write_bytes(b"h" * (2 * ALIGNMENT))  # what lies before the region stays
    data = os.urandom(9 * ALIGNMENT + 77)
    region = DirectRegion.open(target, 2 * ALIGNMENT, buffers, buffered_fd)
    assert region is not None
    assert _write_in_odd_pieces(region, data) == len(data)
    region.finish()
    assert not region.refused
    assert target.read_bytes() == b"h" * (2 * ALIGNMENT) + data
    with pytest.raises(ValueError, match="closed"):
        region.write([memoryview(b"late")])


def test_writes_the_file_system_refuses_go_through_the_page_cache(target, buffered_fd,
                                                                  direct_writes_refused):
    data = os.urandom(5 * ALIGNMENT + 9)
    region = DirectRegion.open(target, 0, AlignedBuffers(2 * ALIGNMENT, keep=0), buffered_fd)
    assert region is not None
    assert _write_in_odd_pieces(region, data) == len(data)
    region.finish()
    assert region.refused
    assert target.read_bytes() == data


def test_regions_start_on_an_aligned_offset():
    with pytest.raises(ValueError, match="not a multiple"):
        DirectRegion(-1, 100, AlignedBuffers(ALIGNMENT, keep=0), -1)


def test_buffers_are_reused_up_to_the_number_kept():
    buffers = AlignedBuffers(ALIGNMENT, keep=1)
    first, second = buffers.take(), buffers.take()
    second_memory = second.obj
    buffers.give(first)
    buffers.give(second)  # beyond what is kept: unmapped
    assert buffers.take() is first
    assert second_memory.closed
    with pytest.raises(ValueError):
        AlignedBuffers(ALIGNMENT + 1, keep=1)


def test_a_closed_region_gives_its_buffer_back_unwritten(target, buffered_fd):
    buffers = AlignedBuffers(ALIGNMENT, keep=2)
    region = DirectRegion.open(target, 0, buffers, buffered_fd)
    assert region is not None
    region.write([memoryview(b"never written")])
    region.close()
    assert target.stat().st_size == 0
    assert repr(buffers) == f"AlignedBuffers(size={ALIGNMENT}, free=1)"


def test_a_region_takes_no_more_than_its_buffer_has_room_for(target, buffered_fd):
    region = DirectRegion(os.open(target, os.O_WRONLY | os.O_DIRECT), 0,
                          AlignedBuffers(ALIGNMENT, keep=0), buffered_fd)
    try:
        region.space()[:3] = b"abc"
        region.filled(3)
        assert len(region.space()) == ALIGNMENT - 3
        with pytest.raises(ValueError, match="do not fit"):
            region.filled(ALIGNMENT - 2)
        region.space()[: ALIGNMENT - 3] = b"d" * (ALIGNMENT - 3)
        region.filled(ALIGNMENT - 3)  # full: written out
        assert target.read_bytes() == b"abc" + b"d" * (ALIGNMENT - 3)
        assert len(region.space()) == ALIGNMENT
    finally:
        region.close()
