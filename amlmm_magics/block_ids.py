"""The block ids amlmm's uploader gives: each names where its block sits in the blob.

Azure takes any block ids of one length per blob. These let the embedded blob store write
each block straight to its place in the blob, whatever order parallel requests arrive in, so
the block list commits without a copy; other ids are placed in the order they arrive.
Shared by the uploader (``api.blob``) and the store (``local.blobstore``).
"""

from __future__ import annotations

import re

_PREFIX = b"amlmm-offset-"
_ADDRESSED = re.compile(re.escape(_PREFIX) + rb"(\d{20})")


def offset_block_id(offset: int) -> str:
    """The block id for the block that starts ``offset`` bytes into the blob, as
    azure-storage-blob takes it (the SDK base64-encodes ids on the wire)."""
    if not 0 <= offset < 10**20:
        raise ValueError(f"block offset out of range: {offset}")
    return (_PREFIX + b"%020d" % offset).decode("ascii")


def block_offset(raw_id: bytes) -> int | None:
    """The offset a block id names (decoded from the wire's base64), or None for ids of any
    other form."""
    match = _ADDRESSED.fullmatch(raw_id)
    return int(match.group(1)) if match else None
