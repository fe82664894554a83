"""Fixtures shared by the test suite: real servers on loopback in temporary homes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
AZURITE_MAIN = "node_modules/azurite/dist/src/blob/main.js"
# Azurite's well-known development account.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, deadline_s: float = 20.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {deadline_s} s")


def _azurite_main() -> Path:
    prefix = Path(os.environ.get("AMLMM_AZURITE_PREFIX", ROOT / ".cache" / "azurite"))
    main = prefix / AZURITE_MAIN
    if not main.exists():
        pytest.fail(
            f"Azurite is not installed at {prefix}: run scripts/test.sh, or "
            f"`npm install --prefix {prefix} azurite@3`."
        )
    return main


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Azurite's blob service on loopback; answers its blob endpoint URL."""
    main = _azurite_main()
    port = free_port()
    location = tmp_path_factory.mktemp("azurite")
    proc = subprocess.Popen(
        ["node", str(main), "--blobHost", "127.0.0.1", "--blobPort", str(port),
         "--location", str(location), "--silent", "--disableTelemetry", "--skipApiVersionCheck"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


# -- the embedded backend -------------------------------------------------------------------

def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="session")
def local_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A temporary AMLMM_HOME with a running daemon, stopped (leaving nothing) at the end."""
    from amlmm_magics.local import daemon
    from amlmm_magics.local.home import Home

    home = tmp_path_factory.mktemp("amlmm-home")
    daemon.start(Home(home))
    yield home
    daemon.stop(Home(home))
    deadline = time.monotonic() + 10
    while processes_mentioning(str(home)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_mentioning(str(home)) == [], "processes outlived the daemon"


@pytest.fixture(scope="session")
def local(local_home: Path):
    """A Connection to the session's embedded backend, through the REST client."""
    from amlmm_magics.connection import connect_local

    connection = connect_local(local_home)
    yield connection
    connection.client.close()


@pytest.fixture()
def direct_writes_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system that opens files with O_DIRECT but refuses the writes (EINVAL)."""
    import errno
    import fcntl

    real_pwrite = os.pwrite

    def pwrite(fd: int, data: bytes, position: int) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, data, position)

    monkeypatch.setattr(os, "pwrite", pwrite)
