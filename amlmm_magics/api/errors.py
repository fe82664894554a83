"""Typed errors of the Model Management client.

Every non-success answer becomes a :class:`ModelManagementError` (or a subclass chosen by
status code) whose ``str()`` is one line a user can act on.
"""

from __future__ import annotations

import json
import re
from typing import Any

from amlmm_magics.redact import redact_text

_REQUEST_ID_HEADERS = ("x-ms-request-id", "x-ms-client-request-id", "request-id", "x-request-id")
_TAG_RE = re.compile(r"<[^>]+>")
_SPACE_RE = re.compile(r"\s+")


class ModelManagementError(Exception):
    """An error answered by (or on the way to) the Model Management service."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        details: list[dict[str, Any]] | None = None,
        request_id: str | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        self.message = redact_text(message)
        self.status_code = status_code
        self.code = code
        self.details = details or []
        self.request_id = request_id
        self.method = method
        self.url = redact_text(url) if url else url
        super().__init__(self.message)

    def __str__(self) -> str:
        head = " ".join(str(p) for p in (self.status_code, self.code) if p)
        text = f"{head}: {self.message}" if head else self.message
        # Details the message already says (a validation error's first problem) are
        # left out; the others follow it.
        detail_text = "; ".join(
            f"{d.get('code')}: {d.get('message')}" if d.get("code") else str(d.get("message"))
            for d in self.details
            if isinstance(d, dict) and d.get("message")
            and str(d["message"]).rstrip(".") not in self.message
        )
        if detail_text:
            text = f"{text} ({redact_text(detail_text)})"
        if self.request_id:
            text = f"{text} [request id {self.request_id}]"
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class BadRequestError(ModelManagementError):
    """400: the request was malformed or failed validation."""


class AuthenticationError(ModelManagementError):
    """401: the credential was missing, wrong or expired."""


class PermissionDeniedError(ModelManagementError):
    """403: the identity may not do this."""


class ResourceNotFoundError(ModelManagementError):
    """404: no such resource (or route)."""


class ResourceExistsError(ModelManagementError):
    """409: a resource with that name already exists."""


class ThrottledError(ModelManagementError):
    """429: too many requests, even after retrying."""


class ServiceError(ModelManagementError):
    """5xx: the service failed, even after retrying."""


class ServiceRequestError(ModelManagementError):
    """The request never got an answer: connection refused, DNS, timeout."""


class OperationFailedError(ModelManagementError):
    """An asynchronous operation ended Failed or Cancelled."""

    def __init__(self, message: str, *, operation: dict[str, Any] | None = None, **kw: Any):
        super().__init__(message, **kw)
        self.operation = operation or {}
        self.operation_id = self.operation.get("id")
        self.state = self.operation.get("state")


class OperationTimeoutError(ModelManagementError):
    """Waiting for an asynchronous operation took longer than the timeout given."""

    def __init__(self, message: str, *, operation_id: str | None = None, **kw: Any):
        super().__init__(message, **kw)
        self.operation_id = operation_id


class CredentialError(ModelManagementError):
    """No token could be obtained from the configured credential."""


_BY_STATUS: dict[int, type[ModelManagementError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: ResourceNotFoundError,
    409: ResourceExistsError,
    429: ThrottledError,
}


def error_class_for(status_code: int) -> type[ModelManagementError]:
    if status_code in _BY_STATUS:
        return _BY_STATUS[status_code]
    if status_code >= 500:
        return ServiceError
    return ModelManagementError


def _plain_text(body: str, limit: int = 200) -> str:
    text = _SPACE_RE.sub(" ", _TAG_RE.sub(" ", body)).strip()
    return text[:limit] + ("..." if len(text) > limit else "")


def parse_error_body(body: bytes, content_type: str = "") -> tuple[str | None, str | None, list]:
    """(code, message, details) from an ErrorResponse body, or from whatever text came back."""
    text = body.decode("utf-8", "replace") if body else ""
    data: Any = None
    if text and ("json" in content_type or text.lstrip()[:1] in "{["):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
    if isinstance(data, dict):
        # ErrorResponse, or an ARM-style {"error": {...}} envelope
        inner = data.get("error") if isinstance(data.get("error"), dict) else data
        code = inner.get("code")
        message = inner.get("message") or inner.get("Message") or inner.get("detail")
        details = inner.get("details") or []
        if not isinstance(details, list):
            details = []
        if message is not None and not isinstance(message, str):
            message = json.dumps(message)
        return (str(code) if code is not None else None, message, details)
    return (None, _plain_text(text) or None, [])


def error_from_response(response: Any) -> ModelManagementError:
    """Build the typed error for a ``requests.Response`` that was not a success."""
    code, message, details = parse_error_body(
        response.content or b"", response.headers.get("Content-Type", "")
    )
    reason = response.reason or "error"
    request = response.request
    method = getattr(request, "method", None)
    path = re.sub(r"^https?://[^/]+", "", getattr(request, "url", "") or "").split("?")[0]
    if not message:
        message = f"{reason} (no error details in the answer to {method} {path})"
    request_id = next(
        (response.headers[h] for h in _REQUEST_ID_HEADERS if response.headers.get(h)), None
    )
    cls = error_class_for(response.status_code)
    return cls(
        message,
        status_code=response.status_code,
        code=code or reason.replace(" ", ""),
        details=details,
        request_id=request_id,
        method=method,
        url=getattr(request, "url", None),
    )
