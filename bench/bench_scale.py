"""One service on ``local`` and on a local Ray cluster, side by side in one run.

For each of: the local compute target (1 replica), Ray Serve with its default proxy (1 and 2
replicas) and Ray Serve in HAProxy mode (1 and 2 replicas), it reports the seconds from
``begin_create_service`` to the first successful score, then requests/s and p50/p99 under
``wrk`` (8 keep-alive connections, one-row iris JSON). On a 2-core machine every replica,
proxy and the load generator share the same two cores: this is what each path costs, not
how it scales.

Needs ``ray[serve]`` (``pip install -e '.[ray]'``) and ``wrk`` (``apt-get install wrk``).

    python bench/bench_scale.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # the Ray head launcher the tests use
from common import (  # noqa: E402
    WrkResult,
    embedded_backend,
    first_score,
    iris_image,
    iris_model_file,
    wrk,
)
from ray_head import ray_head  # noqa: E402


def measure(client, image_id: str, compute: str, name: str, seconds: int,
            results: list[tuple[str, float, WrkResult, WrkResult | None]]) -> None:
    started = time.perf_counter()
    service = client.begin_create_service(name=name, image_id=image_id,
                                          compute_resource={"id": compute}).result(600)
    key = client.get_service_keys(service.id).primaryKey
    first_score(service.scoringUri, key, pause=0.05)
    create_s = time.perf_counter() - started
    one = wrk(service.scoringUri, key=key, seconds=seconds)
    two = None
    if compute != "local":
        client.begin_update_service(service.id, num_replicas=2).result(600)
        two = wrk(service.scoringUri, key=key, seconds=seconds)
    client.delete_service(service.id)
    results.append((name, create_s, one, two))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    model_file = iris_model_file(Path(tempfile.mkdtemp(prefix="scale-bench-")))
    results: list[tuple[str, float, WrkResult, WrkResult | None]] = []
    with embedded_backend() as conn:
        client = conn.client
        image = iris_image(conn, model_file)
        measure(client, image.id, "local", "local", args.seconds, results)
        for label, haproxy in (("ray-default-proxy", False), ("ray-haproxy", True)):
            with ray_head(haproxy=haproxy) as head:
                client.set_compute_resource(label, dashboard_url=head.dashboard_url,
                                            serve_url=head.serve_url, token=head.token)
                measure(client, image.id, label, label, args.seconds, results)
                client.delete_compute_resource(label)
    print(f"wrk: 8 connections, {args.seconds} s, one-row iris JSON; on 2 cores a cost "
          "figure, not a scaling claim")
    print(f"{'target':20s} {'create->score':>14s}  {'1 replica':48s}  2 replicas")
    for name, create_s, one, two in results:
        print(f"{name:20s} {create_s:12.2f} s  {one.row():48s}  {two.row() if two else '-'}")
    base = results[0][2].requests_per_s
    for name, _, one, two in results[1:]:
        print(f"ratio {name}/local: 1 replica {one.requests_per_s / base:.2f}"
              + (f", 2 replicas {two.requests_per_s / base:.2f}" if two else ""))


if __name__ == "__main__":
    main()
