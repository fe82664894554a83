"""Compute resources, Kubernetes export and the panel through the magics and the terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flows import create_service, iris_image
from test_magics_shell import Shell, make_shell

from amlmm_magics.notebook.panel import TextPanel


@pytest.fixture(scope="module")
def shell(local_home: Path) -> Iterator[Shell]:
    yield make_shell(local_home)


def terminal(home: Path, *args: str, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "amlmm_magics.cli", *args], text=True,
                          capture_output=True, timeout=120,
                          env={**os.environ, "AMLMM_HOME": str(home), **(env or {})})


def test_compute_list_shows_where_each_service_runs(shell, local, tmp_path):
    image, _, _ = iris_image(local, tmp_path)
    service = create_service(local, image.id)
    try:
        frame = shell.run("%amlmm compute list")
        local_row = frame[frame["id"] == "local"].iloc[0]
        assert local_row["type"] == "Local"
        assert service.name in local_row["services"].split(", ")
        listing = shell.run(f"%amlmm service list --name {service.name}")
        assert list(listing["computeResource.id"]) == ["local"]
    finally:
        local.client.delete_service(service.id)


def test_compute_add_errors_are_one_line_and_register_nothing(shell, local, monkeypatch):
    monkeypatch.delenv("NO_SUCH_TOKEN_VAR", raising=False)
    assert shell.fails("%amlmm compute add ray9 --ray http://127.0.0.1:9 --token-env "
                       "NO_SUCH_TOKEN_VAR") == (
        "compute add 'ray9': the environment variable NO_SUCH_TOKEN_VAR is not set (or empty)")
    line = shell.fails("%amlmm compute add ray9 --ray http://127.0.0.1:9")
    assert line.startswith("compute add 'ray9': 400 ClusterUnreachable: The Ray cluster 'ray9' "
                           "does not answer at http://127.0.0.1:9")
    assert shell.fails("%amlmm compute add local --ray http://127.0.0.1:9").endswith(
        "'local' is the built-in compute resource; pick another name")
    assert [c.id for c in local.client.list_compute_resources()] == ["local"]
    assert str(shell.run("%amlmm compute remove ray9")) == (
        "No compute resource 'ray9': nothing to remove.")


def test_a_token_given_as_an_argument_is_refused_without_echoing_it(shell):
    line = shell.fails("%amlmm compute add ray9 --ray http://x:8265 --token=s3cr3t-value",
                       Exception)
    assert "s3cr3t-value" not in line and "secrets are never given as arguments" in line


def test_the_panel_falls_back_to_text_without_widgets(shell, local_home):
    panel = shell.run("%amlmm panel")
    assert isinstance(panel, TextPanel)
    assert set(panel.listings) == {"model", "manifest", "image", "service", "deployment"}
    done = terminal(local_home, "panel")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "amlmm: error: panel: the panel is a notebook widget; in a terminal use the list "
        "commands")


def test_compute_commands_in_a_terminal(local_home):
    listed = terminal(local_home, "compute", "list")
    assert listed.returncode == 0 and "local" in listed.stdout and "Local" in listed.stdout
    refused = terminal(local_home, "compute", "add", "r", "--ray", "http://127.0.0.1:9")
    assert refused.returncode == 1
    assert "400 ClusterUnreachable" in refused.stderr
