"""Steps of the register → manifest → image → service flow, shared by the backend's tests.

Everything goes through the REST client and the blob protocol, as a user's code would.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import requests
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from amlmm_magics.api.blob import upload_blob

IRIS_DRIVER = """\
import joblib
import numpy as np
from amlmm_magics.scoring import model_path

def init():
    global model
    model = joblib.load(model_path("{model}"))

def run(data):
    return model.predict(np.asarray(data)).tolist()
"""


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def upload(conn, source: bytes | str | Path, name: str, content_type: str | None = None) -> str:
    blob = f"tests/{uuid.uuid4().hex}/{name}"
    data = io.BytesIO(source) if isinstance(source, bytes) else source
    length = len(source) if isinstance(source, bytes) else None
    return upload_blob(conn.storage_sas_url, data, blob, content_type=content_type, length=length)


def iris_data():
    return load_iris(return_X_y=True)


def register_iris(conn, tmp_path: Path, name: str | None = None, max_iter: int = 300):
    x, y = iris_data()
    clf = LogisticRegression(max_iter=max_iter).fit(x, y)
    path = tmp_path / f"{uuid.uuid4().hex[:6]}-iris.joblib"
    joblib.dump(clf, path)
    url = upload(conn, path, "iris.joblib")
    model = conn.client.register_model(name=name or unique("iris"), url=url,
                                       mime_type="application/octet-stream")
    return model, clf


def register_manifest(conn, driver: str, model_ids: list[str], *, name: str | None = None,
                      assets: list[dict[str, Any]] | None = None,
                      properties: dict[str, str] | None = None):
    driver_url = upload(conn, driver.encode(), "score.py", "application/x-python")
    return conn.client.register_manifest(
        name=name or unique("manifest"), driver_program="driver",
        assets=[{"id": "driver", "url": driver_url, "mimeType": "application/x-python"},
                *(assets or [])],
        target_runtime={"runtimeType": "Python", "properties": properties or {}},
        model_ids=model_ids, model_type="Registered")


def build_image(conn, manifest_id: str, *, name: str | None = None, timeout: float = 180):
    poller = conn.client.begin_create_image(name=name or unique("image"), manifest_id=manifest_id,
                                            compute_resource_id="local")
    return poller.result(timeout=timeout)


def iris_image(conn, tmp_path: Path):
    model, clf = register_iris(conn, tmp_path)
    manifest = register_manifest(conn, IRIS_DRIVER.format(model=model.name), [model.id])
    return build_image(conn, manifest.id), model, clf


def create_service(conn, image_id: str, *, name: str | None = None, timeout: float = 180,
                   **settings: Any):
    poller = conn.client.begin_create_service(name=name or unique("svc"), image_id=image_id,
                                              compute_resource={"id": "local"}, **settings)
    return poller.result(timeout=timeout)


def score(service, key: str | None, payload: Any, **kw: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.post(service.scoringUri, data=json.dumps(payload),
                         headers={"Content-Type": "application/json", **headers},
                         timeout=30, **kw)


@dataclass
class ScoreLoop:
    seen: list[int] = field(default_factory=list)  # the "v" of each 200 answer, in order
    failures: list[str] = field(default_factory=list)  # every other answer or error


@contextlib.contextmanager
def scoring_meanwhile(service, key: str, payload: Any, *, threads: int = 1
                      ) -> Iterator[ScoreLoop]:
    """Clients scoring ``service`` in a loop for as long as the block runs."""
    loop = ScoreLoop()
    stop = threading.Event()

    def client_loop() -> None:
        while not stop.is_set():
            try:
                answer = score(service, key, payload)
                if answer.status_code == 200:
                    loop.seen.append(answer.json()["v"])
                else:
                    loop.failures.append(f"{answer.status_code} {answer.text[:200]}")
            except requests.RequestException as exc:
                loop.failures.append(repr(exc))

    workers = [threading.Thread(target=client_loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    try:
        yield loop
    finally:
        stop.set()
        for worker in workers:
            worker.join()
