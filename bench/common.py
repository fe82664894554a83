"""Shared by the benchmarks: a throwaway embedded backend, the iris model, wrk runs."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import requests
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from amlmm_magics.api.blob import upload_blob
from amlmm_magics.connection import Connection, connect_local
from amlmm_magics.local import daemon
from amlmm_magics.local.home import Home

# One driver for every server: the scoring runtime hands run() decoded JSON, while
# azureml-inference-server-http hands it the body as text.
IRIS_DRIVER = """\
import json
import os

import joblib
import numpy as np


def init():
    global model
    model = joblib.load(os.path.join(os.environ.get("AZUREML_MODEL_DIR", "."), "iris.joblib"))


def run(data):
    if isinstance(data, (str, bytes)):
        data = json.loads(data)
    return model.predict(np.asarray(data)).tolist()
"""
ONE_ROW = "[[5.1, 3.5, 1.4, 0.2]]"


@contextlib.contextmanager
def embedded_backend() -> Iterator[Connection]:
    """A daemon in a temporary home, stopped and removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="amlmm-bench-"))
    try:
        yield connect_local(root)
    finally:
        daemon.stop(Home(root))
        shutil.rmtree(root, ignore_errors=True)


def iris_model_file(folder: Path) -> Path:
    x, y = load_iris(return_X_y=True)
    path = folder / "iris.joblib"
    joblib.dump(LogisticRegression(max_iter=300).fit(x, y), path)
    return path


def upload(conn: Connection, data: bytes | Path, name: str) -> str:
    blob = f"bench/{uuid.uuid4().hex}/{name}"
    if isinstance(data, Path):
        return upload_blob(conn.storage_sas_url, data, blob)
    return upload_blob(conn.storage_sas_url, io.BytesIO(data), blob, length=len(data))


def iris_image(conn: Connection, model_file: Path) -> Any:
    """Register the iris model and its driver, build the image on ``local``; answer it."""
    client = conn.client
    model = client.register_model(name="iris", url=upload(conn, model_file, "iris.joblib"),
                                  mime_type="application/octet-stream")
    manifest = client.register_manifest(
        name="iris", driver_program="driver",
        assets=[{"id": "driver", "url": upload(conn, IRIS_DRIVER.encode(), "score.py")}],
        target_runtime={"runtimeType": "Python", "properties": {}}, model_ids=[model.id])
    return client.begin_create_image(name="iris", manifest_id=manifest.id,
                                     compute_resource_id="local").result(timeout=300)


def first_score(uri: str, key: str, *, deadline_s: float = 300, pause: float = 0.01) -> None:
    """Score ``uri`` until it answers 200 (a service just created may not listen yet)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            answer = requests.post(uri, data=ONE_ROW, timeout=10, headers={
                "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
            if answer.status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(pause)
    raise TimeoutError(f"no successful score from {uri}")


@dataclass
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int

    def row(self) -> str:
        return (f"{self.requests_per_s:9.0f} req/s  p50 {self.p50_ms:6.2f} ms  "
                f"p99 {self.p99_ms:7.2f} ms  errors {self.errors}")


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"unexpected wrk latency {text!r}")
    value, unit = match.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(url: str, *, body: str = ONE_ROW, key: str | None = None, seconds: int = 10,
        connections: int = 8, threads: int = 2) -> WrkResult:
    """POST ``body`` to ``url`` with keep-alive connections from a separate wrk process."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    headers = 'wrk.headers["Content-Type"] = "application/json"\n'
    if key:
        headers += f'wrk.headers["Authorization"] = "Bearer {key}"\n'
    script = f'wrk.method = "POST"\nwrk.body = {body!r}\n{headers}'.replace("'", '"')
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(script)
    try:
        done = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency",
             "-s", lua.name, url], capture_output=True, text=True, check=True)
    finally:
        os.unlink(lua.name)
    out = done.stdout
    if "Latency Distribution" not in out:
        raise SystemExit(f"wrk gave no latency distribution for {url}:\n{out}{done.stderr}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return WrkResult(
        requests_per_s=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50_ms=_ms(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1)),  # type: ignore[union-attr]
        p99_ms=_ms(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1)),  # type: ignore[union-attr]
        errors=errors + (int(non_2xx.group(1)) if non_2xx else 0),
    )


def wait_http(url: str, timeout: float = 60.0) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=2).status_code < 500:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout} s")
