"""Masking of secrets (bearer tokens, service keys, SAS signatures) for output and logs.

Every layer uses this one module, so what counts as a secret is decided in one place.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

MASK = "***"

# Query parameters of a SAS URL whose value grants access on its own.
_SAS_RE = re.compile(r"(?i)([?&]sig=)[^&#\s\"'<>]*")
_BEARER_RE = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9\-._~+/]+=*")
# Keys of a mapping whose values are secrets wherever they appear.
SECRET_FIELDS = frozenset(
    {
        "primarykey",
        "secondarykey",
        "token",
        "access_token",
        "accesstoken",
        "authorization",
        "accountkey",
        "account_key",
        "password",
        "client_secret",
    }
)


def mask_secret(value: str | None, keep: int = 4) -> str:
    """Show only the first ``keep`` characters of a secret: enough to tell two keys apart."""
    if not value:
        return ""
    if len(value) <= keep * 2:
        return MASK
    return value[:keep] + MASK


def redact_text(text: str) -> str:
    """Remove SAS signatures and bearer tokens from free text (URLs, log lines, messages)."""
    if not text:
        return text
    text = _SAS_RE.sub(lambda m: m.group(1) + MASK, text)
    return _BEARER_RE.sub(lambda m: m.group(1) + MASK, text)


def redact_value(value: Any, key: str | None = None) -> Any:
    """A copy of a JSON-like value with secret fields masked and SAS signatures removed."""
    if key is not None and key.lower() in SECRET_FIELDS and isinstance(value, str):
        return mask_secret(value)
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """A logging filter that rewrites a record's message with secrets removed.

    Attached to third-party loggers (urllib3, uvicorn's access log) that print request
    URLs, which for blob requests carry SAS signatures.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logger's problem, not ours
            return True
        redacted = redact_text(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        return True


_FILTER = RedactingFilter()


def install_log_redaction(*logger_names: str) -> None:
    """Attach the redacting filter (once) to the named loggers."""
    for name in logger_names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
