"""Starting, finding and stopping the embedded backend's daemon (from any process).

The daemon outlives the kernel or terminal that started it, like a container engine. Start is
idempotent and safe to race (a file lock serializes starters; a second start finds the
running daemon); a ``local.json`` left by a daemon that died is detected and replaced.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amlmm_magics.local.home import Home
from amlmm_magics.redact import mask_secret, redact_text

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# Daemons this process spawned, so their Popen objects are reaped, not garbage-collected.
_spawned: list[subprocess.Popen[bytes]] = []


class DaemonError(RuntimeError):
    """The daemon could not be started or stopped; the message says why and what to do."""


@dataclass(frozen=True)
class LocalInfo:
    """What ``local.json`` says about a running daemon."""

    pid: int
    url: str
    token: str
    blob_container_sas_url: str
    home: Path
    version: str = ""

    def __repr__(self) -> str:
        return (f"LocalInfo(pid={self.pid}, url={self.url!r}, token={mask_secret(self.token)!r}, "
                f"blob_container_sas_url={redact_text(self.blob_container_sas_url)!r}, "
                f"home={str(self.home)!r})")

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LocalInfo:
        return cls(int(state["pid"]), state["url"], state["token"],
                   state["blobContainerSasUrl"], Path(state["home"]), state.get("version", ""))


def _read_state(home: Home) -> dict[str, Any] | None:
    try:
        data = json.loads(home.state_file.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and {"pid", "url", "token"} <= data.keys() else None


def _healthy(state: dict[str, Any]) -> bool:
    """The process named in ``local.json`` answers at its URL as itself."""
    try:
        with _OPENER.open(f"{state['url']}/health", timeout=3) as answer:
            return json.loads(answer.read()).get("pid") == state["pid"]
    except (OSError, ValueError):
        return False


def _reap() -> None:
    for proc in list(_spawned):
        if proc.poll() is not None:
            _spawned.remove(proc)


@contextlib.contextmanager
def _locked(home: Home) -> Iterator[None]:
    with home.lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def status(home: Home | None = None) -> LocalInfo | None:
    """The running daemon of ``home``, or None."""
    home = home or Home.resolve()
    _reap()
    state = _read_state(home)
    return LocalInfo.from_state(state) if state and _healthy(state) else None


def start(home: Home | None = None, port: int = 0, timeout: float = START_TIMEOUT_S) -> LocalInfo:
    """Start the daemon of ``home`` unless it runs already; answer what ``local.json`` says."""
    home = (home or Home.resolve()).create()
    with _locked(home):
        running = status(home)
        if running is not None:
            return running
        home.state_file.unlink(missing_ok=True)  # stale: its daemon is gone
        home.logs.mkdir(parents=True, exist_ok=True)
        with home.daemon_log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "amlmm_magics.local", "serve", "--home", str(home.root),
                 "--port", str(port)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
        _spawned.append(proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = _read_state(home)
            if state and state.get("pid") == proc.pid and _healthy(state):
                return LocalInfo.from_state(state)
            if proc.poll() is not None:
                raise DaemonError(f"The embedded backend exited at start (code {proc.returncode}): "
                                  f"{_last_line(home.daemon_log)} (log: {home.daemon_log})")
            time.sleep(0.05)
        proc.kill()
        raise DaemonError(f"The embedded backend did not answer within {timeout:.0f} s "
                          f"(log: {home.daemon_log}).")


def stop(home: Home | None = None, timeout: float = STOP_TIMEOUT_S) -> bool:
    """Stop the daemon of ``home``; False when none was running."""
    home = home or Home.resolve()
    if not home.root.is_dir():
        return False
    with _locked(home):
        state = _read_state(home)
        if state is None or not _healthy(state):
            home.state_file.unlink(missing_ok=True)
            return False
        pid = int(state["pid"])
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _exists(pid):
            time.sleep(0.05)
        if _exists(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        home.state_file.unlink(missing_ok=True)
        return True


def _exists(pid: int) -> bool:
    _reap()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still "exists" for kill(0); /proc tells it apart.
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0] != "Z"
    return True


def _last_line(path: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
        if lines:
            return redact_text(lines[-1])
    return "(no output)"
