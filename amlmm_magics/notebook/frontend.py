"""Does the front end render ipywidgets? Decided once per kernel, overridable.

The answer is one of ``widget`` (live ipywidgets), ``text`` (plain text and HTML outputs that
survive in a saved notebook) or ``none`` (silent progress). Rules, first match wins:

1. An override: the ``mode`` argument when it is not ``auto`` (the magics' ``progress``
   setting), else the environment variable ``AMLMM_PROGRESS`` (``auto|widget|text|none``)
   when it is not ``auto``. An unknown value is ignored (treated as ``auto``). ``widget``
   without ipywidgets installed still means ``text``.
2. No IPython, or an IPython without a kernel (terminal IPython, a plain script) → ``text``.
3. ``ipywidgets`` cannot be imported → ``text``.
4. The kernel was started by a batch runner → ``text``. That is the kernel's parent process
   (``JPY_PARENT_PID``, else the OS parent) being nbconvert, nbclient's ``jupyter execute``,
   papermill, pytest (nbval, nbmake, testbook) or a similar runner, judged by its program
   name (``jupyter-nbconvert``, ``python -m papermill``, …), never by its other arguments.
   This also catches a runner started from inside a notebook (``!jupyter nbconvert
   --execute``), whose kernel inherits the outer notebook's ``JPY_SESSION_NAME``.
5. ``JPY_SESSION_NAME`` is set → ``widget``. jupyter_server sets it for every kernel it
   starts for a session (JupyterLab, Notebook 7, JupyterHub, VS Code connected to a Jupyter
   server); nbclient, nbconvert and papermill never set it.
6. VS Code's own kernels (the Jupyter extension launches them itself, without
   jupyter_server) → ``widget``: the extension injects ``__vsc_ipynb_file__`` into the user
   namespace of notebook kernels, and launches Python kernels with
   ``PYDEVD_IPYTHON_COMPATIBLE_DEBUGGING=1`` next to the extension host's ``VSCODE_PID`` /
   ``VSCODE_CWD``. ``VSCODE_PID`` alone is not enough: a runner started from VS Code's
   integrated terminal inherits it too.
7. Anything else (``jupyter console``, qtconsole, a kernel a custom client started) →
   ``text``.

``JPY_PARENT_PID`` alone says nothing: jupyter_client sets it for every kernel it launches,
nbclient's included.

Importing this module imports neither IPython nor ipywidgets.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MODES = ("auto", "widget", "text", "none")
ENV = "AMLMM_PROGRESS"

# Program or module names of batch runners: their kernels have no one looking at widgets.
BATCH_RUNNERS = frozenset({
    "jupyter-nbconvert", "nbconvert", "jupyter-execute", "nbclient", "papermill",
    "pytest", "py.test", "nbval", "nbmake", "testbook", "jupyter-run", "voila-execute",
})


@dataclass(frozen=True)
class Decision:
    mode: str  # "widget" | "text" | "none"
    reason: str

    @property
    def widgets(self) -> bool:
        return self.mode == "widget"


def _program(argv: Sequence[str]) -> str:
    """The name a command line runs: ``jupyter-nbconvert`` for
    ``python /venv/bin/jupyter-nbconvert …``, ``papermill`` for ``python -m papermill …``."""
    args = [a for a in argv if a]
    if not args:
        return ""
    name = os.path.basename(args[0])
    if name.startswith("python") or name == "pypy3":
        rest = args[1:]
        while rest and rest[0].startswith("-") and rest[0] not in ("-m", "-c"):
            rest = rest[1:]  # interpreter flags such as -u, -X frozen_modules=off
        if len(rest) >= 2 and rest[0] == "-m":
            return rest[1].split(".")[0]
        if rest and rest[0] != "-c":
            name = os.path.basename(rest[0])
    if name.endswith(".py"):
        name = name[:-3]
    return name


def is_batch_runner(argv: Sequence[str]) -> bool:
    program = _program(argv)
    if program == "jupyter":
        # ``jupyter nbconvert`` execs jupyter-nbconvert; a shim that did not exec shows here.
        sub = next((a for a in argv[2:] if not a.startswith("-")), "")
        program = f"jupyter-{sub}"
    return program in BATCH_RUNNERS


def parent_argv(env: Mapping[str, str]) -> list[str]:
    """The command line of the process that started this kernel (empty when unknown)."""
    pid_text = env.get("JPY_PARENT_PID") or ""
    pid = int(pid_text) if pid_text.isdigit() and int(pid_text) > 0 else os.getppid()
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _normal(mode: str | None) -> str | None:
    value = (mode or "").strip().lower()
    return value if value in MODES else None


def decide(
    *,
    mode: str | None = None,
    env: Mapping[str, str] | None = None,
    shell: Any = None,
    has_ipywidgets: bool | None = None,
    parent: Sequence[str] | None = None,
) -> Decision:
    """Apply the rules of the module docstring to the given facts (the real ones when None
    is given, except ``shell``: pass the IPython shell, or None for "no IPython")."""
    env = os.environ if env is None else env
    for source, value in (("setting", mode), (ENV, env.get(ENV))):
        chosen = _normal(value)
        if chosen and chosen != "auto":
            if chosen == "widget" and not (
                    _ipywidgets_importable() if has_ipywidgets is None else has_ipywidgets):
                return Decision("text", f"{source} says widget, but ipywidgets is not "
                                        "installed")
            return Decision(chosen, f"{source} says {chosen}")
    if shell is None:
        return Decision("text", "no IPython")
    if getattr(shell, "kernel", None) is None:
        return Decision("text", "IPython without a kernel (terminal)")
    if has_ipywidgets is None:
        has_ipywidgets = _ipywidgets_importable()
    if not has_ipywidgets:
        return Decision("text", "ipywidgets is not installed")
    argv = parent_argv(env) if parent is None else list(parent)
    if argv and is_batch_runner(argv):
        return Decision("text", f"kernel started by a batch runner ({_program(argv)})")
    if env.get("JPY_SESSION_NAME"):
        return Decision("widget", "a Jupyter server session (JPY_SESSION_NAME)")
    user_ns = getattr(shell, "user_ns", None) or {}
    if "__vsc_ipynb_file__" in user_ns:
        return Decision("widget", "a VS Code notebook (__vsc_ipynb_file__)")
    if env.get("PYDEVD_IPYTHON_COMPATIBLE_DEBUGGING") and (
            env.get("VSCODE_PID") or env.get("VSCODE_CWD")):
        return Decision("widget", "a kernel launched by VS Code's Jupyter extension")
    return Decision("text", "no notebook front end known to render widgets")


def _ipywidgets_importable() -> bool:
    if "ipywidgets" in sys.modules:
        return sys.modules["ipywidgets"] is not None
    try:
        import ipywidgets  # noqa: F401
    except Exception:
        return False
    return True


def _current_shell() -> Any:
    if "IPython" not in sys.modules:
        return None  # IPython never imported: certainly not inside a kernel
    try:
        from IPython import get_ipython
    except Exception:
        return None
    return get_ipython()


_cached: Decision | None = None


def detect(mode: str | None = None, *, shell_getter: Callable[[], Any] = _current_shell
           ) -> Decision:
    """The decision for this kernel: overrides are read every time, the detection (rules
    2-7) once per process (a kernel never changes front end kind)."""
    global _cached
    env = os.environ
    for value in (mode, env.get(ENV)):
        chosen = _normal(value)
        if chosen and chosen != "auto":
            return decide(mode=mode, env=env)
    if _cached is None:
        found = decide(env={k: v for k, v in env.items() if k != ENV}, shell=shell_getter())
        # No shell yet (imported before IPython started) is not worth remembering.
        if found.reason != "no IPython":
            _cached = found
        return found
    return _cached


def render_mode(mode: str | None = None) -> str:
    """``widget``, ``text`` or ``none`` for this kernel."""
    return detect(mode).mode


def widgets_render(mode: str | None = None) -> bool:
    return detect(mode).widgets


def reset() -> None:
    """Forget the cached detection (tests)."""
    global _cached
    _cached = None
