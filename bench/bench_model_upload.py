"""A large in-memory model to the embedded backend: memory while serializing, upload speed.

Serializes a numpy array (1 GiB by default) with the packaging layer and reports the peak
memory growth of this process above the array itself (goal: under 100 MiB), then uploads the
file to the embedded backend's blob endpoint with azure-storage-blob (as model registration
does) and prints its throughput as a ratio to ``cp`` of the same file on the same disk (goal:
at least 0.6). Each run uses a fresh temporary AMLMM_HOME.

    python bench/bench_model_upload.py [--gib 1.0] [--format joblib|cloudpickle] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
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


def timed_copy(source: Path, target: Path, *, sync: bool) -> float:
    """Seconds for ``cp`` (and ``sync`` of the copy) from a synced disk."""
    subprocess.run(["sync"], check=True)
    started = time.perf_counter()
    subprocess.run(["cp", str(source), str(target)], check=True)
    if sync:
        subprocess.run(["sync", str(target)], check=True)
    seconds = time.perf_counter() - started
    target.unlink()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--format", choices=["joblib", "cloudpickle"], default=None)
    parser.add_argument("--rounds", type=int, default=3)
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

        cp_s, cp_sync_s, upload_s, growths = [], [], [], []
        with embedded_backend() as conn:
            def copies() -> None:
                cp_s.append(timed_copy(artifact.path, work / "copy.bin", sync=False))
                cp_sync_s.append(timed_copy(artifact.path, work / "copy.bin", sync=True))

            def upload(round_: int) -> None:
                subprocess.run(["sync"], check=True)
                reset_peak()
                before = peak_rss()
                started = time.perf_counter()
                upload_blob(conn.storage_sas_url, artifact.path,
                            f"bench/{round_}/{artifact.file_name}",
                            content_type=artifact.mime_type)
                upload_s.append(time.perf_counter() - started)
                growths.append((peak_rss() - before) / MiB)

            # Interleaved rounds, each step starting from a synced disk, the side that goes
            # first alternating: this disk's write speed swings with whatever was written
            # just before (the host is still flushing it), and both sides see the same swings.
            for round_ in range(args.rounds):
                if round_ % 2:
                    upload(round_)
                    copies()
                else:
                    copies()
                    upload(round_)
        mib = size / MiB
        cp, cp_sync, upload = (statistics.median(x) for x in (cp_s, cp_sync_s, upload_s))
        print(f"{args.rounds} rounds, medians: cp {cp:.2f} s ({mib / cp:.0f} MiB/s); cp + sync "
              f"{cp_sync:.2f} s ({mib / cp_sync:.0f} MiB/s); upload {upload:.2f} s "
              f"({mib / upload:.0f} MiB/s), client memory growth {max(growths):.1f} MiB")
        # The blob store syncs what it commits (a crash loses nothing registered): the
        # like-for-like copy is one that reaches the disk too.
        ratio_cp = statistics.median(c / u for c, u in zip(cp_s, upload_s, strict=True))
        ratio_sync = statistics.median(c / u for c, u in zip(cp_sync_s, upload_s, strict=True))
        print(f"ratio upload/cp throughput: {ratio_cp:.2f}; upload/(cp + sync): "
              f"{ratio_sync:.2f} (goal >= 0.6); rounds: "
              + ", ".join(f"{c / u:.2f}" for c, u in zip(cp_sync_s, upload_s, strict=True)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
