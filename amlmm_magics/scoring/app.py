"""The scoring service as a raw ASGI application (no framework: the request path stays lean).

Routes: ``GET /`` → ``Healthy``; ``GET /swagger.json`` → the OpenAPI document (only with a
schema); ``POST /score`` → ``run(input)``. Errors are ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .driver import Driver, describe_exception, print_driver_traceback
from .keys import KeyChecker
from .schema import SchemaError, make_decoder, to_json_value, to_swagger

__all__ = ["DEFAULT_MAX_BODY_BYTES", "ScoringApp", "encode_result"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_THREADS = 2

_JSON = b"application/json"
_TEXT = b"text/plain; charset=utf-8"
_OCTETS = b"application/octet-stream"
_SEPARATORS = (",", ":")


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def encode_result(result: Any) -> tuple[bytes, bytes]:
    """``run``'s result as (body, content type); ``TypeError``/``ValueError`` if impossible.

    bytes go out as they are (``application/octet-stream``); anything else as JSON.
    """
    if isinstance(result, bytes | bytearray | memoryview):
        return bytes(result), _OCTETS
    try:
        # Plain Python data (the common case) needs no conversion walk.
        text = json.dumps(result, allow_nan=False, separators=_SEPARATORS)
    except (TypeError, ValueError):
        try:
            text = json.dumps(to_json_value(result), allow_nan=False, separators=_SEPARATORS)
        except RecursionError:
            raise ValueError("the value is nested too deeply (or refers to itself)") from None
    return text.encode(), _JSON


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _bytes_as_json(data: bytes) -> str:
    try:
        return json.dumps(data.decode("utf-8"))
    except UnicodeDecodeError:
        return json.dumps({"base64": base64.b64encode(data).decode("ascii")})


class _BodyTooLarge(Exception):
    pass


class _Collector:
    """Appends one JSON line per scored request to ``<dir>/<pid>.jsonl``.

    One file per process, and each line goes out in a single O_APPEND write, so replicas and
    worker threads never interleave.
    """

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{os.getpid()}.jsonl"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def record(self, input_json: str, output_json: str, status: int) -> None:
        line = (
            f'{{"time":"{_now_iso()}","input":{input_json},'
            f'"output":{output_json},"status":{status}}}\n'
        )
        try:
            os.write(self._fd, line.encode())
        except OSError as exc:
            sys.stderr.write(f"data collection: cannot write {self.path}: {exc.strerror}\n")


class ScoringApp:
    """ASGI app serving one loaded driver."""

    def __init__(
        self,
        driver: Driver,
        *,
        keys: KeyChecker | None,
        auth_disabled: bool = False,
        schema: dict[str, Any] | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_concurrent: int | None = None,
        executor: Executor | None = None,
        threads: int | None = None,
        collect_dir: str | os.PathLike[str] | None = None,
        log_requests: bool = False,
        title: str | None = None,
    ) -> None:
        if keys is None and not auth_disabled:
            raise ValueError("a KeyChecker is required unless auth_disabled=True")
        self._driver = driver
        self._run = driver.run
        self._raw = driver.raw_input
        self._keys = None if auth_disabled else keys
        # In raw-input mode run() gets the body bytes: the schema only documents the service.
        self._decode = None if schema is None or driver.raw_input else make_decoder(schema)
        title = title or driver.path.stem
        self._swagger = (
            None if schema is None else json.dumps(to_swagger(schema, title), indent=1).encode()
        )
        self._max_body = max_body_bytes
        self._max_concurrent = max_concurrent
        self._in_flight = 0
        # run() is mostly CPU and the GIL: a small pool beats a big one on throughput and
        # tail latency (measured: 2 threads ~2x the requests/s of Python's default 6 for an
        # iris model). maxConcurrentRequestsPerContainer asks for more, e.g. for I/O drivers.
        threads = threads or max_concurrent or DEFAULT_THREADS
        self._executor = executor or ThreadPoolExecutor(threads, thread_name_prefix="run")
        self._collector = None if collect_dir is None else _Collector(Path(collect_dir))
        self._log_requests = log_requests
        self._401_missing = _error_body(
            "Unauthorized", "missing key: send the header 'Authorization: Bearer <service key>'"
        )
        self._401_wrong = _error_body("Unauthorized", "invalid key")
        self._413 = _error_body(
            "PayloadTooLarge", f"request body is larger than {max_body_bytes} bytes"
        )
        self._503 = _error_body(
            "ServiceBusy",
            f"the service is already handling {max_concurrent} requests; retry shortly",
        )

    @property
    def in_flight(self) -> int:
        return self._in_flight

    # ASGI entry point --------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "lifespan":
                await self._lifespan(receive, send)
            return
        if not self._log_requests:
            await self._route(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def send_logged(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._route(scope, receive, send_logged)
        finally:
            ms = (time.perf_counter() - start) * 1000
            path = scope["path"]
            if not path.isprintable():  # a %0A in the URL must not forge log lines
                path = path.encode("unicode_escape").decode("ascii")
            # Only what identifies the request: no headers (keys), no body, no query string.
            sys.stderr.write(f"{_now_iso()} {scope['method']} {path} {status} {ms:.1f}ms\n")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        method = scope["method"]
        if path == "/score":
            if method == "POST":
                await self._score(scope, receive, send)
            else:
                await self._not_allowed(send, b"POST")
        elif path == "/":
            if method in ("GET", "HEAD"):
                await _respond(send, 200, b"Healthy", _TEXT)
            else:
                await self._not_allowed(send, b"GET, HEAD")
        elif path == "/swagger.json" and self._swagger is not None:
            if method in ("GET", "HEAD"):
                await _respond(send, 200, self._swagger, _JSON)
            else:
                await self._not_allowed(send, b"GET, HEAD")
        else:
            await _respond(send, 404, _error_body("NotFound", f"no such path: {path}"), _JSON)

    async def _not_allowed(self, send: Send, allow: bytes) -> None:
        body = _error_body("MethodNotAllowed", f"allowed methods: {allow.decode()}")
        await _respond(send, 405, body, _JSON, ((b"allow", allow),))

    # POST /score -------------------------------------------------------------------------

    async def _score(self, scope: Scope, receive: Receive, send: Send) -> None:
        authorization = None
        length = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-length":
                length = value
        if self._keys is not None and not self._keys.check(authorization):
            body = self._401_missing if authorization is None else self._401_wrong
            await _respond(send, 401, body, _JSON, ((b"www-authenticate", b"Bearer"),))
            return
        if length is not None and _declared_length(length) > self._max_body:
            await _respond(send, 413, self._413, _JSON)
            return
        if self._max_concurrent is not None and self._in_flight >= self._max_concurrent:
            await _respond(send, 503, self._503, _JSON, ((b"retry-after", b"1"),))
            return
        self._in_flight += 1
        try:
            try:
                body = await self._read_body(receive)
            except _BodyTooLarge:
                await _respond(send, 413, self._413, _JSON)
                return
            if body is None:
                return  # the client went away
            loop = asyncio.get_running_loop()
            status, payload, content_type = await loop.run_in_executor(
                self._executor, self._process, body
            )
            await _respond(send, status, payload, content_type)
        finally:
            self._in_flight -= 1

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None when the client disconnected first."""
        message = await receive()
        if message["type"] != "http.request":
            return None
        body = message.get("body", b"")
        size = len(body)
        if not message.get("more_body", False):
            if size > self._max_body:
                raise _BodyTooLarge
            return body
        chunks = [body]
        while True:
            if size > self._max_body:
                raise _BodyTooLarge
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if not message.get("more_body", False):
                if size > self._max_body:
                    raise _BodyTooLarge
                return b"".join(chunks)

    def _process(self, body: bytes) -> tuple[int, bytes, bytes]:
        """Decode, run and encode; runs in a pool thread so the event loop stays free."""
        try:
            status, payload, content_type, input_json = self._score_body(body)
        except Exception as exc:  # a runtime bug must still answer in the documented form
            print_driver_traceback(exc)
            payload = _error_body("InternalError", describe_exception(exc))
            status, content_type, input_json = 500, _JSON, None
        if self._collector is not None:
            if input_json is None:
                input_json = _bytes_as_json(body)
            output_json = payload.decode() if content_type == _JSON else _bytes_as_json(payload)
            self._collector.record(input_json, output_json, status)
        return status, payload, content_type

    def _score_body(self, body: bytes) -> tuple[int, bytes, bytes, str | None]:
        input_json: str | None = None
        if self._raw:
            value: Any = body
        else:
            try:
                value = json.loads(body)
            except ValueError as exc:
                message = f"request body is not valid JSON: {exc}"
                return 400, _error_body("InvalidJson", message), _JSON, None
            if self._collector is not None:
                input_json = json.dumps(value, separators=_SEPARATORS)
            if self._decode is not None:
                try:
                    value = self._decode(value)
                except SchemaError as exc:
                    return 400, _error_body("InvalidInput", str(exc)), _JSON, input_json
        try:
            result = self._run(value)
        except (Exception, SystemExit) as exc:
            print_driver_traceback(exc, self._driver.path)
            return 500, _error_body("RunFailed", describe_exception(exc)), _JSON, input_json
        try:
            payload, content_type = encode_result(result)
        except (TypeError, ValueError) as exc:
            message = f"run() returned a value that cannot be encoded as JSON: {exc}"
            return 500, _error_body("OutputNotSerializable", message), _JSON, input_json
        return 200, payload, content_type, input_json


def _declared_length(value: bytes) -> int:
    # The HTTP parser has validated Content-Length already; this only guards against surprises.
    try:
        return int(value)
    except ValueError:
        return 0


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body)), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
