"""Service SAS tokens for the embedded blob store, signed exactly as Azure Storage signs them.

Only service SAS with a shared key (no stored access policy, no user delegation, no
encryption scope) is supported: that is all the daemon hands out. The string-to-sign follows
Azure's layout for signed versions 2020-12-06 and later, which is what azure-storage-blob
12.31 produces (``sv=2026-10-06``), so tokens made by the SDK's ``generate_container_sas``
and ``generate_blob_sas`` verify here and ours verify with Azure.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote

# The signed version azure-storage-blob 12.31 puts in every SAS it makes.
DEFAULT_VERSION = "2026-10-06"
# The oldest signed version whose string-to-sign has the layout implemented below.
OLDEST_VERSION = "2020-12-06"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_VERSION_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
# Letters a blob-service SAS may grant; anything else is a malformed token.
PERMISSION_LETTERS = frozenset("racwdxyltmeopi")
# Signed fields we refuse although they are valid Azure: honouring them needs features the
# embedded store does not have, and silently ignoring them would widen what a token allows.
UNSUPPORTED_FIELDS = {
    "si": "stored access policies",
    "ses": "encryption scopes",
    "skoid": "user delegation keys",
    "sdd": "directory SAS",
}
# Fields signed after the canonical resource, in Azure's order (sv >= 2020-12-06).
_FIELDS_AFTER_RESOURCE = (
    "si", "sip", "spr", "sv", "sr", "snapshot-time", "ses",
    "rscc", "rscd", "rsce", "rscl", "rsct",
)  # fmt: skip


class SasError(Exception):
    """A request's SAS does not authorize it; carries the HTTP status and Azure error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"SasError({self.status}, {self.code!r}, {self.message!r})"


def string_to_sign(
    account: str, container: str, blob: str | None, fields: Mapping[str, str]
) -> str:
    """Azure's string-to-sign of a blob service SAS for ``sv`` >= 2020-12-06.

    ``blob`` is the decoded blob name (as in the URL path after percent-decoding); it is part
    of the canonical resource only for a blob-scoped token (``sr=b``).
    """
    resource = f"/blob/{account}/{container}"
    if fields.get("sr") == "b" and blob is not None:
        resource += f"/{blob}"
    parts = [fields.get("sp", ""), fields.get("st", ""), fields.get("se", ""), resource]
    parts += [fields.get(name, "") for name in _FIELDS_AFTER_RESOURCE]
    return "\n".join(parts)


def sign(account_key: bytes, text: str) -> str:
    """base64(HMAC-SHA256(key, utf-8 text)), the ``sig`` of a SAS."""
    digest = hmac.new(account_key, text.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def format_time(moment: datetime) -> str:
    """A SAS time: UTC, whole seconds. A naive datetime is taken as UTC (as the SDK does)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def generate_sas(
    account_key: bytes,
    account: str,
    container: str,
    blob: str | None = None,
    *,
    permission: str,
    expiry: datetime,
    start: datetime | None = None,
    version: str = DEFAULT_VERSION,
) -> str:
    """A service SAS query string (no leading ``?``) for a container, or one blob in it."""
    _check_permission_letters(permission)
    if not _VERSION_RE.fullmatch(version) or version < OLDEST_VERSION:
        raise ValueError(f"signed version must be a date no older than {OLDEST_VERSION}")
    fields = {"sv": version}
    if start is not None:
        fields["st"] = format_time(start)
    fields["se"] = format_time(expiry)
    fields["sr"] = "b" if blob is not None else "c"
    fields["sp"] = permission
    fields["sig"] = sign(account_key, string_to_sign(account, container, blob, fields))
    return "&".join(f"{name}={quote(value, safe='')}" for name, value in fields.items())


def verify_sas(
    account_key: bytes,
    account: str,
    container: str,
    blob: str | None,
    query: Mapping[str, str],
    required: str,
    now: datetime | None = None,
    *,
    client_ip: str | None = None,
    scheme: str = "http",
) -> None:
    """Raise ``SasError`` unless ``query`` holds a SAS that authorizes the request.

    ``required`` lists alternative permission letters: the token must grant at least one of
    them (``"r"`` to read; ``"wc"`` to write, where ``c`` only creates). ``blob`` is None
    for a container-level request. ``client_ip`` and ``scheme`` are checked against the
    token's ``sip`` and ``spr`` when it has them.
    """
    signature = query.get("sig")
    if not signature:
        raise _auth_failed("The request carries no SAS signature (sig).")
    _check_supported(query)
    expected = sign(account_key, string_to_sign(account, container, blob, query))
    # Compare as bytes: compare_digest refuses non-ASCII str, and a forged sig may be any text.
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8")):
        raise _auth_failed("Signature did not match.")
    _check_resource(query, blob)
    _check_times(query, now or datetime.now(UTC))
    _check_protocol(query, scheme)
    _check_ip(query, client_ip)
    _check_permission(query.get("sp", ""), required)


def _auth_failed(detail: str) -> SasError:
    return SasError(
        403,
        "AuthenticationFailed",
        "Server failed to authenticate the request. " + detail,
    )


def _check_permission_letters(permission: str) -> None:
    unknown = set(permission) - PERMISSION_LETTERS
    if not permission or unknown or len(set(permission)) != len(permission):
        raise ValueError(f"invalid SAS permission {permission!r}")


def _check_supported(query: Mapping[str, str]) -> None:
    version = query.get("sv", "")
    if not version:
        raise _auth_failed("The SAS has no signed version (sv).")
    # Dates in this fixed format order as strings; anything else is not a version at all.
    if not _VERSION_RE.fullmatch(version) or version < OLDEST_VERSION:
        raise _auth_failed(f"SAS versions older than {OLDEST_VERSION} are not supported.")
    for name, feature in UNSUPPORTED_FIELDS.items():
        if query.get(name):
            raise _auth_failed(f"SAS with {feature} ({name}) are not supported here.")


def _check_resource(query: Mapping[str, str], blob: str | None) -> None:
    resource = query.get("sr", "")
    if resource not in ("c", "b"):
        raise _auth_failed(f"Signed resource sr={resource!r} is not supported (use c or b).")
    if resource == "b" and blob is None:
        raise _auth_failed("A blob SAS (sr=b) does not authorize container requests.")


def _check_times(query: Mapping[str, str], now: datetime) -> None:
    expiry = _parse_time(query.get("se", ""), "se")
    if now >= expiry:
        raise _auth_failed("The SAS has expired.")
    if query.get("st") and now < _parse_time(query["st"], "st"):
        raise _auth_failed("The SAS is not valid yet (its start time is in the future).")


def _parse_time(text: str, name: str) -> datetime:
    """Parse an ISO 8601 UTC time of a SAS (date, minutes, seconds or fractions, with Z)."""
    if not text:
        raise _auth_failed(f"The SAS has no {name}.")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _auth_failed(f"The SAS field {name} is not an ISO 8601 time.") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _check_protocol(query: Mapping[str, str], scheme: str) -> None:
    allowed = query.get("spr")
    if allowed and scheme not in allowed.split(","):
        raise SasError(
            403,
            "AuthorizationProtocolMismatch",
            f"This request is not authorized to be made over {scheme}.",
        )


def _check_ip(query: Mapping[str, str], client_ip: str | None) -> None:
    allowed = query.get("sip")
    if not allowed:
        return
    if client_ip is None or not _ip_in_range(client_ip, allowed):
        raise SasError(
            403,
            "AuthorizationSourceIPMismatch",
            "This request is not authorized from the client's IP address.",
        )


def _ip_in_range(client_ip: str, allowed: str) -> bool:
    low_text, _, high_text = allowed.partition("-")
    try:
        address = ipaddress.ip_address(client_ip)
        low = ipaddress.ip_address(low_text)
        high = ipaddress.ip_address(high_text) if high_text else low
    except ValueError:
        return False
    if address.version != low.version or low.version != high.version:
        return False
    return int(low) <= int(address) <= int(high)


def _check_permission(granted: str, required: str) -> None:
    if not set(granted) & set(required):
        raise SasError(
            403,
            "AuthorizationPermissionMismatch",
            "This request is not authorized to perform this operation using this permission.",
        )
