"""Bearer-key checking for a scoring service.

The runtime only ever holds salted SHA-256 hashes of the service keys. The keys file is one
of two JSON forms:

- hashed (what the backend writes): ``{"salt": "<hex>", "sha256": ["<hex>", ...]}`` where
  each hash is ``sha256(bytes.fromhex(salt) + key.encode("utf-8"))``;
- plaintext (a Kubernetes Secret mount): ``{"primaryKey": "...", "secondaryKey": "..."}``,
  hashed with a fresh random salt as soon as it is read.

``KeyChecker.from_file`` stats the file on every check and re-reads it when it changed, so a
regenerated key takes effect on the very next request. No key or hash is ever logged or shown
in a repr.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["KeyChecker", "KeysFileError", "hash_keys"]

# A file rewritten in place within one filesystem timestamp tick keeps its stat signature,
# so for this long after a change the content itself is compared too (as git does for
# "racily clean" files).
_RACY_NS = 2_000_000_000


class KeysFileError(ValueError):
    """The keys file is missing or not in one of the two accepted forms."""


def hash_keys(keys: Iterable[str], salt: bytes | None = None) -> dict[str, Any]:
    """The hashed keys-file content for ``keys`` (empty keys are dropped)."""
    salt = secrets.token_bytes(16) if salt is None else salt
    return {
        "salt": salt.hex(),
        "sha256": [hashlib.sha256(salt + k.encode("utf-8")).hexdigest() for k in keys if k],
    }


def _parse_config(config: Any) -> tuple[bytes, tuple[bytes, ...]]:
    if not isinstance(config, Mapping):
        raise KeysFileError("keys config must be a JSON object")
    if "sha256" in config:
        try:
            salt = bytes.fromhex(str(config.get("salt", "")))
            digests = tuple(bytes.fromhex(h) for h in config["sha256"])
        except (TypeError, ValueError):
            raise KeysFileError("keys config: 'salt' and 'sha256' must be hex strings") from None
        if any(len(d) != 32 for d in digests):
            raise KeysFileError("keys config: every 'sha256' entry must be 64 hex digits")
        return salt, digests
    if "primaryKey" in config or "secondaryKey" in config:
        keys = [config.get("primaryKey"), config.get("secondaryKey")]
        if not all(k is None or isinstance(k, str) for k in keys):
            raise KeysFileError("keys config: primaryKey and secondaryKey must be strings")
        hashed = hash_keys([k for k in keys if k])
        return bytes.fromhex(hashed["salt"]), tuple(bytes.fromhex(h) for h in hashed["sha256"])
    raise KeysFileError("keys config needs either 'salt' + 'sha256' or 'primaryKey'/'secondaryKey'")


def _bearer_token(authorization: bytes | str | None) -> bytes | None:
    if not authorization:
        return None
    if isinstance(authorization, str):
        authorization = authorization.encode("latin-1", "replace")
    scheme, _, token = authorization.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    token = token.strip()
    return token or None


class KeyChecker:
    """Accepts ``Authorization: Bearer <key>`` for any of the configured keys."""

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        """Check against ``config`` (either keys-file form); no config accepts no key."""
        self._salt, self._digests = _parse_config(config) if config is not None else (b"", ())
        self._path: Path | None = None
        self._signature: tuple[int, ...] | None = None
        self._raw = b""
        self._racy_until = 0
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> KeyChecker:
        """Load ``path``; later checks pick up changes to it (``KeysFileError`` if unusable)."""
        checker = cls()
        checker._path = Path(path)
        try:
            st = os.stat(checker._path)
        except OSError as exc:
            raise KeysFileError(f"keys file {path}: {exc.strerror}") from None
        checker._load(st)
        return checker

    def __repr__(self) -> str:
        where = f"file={str(self._path)!r}, " if self._path is not None else ""
        return f"KeyChecker({where}keys={len(self._digests)})"

    def replace(self, config: Mapping[str, Any] | None) -> None:
        """Check against ``config`` from now on (a Ray Serve ``user_config`` update)."""
        salt, digests = _parse_config(config) if config is not None else (b"", ())
        with self._lock:
            self._salt, self._digests = salt, digests

    @property
    def key_count(self) -> int:
        return len(self._digests)

    def _load(self, st: os.stat_result) -> None:
        assert self._path is not None
        try:
            raw = self._path.read_bytes()
            salt, digests = _parse_config(json.loads(raw))
        except (OSError, ValueError) as exc:
            # Fail closed: a broken keys file must not leave the old keys working.
            self._salt, self._digests, self._raw = b"", (), b""
            if isinstance(exc, KeysFileError):
                reason = str(exc)
            elif isinstance(exc, OSError):
                reason = exc.strerror or type(exc).__name__
            else:
                reason = "not valid JSON"
            raise KeysFileError(f"keys file {self._path}: {reason}") from None
        finally:
            self._signature = (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)
            self._racy_until = max(st.st_mtime_ns, st.st_ctime_ns) + _RACY_NS
        self._salt, self._digests, self._raw = salt, digests, raw

    def _refresh(self) -> None:
        assert self._path is not None
        try:
            st = os.stat(self._path)
        except OSError:
            if self._digests:
                print(f"keys file {self._path} is gone: rejecting every key", file=sys.stderr)
            self._salt, self._digests, self._signature = b"", (), None
            return
        signature = (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)
        if signature == self._signature:
            if time.time_ns() > self._racy_until:
                return
            try:
                if self._path.read_bytes() == self._raw:
                    return
            except OSError:
                pass
        try:
            self._load(st)
        except KeysFileError as exc:
            print(f"{exc}: rejecting every key", file=sys.stderr)

    def check(self, authorization: bytes | str | None) -> bool:
        """True when the ``Authorization`` header value carries one of the keys."""
        with self._lock:
            if self._path is not None:
                self._refresh()
            salt, digests = self._salt, self._digests  # a consistent pair
        token = _bearer_token(authorization)
        if token is None:
            return False
        digest = hashlib.sha256(salt + token).digest()
        ok = False
        for expected in digests:
            # No early exit: the time taken does not depend on which key matched.
            ok |= hmac.compare_digest(digest, expected)
        return ok
