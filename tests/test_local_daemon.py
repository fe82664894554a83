"""The daemon's life cycle: start (idempotent, racing, after a crash), stop, files, secrets."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import processes_mentioning
from flows import unique, upload

from amlmm_magics.connection import connect_local
from amlmm_magics.local import daemon
from amlmm_magics.local.home import Home


def run_cli(home: Home, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "amlmm_magics.local", *args, "--home",
                           str(home.root)], capture_output=True, text=True, timeout=120)


@pytest.fixture
def home(tmp_path):
    home = Home(tmp_path / "home")
    yield home
    daemon.stop(home)
    deadline = time.monotonic() + 10
    while processes_mentioning(str(home.root)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_mentioning(str(home.root)) == []


def test_start_is_idempotent_and_status_and_stop_report(home):
    assert run_cli(home, "status").returncode == 3
    first = daemon.start(home)
    second = daemon.start(home)
    assert first == second
    status = run_cli(home, "status")
    assert status.returncode == 0 and f"pid {first.pid}" in status.stdout
    assert run_cli(home, "stop").stdout.strip() == "stopped"
    assert not home.state_file.exists()
    assert run_cli(home, "stop").stdout.strip() == "not running"


def test_racing_starts_find_one_daemon(home):
    procs = [subprocess.Popen([sys.executable, "-m", "amlmm_magics.local", "start", "--home",
                               str(home.root)], stdout=subprocess.PIPE, text=True)
             for _ in range(3)]
    outputs = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert len(outputs) == 1, outputs
    serving = [pid for pid in processes_mentioning(str(home.root))
               if b"serve" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(serving) == 1


def test_a_stale_local_json_is_replaced(home):
    home.create()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    home.state_file.write_text(json.dumps({
        "pid": dead.pid, "url": "http://127.0.0.1:9", "token": "t",
        "blobContainerSasUrl": "http://x", "home": str(home.root)}))
    info = daemon.start(home)
    assert info.pid != dead.pid
    assert json.loads(home.state_file.read_text())["pid"] == info.pid


def test_files_holding_secrets_are_private_and_logs_hold_no_secret(home, tmp_path):
    conn = connect_local(home.root)
    url = upload(conn, b"weights", "w.bin")
    conn.client.register_model(name=unique("m"), url=url, mime_type="a/b")
    assert stat.S_IMODE(os.stat(home.state_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(home.secrets_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(home.root).st_mode) == 0o700
    info = daemon.status(home)
    signature = url.split("sig=")[1].split("&")[0]
    log = home.daemon_log.read_text()
    assert "PUT /amlmmlocal/amlmm/" in log  # the blob request was logged...
    assert signature not in log and info.token not in log  # ...without its secrets
    assert info.token not in repr(info) and signature not in repr(info)


def test_stop_leaves_no_process_behind(home, tmp_path):
    from flows import create_service, iris_image

    conn = connect_local(home.root)
    image, _, _ = iris_image(conn, tmp_path)
    create_service(conn, image.id, num_replicas=2)
    assert len(processes_mentioning(str(home.root))) == 3  # the daemon and two replicas
    assert daemon.stop(home) is True
    assert processes_mentioning(str(home.root)) == []


def test_concurrent_registrations_get_distinct_consecutive_versions(local):
    name = unique("race")
    url = upload(local, b"w", "w.bin")
    versions: list[int] = []
    lock = threading.Lock()

    def register(count: int) -> None:
        for _ in range(count):
            model = local.client.register_model(name=name, url=url, mime_type="a/b")
            with lock:
                versions.append(model.version)

    threads = [threading.Thread(target=register, args=(100,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(versions) == list(range(1, 801))
    listed = [m.version for m in local.client.list_models(name=name, count=1000)]
    assert sorted(listed) == list(range(1, 801))
