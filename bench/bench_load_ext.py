"""Time of ``%load_ext amlmm_magics`` in a fresh IPython process, next to jupysql's
``%load_ext sql`` as a reference.

Each sample is a new Python process: it starts IPython's InteractiveShell (not timed), then
times the ``%load_ext`` line magic alone. The median of the samples is reported; the goal is
under 100 ms and below jupysql's.

Two conditions: with a bytecode cache (what an installed package has: pip compiles to .pyc;
here the cache goes to a temporary PYTHONPYCACHEPREFIX, for both extensions alike, so the
checkout is not written to), and the environment as it is (in this development venv
PYTHONDONTWRITEBYTECODE=1 is set, so the editable checkout is compiled from source on every
start while site-packages, jupysql included, has its .pyc files).

    python bench/bench_load_ext.py [--runs 7]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile

GOAL_MS = 100.0
_SAMPLE = """
import json, sys, time
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
before = set(sys.modules)
started = time.perf_counter()
ip.run_line_magic("load_ext", {extension!r})
elapsed = time.perf_counter() - started
assert {extension!r} in ip.extension_manager.loaded, "the extension did not load"
print(json.dumps({{"ms": elapsed * 1000, "modules": len(set(sys.modules) - before)}}))
"""


def sample(extension: str, ipython_dir: str, cache: str | None) -> dict[str, float]:
    env = {**os.environ, "IPYTHONDIR": ipython_dir,
           # jupysql (ploomber-core) sends telemetry unless told not to; no network here.
           "PLOOMBER_STATS_ENABLED": "false"}
    if cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = cache
    done = subprocess.run([sys.executable, "-c", _SAMPLE.format(extension=extension)],
                          capture_output=True, text=True, env=env, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"%load_ext {extension} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(extension: str, runs: int, ipython_dir: str,
            cache: str | None) -> tuple[float, int]:
    # The first run warms the OS file cache (and fills the bytecode cache, if any).
    sample(extension, ipython_dir, cache)
    results = [sample(extension, ipython_dir, cache) for _ in range(runs)]
    return (statistics.median(r["ms"] for r in results),
            int(statistics.median(r["modules"] for r in results)))


def main() -> int:
    parser = argparse.ArgumentParser(description="Time %load_ext amlmm_magics and jupysql.")
    parser.add_argument("--runs", type=int, default=7, help="fresh processes per extension")
    args = parser.parse_args()
    jupysql = importlib.util.find_spec("sql") is not None
    if not jupysql:
        print("%load_ext sql (jupysql): NOT MEASURED: jupysql is not installed in this Python "
              f"({sys.executable}); `pip install jupysql` to compare.")
    results: dict[str, dict[str, tuple[float, int]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-ipython-") as ipython_dir:
        for condition in ("bytecode cache", "environment as is"):
            cache = os.path.join(ipython_dir, "pycache") if condition == "bytecode cache" \
                else None
            for extension in ("amlmm_magics", "sql") if jupysql else ("amlmm_magics",):
                ms, modules = measure(extension, args.runs, ipython_dir, cache)
                results.setdefault(condition, {})[extension] = (ms, modules)
                label = "amlmm_magics" if extension == "amlmm_magics" else "sql (jupysql)"
                print(f"{condition:>17}: %load_ext {label:<14} {ms:7.1f} ms (median of "
                      f"{args.runs} fresh processes; {modules} modules imported)")
    ours = results["bytecode cache"]["amlmm_magics"][0]
    theirs = results["bytecode cache"]["sql"][0] if jupysql else None
    verdict = [f"with a bytecode cache: goal < {GOAL_MS:.0f} ms "
               f"{'met' if ours < GOAL_MS else 'MISSED'}"]
    if theirs is not None:
        verdict.append(f"below jupysql: yes, {theirs / ours:.1f}x faster" if ours < theirs
                       else "below jupysql: NO")
    print("; ".join(verdict))
    return 0 if ours < GOAL_MS and (theirs is None or ours < theirs) else 1


if __name__ == "__main__":
    sys.exit(main())
