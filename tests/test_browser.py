"""The widgets in a real browser: JupyterLab on loopback, driven by Playwright in Chromium.

A notebook (written by the test) builds an image with the progress widget showing, starts a
second build followed from a background thread (``watch``, the ``--no-wait`` path) while
later cells run, shows a paged listing of models, and opens the panel. The test runs it all,
watches the widget go Running and be replaced in place by the Succeeded summary (in its own
cell for the watched build), checks the listing table's rows, clicks Next and checks page 2,
filters the panel's images tab and selects a row, then saves the notebook and checks that
the saved file keeps each summary as HTML + text (no widget state needed to read it) and
one output per build. Screenshots go to ``test-artifacts/browser/``.

Everything the notebook does goes through public ``amlmm_magics`` APIs against the
session's embedded backend (``AMLMM_HOME`` points the kernel at it).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import ROOT, free_port

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

CHROMIUM = Path(os.environ.get("AMLMM_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = ROOT / "test-artifacts" / "browser"
KERNEL_IDLE = re.compile(r"\(ipykernel\) \| Idle")
MODELS = 12
PAGE = 5

DRIVER = '''\
import time

def init():
    time.sleep(6)  # keeps the build Running long enough to see the live widget

def run(data):
    return data
'''

SETUP = '''\
import io
from amlmm_magics.api.blob import upload_blob
from amlmm_magics.connection import connect_local
from amlmm_magics.notebook import frontend, widgets

conn = connect_local()  # $AMLMM_HOME: the test session's embedded backend
client = conn.client
tag = {tag!r}
print("front end:", frontend.detect())
'''

REGISTER = '''\
def upload(data, name, content_type=None):
    return upload_blob(conn.storage_sas_url, io.BytesIO(data), f"browser/{{tag}}/{{name}}",
                       content_type=content_type, length=len(data))

weights = upload(b"weights", "model.bin")
for _ in range({models}):
    client.register_model(name=f"bmodel-{{tag}}", url=weights,
                          mime_type="application/octet-stream")
driver = upload({driver!r}.encode(), "score.py", "application/x-python")
manifest = client.register_manifest(
    name=f"bmanifest-{{tag}}", driver_program="driver",
    assets=[{{"id": "driver", "url": driver, "mimeType": "application/x-python"}}],
    target_runtime={{"runtimeType": "Python", "properties": {{}}}})
'''

BUILD = '''\
poller = client.begin_create_image(name=f"bimage-{tag}", manifest_id=manifest.id,
                                   compute_resource_id="local")
progress = widgets.widget_progress_factory(client)
assert progress is not None, frontend.detect()
progress.start(poller, f"Image 'bimage-{tag}'")
try:
    image = poller.result(timeout=300)
except BaseException as exc:
    progress.finish(exc)
    raise
progress.finish(image)
'''

WATCH = '''\
# --no-wait: the widget follows the build from its own thread while other cells run.
watched = widgets.watch(client.begin_create_image(
    name=f"bwatch-{tag}", manifest_id=manifest.id, compute_resource_id="local"), client=client)
'''

AFTER = '''\
import time
time.sleep(2)
print("after the watch")
'''

LISTING = '''\
models = widgets.make_listing(client, "model", page_size={page}, filter=f"bmodel-{{tag}}")
models
'''


PANEL = '''\
panel = widgets.make_panel(client, page_size=5)
panel
'''


def notebook(tag: str) -> dict:
    sources = [SETUP.format(tag=tag), REGISTER.format(models=MODELS, driver=DRIVER), BUILD,
               WATCH, AFTER, LISTING.format(page=PAGE), PANEL]
    cells = [{"cell_type": "code", "execution_count": None, "id": f"cell{i}", "metadata": {},
              "outputs": [], "source": source} for i, source in enumerate(sources)]
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
                           "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


class Lab:
    def __init__(self, url: str, token: str, root: Path, log: Path) -> None:
        self.url, self.token, self.root, self.log = url, token, root, log

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@pytest.fixture(scope="module")
def lab(local_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """JupyterLab on loopback with a token, every Jupyter directory in a temp dir."""
    base = tmp_path_factory.mktemp("lab")
    dirs = {name: base / name for name in ("config", "data", "runtime", "ipython", "settings",
                                           "root", "workspaces")}
    for path in dirs.values():
        path.mkdir()
    news = dirs["settings"] / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    # Render every cell, not only those in view (JupyterLab 4 windows long notebooks).
    tracker = dirs["settings"] / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JPY_", "JUPYTER", "AMLMM_", "VSCODE_"))}
    env.update(
        JUPYTER_CONFIG_DIR=str(dirs["config"]), JUPYTER_DATA_DIR=str(dirs["data"]),
        JUPYTER_RUNTIME_DIR=str(dirs["runtime"]), IPYTHONDIR=str(dirs["ipython"]),
        JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
        JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]),
        AMLMM_HOME=str(local_home), PYTHONPATH=str(ROOT),
    )
    port, token = free_port(), secrets.token_hex(16)
    log = base / "jupyterlab.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--allow-root", "--no-browser",
             f"--IdentityProvider.token={token}", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
             "--ServerApp.open_browser=False", f"--ServerApp.root_dir={dirs['root']}",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
            env=env, cwd=dirs["root"], stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    server = Lab(f"http://127.0.0.1:{port}", token, dirs["root"], log)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited ({proc.returncode}):\n{server.log_tail()}")
            try:
                answer = requests.get(f"{server.url}/api/status",
                                      headers={"Authorization": f"token {token}"}, timeout=5)
                if answer.status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer in 120 s:\n{server.log_tail()}")
            time.sleep(0.25)
        yield server
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def saved_outputs(path: Path, cell_id: str, want: str, timeout: float = 60) -> list[dict]:
    """The outputs of one cell in the saved notebook, once they hold ``want``."""
    deadline = time.monotonic() + timeout
    outputs: list[dict] = []
    while time.monotonic() < deadline:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {"cells": []}
        cell = next((c for c in data["cells"] if c.get("id") == cell_id), None)
        outputs = cell.get("outputs", []) if cell else []
        if want in json.dumps(outputs):
            return outputs
        time.sleep(0.25)
    return outputs


def test_progress_and_listing_widgets_render_in_jupyterlab(lab: Lab,
                                                          tmp_path_factory) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y --no-install-recommends "
                    "chromium (or set AMLMM_CHROMIUM)")
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    name = f"widgets-{tag}.ipynb"
    (lab.root / name).write_text(json.dumps(notebook(tag), indent=1))
    browser_home = tmp_path_factory.mktemp("chromium")
    timings: dict[str, float] = {}
    started = time.monotonic()

    def mark(what: str) -> None:
        timings[what] = round(time.monotonic() - started, 1)

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            env={**os.environ, "XDG_CONFIG_HOME": str(browser_home / "config"),
                 "XDG_CACHE_HOME": str(browser_home / "cache"), "HOME": str(browser_home)})
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{lab.url}/lab/tree/{name}?token={lab.token}")
            expect(page.get_by_text(KERNEL_IDLE)).to_be_visible(timeout=120_000)
            mark("kernel idle")
            page.locator(".lm-MenuBar-item", has_text="Run").click()
            page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()

            # The live widget: header, a state badge, a bar; Running while init() sleeps.
            cells = page.locator(".jp-Notebook .jp-CodeCell")
            expect(cells).to_have_count(7, timeout=60_000)
            build, watch, after = cells.nth(2), cells.nth(3), cells.nth(4)
            live = build.locator(".jp-OutputArea-output .jupyter-widgets.amlmm-progress")
            expect(live).to_have_count(1, timeout=120_000)
            badge = live.locator(".amlmm-badge")
            expect(badge).to_have_text(re.compile("NotStarted|Running"), timeout=60_000)
            expect(badge).to_have_text("Running", timeout=60_000)
            expect(live.locator(".amlmm-progress-header")).to_contain_text(f"bimage-{tag}")
            expect(live.locator(".widget-hprogress .progress-bar")).to_have_count(1)
            mark("progress running")
            expect(live.locator(".amlmm-log")).to_contain_text("Building image",
                                                               timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "01-progress-running.png"), full_page=True)

            # Replaced in place by the static summary: one output, no widget left.
            summary = build.locator(".jp-OutputArea-output .amlmm-summary")
            expect(summary).to_have_count(1, timeout=240_000)
            expect(summary).to_contain_text("Succeeded")
            expect(summary).to_contain_text(f"bimage-{tag}")
            expect(summary).to_contain_text("imageLocation: amlmm.local/")
            expect(live).to_have_count(0)
            mark("progress succeeded")
            page.screenshot(path=str(ARTIFACTS / "02-progress-succeeded.png"), full_page=True)

            # --no-wait: the watched build ends in its own cell, while later cells ran.
            watched = watch.locator(".jp-OutputArea-output .amlmm-summary")
            expect(watched).to_contain_text("Succeeded", timeout=240_000)
            expect(watched).to_contain_text(f"bwatch-{tag}")
            expect(watch.locator(".amlmm-progress")).to_have_count(0)
            expect(after.locator(".jp-OutputArea-output")).to_have_text("after the watch")
            expect(after.locator(".amlmm-summary")).to_have_count(0)
            mark("watch succeeded")

            # The listing: page 1 as a DataFrame table, then Next → page 2.
            listing = cells.nth(5).locator(".jp-OutputArea-output .jupyter-widgets.amlmm-listing")
            rows = listing.locator("table.dataframe tbody tr")
            expect(rows).to_have_count(PAGE, timeout=120_000)
            status = listing.locator(".amlmm-status")
            expect(status).to_have_text(f"page 1 of ?, {PAGE} rows so far")
            expect(listing.locator("table.dataframe")).to_contain_text(f"bmodel-{tag}")
            versions = "t => Array.from(t.querySelectorAll('tbody tr')).map(" \
                       "r => r.querySelectorAll('td')[2].textContent.trim())"
            table = listing.locator("table.dataframe")
            assert table.evaluate(versions) == ["12", "11", "10", "9", "8"]
            expect(listing.locator("button", has_text="Prev")).to_be_disabled()
            page.screenshot(path=str(ARTIFACTS / "03-listing-page-1.png"), full_page=True)
            mark("listing page 1")

            listing.locator("button", has_text="Next").click()
            expect(status).to_have_text(f"page 2 of ?, {2 * PAGE} rows so far",
                                        timeout=60_000)
            expect(rows).to_have_count(PAGE)
            assert table.evaluate(versions) == ["7", "6", "5", "4", "3"]
            expect(listing.locator("button", has_text="Prev")).to_be_enabled()
            mark("listing page 2")
            page.screenshot(path=str(ARTIFACTS / "04-listing-page-2.png"), full_page=True)

            # The panel: a tab per kind; the images tab filtered from the browser.
            panel = cells.nth(6).locator(".jupyter-widgets.amlmm-panel")
            tabs = panel.locator(".lm-TabBar-tab")
            expect(tabs).to_have_text(["Models", "Manifests", "Images", "Services",
                                       "Deployments"], timeout=120_000)
            tabs.nth(2).click()
            images = panel.locator(".amlmm-tab-images")
            expect(images.locator(".amlmm-status")).to_contain_text("page 1", timeout=60_000)
            box = images.locator(".widget-text input")
            box.fill(f"bmanifest-{tag}")
            box.press("Enter")
            expect(images.locator(".amlmm-status")).to_have_text("page 1 of 1, 2 rows in all",
                                                                 timeout=60_000)
            expect(images.locator("table.dataframe")).to_contain_text(f"bwatch-{tag}")
            expect(images.locator("table.dataframe")).to_contain_text(f"bimage-{tag}")
            row = images.locator(".amlmm-row-select select")
            expect(row.locator("option")).to_have_count(3)  # (choose a row), bwatch, bimage
            expect(row.locator("option").nth(2)).to_contain_text(f"bimage-{tag}:1")
            row.select_option(index=2)
            details = images.locator(".amlmm-details")
            expect(details).to_contain_text(f'"name": "bimage-{tag}"', timeout=60_000)
            expect(details).to_contain_text('"creationState": "Succeeded"', timeout=60_000)
            expect(details).to_contain_text("sig=***")
            mark("panel")
            cells.nth(6).scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "05-panel-images.png"), full_page=True)

            # Saved, the build cell keeps the summary as HTML + text, and nothing else.
            page.locator(".lm-MenuBar-item", has_text="File").click()
            page.locator('.lm-Menu-item[data-command="docmanager:save"]').click()
            outputs = saved_outputs(lab.root / name, "cell2", "amlmm-summary")
            watch_outputs = saved_outputs(lab.root / name, "cell3", "amlmm-summary")
            mark("saved")
        except Exception as exc:
            page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)
            raise AssertionError(f"{exc}\n\nbrowser test failed after {timings}; "
                                 f"JupyterLab log:\n{lab.log_tail()}") from exc
        finally:
            browser.close()

    for kept in (outputs, watch_outputs):
        assert len(kept) == 1, kept
        data = kept[0]["data"]
        assert "application/vnd.jupyter.widget-view+json" not in data
        assert "Succeeded" in "".join(data["text/plain"]) and "amlmm-summary" in "".join(
            data["text/html"])
    print(f"browser test timings (s since browser start): {timings}")
