"""The magics inside a real IPython InteractiveShell: loading, settings, help, completion,
error rendering. Also the harness the other test_magics_* modules import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from amlmm_magics import errors
from amlmm_magics.commands.settings import SETTINGS
from amlmm_magics.errors import AmlmmError, AmlmmUsageError
from amlmm_magics.grammar import COMMANDS, manual

# -- the harness ---------------------------------------------------------------------------------


class Shell:
    """Runs cells in a real InteractiveShell; an exception of a cell is raised, not shown."""

    def __init__(self, ip: InteractiveShell) -> None:
        self.ip = ip

    def run(self, source: str) -> Any:
        result = self.ip.run_cell(source, store_history=True)
        if result.error_before_exec is not None:
            raise result.error_before_exec
        if result.error_in_exec is not None:
            raise result.error_in_exec
        return result.result

    def fails(self, source: str, kind: type[BaseException] = AmlmmError) -> str:
        """Run a cell that must fail with an AmlmmError; answer its one rendered line."""
        with pytest.raises(kind) as info:
            self.run(source)
        lines = info.value._render_traceback_()
        assert len(lines) == 1, lines
        return lines[0]

    @property
    def ns(self) -> dict[str, Any]:
        return self.ip.user_ns

    def config(self, statement: str) -> None:
        self.ip.run_line_magic("config", statement)


def make_shell(home: Path) -> Shell:
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "amlmm_magics")
    shell = Shell(ip)
    shell.config(f"AmlmmMagics.home = {str(home)!r}")
    shell.config("AmlmmMagics.progress = 'text'")
    return shell


def magics_of(shell: Shell) -> Any:
    return shell.ip.magics_manager.registry["AmlmmMagics"]


def forget_setting(shell: Shell, name: str) -> None:
    """Undo a ``%config AmlmmMagics.<name> = ...``: the shell is shared by every module."""
    magics = magics_of(shell)
    for config in (shell.ip.config, magics.config):
        section = config.get("AmlmmMagics")
        if section is not None:
            section.pop(name, None)
    setattr(magics, name, magics.trait_defaults(name))
    magics._set_here.discard(name)


# -- fixtures of this module -----------------------------------------------------------------


@pytest.fixture(scope="module")
def shell(local_home: Path) -> Iterator[Shell]:
    yield make_shell(local_home)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for spec in SETTINGS:
        for name in (spec.env, *spec.fallback_env):
            monkeypatch.delenv(name, raising=False)


# -- loading -------------------------------------------------------------------------------------


def test_load_ext_is_idempotent_and_unload_removes_everything(shell: Shell) -> None:
    ip = shell.ip
    before = ip.magics_manager.registry["AmlmmMagics"]
    shell.run("%load_ext amlmm_magics")
    from amlmm_magics import load_ipython_extension

    load_ipython_extension(ip)  # a second registration is refused quietly
    assert ip.magics_manager.registry["AmlmmMagics"] is before
    assert sum(type(c).__name__ == "AmlmmMagics" for c in ip.configurables) == 1
    shell.run("%unload_ext amlmm_magics")
    assert "amlmm" not in ip.magics_manager.magics["line"]
    assert "amlmm" not in ip.magics_manager.magics["cell"]
    assert all(type(c).__name__ != "AmlmmMagics" for c in ip.configurables)
    assert all(getattr(m, "matcher_identifier", "") != "amlmm_magics.completion"
               for m in ip.Completer.custom_matchers)
    with pytest.raises(Exception, match="Line magic function `%amlmm` not found"):
        shell.run("%amlmm status")
    shell.run("%load_ext amlmm_magics")
    assert magics_of(shell) is not before
    # %config values live in the shell's config: the new instance has them too.
    assert magics_of(shell).home == before.home
    assert shell.run("%amlmm config").rows[0][0] == "top"


def test_import_and_load_ext_stay_light(tmp_path: Path) -> None:
    code = (
        "import sys, json\n"
        "import amlmm_magics\n"
        "after_import = sorted(m for m in sys.modules if m.split('.')[0] in HEAVY)\n"
        "assert 'IPython' not in sys.modules\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "before = set(sys.modules)\n"
        "ip.run_line_magic('load_ext', 'amlmm_magics')\n"
        "loaded = sorted(m for m in set(sys.modules) - before if m.split('.')[0] in HEAVY)\n"
        "print(json.dumps([after_import, loaded]))\n"
    )
    heavy = "HEAVY = {'pandas', 'ipywidgets', 'azure', 'requests', 'fastapi', 'uvicorn', " \
            "'numpy', 'sklearn', 'urllib3'}\n"
    done = subprocess.run([sys.executable, "-c", heavy + code], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "IPYTHONDIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [[], []]


# -- help ----------------------------------------------------------------------------------------


def test_the_manual_is_the_magic_doc_and_lists_every_command_with_an_example(
        shell: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    doc = shell.ip.find_line_magic("amlmm").__doc__
    assert doc == manual()
    for command in COMMANDS:
        assert f"%amlmm {' '.join(command.path)}" in doc
        assert f"e.g. {command.example.splitlines()[0]}" in doc
    assert "%amlmm panel" in doc and "%amlmm compute add" in doc
    shell.run("%amlmm?")
    assert "manifest create" in capsys.readouterr().out


def test_help_of_one_command(shell: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    assert shell.run("%amlmm help service create") is None
    text = capsys.readouterr().out
    assert text.startswith("usage: amlmm service create")
    assert "--autoscale" in text and "example:\n  %amlmm service create --name iris-svc" in text
    assert shell.run("%amlmm model register -h") is None
    assert "cell body (%%amlmm): runs the cell" in capsys.readouterr().out
    assert shell.fails("%amlmm help model frobnicate").startswith(
        "amlmm help: error: unknown command 'model frobnicate' (choose from connect, status")


def test_a_line_without_command_prints_the_manual(shell: Shell,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert shell.run("%amlmm") is None
    assert capsys.readouterr().out.strip() == manual()


# -- settings ------------------------------------------------------------------------------------


def test_the_traitlets_are_the_settings(shell: Shell) -> None:
    from amlmm_magics.notebook.magics import AmlmmMagics

    traits = set(AmlmmMagics.class_traits(config=True))
    assert traits == {spec.name for spec in SETTINGS}


def test_config_shows_value_and_source(shell: Shell, clean_env: None,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMLMM_TIMEOUT", "12.5")
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", "sub-from-azure")
    monkeypatch.setenv("AMLMM_TOP", "7")
    shell.config("AmlmmMagics.top = 5")  # %config wins over the environment
    try:
        rows = {row[0]: row[1:] for row in shell.run("%amlmm config").rows}
    finally:
        forget_setting(shell, "top")
    assert rows["top"][:2] == ("5", "%config")
    rows = {row[0]: row[1:] for row in shell.run("%amlmm config").rows}
    assert rows["top"][:2] == ("7", "environment (AMLMM_TOP)")
    assert rows["timeout"][:2] == ("12.5", "environment (AMLMM_TIMEOUT)")
    assert rows["subscription"][:2] == ("sub-from-azure", "environment (AZURE_SUBSCRIPTION_ID)")
    assert rows["dry_run"][:2] == ("True", "default")
    assert rows["storage_sas_url_env"][2] == "AMLMM_STORAGE_SAS_URL_ENV"


def test_a_malformed_environment_value_fails_commands_but_config_shows_it(
        shell: Shell, clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMLMM_DRY_RUN", "maybe")
    assert shell.fails("%amlmm model list") == (
        "config: AMLMM_DRY_RUN='maybe' is not a yes/no value (use 1/0, true/false, yes/no, "
        "on/off)")
    rows = {row[0]: row[1:] for row in shell.run("%amlmm config").rows}
    assert rows["dry_run"][1].startswith("default; AMLMM_DRY_RUN='maybe' is not a yes/no")


def test_environment_top_applies_to_listings(shell: Shell, clean_env: None,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from flows import unique

    name = unique("top")
    shell.ns["numbers"] = [1, 2, 3]
    for _ in range(2):
        shell.run(f"%amlmm model register numbers --name {name}")
    monkeypatch.setenv("AMLMM_TOP", "1")
    capsys.readouterr()
    frame = shell.run(f"%amlmm model list --name {name}")
    assert len(frame) == 1 and "showing 1 of more; use --all" in capsys.readouterr().out
    assert len(shell.run(f"%amlmm model list --name {name} --top 2")) == 2


def test_short_errors_off_shows_the_full_traceback(shell: Shell) -> None:
    shell.config("AmlmmMagics.short_errors = False")
    try:
        with pytest.raises(AmlmmUsageError) as info:
            shell.run("%amlmm model show")
        assert not hasattr(info.value, "_render_traceback_")
    finally:
        forget_setting(shell, "short_errors")
    assert errors.SHORT_ERRORS is True
    with pytest.raises(AmlmmUsageError) as info:
        shell.run("%amlmm model show")
    assert info.value._render_traceback_() == [
        "amlmm model show: error: the following arguments are required: ID"]


def test_the_error_output_is_one_line(shell: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    result = shell.ip.run_cell("%amlmm modle list")
    assert result.error_in_exec is not None
    out = capsys.readouterr()
    shown = [line for line in (out.out + out.err).splitlines() if line.strip()]
    assert shown == ["amlmm: error: unknown command 'modle'; did you mean 'model'? (choose from "
                     "connect, status, config, local, model, manifest, image, service, "
                     "deployment, operation, compute, panel, help)"]


# -- parsing -------------------------------------------------------------------------------------


def test_no_variable_expansion_and_quotes(shell: Shell) -> None:
    shell.ns["name"] = "expanded"
    line = shell.fails("%amlmm model show '$name {name}'")
    assert line == "model show: no model with the ID or name '$name {name}'"


def test_a_trailing_semicolon_silences_the_result(shell: Shell) -> None:
    assert shell.run("%amlmm config;") is None
    assert shell.run("%amlmm config") is not None


# -- completion ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "expected"), [
    ("%amlmm ", ["compute", "config", "connect", "deployment", "help", "image", "local",
                 "manifest", "model", "operation", "panel", "service", "status"]),
    ("%amlmm mo", ["model"]),
    ("%amlmm service re", ["regenerate-key"]),
    ("%amlmm model register clf --na", ["--name"]),
    ("%amlmm model register clf --format ", ["cloudpickle", "joblib"]),
    ("%amlmm connect --credential dev", ["device-code"]),
    ("%%amlmm manifest create --sa", ["--sample-input"]),
    ("%amlmm image create --", ["--compute-resource", "--description", "--manifest", "--name",
                                "--no-wait", "--output", "--timeout"]),
])
def test_tab_completion(shell: Shell, line: str, expected: list[str]) -> None:
    from IPython.core.completer import provisionalcompleter

    with provisionalcompleter():
        found = list(shell.ip.Completer.completions(line, len(line)))
    assert sorted({c.text for c in found}) == expected
    word = line.rsplit(" ", 1)[-1]
    assert {c.start for c in found} == {len(line) - len(word)}


def test_no_completion_in_a_cell_body_or_other_magics(shell: Shell) -> None:
    from amlmm_magics.notebook.completion import candidates

    assert candidates("%time model") == ([], "")
    assert candidates("%amlmm") == ([], "")
    assert candidates("%amlmm model register clf --name ") == ([], "")


# -- progress --------------------------------------------------------------------------------------


class _FakePoller:
    operation_id = "1a2b3c4d5e6f"

    def __init__(self) -> None:
        self.callbacks: list[Any] = []
        self.state: str | None = None

    def add_progress_callback(self, callback: Any) -> None:
        self.callbacks.append(callback)

    def remove_progress_callback(self, callback: Any) -> None:
        self.callbacks.remove(callback)

    def poll(self, state: str) -> None:
        self.state = state
        for callback in list(self.callbacks):
            callback(self, {"state": state})


def test_text_progress_writes_each_state_once_and_a_summary() -> None:
    from amlmm_magics.notebook.progress import TextProgress

    lines: list[str] = []
    poller = _FakePoller()
    progress = TextProgress(lines.append)
    progress.start(poller, "Image 'iris-img'")
    for state in ("NotStarted", "Running", "Running", "Running", "Succeeded"):
        poller.poll(state)
    progress.finish({"id": "x"})
    assert [line.rsplit(" ", 2)[0] for line in lines] == [
        "Image 'iris-img' (op 1a2b…): NotStarted", "Image 'iris-img' (op 1a2b…): Running",
        "Image 'iris-img' (op 1a2b…): Succeeded in"]
    assert poller.callbacks == []
    failed = TextProgress(lines.append)
    failed.start(poller, "Service 's'")
    poller.poll("Failed")
    failed.finish(RuntimeError("x"))
    assert lines[-1].startswith("Service 's' (op 1a2b…): Failed after ")


def test_the_progress_setting_picks_the_reporter() -> None:
    from amlmm_magics.notebook import progress

    assert isinstance(progress.make_reporter("none", print), progress.NullProgress)
    for mode in ("auto", "widget", "text"):
        assert isinstance(progress.make_reporter(mode, print), progress.TextProgress)



def test_an_expression_with_spaces_is_told_to_be_quoted(shell: Shell) -> None:
    shell.ns["rows"] = [[1, 2], [3, 4]]
    assert shell.fails("%amlmm service score svc rows[0:1, 0]", AmlmmUsageError) == (
        'amlmm service score: error: unrecognized arguments: 0]; an expression with spaces '
        'needs quotes: "rows[0:1, 0]"')


def test_a_killed_sessions_scratch_folder_is_removed_by_the_next_session(tmp_path: Path,
                                                                        monkeypatch) -> None:
    import tempfile

    from amlmm_magics.commands.context import Session

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    orphan = tmp_path / "amlmm-session-999999999-abc"
    alive = tmp_path / f"amlmm-session-{os.getppid()}-abc"
    orphan.mkdir()
    alive.mkdir()
    session = Session()
    try:
        made = session.workdir
        assert made.parent == tmp_path and made.name.startswith(f"amlmm-session-{os.getpid()}-")
        assert not orphan.exists() and alive.exists()
    finally:
        session.close()
