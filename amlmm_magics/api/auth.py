"""Bearer tokens for the client: an azure-identity credential, or a static token.

azure-identity is imported only when a default Azure credential is actually needed, so
``import amlmm_magics`` and the embedded backend never pay for it.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, NamedTuple, Protocol

from amlmm_magics.api.errors import CredentialError
from amlmm_magics.redact import mask_secret

DEFAULT_SCOPE = "https://management.core.windows.net/.default"
TOKEN_ENV = "AMLMM_ACCESS_TOKEN"
# Refresh this long before expiry, as azure-core's BearerTokenCredentialPolicy does.
REFRESH_MARGIN_S = 300


class AccessToken(NamedTuple):
    """Same shape as ``azure.core.credentials.AccessToken``."""

    token: str
    expires_on: int


class TokenCredential(Protocol):
    def get_token(self, *scopes: str, **kwargs: Any) -> Any: ...


class StaticTokenCredential:
    """A fixed bearer token (the embedded backend's, or one handed out by a gateway)."""

    def __init__(self, token: str) -> None:
        if not token or not token.strip():
            raise CredentialError("The static bearer token is empty.")
        self._token = token.strip()

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        # Static tokens never expire from the client's point of view.
        return AccessToken(self._token, int(time.time()) + 365 * 24 * 3600)

    def __repr__(self) -> str:
        return f"StaticTokenCredential({mask_secret(self._token)!r})"


def resolve_credential(credential: Any) -> Any:
    """The credential object for what the caller gave.

    - a ``TokenCredential`` (anything with ``get_token``) is used as is;
    - a string is a static bearer token;
    - ``None``: the ``AMLMM_ACCESS_TOKEN`` environment variable if set, else azure-identity's
      ``DefaultAzureCredential``.
    """
    if credential is None:
        env_token = os.environ.get(TOKEN_ENV)
        if env_token:
            return StaticTokenCredential(env_token)
        try:
            from azure.identity import DefaultAzureCredential
        except ImportError as exc:  # pragma: no cover - it is a declared dependency
            raise CredentialError(
                "azure-identity is not installed; pass a credential or set AMLMM_ACCESS_TOKEN."
            ) from exc
        return DefaultAzureCredential()
    if isinstance(credential, str):
        return StaticTokenCredential(credential)
    if callable(getattr(credential, "get_token", None)):
        return credential
    raise CredentialError(
        f"Unsupported credential {type(credential).__name__}: pass an azure-identity "
        "TokenCredential, a bearer token string, or None."
    )


class TokenCache:
    """Holds the current token of a credential and refreshes it before it expires."""

    def __init__(self, credential: Any, scope: str = DEFAULT_SCOPE) -> None:
        self.credential = credential
        self.scope = scope
        self._token: Any = None
        self._lock = threading.Lock()

    def _fresh(self) -> bool:
        return (
            self._token is not None
            and int(self._token.expires_on) - REFRESH_MARGIN_S > time.time()
        )

    def get(self) -> str:
        if self._fresh():
            return self._token.token
        with self._lock:
            if not self._fresh():
                try:
                    self._token = self.credential.get_token(self.scope)
                except CredentialError:
                    raise
                except Exception as exc:
                    raise CredentialError(
                        f"Could not get a token for {self.scope} from "
                        f"{type(self.credential).__name__}: {exc}"
                    ) from exc
            return self._token.token

    def invalidate(self) -> None:
        """Forget the token (after a 401) so the next request asks the credential again."""
        with self._lock:
            self._token = None

    def __repr__(self) -> str:
        return f"TokenCache(credential={type(self.credential).__name__}, scope={self.scope!r})"
