"""The embedded backend's SQLite store: every resource, operation, deployment and key.

One table holds all resources as JSON bodies (what the API answers) with an ``internal`` JSON
column for what the API never shows (context folders, ports). WAL mode and ``synchronous=FULL``
so a crash of the daemon loses nothing that was answered as registered; versions per name are
assigned inside ``BEGIN IMMEDIATE`` so concurrent registrations get distinct, consecutive
versions.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    scope TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT,
    version INTEGER,
    body TEXT NOT NULL,
    internal TEXT NOT NULL DEFAULT '{}',
    UNIQUE (kind, id)
);
CREATE UNIQUE INDEX IF NOT EXISTS resources_version
    ON resources (kind, scope, name, version) WHERE version IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS resources_unique_name
    ON resources (kind, scope, name) WHERE kind IN ('service', 'compute');
CREATE INDEX IF NOT EXISTS resources_listing ON resources (kind, scope, seq);
CREATE TABLE IF NOT EXISTS service_keys (
    service_id TEXT PRIMARY KEY,
    primary_key TEXT NOT NULL,
    secondary_key TEXT NOT NULL
);
"""


def now_iso() -> str:
    """UTC time as the API writes it: ISO 8601 with microseconds and a ``Z``."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def new_id() -> str:
    return uuid.uuid4().hex


def scope_of(subscription: str, resource_group: str, account: str) -> str:
    """Resources belong to one account; Azure names are case-insensitive."""
    return f"{subscription}/{resource_group}/{account}".lower()


class InvalidSkipToken(ValueError):
    pass


@dataclass
class Row:
    seq: int
    kind: str
    scope: str
    id: str
    body: dict[str, Any]
    internal: dict[str, Any]


@dataclass(frozen=True)
class Filter:
    """A SQL condition on the body JSON, with its parameters."""

    sql: str
    params: tuple[Any, ...]

    @classmethod
    def equals(cls, path: str, value: Any) -> Filter:
        return cls("json_extract(body, ?) = ?", (path, value))

    @classmethod
    def internal_equals(cls, path: str, value: Any) -> Filter:
        """On the internal column, which the API never shows."""
        return cls("json_extract(internal, ?) = ?", (path, value))

    @classmethod
    def has_item(cls, array_path: str, value: Any) -> Filter:
        """An array in the body holds ``value``."""
        return cls("EXISTS (SELECT 1 FROM json_each(body, ?) WHERE value = ?)",
                   (array_path, value))

    @classmethod
    def has_item_with(cls, array_path: str, field: str, value: Any) -> Filter:
        """An array of objects in the body holds one whose ``field`` is ``value``."""
        return cls(
            "EXISTS (SELECT 1 FROM json_each(body, ?) WHERE json_extract(value, ?) = ?)",
            (array_path, f"$.{field}", value),
        )


def encode_token(seq: int) -> str:
    raw = json.dumps({"before": seq}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        seq = data["before"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ValueError
        return seq
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidSkipToken(token) from exc


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        db = self._db()
        db.executescript(_SCHEMA)  # its own transaction: executescript commits first
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        os.chmod(path, 0o600)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                 check_same_thread=False)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA foreign_keys = ON")
            self._local.db = db
        return db

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds the write lock from its start."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # -- writing -----------------------------------------------------------------------------
    def insert(
        self,
        kind: str,
        scope: str,
        body: dict[str, Any],
        *,
        versioned: bool = False,
        internal: dict[str, Any] | None = None,
        db: sqlite3.Connection | None = None,
        row_id: str | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        """Store a new resource; with ``versioned`` its version is the next for its name.

        The row is keyed by ``body["id"]`` unless ``row_id`` is given (for resources whose
        API id is a name, unique only within an account), and named by ``body["name"]``
        unless ``name`` is given.
        """
        with contextlib.ExitStack() as stack:
            if db is None:
                db = stack.enter_context(self.transaction())
            name = name if name is not None else body.get("name")
            if versioned:
                row = db.execute(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM resources "
                    "WHERE kind = ? AND scope = ? AND name = ?", (kind, scope, name)).fetchone()
                body = {**body, "version": row[0]}
            db.execute(
                "INSERT INTO resources (kind, scope, id, name, version, body, internal) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (kind, scope, row_id or body["id"], name, body.get("version"), _dump(body),
                 _dump(internal or {})),
            )
        return body

    def update(
        self,
        kind: str,
        id: str,
        *,
        body: dict[str, Any] | None = None,
        internal: dict[str, Any] | None = None,
        db: sqlite3.Connection | None = None,
    ) -> None:
        sets, params = [], []
        if body is not None:
            sets.append("body = ?")
            params.append(_dump(body))
        if internal is not None:
            sets.append("internal = ?")
            params.append(_dump(internal))
        if not sets:
            return
        (db or self._db()).execute(
            f"UPDATE resources SET {', '.join(sets)} WHERE kind = ? AND id = ?",
            (*params, kind, id),
        )

    def delete(self, kind: str, id: str, db: sqlite3.Connection | None = None) -> bool:
        cursor = (db or self._db()).execute(
            "DELETE FROM resources WHERE kind = ? AND id = ?", (kind, id))
        return cursor.rowcount > 0

    # -- reading -----------------------------------------------------------------------------
    def get(self, kind: str, scope: str | None, id: str,
            db: sqlite3.Connection | None = None) -> Row | None:
        sql = "SELECT seq, kind, scope, id, body, internal FROM resources WHERE kind = ? AND id = ?"
        params: tuple[Any, ...] = (kind, id)
        if scope is not None:
            sql += " AND scope = ?"
            params += (scope,)
        found = (db or self._db()).execute(sql, params).fetchone()
        return _row(found) if found else None

    def latest_by_name(self, kind: str, scope: str, name: str,
                       version: int | None = None) -> Row | None:
        sql = ("SELECT seq, kind, scope, id, body, internal FROM resources "
               "WHERE kind = ? AND scope = ? AND name = ?")
        params: tuple[Any, ...] = (kind, scope, name)
        if version is not None:
            sql += " AND version = ?"
            params += (version,)
        found = self._db().execute(sql + " ORDER BY version DESC, seq DESC LIMIT 1",
                                   params).fetchone()
        return _row(found) if found else None

    def page(
        self,
        kind: str,
        scope: str,
        filters: Sequence[Filter] = (),
        *,
        count: int,
        skip_token: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page, newest first, and the token of the next page (None on the last)."""
        where = ["kind = ?", "scope = ?"]
        params: list[Any] = [kind, scope]
        for f in filters:
            where.append(f.sql)
            params.extend(f.params)
        if skip_token:
            where.append("seq < ?")
            params.append(decode_token(skip_token))
        rows = self._db().execute(
            f"SELECT seq, body FROM resources WHERE {' AND '.join(where)} "
            "ORDER BY seq DESC LIMIT ?", (*params, count + 1)).fetchall()
        items = [json.loads(body) for _, body in rows[:count]]
        token = encode_token(rows[count - 1][0]) if len(rows) > count else None
        return items, token

    def all(self, kind: str, filters: Sequence[Filter] = ()) -> list[Row]:
        """Every resource of a kind in every account, oldest first (for recovery)."""
        where = ["kind = ?"] + [f.sql for f in filters]
        params = [kind] + [p for f in filters for p in f.params]
        rows = self._db().execute(
            "SELECT seq, kind, scope, id, body, internal FROM resources "
            f"WHERE {' AND '.join(where)} ORDER BY seq", params).fetchall()
        return [_row(r) for r in rows]

    # -- service keys (never part of a resource body) ----------------------------------------
    def set_keys(self, service_id: str, primary: str, secondary: str,
                 db: sqlite3.Connection | None = None) -> None:
        (db or self._db()).execute(
            "INSERT INTO service_keys VALUES (?, ?, ?) ON CONFLICT (service_id) DO UPDATE "
            "SET primary_key = excluded.primary_key, secondary_key = excluded.secondary_key",
            (service_id, primary, secondary))

    def get_keys(self, service_id: str) -> tuple[str, str] | None:
        found = self._db().execute(
            "SELECT primary_key, secondary_key FROM service_keys WHERE service_id = ?",
            (service_id,)).fetchone()
        return (found[0], found[1]) if found else None

    def delete_keys(self, service_id: str, db: sqlite3.Connection | None = None) -> None:
        (db or self._db()).execute("DELETE FROM service_keys WHERE service_id = ?",
                                   (service_id,))

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


def _dump(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))


def _row(found: tuple[Any, ...]) -> Row:
    seq, kind, scope, id, body, internal = found
    return Row(seq, kind, scope, id, json.loads(body), json.loads(internal))
