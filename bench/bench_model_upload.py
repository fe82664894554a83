"""A large in-memory model to the embedded backend: memory while serializing, upload speed.

Serializes a numpy array (1 GiB by default) with the packaging layer and reports the peak
memory growth of this process above the array itself (goal: under 100 MiB), then uploads the
file to the embedded backend's blob endpoint with azure-storage-blob (as model registration
does) and prints its throughput as a ratio to ``cp`` of the same file on the same disk (goal:
at least 0.6). Each run uses a fresh temporary AMLMM_HOME.

    python bench/bench_model_upload.py [--gib 1.0] [--format joblib|cloudpickle]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import embedded_backend

from amlmm_magics.api.blob import upload_blob
from amlmm_magics.packaging import serialize_model

MiB = 1024 * 1024


def peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--format", choices=["joblib", "cloudpickle"], default=None)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="upload-bench-", dir="/var/tmp"))
    try:
        array = np.full(int(args.gib * 1024 * MiB) // 8, 1.5)
        array[::4096] = np.arange(array[::4096].size)  # touch every page: all of it resident
        reset_peak()
        before = peak_rss()
        started = time.perf_counter()
        artifact = serialize_model(array, work, name="big", format=args.format)
        serialize_s = time.perf_counter() - started
        growth = (peak_rss() - before) / MiB
        del array
        size = artifact.size
        print(f"serialize ({artifact.format}): {size / MiB:.0f} MiB in {serialize_s:.2f} s, "
              f"peak memory growth above the array {growth:.1f} MiB (goal < 100 MiB)")

        subprocess.run(["sync"], check=True)
        copy = work / "copy.bin"
        started = time.perf_counter()
        subprocess.run(["cp", str(artifact.path), str(copy)], check=True)
        cp_s = time.perf_counter() - started
        copy.unlink()
        subprocess.run(["sync"], check=True)
        # The blob store syncs what it commits (a crash loses nothing registered): the
        # like-for-like copy is one that reaches the disk too.
        started = time.perf_counter()
        subprocess.run(["cp", str(artifact.path), str(copy)], check=True)
        subprocess.run(["sync", str(copy)], check=True)
        cp_sync_s = time.perf_counter() - started
        copy.unlink()

        with embedded_backend() as conn:
            reset_peak()
            before = peak_rss()
            started = time.perf_counter()
            upload_blob(conn.storage_sas_url, artifact.path, f"bench/{artifact.file_name}",
                        content_type=artifact.mime_type)
            upload_s = time.perf_counter() - started
            upload_growth = (peak_rss() - before) / MiB
        cp_rate, upload_rate = size / MiB / cp_s, size / MiB / upload_s
        cp_sync_rate = size / MiB / cp_sync_s
        print(f"cp: {cp_s:.2f} s ({cp_rate:.0f} MiB/s); cp + sync: {cp_sync_s:.2f} s "
              f"({cp_sync_rate:.0f} MiB/s)")
        print(f"upload: {upload_s:.2f} s ({upload_rate:.0f} MiB/s), client memory growth "
              f"{upload_growth:.1f} MiB")
        print(f"ratio upload/cp throughput: {upload_rate / cp_rate:.2f}; upload/(cp + sync): "
              f"{upload_rate / cp_sync_rate:.2f} (goal >= 0.6)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
