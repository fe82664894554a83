"""Deployment latency on the embedded backend.

Two figures, each the median of a few runs through the REST client:
- from ``begin_create_service`` (image already built) to the first successful score
  (goal: under 3 s);
- from model registration (upload + register) through manifest, image and service to the
  first successful score (goal: under 8 s).

    python bench/bench_deploy.py [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import embedded_backend, first_score, iris_image, iris_model_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    model_file = iris_model_file(Path(tempfile.mkdtemp(prefix="deploy-bench-")))
    service_times, total_times = [], []
    with embedded_backend() as conn:
        client = conn.client
        for run in range(args.runs):
            started = time.perf_counter()
            image = iris_image(conn, model_file)
            service_started = time.perf_counter()
            poller = client.begin_create_service(name=f"iris-{run}", image_id=image.id,
                                                 compute_resource={"id": "local"})
            service = poller.result(timeout=300)
            first_score(service.scoringUri, client.get_service_keys(service.id).primaryKey,
                        deadline_s=120)
            ended = time.perf_counter()
            service_times.append(ended - service_started)
            total_times.append(ended - started)
            print(f"run {run + 1}: service create -> first score {service_times[-1]:.2f} s; "
                  f"registration -> first score {total_times[-1]:.2f} s")
    print(f"median service create -> first score: {statistics.median(service_times):.2f} s "
          "(goal < 3 s)")
    print(f"median model registration -> first score: {statistics.median(total_times):.2f} s "
          "(goal < 8 s)")


if __name__ == "__main__":
    main()
