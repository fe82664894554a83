"""Front-end detection: which kernels get widgets, which get text (frontend.py rules)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from amlmm_magics.notebook import frontend

LAB_SERVER = ["/venv/bin/python", "/venv/bin/jupyter-lab", "--no-browser"]
NOTEBOOK7 = ["/usr/bin/python3", "-m", "notebook"]
VSCODE_HOST = ["/usr/share/code/code", "--type=extensionHost"]


def kernel_shell(**user_ns):
    return types.SimpleNamespace(kernel=object(), user_ns=dict(user_ns))


def decide(env, parent, *, shell=None, widgets=True, mode=None):
    return frontend.decide(mode=mode, env=env, shell=shell or kernel_shell(),
                           has_ipywidgets=widgets, parent=parent)


@pytest.mark.parametrize("env, parent, want", [
    # JupyterLab / Notebook 7: jupyter_server sets JPY_SESSION_NAME for the session's kernel.
    ({"JPY_SESSION_NAME": "/home/u/a.ipynb", "JPY_PARENT_PID": "10"}, LAB_SERVER, "widget"),
    ({"JPY_SESSION_NAME": "/home/u/a.ipynb", "JPY_PARENT_PID": "10"}, NOTEBOOK7, "widget"),
    # VS Code's own kernel launcher: the extension host's env plus the pydevd switch.
    ({"VSCODE_PID": "77", "VSCODE_CWD": "/", "PYDEVD_IPYTHON_COMPATIBLE_DEBUGGING": "1"},
     VSCODE_HOST, "widget"),
    # nbclient / nbconvert / papermill / nbval: jupyter_client sets JPY_PARENT_PID only.
    ({"JPY_PARENT_PID": "10"}, ["/venv/bin/python", "/venv/bin/jupyter-nbconvert",
                                "--execute", "a.ipynb"], "text"),
    ({"JPY_PARENT_PID": "10"}, ["/venv/bin/python", "/venv/bin/jupyter-execute", "a.ipynb"],
     "text"),
    ({"JPY_PARENT_PID": "10"}, ["python3", "-m", "papermill", "in.ipynb", "out.ipynb"], "text"),
    ({"JPY_PARENT_PID": "10"}, ["python", "-X", "frozen_modules=off", "-m", "pytest",
                                "--nbval"], "text"),
    # A runner started from a notebook cell inherits the outer JPY_SESSION_NAME.
    ({"JPY_SESSION_NAME": "/home/u/outer.ipynb", "JPY_PARENT_PID": "10"},
     ["/venv/bin/python", "/venv/bin/jupyter-nbconvert", "--execute", "x.ipynb"], "text"),
    # A runner started from VS Code's integrated terminal inherits VSCODE_PID.
    ({"VSCODE_PID": "77", "VSCODE_CWD": "/", "JPY_PARENT_PID": "10"},
     ["python", "/venv/bin/jupyter-nbconvert", "--execute", "x.ipynb"], "text"),
    ({"VSCODE_PID": "77", "JPY_PARENT_PID": "10"}, ["python", "-m", "jupyter_console"],
     "text"),
    # jupyter console / an unknown client: no notebook to show widgets.
    ({"JPY_PARENT_PID": "10"}, ["python", "/venv/bin/jupyter-console"], "text"),
    # Arguments that merely mention pytest (a temp path) do not make a runner.
    ({"JPY_SESSION_NAME": "/tmp/pytest-of-root/pytest-3/nb/a.ipynb"},
     ["/venv/bin/python", "-m", "jupyterlab", "--notebook-dir=/tmp/pytest-of-root/pytest-3"],
     "widget"),
])
def test_kernels_by_who_started_them(env, parent, want):
    assert decide(env, parent).mode == want


def test_vscode_notebook_kernel_is_known_by_its_injected_variable():
    shell = kernel_shell(__vsc_ipynb_file__="/w/a.ipynb")
    assert decide({"JPY_PARENT_PID": "1"}, VSCODE_HOST, shell=shell).mode == "widget"
    assert decide({"JPY_PARENT_PID": "1"}, VSCODE_HOST).mode == "text"


def test_no_kernel_or_no_ipywidgets_means_text():
    lab = {"JPY_SESSION_NAME": "/a.ipynb"}
    assert frontend.decide(env=lab, shell=None, has_ipywidgets=True, parent=LAB_SERVER
                           ).mode == "text"
    terminal = types.SimpleNamespace(user_ns={})  # TerminalInteractiveShell has no kernel
    assert frontend.decide(env=lab, shell=terminal, has_ipywidgets=True, parent=LAB_SERVER
                           ).mode == "text"
    assert decide(lab, LAB_SERVER, widgets=False).mode == "text"


@pytest.mark.parametrize("setting, env_value, want", [
    ("text", None, "text"),
    ("none", None, "none"),
    (None, "text", "text"),
    (None, "none", "none"),
    ("widget", "text", "widget"),  # the setting wins over the environment
    ("auto", "text", "text"),
    (None, "bogus", "widget"),  # unknown values are ignored
])
def test_overrides_win(setting, env_value, want):
    env = {"JPY_SESSION_NAME": "/a.ipynb"}
    if env_value is not None:
        env[frontend.ENV] = env_value
    assert decide(env, LAB_SERVER, mode=setting).mode == want


def test_override_to_widget_even_from_a_batch_runner():
    env = {frontend.ENV: "widget"}
    got = decide(env, ["python", "-m", "papermill"], shell=None)
    assert got.mode == "widget" and "AMLMM_PROGRESS" in got.reason
    assert decide(env, LAB_SERVER, widgets=False).mode == "text"  # cannot without ipywidgets


def test_program_names():
    assert frontend._program(["/usr/bin/python3.11", "-u", "-m", "nbclient.cli"]) == "nbclient"
    assert frontend._program(["/venv/bin/python", "/venv/bin/jupyter-nbconvert"]) == (
        "jupyter-nbconvert")
    assert frontend.is_batch_runner(["/venv/bin/python", "/venv/bin/jupyter", "nbconvert",
                                     "--execute"])
    assert not frontend.is_batch_runner(["/venv/bin/python", "/venv/bin/jupyter", "lab"])
    assert not frontend.is_batch_runner([])


def test_detection_is_cached_per_process_but_overrides_are_read_each_time(monkeypatch):
    monkeypatch.delenv(frontend.ENV, raising=False)
    monkeypatch.setenv("JPY_SESSION_NAME", "/a.ipynb")
    frontend.reset()
    calls = []

    def shell():
        calls.append(1)
        return kernel_shell()

    try:
        monkeypatch.setattr(frontend, "parent_argv", lambda env: LAB_SERVER)
        assert frontend.detect(shell_getter=shell).mode == "widget"
        monkeypatch.delenv("JPY_SESSION_NAME")
        assert frontend.detect(shell_getter=shell).mode == "widget"  # cached
        assert len(calls) == 1
        monkeypatch.setenv(frontend.ENV, "text")
        assert frontend.detect(shell_getter=shell).mode == "text"
        assert frontend.detect("none", shell_getter=shell).mode == "none"
    finally:
        frontend.reset()


def test_outside_ipython_is_text_and_not_cached(monkeypatch):
    monkeypatch.delenv(frontend.ENV, raising=False)
    frontend.reset()
    assert frontend.detect(shell_getter=lambda: None).mode == "text"
    assert frontend._cached is None


def test_parent_argv_reads_the_launcher_command_line():
    mine = [a.decode() for a in Path("/proc/self/cmdline").read_bytes().split(b"\0") if a]
    child = subprocess.run(
        [sys.executable, "-c",
         "import json, sys; from amlmm_magics.notebook import frontend; "
         "print(json.dumps(frontend.parent_argv({'JPY_PARENT_PID': sys.argv[1]})))",
         str(os.getpid())],
        capture_output=True, text=True, check=True)
    assert json.loads(child.stdout) == mine
    assert frontend.is_batch_runner(mine)  # this test runs under pytest


def test_real_nbclient_execution_renders_text(tmp_path):
    """A notebook executed by nbclient decides text, as rule 4 says, for real."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell(
        "from amlmm_magics.notebook import frontend\nprint(frontend.detect())"))
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    text = "".join(o.get("text", "") for o in nb.cells[0].outputs)
    assert "mode='text'" in text, text
