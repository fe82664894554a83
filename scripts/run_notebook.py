#!/usr/bin/env python3
"""Run a notebook headless and print what it shows, as text.

    python scripts/run_notebook.py notebooks/01-quickstart.ipynb [--output EXECUTED.ipynb]

The notebook runs in a fresh IPython kernel of *this* interpreter (never a kernelspec found
elsewhere on the machine), with nbclient, top to bottom, in the notebook's folder. Each code
cell's text output is printed under its first source line. Cells tagged ``raises-exception``
may fail (their failure is the point); cells tagged ``nbval-skip`` are not run. When another
cell fails, the run stops there, prints that cell's one-line error, still runs the cells
tagged ``cleanup`` (the notebook's clean-up at the end) and exits with status 1.

Afterwards it checks that the notebook left nothing running: when the notebook pointed
``AMLMM_HOME`` at a folder of its own and left the embedded backend of that folder running,
or the folder itself, the runner stops the backend, removes the folder and fails.

Exit status: 0 when every cell passed and nothing was left behind, 1 otherwise, 2 on a usage
error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

MAX_LINES = 40  # of one cell's output; the rest is elided
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Run in the kernel after the notebook: what it left behind (only a home it made itself).
LEFTOVERS = """
def _amlmm_leftovers(before):
    import json, os, shutil
    home = os.environ.get("AMLMM_HOME")
    found = {"home": home, "daemon": False, "folder": False}
    if not home or home == before:
        return json.dumps(found)
    from amlmm_magics.local import daemon
    from amlmm_magics.local.home import Home
    if os.path.isdir(home):
        found["daemon"] = daemon.stop(Home.resolve(home))
        found["folder"] = True
        shutil.rmtree(home, ignore_errors=True)
    return json.dumps(found)
print(_amlmm_leftovers(%r))
"""


def kernel_manager() -> Any:
    """An async kernel manager whose ``python3`` kernel is this interpreter's ipykernel."""
    import ipykernel.kernelspec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    class ThisInterpreter(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> Any:
            return self.kernel_spec_class(resource_dir=ipykernel.kernelspec.RESOURCES,
                                          **ipykernel.kernelspec.get_kernel_dict())

    options: dict[str, Any] = {}
    if "transport_encryption" in AsyncKernelManager.class_trait_names():
        import zmq  # jupyter_client >= 8.10: encrypt the kernel's loopback sockets if possible

        options["transport_encryption"] = "auto" if zmq.has("curve") else "disabled"
    return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=ThisInterpreter(),
                              **options)


def tags(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def first_line(cell: Any) -> str:
    lines = [line for line in cell.source.splitlines() if line.strip()]
    line = next((line for line in lines if not line.lstrip().startswith("#")),
                lines[0] if lines else "")
    return line if len(line) <= 90 else line[:89] + "…"


def output_text(output: Any) -> str:
    kind = output.get("output_type")
    if kind == "stream":
        return output.get("text", "")
    if kind in ("execute_result", "display_data"):
        return output.get("data", {}).get("text/plain", "")
    if kind == "error":
        return "\n".join(ANSI.sub("", line) for line in output.get("traceback", [])[-1:])
    return ""


def show_cell(index: int, cell: Any) -> None:
    text = "".join(output_text(o) + ("" if output_text(o).endswith("\n") else "\n")
                   for o in cell.get("outputs", []) if output_text(o))
    if not text.strip():
        return
    lines = text.rstrip("\n").splitlines()
    if len(lines) > MAX_LINES:
        lines = [*lines[:MAX_LINES], f"... ({len(lines) - MAX_LINES} more lines)"]
    print(f"\n[{index}] {first_line(cell)}")
    print(textwrap.indent("\n".join(lines), "    "), flush=True)


def one_line(error: Any) -> str:
    evalue = ANSI.sub("", str(getattr(error, "evalue", "") or "")).strip()
    ename = getattr(error, "ename", "") or type(error).__name__
    line = evalue.splitlines()[0] if evalue else str(error).strip().splitlines()[-1]
    return f"{ename}: {line}"


def run(path: Path, *, timeout: int, output: Path | None, show: bool) -> int:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ)
    # Nobody looks at widgets here: drop what tells a kernel that a Jupyter server or VS Code
    # shows its outputs (set when this runs from a terminal of theirs), so progress is text.
    for name in ("JPY_SESSION_NAME", "PYDEVD_IPYTHON_COMPATIBLE_DEBUGGING"):
        env.pop(name, None)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", km=kernel_manager(),
                            record_timing=False, coalesce_streams=True,
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    started = time.monotonic()
    failure: str | None = None
    ran = 0
    leftovers: dict[str, Any] = {}
    with client.setup_kernel(env=env, cleanup_kc=True):  # shut the kernel down at the end
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code" or "nbval-skip" in tags(cell):
                continue
            if failure is not None and "cleanup" not in tags(cell):
                continue
            ran += 1
            try:
                client.execute_cell(cell, index, execution_count=ran)
            except (CellExecutionError, CellTimeoutError) as exc:
                if show:
                    show_cell(index, cell)
                if failure is None:
                    failure = f"cell {index} ({first_line(cell)}): {one_line(exc)}"
                    print(f"\nFAILED {path.name} {failure}", file=sys.stderr, flush=True)
                else:
                    print(f"clean-up cell {index} failed too: {one_line(exc)}",
                          file=sys.stderr, flush=True)
                continue
            if show and (failure is None or "cleanup" in tags(cell)):
                show_cell(index, cell)
        leftovers = check_leftovers(client, env.get("AMLMM_HOME") or "")
    elapsed = time.monotonic() - started
    if output is not None:
        nbformat.write(nb, output)
    left = [what for what, key in (("the embedded backend running", "daemon"),
                                   ("its home folder", "folder")) if leftovers.get(key)]
    if left:
        print(f"\nFAILED {path.name} left {' and '.join(left)} ({leftovers['home']}); the "
              "runner stopped and removed it", file=sys.stderr)
    if failure is not None or left:
        return 1
    print(f"\n{path.name}: {ran} code cells ran in {elapsed:.1f} s, all passed.", flush=True)
    return 0


def check_leftovers(client: Any, home_before: str) -> dict[str, Any]:
    """What the notebook left behind (cleaned up here, so nothing survives the run)."""
    import nbformat

    probe = nbformat.v4.new_code_cell(LEFTOVERS % home_before)
    client.nb.cells.append(probe)  # nbclient executes cells of its notebook only
    try:
        client.execute_cell(probe, len(client.nb.cells) - 1, store_history=False)
    except Exception as exc:
        print(f"could not check what the notebook left behind: {one_line(exc)}",
              file=sys.stderr)
        return {}
    finally:
        client.nb.cells.remove(probe)
    text = "".join(o.get("text", "") for o in probe.outputs if o.get("output_type") == "stream")
    try:
        return json.loads(text.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--output", type=Path, help="also write the executed notebook here")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell (600)")
    parser.add_argument("--quiet", action="store_true", help="print only failures and the "
                        "summary line")
    args = parser.parse_args(argv)
    if not args.notebook.is_file():
        parser.error(f"no notebook at {args.notebook}")
    return run(args.notebook, timeout=args.timeout, output=args.output, show=not args.quiet)


if __name__ == "__main__":
    sys.exit(main())
