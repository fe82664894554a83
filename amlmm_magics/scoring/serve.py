"""The scoring runtime on Ray Serve: one application per service, the same contract as the
local runtime because it is the same code (:class:`ScoringApp` answers every request).

The embedded backend uploads an image's build context as the application's working dir
(``amlmm_magics/scoring/`` and ``app/`` at its top) and deploys ``amlmm_magics.scoring.serve:
build`` with the driver's file name as argument. Keys reach the replicas only as salted
hashes, through the deployment's ``user_config``, so a regenerated key applies at once
without restarting a replica, and no key is readable from the Serve config.

Only imported inside Ray Serve replicas (it imports ray).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from .app import DEFAULT_MAX_BODY_BYTES, ScoringApp
from .driver import load_driver
from .keys import KeyChecker
from .schema import load_schema

# A replica runs in its application's working dir, which holds app/ (and this runtime).
APP_DIR = Path.cwd() / "app"


@serve.deployment(name="scoring")
class ScoringDeployment:
    def __init__(self, driver: str, schema: str | None = None, title: str | None = None,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 max_concurrent: int | None = None, log_requests: bool = False) -> None:
        os.environ.setdefault("AMLMM_APP_DIR", str(APP_DIR))
        self._keys = KeyChecker(None)  # refuses every key until reconfigure() brings them
        self._app = ScoringApp(
            load_driver(APP_DIR, driver), keys=self._keys,
            schema=load_schema(APP_DIR / schema) if schema else None,
            max_body_bytes=max_body_bytes, max_concurrent=max_concurrent,
            log_requests=log_requests, title=title)

    def reconfigure(self, config: dict[str, Any]) -> None:
        self._keys.replace(config.get("keys"))

    async def __call__(self, request: Request) -> Response:
        scope = dict(request.scope)
        prefix = scope.get("root_path") or ""
        if prefix and scope["path"].startswith(prefix):
            scope["path"] = scope["path"][len(prefix):] or "/"
        started: dict[str, Any] = {}
        body: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))

        await self._app(scope, request.receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1")
                   for k, v in started.get("headers", []) if k.lower() != b"content-length"}
        return Response(b"".join(body), status_code=started.get("status", 500),
                        headers=headers)


def build(args: dict[str, Any]) -> Any:
    """The application builder the Serve config's ``import_path`` names."""
    return ScoringDeployment.bind(**args)
