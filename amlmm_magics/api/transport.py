"""HTTP transport of the client: one pooled ``requests.Session`` with timeouts and retries.

Retries are urllib3's (exponential backoff with jitter, ``Retry-After`` honoured), with one
rule of ours on top: a POST creates something, so it is retried only when the service cannot
have acted on it (the connection was refused, 429, or 503 with ``Retry-After``).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from amlmm_magics.api.auth import StaticTokenCredential, TokenCache
from amlmm_magics.api.errors import ServiceRequestError, error_from_response
from amlmm_magics.redact import install_log_redaction, redact_text

log = logging.getLogger("amlmm_magics.api")

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
USER_AGENT = "amlmm-magics/0.1.0"


class ApiRetry(Retry):
    """urllib3's Retry, with POSTs retried only where no side effect can have happened."""

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if method.upper() == "POST":
            return bool(self.total) and (
                status_code == 429 or (status_code == 503 and has_retry_after)
            )
        return super().is_retry(method, status_code, has_retry_after)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard the client tries before giving up on a request."""

    total: int = 5
    backoff_factor: float = 0.5
    backoff_jitter: float = 0.25
    backoff_max: float = 30.0
    retry_after_max: float = 120.0

    def build(self) -> ApiRetry:
        retry = ApiRetry(
            total=self.total,
            connect=self.total,
            read=self.total,
            status=self.total,
            other=0,
            redirect=0,
            backoff_factor=self.backoff_factor,
            backoff_jitter=self.backoff_jitter,
            backoff_max=self.backoff_max,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=IDEMPOTENT_METHODS,
            respect_retry_after_header=True,
            raise_on_status=False,
            raise_on_redirect=False,
        )
        retry.retry_after_max = self.retry_after_max
        return retry


class Transport:
    """Sends requests with the bearer token and api-version, and maps failures to errors."""

    def __init__(
        self,
        token_cache: TokenCache,
        *,
        base_url: str,
        api_version: str,
        timeout: tuple[float, float] = (10.0, 120.0),
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
        pool_size: int = 16,
    ) -> None:
        self.tokens = token_cache
        self.api_version = api_version
        self.timeout = timeout
        self.session = session or requests.Session()
        adapter = HTTPAdapter(
            pool_connections=4,
            pool_maxsize=pool_size,
            max_retries=(retry or RetryPolicy()).build(),
        )
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = USER_AGENT
        # What requests would read from the environment on every request (proxies, the CA
        # bundle) is read once: scanning os.environ costs about 1 ms a request. Every URL
        # this session calls is on the one origin of base_url.
        self.session.trust_env = False
        self.session.proxies.update(requests.utils.get_environ_proxies(base_url))
        ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if ca_bundle:
            self.session.verify = ca_bundle
        install_log_redaction("urllib3.connectionpool", "urllib3.util.retry")

    def request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        ok: tuple[int, ...] = (200,),
        add_api_version: bool = True,
    ) -> requests.Response:
        """Send one request; answer the response if its status is in ``ok``, else raise."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        if add_api_version and "api-version=" not in (urlsplit(url).query or ""):
            query.setdefault("api-version", self.api_version)
        response = self._send(method, url, query, json)
        if response.status_code == 401 and not isinstance(
            self.tokens.credential, StaticTokenCredential
        ):
            # The token may have been revoked or rotated early: ask the credential once more.
            self.tokens.invalidate()
            response = self._send(method, url, query, json)
        if response.status_code not in ok:
            raise error_from_response(response)
        return response

    def _send(
        self, method: str, url: str, query: dict[str, Any], body: Any
    ) -> requests.Response:
        headers = {
            "Authorization": f"Bearer {self.tokens.get()}",
            "Accept": "application/json",
            "x-ms-client-request-id": str(uuid.uuid4()),
        }
        started = time.perf_counter()
        try:
            response = self.session.request(
                method, url, params=query, json=body, headers=headers, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise ServiceRequestError(
                f"{method} {redact_text(url)} got no answer: {_root_cause(exc)}",
                method=method,
                url=url,
            ) from exc
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s %s -> %s in %.1f ms",
                method,
                redact_text(response.url),
                response.status_code,
                (time.perf_counter() - started) * 1000,
            )
        return response

    def close(self) -> None:
        self.session.close()


def _root_cause(exc: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error, without the wrapper noise."""
    seen = exc
    while True:
        reason = getattr(seen, "reason", None) or seen.__cause__ or seen.__context__
        if reason is None or reason is seen or not isinstance(reason, BaseException):
            break
        seen = reason
    text = redact_text(str(seen))
    if "Connection refused" in text or "NewConnectionError" in type(seen).__name__:
        return "connection refused (is the service running?)"
    if "timed out" in text.lower():
        return "timed out"
    return text.split(": ", 1)[-1] if len(text) > 200 else text
