"""Where services run: the compute target interface, and ``local``, its first implementation.

A compute target deploys one image build context as a service's *deployment* and retires
deployments; an update deploys the new one beside the old, then retires the old, so the
service keeps answering throughout. ``local`` runs each replica as a scoring process on this
machine. All replicas of a service (old and new deployments alike) accept connections from
one listening socket that the daemon holds, so the scoring URI never changes and no
connection is refused while a deployment is swapped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from amlmm_magics.local.errors import ApiError

log = logging.getLogger("amlmm_magics.local.supervisor")

START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 15.0
GRACEFUL_S = 5


@dataclass
class DeploymentSpec:
    """Everything a target needs to run one deployment of a service."""

    service_id: str
    service_name: str
    deployment_id: str
    context: Path  # the image's build context (driver and models under app/)
    meta: dict[str, Any]  # the context's image.json
    replicas: int
    keys_file: Path
    log_file: Path
    max_concurrent: int | None = None
    log_requests: bool = False
    collect_dir: Path | None = None
    port: int | None = None  # the port to keep, so the scoring URI survives restarts
    settings: dict[str, Any] = field(default_factory=dict)  # the service's spec fields
    keys: dict[str, Any] | None = None  # salted key hashes (scoring.keys.hash_keys)


class ComputeTarget(Protocol):
    """One place services run; ``local`` is the first, a Ray cluster another."""

    name: str

    def deploy(self, spec: DeploymentSpec, note: Callable[[str], None]) -> str:
        """Start ``spec`` beside any running deployment of the service; answer the scoring
        URI once every replica serves. Raises ApiError (and leaves nothing running)."""
        ...

    def retire(self, service_id: str, deployment_id: str) -> None:
        """Stop one deployment gracefully (requests in flight finish)."""
        ...

    def remove(self, service_id: str) -> None:
        """Stop every deployment of the service and free its address."""
        ...

    def update_keys(self, service_id: str, keys: dict[str, Any]) -> None:
        """Make new key hashes effective at once (local replicas watch their keys file)."""
        ...

    def adopt(self, spec: DeploymentSpec) -> str | None:
        """After a daemon restart: the scoring URI if ``spec`` still runs, else None."""
        ...

    def logs(self, service_id: str, log_file: Path, tail: int) -> list[str]: ...

    def port_of(self, service_id: str) -> int | None: ...

    def shutdown(self) -> None: ...


@dataclass
class _Deployment:
    spec: DeploymentSpec
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    restarts: int = 0
    next_restart: float = 0.0
    ready: bool = False  # serving; only then are replicas that die restarted


@dataclass
class _Service:
    listener: socket.socket
    deployments: dict[str, _Deployment] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.listener.getsockname()[1]


def bind_loopback(port: int | None) -> socket.socket:
    """A listening socket on 127.0.0.1: on ``port`` when it is free, else on a new one."""
    for candidate in ([port] if port else []) + [0]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", candidate))
        except OSError:
            sock.close()
            continue
        sock.listen(2048)
        sock.set_inheritable(True)
        return sock
    raise ApiError(503, "NoFreePort", "No free loopback port for the service.")


def tail_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` lines of a text file, reading only its end."""
    if count <= 0 or not path.exists():
        return []
    with path.open("rb") as stream:
        stream.seek(0, os.SEEK_END)
        size = stream.tell()
        block, data = 64 * 1024, b""
        while size > 0 and data.count(b"\n") <= count:
            step = min(block, size)
            size -= step
            stream.seek(size)
            data = stream.read(step) + data
    return data.decode("utf-8", "replace").splitlines()[-count:]


class LocalProcessTarget:
    """Services as scoring processes on this machine, one per replica."""

    name = "local"

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python
        self._services: dict[str, _Service] = {}
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._monitor = threading.Thread(target=self._watch, name="amlmm-supervisor",
                                         daemon=True)
        self._monitor.start()

    # -- interface ---------------------------------------------------------------------------
    def deploy(self, spec: DeploymentSpec, note: Callable[[str], None]) -> str:
        deployment = _Deployment(spec)
        with self._lock:
            self._refuse_if_stopping()
            service = self._services.get(spec.service_id)
            if service is None:
                service = _Service(bind_loopback(spec.port))
                self._services[spec.service_id] = service
                if spec.port and service.port != spec.port:
                    note(f"Port {spec.port} is taken; the service moves to {service.port}.")
            # Known from the start, so remove() and shutdown() stop it even while it starts.
            service.deployments[spec.deployment_id] = deployment
        spec.log_file.parent.mkdir(parents=True, exist_ok=True)
        try:
            for replica in range(spec.replicas):
                with self._lock:
                    self._refuse_if_stopping()
                    if service.deployments.get(spec.deployment_id) is not deployment:
                        raise ApiError(409, "Cancelled",
                                       "The service was removed while it was starting.")
                    deployment.procs.append(self._spawn(spec, service.listener, replica))
            note(f"Started {spec.replicas} scoring process(es) on 127.0.0.1:{service.port}; "
                 "waiting for init() to finish.")
            self._wait_ready(deployment, service.port)
        except BaseException:
            with self._lock:
                service.deployments.pop(spec.deployment_id, None)
            self._stop_procs(deployment.procs)
            with self._lock:
                if not service.deployments and self._services.get(spec.service_id) is service:
                    self._forget(spec.service_id)
            raise
        deployment.ready = True
        return f"http://127.0.0.1:{service.port}/score"

    def retire(self, service_id: str, deployment_id: str) -> None:
        with self._lock:
            service = self._services.get(service_id)
            deployment = service.deployments.pop(deployment_id, None) if service else None
        if deployment is not None:
            self._stop_procs(deployment.procs)

    def remove(self, service_id: str) -> None:
        with self._lock:
            service = self._services.get(service_id)
            deployments = list(service.deployments.values()) if service else []
            if service:
                service.deployments.clear()
        for deployment in deployments:
            self._stop_procs(deployment.procs)
        with self._lock:
            self._forget(service_id)

    def port_of(self, service_id: str) -> int | None:
        with self._lock:
            service = self._services.get(service_id)
            return service.port if service else None

    def update_keys(self, service_id: str, keys: dict[str, Any]) -> None:
        """Nothing to do: the replicas re-read their keys file on the next request."""

    def adopt(self, spec: DeploymentSpec) -> str | None:
        """Local replicas die with the daemon: a restarted daemon always starts them anew."""
        return None

    def logs(self, service_id: str, log_file: Path, tail: int) -> list[str]:
        return tail_lines(log_file, tail)

    def shutdown(self) -> None:
        with self._lock:
            self._stopping.set()
            ids = list(self._services)
        for service_id in ids:
            self.remove(service_id)

    # -- processes ---------------------------------------------------------------------------
    def _refuse_if_stopping(self) -> None:
        if self._stopping.is_set():
            raise ApiError(503, "BackendStopping", "The embedded backend is stopping.")

    def _ready_file(self, spec: DeploymentSpec, replica: int) -> Path:
        return spec.log_file.parent / "ready" / f"{spec.deployment_id}-{replica}"

    def _command(self, spec: DeploymentSpec, fd: int, replica: int) -> list[str]:
        app = spec.context / "app"
        command = [self.python, "-m", "amlmm_magics.scoring", "--app-dir", str(app),
                   "--driver", spec.meta["driver"], "--fd", str(fd),
                   "--keys-file", str(spec.keys_file), "--title", spec.service_name,
                   "--ready-file", str(self._ready_file(spec, replica)),
                   "--parent-pid", str(os.getpid()), "--graceful-timeout", str(GRACEFUL_S)]
        if spec.meta.get("schema"):
            command += ["--schema", str(app / spec.meta["schema"])]
        if spec.max_concurrent:
            command += ["--max-concurrent", str(spec.max_concurrent)]
        if spec.collect_dir is not None:
            command += ["--collect-dir", str(spec.collect_dir)]
        if spec.log_requests:
            command.append("--log-requests")
        return command

    def _spawn(self, spec: DeploymentSpec, listener: socket.socket,
               replica: int) -> subprocess.Popen[bytes]:
        ready = self._ready_file(spec, replica)
        ready.parent.mkdir(parents=True, exist_ok=True)
        ready.unlink(missing_ok=True)
        if spec.collect_dir is not None:
            spec.collect_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(spec.context / "runtime"),
               "AMLMM_APP_DIR": str(spec.context / "app"), "PYTHONDONTWRITEBYTECODE": "1",
               "PYTHONUNBUFFERED": "1"}
        with spec.log_file.open("ab") as out:
            return subprocess.Popen(
                self._command(spec, listener.fileno(), replica), cwd=spec.context / "app",
                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                pass_fds=(listener.fileno(),), start_new_session=True)

    def _wait_ready(self, deployment: _Deployment, port: int) -> None:
        spec = deployment.spec
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            for proc in deployment.procs:
                if proc.poll() is not None:
                    raise ApiError(400, "ServiceStartFailed",
                                   f"A scoring process exited with code {proc.returncode} "
                                   f"before serving: {_last_error(spec.log_file)}")
            ready = all(self._ready_file(spec, i).exists() for i in range(len(deployment.procs)))
            if ready and _alive(port):
                return
            time.sleep(0.05)
        raise ApiError(504, "ServiceStartTimedOut",
                       f"The scoring processes did not serve within {START_TIMEOUT_S:.0f} s "
                       f"(init() still running?): {_last_error(spec.log_file)}")

    def _stop_procs(self, procs: list[subprocess.Popen[bytes]]) -> None:
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _forget(self, service_id: str) -> None:
        service = self._services.pop(service_id, None)
        if service is not None:
            service.listener.close()

    def _watch(self) -> None:
        """Restart replicas that died on their own, backing off when they keep dying."""
        while not self._stopping.wait(1.0):
            with self._lock:
                work = [(sid, s, d) for sid, s in self._services.items()
                        for d in s.deployments.values() if d.ready]
            for service_id, service, deployment in work:
                self._revive(service_id, service, deployment)

    def _revive(self, service_id: str, service: _Service, deployment: _Deployment) -> None:
        now = time.monotonic()
        for replica, proc in enumerate(deployment.procs):
            if proc.poll() is None or now < deployment.next_restart:
                continue
            with self._lock:
                if (self._stopping.is_set()
                        or deployment.spec.deployment_id not in service.deployments):
                    return  # retired or stopping meanwhile
                deployment.restarts += 1
                deployment.next_restart = now + min(30.0, 0.5 * 2 ** deployment.restarts)
                log.warning("service %s: replica %d exited with code %s; restarting",
                            service_id, replica, proc.returncode)
                with deployment.spec.log_file.open("a") as out:
                    out.write(f"amlmm: replica {replica} (pid {proc.pid}) exited with code "
                              f"{proc.returncode}; restarting it\n")
                deployment.procs[replica] = self._spawn(deployment.spec, service.listener,
                                                        replica)


# Loopback never goes through a proxy, whatever the environment says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _alive(port: int) -> bool:
    try:
        with _OPENER.open(f"http://127.0.0.1:{port}/", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def _last_error(log_file: Path) -> str:
    lines = [line.strip() for line in tail_lines(log_file, 40) if line.strip()]
    return lines[-1] if lines else "(no output)"
