"""The tutorial notebooks are tests: nbval runs every one of them, a broken cell fails the run,
and a notebook leaves no process and no folder behind.

nbval runs in a subprocess (``python -m pytest --nbval-lax notebooks/``, exactly what a
developer types) with ``TMPDIR`` pointed at a folder of the test, so that everything the
notebooks make on disk (their temporary ``AMLMM_HOME``, the scoring processes' folders) is
under it, and what outlived them can be found by path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT, processes_mentioning
from nbformat.v4 import new_code_cell, new_notebook, new_output

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
NBVAL = ["--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout=300"]


def run(argv: list[str], scratch: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(TMPDIR=str(scratch), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def nbval(paths: list[Path], scratch: Path,
          timeout: float = 840) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "pytest", *NBVAL, "-p", "no:cacheprovider", "-q",
                "--color=no", *map(str, paths)], scratch, timeout)


def report(done: subprocess.CompletedProcess[str]) -> str:
    """nbval's report from its first failure on (its start and its summary when long)."""
    text = done.stdout + done.stderr
    start = text.find("= FAILURES =")
    if start >= 0:
        text = text[text.rfind("\n", 0, start) + 1:]
    return text if len(text) <= 8000 else f"{text[:6000]}\n[...]\n{text[-2000:]}"


def left_behind(scratch: Path) -> tuple[list[int], list[str]]:
    """Processes whose command line names a path under ``scratch`` (given a moment to exit),
    and the amlmm folders still there."""
    deadline = time.monotonic() + 10
    while processes_mentioning(str(scratch)) and time.monotonic() < deadline:
        time.sleep(0.2)
    folders = sorted(p.name for p in scratch.iterdir() if p.name.startswith("amlmm-"))
    return processes_mentioning(str(scratch)), folders


def make_notebook(path: Path, *cells: nbformat.NotebookNode) -> Path:
    nb = new_notebook(cells=list(cells))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)
    return path


def cell(source: str, *tags: str, output: str | None = None) -> nbformat.NotebookNode:
    made = new_code_cell(source)
    if tags:
        made.metadata["tags"] = list(tags)
    if output is not None:
        made.execution_count = 1
        made.outputs = [new_output("execute_result", {"text/plain": output},
                                   execution_count=1)]
    return made


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    folder = tmp_path / "tmp"
    folder.mkdir()
    return folder


def test_the_notebooks_are_there() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "01-quickstart.ipynb", "02-manage-services.ipynb", "03-schemas-and-drivers.ipynb",
        "04-azure.ipynb"]


@pytest.mark.timeout(900)
def test_every_notebook_runs_under_nbval_and_leaves_nothing_behind(scratch: Path) -> None:
    done = nbval(NOTEBOOKS, scratch)
    assert done.returncode == 0, report(done)
    assert " passed" in done.stdout and "failed" not in done.stdout, report(done)
    processes, folders = left_behind(scratch)
    assert processes == [], f"processes outlived the notebooks: {processes}"
    assert folders == [], f"the notebooks left {folders} in the temporary folder"


def test_a_broken_cell_fails_the_run(scratch: Path, tmp_path: Path) -> None:
    broken = make_notebook(
        tmp_path / "broken.ipynb",
        cell("x = 41"),
        cell("1 / 0", "raises-exception"),  # an expected error passes
        cell("x + 1", "nbval-check-output", output="42"),  # the output is as saved
        cell("x + 2", "nbval-check-output", output="42"),  # not as saved: fails
        cell("undefined_name"),  # an unexpected error fails
        cell("print('still runs')"),
    )
    done = nbval([broken], scratch, timeout=240)
    assert done.returncode == 1, report(done)
    assert "2 failed, 4 passed" in done.stdout, report(done)
    assert "broken.ipynb::Cell 3" in done.stdout and "broken.ipynb::Cell 4" in done.stdout
    assert "NameError" in done.stdout


def test_the_runner_prints_outputs_reports_the_failing_cell_and_cleans_up(
        scratch: Path, tmp_path: Path) -> None:
    """scripts/run_notebook.py (what scripts/quickstart.sh runs): the first failing cell's
    one-line error, exit 1, the clean-up cells still run, and a backend the notebook left
    running is stopped and reported."""
    notebook = make_notebook(
        tmp_path / "tiny.ipynb",
        cell("import os, tempfile\n"
             "os.environ['AMLMM_HOME'] = tempfile.mkdtemp(prefix='amlmm-t-')"),
        cell("%load_ext amlmm_magics\n%amlmm local start"),
        cell("print(6 * 7)"),
        cell("1 / 0", "raises-exception"),
        cell("{}['missing']"),
        cell("print('not run')"),
        cell("print('clean-up ran')", "cleanup"),
    )
    done = run([sys.executable, str(ROOT / "scripts" / "run_notebook.py"), str(notebook)],
               scratch, timeout=240)
    assert done.returncode == 1, report(done)
    assert "\n[2] print(6 * 7)\n    42\n" in done.stdout, report(done)
    assert "The embedded backend runs at http://127.0.0.1:" in done.stdout
    assert "not run" not in done.stdout and "clean-up ran" in done.stdout
    assert "FAILED tiny.ipynb cell 4 ({}['missing']): KeyError: 'missing'" in done.stderr
    assert "left the embedded backend running and its home folder" in done.stderr
    assert left_behind(scratch) == ([], [])


def test_the_runner_passes_a_clean_notebook(scratch: Path, tmp_path: Path) -> None:
    notebook = make_notebook(tmp_path / "fine.ipynb", cell("print('hello')"),
                             cell("1 / 0", "raises-exception"), cell("boom", "nbval-skip"))
    done = run([sys.executable, str(ROOT / "scripts" / "run_notebook.py"), str(notebook)],
               scratch, timeout=120)
    assert done.returncode == 0, report(done)
    assert done.stdout.rstrip().endswith("all passed."), report(done)
    assert "ZeroDivisionError" in done.stdout and "NameError" not in done.stdout


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_saved_outputs_show_no_secret(path: Path) -> None:
    """What a notebook keeps: keys masked, no SAS signature, no bearer token."""
    nb = nbformat.read(path, as_version=4)
    text = "\n".join(str(output) for c in nb.cells if c.cell_type == "code"
                     for output in c.get("outputs", []))
    assert "sig=" not in text
    assert "Bearer " not in text
    for line in text.splitlines():
        if "primaryKey" in line or "secondaryKey" in line:
            assert "***" in line, line
