"""What commands answer, with a plain-text and an HTML form; secrets masked in both.

Listings are pandas DataFrames (wrapped in :class:`Table` only on the way to the front end,
which shows the footer); everything else here is small and imports nothing heavy.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from amlmm_magics.api.resources import Resource
from amlmm_magics.redact import mask_secret, redact_value

_FIRST = ("id", "name", "version", "state", "creationState", "createdAt", "createdTime",
          "updatedAt", "scoringUri", "operationType", "status")
_MAX_CELL = 160
# A SAS query grants access on its own: views show where a blob is, not the query.
_SAS_QUERY_RE = re.compile(r"(https?://[^\s\"'?<>]+)\?[^\s\"'<>]*\bsig=[^\s\"'<>]*")


def _short(text: str, limit: int = _MAX_CELL) -> str:
    text = _SAS_QUERY_RE.sub(r"\1?…", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ref_of(item: Mapping[str, Any]) -> str | None:
    """``name:version (id)`` for a nested resource, or None when it is no resource."""
    name, ident = item.get("name"), item.get("id")
    if name is None or ident is None:
        return None
    version = item.get("version")
    return f"{name}:{version} ({ident})" if version is not None else f"{name} ({ident})"


def compact(value: Any) -> str:
    """A value as one short cell: nested resources by reference, the rest as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return _short(str(value))
    if isinstance(value, Mapping):
        ref = _ref_of(value)
        if ref is not None:
            return ref
        return _short(json.dumps(value, default=str, separators=(", ", ": ")))
    if isinstance(value, list | tuple):
        parts = []
        for item in value:
            if isinstance(item, Mapping):
                parts.append(_ref_of(item) or str(item.get("id") or
                                                 json.dumps(item, default=str)))
            else:
                parts.append(str(item))
        return _short(", ".join(parts))
    return _short(str(value))


def _ordered(fields: Mapping[str, Any]) -> list[tuple[str, Any]]:
    first = [(k, fields[k]) for k in _FIRST if k in fields]
    return first + [(k, v) for k, v in fields.items() if k not in _FIRST]


def _kv_html(title: str, rows: Iterable[tuple[str, str]]) -> str:
    body = "".join(
        f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
        f"<td style='text-align:left'>{html.escape(v)}</td></tr>" for k, v in rows)
    return (f"<table class='amlmm-resource'><caption style='text-align:left'>"
            f"<b>{html.escape(title)}</b></caption>{body}</table>")


def _kv_text(title: str, rows: list[tuple[str, str]]) -> str:
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join([title, *(f"  {k.ljust(width)}  {v}" for k, v in rows)])


class ResourceView(Resource):
    """A resource of the API as a command answers it: still a dict (``view["id"]``,
    ``view.name``), shown as a small key/value table with nested objects compact and
    secrets masked."""

    __slots__ = ("_title", "kind")

    def __init__(self, resource: Mapping[str, Any], kind: str, title: str | None = None) -> None:
        super().__init__(resource)
        self.kind = kind
        self._title = title

    def title(self) -> str:
        if self._title:
            return self._title
        name = self.get("name") or self.get("serviceName")
        head = self.kind.capitalize()
        if name:
            head += f" {name!r}"
        if self.get("version") is not None:
            head += f" version {self['version']}"
        return head

    def rows(self) -> list[tuple[str, str]]:
        return [(k, compact(v)) for k, v in _ordered(redact_value(dict(self)))]

    def _repr_html_(self) -> str:
        return _kv_html(self.title(), self.rows())

    def __repr__(self) -> str:
        return _kv_text(self.title(), self.rows())

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))

    def to_json(self) -> str:
        return json.dumps(redact_value(dict(self)), indent=2, default=str)

    to_terminal = to_json


class ServiceKeys:
    """A service's keys: ``keys.primary`` / ``keys.secondary`` are the real keys; the
    reprs mask them unless made with ``show=True``."""

    def __init__(self, service: str, keys: Mapping[str, Any], show: bool = False) -> None:
        self.service = service
        self.primary: str = keys.get("primaryKey") or ""
        self.secondary: str = keys.get("secondaryKey") or ""
        self.show = show

    def _shown(self, key: str) -> str:
        return key if self.show else mask_secret(key)

    def rows(self) -> list[tuple[str, str]]:
        return [("primaryKey", self._shown(self.primary)),
                ("secondaryKey", self._shown(self.secondary))]

    def title(self) -> str:
        return f"Keys of service {self.service!r}" + ("" if self.show else " (masked; --show)")

    def __repr__(self) -> str:
        return _kv_text(self.title(), self.rows())

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))

    def _repr_html_(self) -> str:
        return _kv_html(self.title(), self.rows())

    def to_terminal(self) -> str:
        return json.dumps(dict(self.rows()), indent=2)


class Text(str):
    """Text shown as it is (logs, help): no quotes, no escapes."""

    __slots__ = ()

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))

    def _repr_html_(self) -> str | None:
        return None  # plain text: IPython falls back to _repr_pretty_

    def to_terminal(self) -> str:
        return str(self)


class HelpText(Text):
    """Help and the manual: printed, not returned as a value."""

    __slots__ = ()


class UsageSnippets:
    """Ready-to-run curl and Python calls of a service (the key masked unless shown)."""

    def __init__(self, service: str, url: str, key: str, sample: Any, show: bool) -> None:
        self.service = service
        self.url = url
        self.key = key if show else mask_secret(key)
        self.show = show
        self.sample = sample

    @property
    def curl(self) -> str:
        body = json.dumps(self.sample).replace("'", "'\\''")
        return (f"curl -sS -X POST '{self.url}' \\\n"
                f"  -H 'Content-Type: application/json' \\\n"
                f"  -H 'Authorization: Bearer {self.key}' \\\n"
                f"  -d '{body}'")

    @property
    def python(self) -> str:
        return ("import requests\n\n"
                f"answer = requests.post(\n    {self.url!r},\n"
                f"    json={json.dumps(self.sample)},\n"
                f"    headers={{'Authorization': 'Bearer {self.key}'}},\n"
                "    timeout=60,\n)\nanswer.raise_for_status()\nprint(answer.json())")

    def _note(self) -> str:
        return "" if self.show else "(key masked: add --show to include it)"

    def __repr__(self) -> str:
        note = f"\n{self._note()}" if self._note() else ""
        return (f"Calling service {self.service!r}{note}\n\n# curl\n{self.curl}\n\n"
                f"# Python\n{self.python}")

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))

    def _repr_html_(self) -> str:
        note = f"<p>{html.escape(self._note())}</p>" if self._note() else ""
        return (f"<b>Calling service {html.escape(self.service)!s}</b>{note}"
                f"<p>curl</p><pre>{html.escape(self.curl)}</pre>"
                f"<p>Python</p><pre>{html.escape(self.python)}</pre>")

    def to_terminal(self) -> str:
        return repr(self)


@dataclass
class ConfigView:
    """``%amlmm config``: each setting, its effective value and where it came from."""

    rows: list[tuple[str, str, str, str]]  # name, value, source, env var

    def __repr__(self) -> str:
        rows = [("setting", "value", "source", "environment variable"), *self.rows]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        return "\n".join(
            "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
            + "  " + row[3] for row in rows)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))

    def _repr_html_(self) -> str:
        head = "".join(f"<th style='text-align:left'>{h}</th>"
                       for h in ("setting", "value", "source", "environment variable"))
        body = "".join("<tr>" + "".join(f"<td style='text-align:left'>{html.escape(c)}</td>"
                                        for c in row) + "</tr>" for row in self.rows)
        return f"<table class='amlmm-config'><tr>{head}</tr>{body}</table>"

    def to_terminal(self) -> str:
        return repr(self)


@dataclass
class Table:
    """A listing on its way to the front end: the DataFrame and its footer."""

    frame: Any
    footer: str | None = None
