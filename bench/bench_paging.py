"""Client overhead of paging: 10,000 models (page size 500) into a DataFrame.

Serves pre-built pages from a loopback HTTP server and lists them twice, side by side:
with ``ModelManagementClient.list_models(count=500).to_frame()`` and with a bare
``requests`` + ``json`` loop that follows ``nextLink`` and builds ``pandas.DataFrame`` from
the items. Prints both times and their ratio (goal: the client within 15% of the bare loop).

    python bench/bench_paging.py [--items 10000] [--page 500] [--rounds 7]
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import statistics
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import requests

from amlmm_magics.api import ModelManagementClient

ACCOUNT = "/api/subscriptions/s/resourceGroups/r/accounts/a"


def build_pages(base: str, items: int, page: int) -> dict[int, bytes]:
    pages = {}
    for start in range(0, items, page):
        value = [
            {
                "id": f"{i:032x}",
                "name": f"model-{i % 50}",
                "version": i // 50 + 1,
                "createdAt": f"2026-11-{1 + i % 28:02d}T10:{i % 60:02d}:00.123456Z",
                "mimeType": "application/octet-stream",
                "unpack": False,
                "tags": ["format=joblib", "python=3.11.7"],
                "description": "Serialized with joblib from a LogisticRegression",
                "url": f"http://127.0.0.1/amlmmlocal/models/m{i}/model.joblib?sv=1&sig=abc",
            }
            for i in range(start, min(start + page, items))
        ]
        body: dict = {"value": value}
        if start + page < items:
            body["nextLink"] = (
                f"{base}{ACCOUNT}/models?api-version=2017-09-01-preview&count={page}"
                f"&%24skipToken={start + page}"
            )
        pages[start] = json.dumps(body).encode()
    return pages


def _serve_forever(items: int, page: int, ready: Any) -> None:
    holder: dict[int, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            payload = holder[int(query.get("$skipToken", ["0"])[0])]
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    holder.update(build_pages(base, items, page))
    ready.put(base)
    server.serve_forever()


def serve(items: int, page: int) -> tuple[multiprocessing.Process, str]:
    """The pages from a server in a process of its own: it takes no time from the client's
    interpreter, so the comparison measures the client side only."""
    ready: Any = multiprocessing.Queue()
    process = multiprocessing.Process(target=_serve_forever, args=(items, page, ready),
                                      daemon=True)
    process.start()
    return process, ready.get(timeout=60)


def bare_loop(session: requests.Session, base: str, page: int) -> pd.DataFrame:
    items: list = []
    url: str | None = f"{base}{ACCOUNT}/models?api-version=2017-09-01-preview&count={page}"
    while url:
        data = session.get(url, headers={"Authorization": "Bearer t"}).json()
        items.extend(data["value"])
        url = data.get("nextLink")
    return pd.DataFrame(items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--page", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=31)
    args = parser.parse_args()

    server, base = serve(args.items, args.page)
    client = ModelManagementClient(base, "s", "r", "a", "t")
    session = requests.Session()
    bare_times, client_times = [], []
    bare_cpu, client_cpu = [], []
    def timed(run: Any, times: list[float], cpus: list[float]) -> None:
        gc.collect()  # the garbage of the other side's frame is not this side's cost
        started, cpu = time.perf_counter(), time.process_time()
        frame = run()
        times.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
        assert len(frame) == args.items

    def bare() -> pd.DataFrame:
        return bare_loop(session, base, args.page)

    def ours() -> pd.DataFrame:
        return client.list_models(count=args.page).to_frame()

    for round_ in range(args.rounds):
        # Interleaved, so both see the same machine noise; the order alternates, so neither
        # side always runs on the caches (and the heap) the other one left.
        sides = [(bare, bare_times, bare_cpu), (ours, client_times, client_cpu)]
        for run, times, cpus in sides if round_ % 2 == 0 else reversed(sides):
            timed(run, times, cpus)
    server.terminate()
    bare_s, ours_s = statistics.median(bare_times), statistics.median(client_times)
    # Each round's two runs saw the same machine: the median of their ratios is the figure.
    ratio = statistics.median(c / b for c, b in zip(client_times, bare_times, strict=True))
    print(f"items={args.items} page={args.page} rounds={args.rounds} (medians)")
    print(f"bare requests+json+DataFrame: {bare_s:.3f} s")
    print(f"ModelManagementClient.to_frame: {ours_s:.3f} s")
    print(f"ratio client/bare (median of paired rounds): {ratio:.3f} (goal <= 1.15)")
    # CPU time of this process only (the server runs in another): the client's own cost,
    # unmoved by whatever else the machine does.
    cpu_ratio = statistics.median(c / b for c, b in zip(client_cpu, bare_cpu, strict=True))
    print(f"CPU time ratio client/bare: {cpu_ratio:.3f} "
          f"({statistics.median(client_cpu):.3f} s vs {statistics.median(bare_cpu):.3f} s)")


if __name__ == "__main__":
    main()
