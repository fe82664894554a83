"""The daemon's HTTP protocol: request bodies reach the app whole, in order, and a chunk that
nothing else waits with is handed over as the parser made it, not copied.

Through a real uvicorn server on loopback, in this process so the test can see which bytes
objects the parser made and which the app got.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import pytest
import uvicorn

from amlmm_magics.local import http_protocol
from amlmm_magics.local.http_protocol import BodyChunksProtocol

MiB = 1024 * 1024


class RecordingProtocol(BodyChunksProtocol):
    """Remembers every chunk the parser hands over."""

    parsed: ClassVar[list[bytes]] = []

    def on_body(self, body: bytes) -> None:
        type(self).parsed.append(body)
        super().on_body(body)


class BodyApp:
    """Answers 200 after reading the whole body, keeping each message's body."""

    def __init__(self, *, wait_before_reading: float = 0.0) -> None:
        self.messages: list[bytes] = []
        self.wait_before_reading = wait_before_reading

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        await asyncio.sleep(self.wait_before_reading)
        more = True
        while more:
            message = await receive()
            self.messages.append(message["body"])
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


@contextmanager
def serving(app: BodyApp) -> Iterator[int]:
    RecordingProtocol.parsed = []
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, http=RecordingProtocol, lifespan="off", log_config=None,
                            access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def put(port: int, pieces: list[bytes], *, pause: float = 0.0) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest("PUT", "/body")
        connection.putheader("Content-Length", str(sum(map(len, pieces))))
        connection.endheaders()
        for piece in pieces:
            connection.send(piece)
            time.sleep(pause)
        answer = connection.getresponse()
        assert (answer.status, answer.read()) == (200, b"ok")
    finally:
        connection.close()


def test_the_daemon_serves_with_this_protocol_on_the_installed_uvicorn() -> None:
    # Fails when uvicorn's own on_body or receive() changed: BodyChunksProtocol replaces
    # code it was written against, so someone has to read the new code before it may.
    assert http_protocol.replaces_uvicorn()
    assert http_protocol.http_protocol() is BodyChunksProtocol


def test_other_uvicorn_code_gets_uvicorns_own_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_protocol, "_UVICORN_ON_BODY", "def on_body(self, body): ...\n")
    assert not http_protocol.replaces_uvicorn()
    assert http_protocol.http_protocol() == "auto"


def test_a_large_body_arrives_whole_and_its_chunks_are_not_copied() -> None:
    body = os.urandom(8 * MiB)
    app = BodyApp()
    with serving(app) as port:
        put(port, [body[i : i + MiB] for i in range(0, len(body), MiB)])
    assert b"".join(app.messages) == body
    assert all(type(message) is bytes for message in app.messages)
    parsed = {id(chunk) for chunk in RecordingProtocol.parsed}
    handed_over = [message for message in app.messages if id(message) in parsed]
    # Nearly every message is one chunk that arrived while the app waited for it.
    assert len(handed_over) >= len(app.messages) // 2 > 0


def test_chunks_that_arrive_before_the_app_reads_are_joined_in_order() -> None:
    pieces = [bytes([n]) * 1000 for n in range(10)]
    app = BodyApp(wait_before_reading=0.5)
    with serving(app) as port:
        put(port, pieces, pause=0.02)
    assert b"".join(app.messages) == b"".join(pieces)
    assert all(type(message) is bytes for message in app.messages)
    # The parser handed them over one by one while the app slept; its first read got several.
    assert len(RecordingProtocol.parsed) >= 3
    assert len(app.messages[0]) > len(RecordingProtocol.parsed[0])
