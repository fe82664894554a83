"""Scoring throughput and latency: a local service vs azureml-inference-server-http.

One scikit-learn LogisticRegression on iris, one-row JSON payloads, keep-alive connections,
8 concurrent connections from a separate ``wrk`` process on loopback; the same driver served
by a service of the embedded backend and by ``azmlinfsrv`` (Flask + gunicorn), side by side
in one run (interleaved, so both see the same machine noise), at each server's defaults (one
process each) and at equal worker counts. Prints each result and the ratios.

Needs ``wrk`` (``apt-get install wrk``) and azureml-inference-server-http in a virtualenv of
its own (its pins differ from ours)::

    python -m venv /tmp/azml && /tmp/azml/bin/pip install azureml-inference-server-http \\
        scikit-learn joblib
    python bench/bench_scoring.py --azmlinfsrv /tmp/azml/bin/azmlinfsrv
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).parent))
from common import (
    IRIS_DRIVER,
    ONE_ROW,
    WrkResult,
    embedded_backend,
    iris_image,
    iris_model_file,
    wait_http,
    wrk,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Azmlinfsrv:
    def __init__(self, command: str, folder: Path, workers: int | None) -> None:
        self.port = free_port()
        argv = [command, "--entry_script", str(folder / "score.py"), "--model_dir",
                str(folder), "--port", str(self.port)]
        if workers:
            argv += ["--worker_count", str(workers)]
        env = {**os.environ, "GUNICORN_CMD_ARGS": "--no-control-socket"}
        self.proc = subprocess.Popen(argv, cwd=folder, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        wait_http(f"http://127.0.0.1:{self.port}/")
        self.url = f"http://127.0.0.1:{self.port}/score"

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=30)


def check_answer(url: str, key: str | None) -> None:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    answer = requests.post(url, data=ONE_ROW, headers=headers, timeout=10)
    if answer.status_code != 200 or answer.json() != [0]:
        raise SystemExit(f"{url} answered {answer.status_code} {answer.text!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--azmlinfsrv", default="azmlinfsrv", help="path of azmlinfsrv")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="runs per server and setting")
    parser.add_argument("--workers", type=int, default=2, help="the equal worker count")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="azml-bench-"))
    model_file = iris_model_file(folder)
    (folder / "score.py").write_text(IRIS_DRIVER)
    with embedded_backend() as conn:
        client = conn.client
        image = iris_image(conn, model_file)
        service = client.begin_create_service(name="iris", image_id=image.id,
                                              compute_resource={"id": "local"}).result(300)
        key = client.get_service_keys(service.id).primaryKey
        settings = [("defaults (1 process each)", None), (f"{args.workers} workers each",
                                                         args.workers)]
        results: dict[tuple[str, str], list[WrkResult]] = {}
        for label, workers in settings:
            if workers:
                service = client.begin_update_service(service.id,
                                                      num_replicas=workers).result(300)
            reference = Azmlinfsrv(args.azmlinfsrv, folder, workers)
            try:
                check_answer(service.scoringUri, key)
                check_answer(reference.url, None)
                for _ in range(args.rounds):
                    for name, url, auth in (("amlmm", service.scoringUri, key),
                                            ("azmlinfsrv", reference.url, None)):
                        results.setdefault((label, name), []).append(
                            wrk(url, key=auth, seconds=args.seconds,
                                connections=args.connections))
            finally:
                reference.stop()

    print(f"wrk: {args.connections} connections, {args.seconds} s, one-row iris JSON, "
          f"{args.rounds} round(s), medians")
    summary = {}
    for label, _ in settings:
        rows = {}
        for name in ("amlmm", "azmlinfsrv"):
            runs = results[(label, name)]
            rows[name] = WrkResult(statistics.median(r.requests_per_s for r in runs),
                                   statistics.median(r.p50_ms for r in runs),
                                   statistics.median(r.p99_ms for r in runs),
                                   sum(r.errors for r in runs))
            print(f"  {label:26s} {name:11s} {rows[name].row()}")
        ratio = rows["amlmm"].requests_per_s / rows["azmlinfsrv"].requests_per_s
        p99 = rows["amlmm"].p99_ms / rows["azmlinfsrv"].p99_ms
        print(f"  {label:26s} ratio amlmm/azmlinfsrv: throughput {ratio:.2f}x (goal >= 2), "
              f"p99 {p99:.2f}x (goal < 1)")
        summary[label] = {"throughput_ratio": round(ratio, 2), "p99_ratio": round(p99, 2)}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
