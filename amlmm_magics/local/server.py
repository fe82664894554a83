"""The daemon process: binds 127.0.0.1, serves the API with uvicorn and the blob store on a
port of its own (``blob_server``), writes ``local.json``."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
import time
from typing import Any

from amlmm_magics import __version__
from amlmm_magics.local.home import Home, write_private
from amlmm_magics.redact import RedactingFilter

log = logging.getLogger("amlmm_magics.local")

def bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    return sock


def state_of(home: Home, url: str, token: str, sas_url: str) -> dict[str, Any]:
    return {"pid": os.getpid(), "url": url, "token": token, "blobContainerSasUrl": sas_url,
            "home": str(home.root), "version": __version__, "startedAt": time.time()}


def serve(home: Home, port: int = 0) -> None:
    """Run the daemon in this process until SIGTERM/SIGINT."""
    import uvicorn

    from amlmm_magics.local.app import create_app
    from amlmm_magics.local.backend import Backend
    from amlmm_magics.local.blob_server import BlobServer, BlobService
    from amlmm_magics.local.blobs import ACCOUNT as BLOB_ACCOUNT

    home.create()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # Access log lines carry query strings, and blob URLs carry SAS signatures.
    handler.addFilter(RedactingFilter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    secret = home.load_or_create_secrets()
    sock = bind(port)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    blob_server = BlobServer()
    backend = Backend(home, secret, blob_server.url)
    blob_server.services[BLOB_ACCOUNT] = BlobService(
        backend.blobs.store, BLOB_ACCOUNT, secret.account_key)
    app = create_app(backend, secret.token)
    # log_config=None: uvicorn's loggers go through the redacting handler above.
    config = uvicorn.Config(app, log_config=None, log_level="info", access_log=True,
                            lifespan="off", timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)

    def started() -> None:
        blob_server.start()
        write_private(home.state_file, json.dumps(
            state_of(home, url, secret.token, backend.blobs.container_sas_url()), indent=2))
        log.info("amlmm embedded backend %s serving %s, blobs at %s (home %s)", __version__,
                 url, blob_server.url, home.root)
        backend.start()

    original_startup, original_shutdown = server.startup, server.shutdown

    async def startup(sockets: list[socket.socket] | None = None) -> None:
        await original_startup(sockets=sockets)
        if server.started:
            started()

    async def shutdown(sockets: list[socket.socket] | None = None) -> None:
        # Here, not after run(): uvicorn re-raises SIGTERM once run() ends, which would end
        # the process before any code after it ran.
        await original_shutdown(sockets=sockets)
        log.info("stopping: scoring processes end; their services restart with the daemon")
        await asyncio.get_running_loop().run_in_executor(None, stop)

    def stop() -> None:
        blob_server.stop()
        backend.stop()
        _remove_state(home)

    server.startup = startup  # type: ignore[method-assign]
    server.shutdown = shutdown  # type: ignore[method-assign]
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    server.run(sockets=[sock])


def _remove_state(home: Home) -> None:
    """Remove local.json if it still describes this process."""
    try:
        if json.loads(home.state_file.read_text()).get("pid") == os.getpid():
            home.state_file.unlink()
    except (OSError, ValueError):
        pass
