"""Errors of the embedded backend, answered as the spec's ErrorResponse."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An expected failure: answered with ``status`` and an ErrorResponse body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "statusCode": self.status,
        }
        if self.details:
            body["details"] = self.details
        return body


def bad_request(message: str, code: str = "BadRequest", **kw: Any) -> ApiError:
    return ApiError(400, code, message, **kw)


def not_found(kind: str, ident: str) -> ApiError:
    return ApiError(404, "NotFound", f"{kind.capitalize()} '{ident}' was not found.")


def conflict(message: str) -> ApiError:
    return ApiError(409, "Conflict", message)
