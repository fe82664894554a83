"""Resources as they come back from the service: dicts in the spec's camelCase.

The published versions of the spec spell ``id``/``ID`` and ``url``/``URL`` either way; the
client accepts both and hands out the lower-case form everywhere, nested objects included.
"""

from __future__ import annotations

import json
from typing import Any

from amlmm_magics.redact import redact_value

_ALIASES = {"ID": "id", "URL": "url"}


def _hook(obj: dict[str, Any]) -> Resource:
    """``json.loads`` object hook: every JSON object becomes a Resource as it is parsed."""
    if "ID" in obj or "URL" in obj:
        for alias, name in _ALIASES.items():
            if alias in obj:
                value = obj.pop(alias)
                obj.setdefault(name, value)  # both spellings present: lower case wins
    return Resource(obj)


def parse_json(content: bytes) -> Any:
    """Parse an answer's body into Resources (no second walk over the data). Bodies with no
    ``ID``/``URL`` key at all skip the renaming, which big listings pay for per object."""
    if not content:
        return None
    if b'"ID"' in content or b'"URL"' in content:
        return json.loads(content, object_hook=_hook)
    return json.loads(content, object_hook=Resource)


def normalize(value: Any) -> Any:
    """Turn parsed JSON into Resources, with ``ID``/``URL`` keys renamed to lower case."""
    if isinstance(value, Resource):
        return value  # built by parse_json: already normalized all the way down
    if isinstance(value, dict):
        out = Resource()
        for key, item in value.items():
            name = _ALIASES.get(key, key)
            if name != key and name in value:
                continue  # both spellings present: the lower-case one wins
            dict.__setitem__(out, name, normalize(item))
        return out
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


class Resource(dict):
    """A resource of the API: a plain dict (camelCase keys) that also allows ``r.name``.

    Its reprs never show secrets: service keys are masked and SAS signatures removed.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | {k for k in self if k.isidentifier()})

    def __repr__(self) -> str:
        return f"Resource({json.dumps(redact_value(dict(self)), default=str)})"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(json.dumps(redact_value(dict(self)), indent=2, default=str))

    def redacted(self) -> dict[str, Any]:
        """A plain copy safe to print or log."""
        return redact_value(dict(self))
