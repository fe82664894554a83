"""A strict fake of the Model Management API for contract tests of the client.

It is real HTTP on loopback. It knows the spec's routes, their query parameters and the
field names of every request body, and records a violation for anything else (unknown route,
unknown or missing query parameter, missing api-version or bearer token, unknown body field,
missing required field). Answers are scripted per test. It is never used in place of the
embedded backend: integration tests run against the real one.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

API_VERSION = "2017-09-01-preview"
PREFIX = r"/api/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/accounts/(?P<acct>[^/]+)"

# Request body definitions of the spec: field -> nested definition name (or None), required.
DEFINITIONS: dict[str, dict[str, tuple[str | None, bool]]] = {
    "Model": {
        "description": (None, False), "mimeType": (None, True), "name": (None, True),
        "tags": (None, False), "unpack": (None, False), "url": (None, True),
    },
    "Manifest": {
        "assets": ("Asset[]", True), "description": (None, False),
        "driverProgram": (None, True), "modelIds": (None, False), "modelType": (None, False),
        "name": (None, True), "targetRuntime": ("TargetRuntime", True),
        "webserviceType": (None, False),
    },
    "Asset": {"id": (None, False), "mimeType": (None, False), "unpack": (None, False),
              "url": (None, False)},
    "TargetRuntime": {"properties": (None, True), "runtimeType": (None, True)},
    "ImageRequest": {
        "computeResourceId": (None, True), "description": (None, False),
        "imageType": (None, True), "manifestId": (None, True), "name": (None, True),
    },
    "ServiceCreateRequest": {
        "appInsightsEnabled": (None, False), "autoScaler": ("AutoScaler", False),
        "computeResource": ("ComputeResource", True),
        "containerResourceReservation": ("ContainerResourceReservation", False),
        "dataCollection": ("ModelDataCollection", False), "imageId": (None, True),
        "maxConcurrentRequestsPerContainer": (None, False), "name": (None, True),
        "numReplicas": (None, False),
    },
    "ServiceUpdateRequest": {
        "appInsightsEnabled": (None, False), "autoScaler": ("AutoScaler", False),
        "containerResourceReservation": ("ContainerResourceReservation", False),
        "dataCollection": ("ModelDataCollection", False), "imageId": (None, False),
        "maxConcurrentRequestsPerContainer": (None, False), "numReplicas": (None, False),
    },
    "AutoScaler": {k: (None, False) for k in (
        "autoscaleEnabled", "maxReplicas", "minReplicas", "refreshPeriodInSeconds",
        "targetUtilization")},
    "ComputeResource": {"id": (None, False), "type": (None, False)},
    "ContainerResourceReservation": {"cpu": (None, False), "memory": (None, False)},
    "ModelDataCollection": {"eventHubEnabled": (None, False), "storageEnabled": (None, False)},
    "ServiceRegenerateKeyRequest": {"keyType": (None, False)},
}

LIST_QUERY = {
    "models": {"name", "tag", "count", "$skipToken"},
    "manifests": {"modelId", "manifestName", "count", "$skipToken"},
    "images": {"manifestId", "manifestName", "count", "$skipToken"},
    "services": {"serviceName", "modelId", "modelName", "manifestId", "manifestName",
                 "imageId", "computeResourceId", "count", "$skipToken"},
    "deployments": {"serviceId"},
}

# (method, path pattern after the account prefix, body definition, allowed query params)
ROUTES: list[tuple[str, str, str | None, set[str]]] = [
    ("POST", r"/models", "Model", set()),
    ("GET", r"/models", None, LIST_QUERY["models"]),
    ("GET", r"/models/[^/]+", None, set()),
    ("POST", r"/manifests", "Manifest", set()),
    ("GET", r"/manifests", None, LIST_QUERY["manifests"]),
    ("GET", r"/manifests/[^/]+", None, set()),
    ("POST", r"/images", "ImageRequest", set()),
    ("GET", r"/images", None, LIST_QUERY["images"]),
    ("GET", r"/images/[^/]+", None, set()),
    ("POST", r"/services", "ServiceCreateRequest", set()),
    ("GET", r"/services", None, LIST_QUERY["services"]),
    ("GET", r"/services/[^/]+", None, set()),
    ("PUT", r"/services/[^/]+", "ServiceUpdateRequest", set()),
    ("DELETE", r"/services/[^/]+", None, set()),
    ("GET", r"/services/[^/]+/keys", None, set()),
    ("POST", r"/services/[^/]+/regenerateKeys", "ServiceRegenerateKeyRequest", set()),
    ("POST", r"/services/[^/]+/keys", "ServiceRegenerateKeyRequest", set()),
    ("GET", r"/deployments", None, LIST_QUERY["deployments"]),
    ("GET", r"/deployments/[^/]+", None, set()),
    ("GET", r"/operations/[^/]+", None, set()),
]


def check_body(definition: str, body: Any, where: str = "body") -> list[str]:
    """Violations of a request body against a spec definition."""
    many = definition.endswith("[]")
    name = definition.rstrip("[]")
    if many:
        if not isinstance(body, list):
            return [f"{where} must be an array"]
        return [v for i, item in enumerate(body) for v in check_body(name, item, f"{where}[{i}]")]
    if not isinstance(body, dict):
        return [f"{where} must be an object"]
    fields = DEFINITIONS[name]
    problems = [f"{where}.{k} is not a field of {name}" for k in body if k not in fields]
    problems += [f"{where}.{k} (required by {name}) is missing"
                 for k, (_, required) in fields.items() if required and k not in body]
    for key, (nested, _) in fields.items():
        if nested and key in body:
            problems += check_body(nested, body[key], f"{where}.{key}")
    return problems


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    raw_url: str
    at: float = field(default_factory=time.monotonic)


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    drop: bool = False  # close the connection without answering


Handler = Callable[[Recorded], Reply]


class FakeMMS:
    """Start with :meth:`start`; script answers with :meth:`on`; read :attr:`requests`."""

    def __init__(self, token: str = "test-token") -> None:
        self.token = token
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        self.auth_failures = 0
        self._handlers: list[tuple[str, re.Pattern[str], Handler | list[Reply]]] = []
        self._lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    # -- scripting -------------------------------------------------------------------------
    def on(self, method: str, path_regex: str, *replies: Reply | Handler) -> None:
        """Answer requests matching method and path (after the account prefix) in order.

        Several Replies are used one per request, the last one repeating; a callable
        computes the answer from the recorded request.
        """
        pattern = re.compile(path_regex + r"\Z")
        if len(replies) == 1 and callable(replies[0]):
            self._handlers.insert(0, (method, pattern, replies[0]))  # type: ignore[arg-type]
        else:
            self._handlers.insert(0, (method, pattern, list(replies)))  # type: ignore[arg-type]

    @property
    def base_url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def account_path(self) -> str:
        return "/api/subscriptions/sub-1/resourceGroups/rg-1/accounts/acct-1"

    def url(self, path: str) -> str:
        return self.base_url + self.account_path + path

    def calls(self, method: str | None = None, path_regex: str | None = None) -> list[Recorded]:
        pattern = re.compile(path_regex + r"\Z") if path_regex else None
        return [
            r for r in self.requests
            if (method is None or r.method == method)
            and (pattern is None or pattern.match(r.path[len(self.account_path):]))
        ]

    # -- serving ---------------------------------------------------------------------------
    def start(self, port: int = 0) -> FakeMMS:
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                fake._serve(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        parts = urlsplit(h.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw
        rec = Recorded(h.command, unquote(parts.path), query, dict(h.headers.items()), body,
                       h.path)
        with self._lock:
            self.requests.append(rec)
            problems = self._check(rec, parts.path)
            self.violations += [f"{h.command} {h.path}: {p}" for p in problems]
            authorized = rec.headers.get("Authorization") == f"Bearer {self.token}"
            self.auth_failures += not authorized
            reply = self._reply_for(rec)
        if problems:
            reply = Reply(418, {"code": "ContractViolation", "message": "; ".join(problems)})
        elif not authorized:
            reply = Reply(401, {"code": "Unauthorized", "message": "bad token"})
        if reply.drop:
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        payload = reply.raw if reply.raw is not None else (
            b"" if reply.body is None else json.dumps(reply.body).encode())
        h.send_response(reply.status)
        headers = {"Content-Type": "application/json", **reply.headers}
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)

    def _check(self, rec: Recorded, raw_path: str) -> list[str]:
        problems = []
        match = re.match(PREFIX, raw_path)
        if not match:
            return [f"path {raw_path} is not under the account prefix"]
        rest = raw_path[match.end():]
        route = next(
            (r for r in ROUTES if r[0] == rec.method and re.fullmatch(r[1], rest)), None
        )
        if route is None:
            return [f"no such route in the spec: {rec.method} {rest}"]
        _, _, definition, allowed = route
        if rec.query.get("api-version") != [API_VERSION]:
            sent = rec.query.get("api-version")
            problems.append(f"api-version must be {API_VERSION}, got {sent}")
        for key, values in rec.query.items():
            if key != "api-version" and key not in allowed:
                problems.append(f"query parameter {key!r} is not in the spec for this route")
            if len(values) != 1:
                problems.append(f"query parameter {key!r} sent {len(values)} times")
        if not rec.headers.get("Authorization", "").startswith("Bearer "):
            problems.append("missing Authorization: Bearer header")
        if definition:
            problems += check_body(definition, rec.body)
        elif rec.body is not None:
            problems.append("a body was sent to a route that takes none")
        return problems

    def _reply_for(self, rec: Recorded) -> Reply:
        path = rec.path[len(self.account_path):] if rec.path.startswith(self.account_path) \
            else rec.path
        for method, pattern, answer in self._handlers:
            if method == rec.method and pattern.match(path):
                if callable(answer):
                    return answer(rec)
                return answer.pop(0) if len(answer) > 1 else answer[0]
        return Reply(404, {"code": "NotScripted", "message": f"no answer for {rec.method} {path}"})


def accepted(fake: FakeMMS, operation_id: str) -> Reply:
    """The 202 answer of a begin_* operation, pointing at the operation's status."""
    return Reply(202, None, {"Operation-Location": fake.url(f"/operations/{operation_id}")})
