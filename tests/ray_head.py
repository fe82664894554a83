"""A local Ray head for tests and benchmarks: token auth on, loopback, a short temp dir,
nothing written under the real home, and nothing left running afterwards."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

WORKER_PORTS = range(40000, 41000)


def _free_ports(count: int) -> list[int]:
    """Ports free now, none in the workers' range (`ray start` refuses overlaps)."""
    sockets = []
    try:
        while len(sockets) < count:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            if s.getsockname()[1] in WORKER_PORTS:
                s.close()
                continue
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class RayHead:
    dashboard_url: str
    serve_url: str
    token: str
    root: Path
    env: dict[str, str] = field(repr=False)
    leftover: list[int] = field(default_factory=list)  # pids alive after `ray stop`

    def processes(self) -> list[int]:
        """Pids of live processes of this head (their command lines name its temp dir)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
                if str(self.root) in cmdline:
                    found.append(int(entry.name))
        return found


def _ray(*args: str, env: dict[str, str], timeout: float,
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    ray = Path(sys.executable).with_name("ray")
    return subprocess.run([str(ray), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


@contextlib.contextmanager
def ray_head(num_cpus: int = 2, *, haproxy: bool = False) -> Iterator[RayHead]:
    """``ray start --head`` on loopback with token auth; ``ray stop`` at the end."""
    # Short: Ray's unix socket paths under the temp dir must stay below 108 characters.
    root = Path(tempfile.mkdtemp(prefix="rayh-", dir="/tmp"))
    token = secrets.token_hex(16)
    dashboard, gcs, client, serve = _free_ports(4)
    (root / "home").mkdir()
    # PIP_NO_INDEX: the cluster installs runtime-env requirements from what is installed
    # already (an offline cluster): no download, and a missing one fails at once, without
    # the runtime env agent's usual retries.
    env = {**os.environ, "HOME": str(root / "home"), "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": token, "RAY_USAGE_STATS_ENABLED": "0", "PIP_NO_INDEX": "1",
           "RUNTIME_ENV_RETRY_TIMES": "1"}
    if haproxy:
        env["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
    head = RayHead(f"http://127.0.0.1:{dashboard}", f"http://127.0.0.1:{serve}", token, root,
                   env)
    try:
        started = _ray("start", "--head", f"--num-cpus={num_cpus}", "--temp-dir",
                       str(root / "tmp"), "--dashboard-host", "127.0.0.1",
                       f"--dashboard-port={dashboard}", f"--port={gcs}",
                       f"--ray-client-server-port={client}",
                       f"--min-worker-port={WORKER_PORTS.start}",
                       f"--max-worker-port={WORKER_PORTS.stop - 1}", "--include-dashboard=true",
                       "--disable-usage-stats", env=env, timeout=300,
                       # Ray puts the cwd of `ray start` on its workers' sys.path: not a
                       # checkout of this project, whose package would shadow the images'.
                       cwd=root)
        if started.returncode != 0:
            raise RuntimeError(f"ray start failed:\n{started.stdout}\n{started.stderr}")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                answer = requests.get(head.dashboard_url + "/api/serve/applications/",
                                      headers={"Authorization": f"Bearer {token}"}, timeout=5)
                if answer.status_code == 200:
                    break
            time.sleep(0.5)
        else:
            raise RuntimeError("the Ray dashboard did not answer within 120 s")
        yield head
    finally:
        _ray("stop", "--force", env=env, timeout=120)
        deadline = time.monotonic() + 30
        while head.processes() and time.monotonic() < deadline:
            time.sleep(0.5)
        head.leftover = head.processes()
        shutil.rmtree(root, ignore_errors=True)
