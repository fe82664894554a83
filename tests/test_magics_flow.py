"""Every command through a real InteractiveShell against the real embedded backend: from a
fitted scikit-learn model in a variable to a scored, updated, deleted service."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
import pytest
import requests
from conftest import processes_mentioning
from flows import unique
from test_magics_shell import Shell, magics_of, make_shell

from amlmm_magics.api import OperationPoller
from amlmm_magics.commands.results import ResourceView, ServiceKeys, Text, UsageSnippets
from amlmm_magics.errors import AmlmmOperationError

SETUP = """
import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
X, y = load_iris(return_X_y=True)
clf = LogisticRegression(max_iter=300).fit(X, y)
def score(data):
    return clf.predict(np.asarray(data)).tolist()
"""


def run_quietly(shell: Shell, source: str) -> tuple[Any, str]:
    """The cell's result, and what it printed before IPython showed the result."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        value = shell.run(source)
    return value, out.getvalue().split("Out[", 1)[0]


@pytest.fixture(scope="module")
def shell(local_home: Path) -> Iterator[Shell]:
    shell = make_shell(local_home)
    shell.run(SETUP)
    yield shell


@pytest.fixture(scope="module")
def deployed(shell: Shell) -> dict[str, Any]:
    """The whole flow, once: model → manifest → image → service, all by magics."""
    names = {kind: unique(f"flow-{kind}") for kind in ("model", "manifest", "image", "service")}
    outputs = {}
    views = {}
    commands = {
        "model": f"%amlmm model register clf --name {names['model']} --tag team=ds",
        "manifest": f"%amlmm manifest create --name {names['manifest']} --model "
                    f"{names['model']} --run score --sample-input X[:2]",
        "image": f"%amlmm image create --name {names['image']} --manifest {names['manifest']}",
        "service": f"%amlmm service create --name {names['service']} --image {names['image']}",
    }
    for kind, command in commands.items():
        views[kind], outputs[kind] = run_quietly(shell, command)
    return {"names": names, "views": views, "outputs": outputs}


def test_from_a_fitted_model_to_a_scored_service(shell: Shell, deployed: dict[str, Any]) -> None:
    names, views, outputs = deployed["names"], deployed["views"], deployed["outputs"]
    model = views["model"]
    assert isinstance(model, ResourceView) and model["name"] == names["model"]
    assert "format=joblib" in model["tags"] and "team=ds" in model["tags"]
    assert outputs["model"].startswith(f"Registered model {names['model']!r} version 1 (")
    manifest = views["manifest"]
    assert manifest["modelIds"] == [model["id"]]
    assert manifest["targetRuntime"]["properties"]["schemaAssetId"] == "schema"
    lines = outputs["manifest"].splitlines()
    assert lines[0].startswith("Dry run in a fresh process: init(): ok (")
    assert "run(sample): ok (" in lines[0] and lines[0].endswith("-> [0,0]")
    assert lines[1].startswith(f"Registered manifest {names['manifest']!r} version 1 (")
    assert "scikit-learn==" in lines[1]
    image = views["image"]
    assert image["creationState"] == "Succeeded" and image["manifest"]["id"] == manifest["id"]
    progress = [line for line in outputs["image"].splitlines()
                if line.startswith(f"Image {names['image']!r} (op ")]
    assert len(progress) == len(set(progress)) >= 2
    assert progress[-1].split(": ", 1)[1].startswith("Succeeded in ")
    service = views["service"]
    assert service["state"] == "Succeeded" and service["scoringUri"].startswith("http://")
    assert f"Service {names['service']!r} is ready at {service['scoringUri']}" in \
        outputs["service"]
    shell.run(f"answer = %amlmm service score {names['service']} X[:3]")
    assert shell.ns["answer"] == shell.ns["clf"].predict(shell.ns["X"][:3]).tolist()


def test_the_run_function_was_bound_to_the_registered_object(shell: Shell,
                                                           deployed: dict[str, Any]) -> None:
    assert shell.ns["clf"] is magics_of(shell).session.models.by_model_id[
        deployed["views"]["model"]["id"]].obj
    log = shell.run(f"%amlmm image log {deployed['names']['image']}")
    assert isinstance(log, Text) and "init(): ok" in log and "run(sample): ok" in log


def test_score_takes_a_variable_json_a_file_or_a_cell(shell: Shell, deployed: dict[str, Any],
                                                      tmp_path: Path) -> None:
    svc = deployed["names"]["service"]
    row = [[5.1, 3.5, 1.4, 0.2]]
    assert shell.run(f"%amlmm service score {svc} --data '{json.dumps(row)}'") == [0]
    path = tmp_path / "input.json"
    path.write_text(json.dumps(row * 2))
    assert shell.run(f"%amlmm service score {svc} --data @{path}") == [0, 0]
    assert shell.run(f"%%amlmm service score {svc}\n[[6.7, 3.0, 5.2, 2.3]]") == [2]
    shell.ns["frame_rows"] = shell.ns["X"][:2].tolist()
    assert shell.run(f"%amlmm service score {svc} frame_rows") == [0, 0]
    assert shell.run(f"%amlmm service score {svc} X[50:51] -o scored") is None
    assert shell.ns["scored"] == [1]


def test_listings_are_dataframes_with_a_footer_below(shell: Shell, deployed: dict[str, Any],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    name = unique("listed")
    for _ in range(3):
        run_quietly(shell, f"%amlmm model register clf --name {name}")
    capsys.readouterr()
    result = shell.ip.run_cell(f"%amlmm model list --name {name} --top 2", store_history=True)
    frame = result.result
    assert isinstance(frame, pd.DataFrame) and list(frame["version"]) == [3, 2]  # newest first
    out = capsys.readouterr().out
    assert out.rstrip().endswith("showing 2 of more; use --all")
    assert out.index("Out[") < out.index("showing 2 of more")
    shell.run(f"df = %amlmm model list --name {name} --all")
    assert list(shell.ns["df"]["version"]) == [3, 2, 1]
    assert "showing" not in capsys.readouterr().out
    assert shell.run(f"%amlmm model list --name {name} -o models") is None
    assert len(shell.ns["models"]) == 3
    frame = shell.run(f"%amlmm model list --name {name} --top 3")
    assert len(frame) == 3 and "showing" not in capsys.readouterr().out
    assert "?" not in "".join(frame["url"])  # listings show no SAS query
    empty = shell.run("%amlmm model list --name no-such-model-anywhere")
    assert empty.empty and "no models" in capsys.readouterr().out
    for kind in ("manifest", "image", "service", "deployment"):
        assert isinstance(shell.run(f"%amlmm {kind} list --top 1"), pd.DataFrame)


def test_names_resolve_to_the_latest_version_or_the_one_given(
        shell: Shell, deployed: dict[str, Any]) -> None:
    name = unique("versions")
    first, _ = run_quietly(shell, f"%amlmm model register clf --name {name}")
    second, _ = run_quietly(shell, f"%amlmm model register X --name {name} --format joblib")
    assert shell.run(f"%amlmm model show {name}")["id"] == second["id"]
    assert shell.run(f"%amlmm model show {name}:1")["id"] == first["id"]
    assert shell.run(f"%amlmm model show {first['id']}")["version"] == 1
    names = deployed["names"]
    for kind in ("manifest", "image", "service"):
        assert shell.run(f"%amlmm {kind} show {names[kind]}")["id"] == \
            deployed["views"][kind]["id"]
    assert shell.run(f"%amlmm image show {names['image']}:1")["version"] == 1


def test_views_never_show_secrets(shell: Shell, deployed: dict[str, Any]) -> None:
    model = shell.run(f"%amlmm model show {deployed['names']['model']}")
    assert "sig=" in model["url"]  # the dict keeps the real URL
    signature = model["url"].split("sig=")[1].split("&")[0]
    for text in (repr(model), model._repr_html_(), model.to_json()):
        assert signature not in text
    magics_of(shell).session.connection or shell.run("%amlmm connect")
    token = magics_of(shell).session.connection.client.credential.get_token("").token
    status = shell.run("%amlmm status")
    assert status["backend"] == "local" and status["identity"].startswith("static token ")
    for text in (repr(status), status._repr_html_(), status.to_json()):
        assert token not in text and signature not in text


def test_keys_are_masked_unless_shown(shell: Shell, deployed: dict[str, Any], local: Any) -> None:
    svc = deployed["names"]["service"]
    real = local.client.get_service_keys(deployed["views"]["service"]["id"])
    keys = shell.run(f"%amlmm service keys {svc}")
    assert isinstance(keys, ServiceKeys) and keys.primary == real["primaryKey"]
    for text in (repr(keys), keys._repr_html_()):
        assert real["primaryKey"] not in text and real["secondaryKey"] not in text
        assert real["primaryKey"][:4] + "***" in text
    shown = shell.run(f"%amlmm service keys {svc} --show")
    assert real["primaryKey"] in repr(shown) and real["secondaryKey"] in shown._repr_html_()
    usage = shell.run(f"%amlmm service usage {svc}")
    assert isinstance(usage, UsageSnippets)
    assert real["primaryKey"] not in repr(usage) and "--show" in repr(usage)
    assert "[[5.1, 3.5, 1.4, 0.2], [4.9, 3.0, 1.4, 0.2]]" in usage.curl
    shown_usage = shell.run(f"%amlmm service usage {svc} --show")
    namespace: dict[str, Any] = {}
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        exec(shown_usage.python, namespace)  # the snippet runs as printed
    assert printed.getvalue().strip() == "[0, 0]"


def test_regenerating_a_key_refuses_the_old_one(shell: Shell, deployed: dict[str, Any],
                                                local: Any) -> None:
    svc = deployed["views"]["service"]
    old = local.client.get_service_keys(svc["id"])["secondaryKey"]
    keys, out = run_quietly(shell, f"%amlmm service regenerate-key {svc['name']} "
                                   "--key secondary")
    assert out.startswith(f"Regenerated the secondary key of service {svc['name']!r}")
    assert keys.secondary != old and keys.secondary == \
        local.client.get_service_keys(svc["id"])["secondaryKey"]
    answer = requests.post(svc["scoringUri"], json=[[1, 2, 3, 4]], timeout=30,
                           headers={"Authorization": f"Bearer {old}"})
    assert answer.status_code == 401


def test_update_logs_deployments_and_operations(shell: Shell, deployed: dict[str, Any]) -> None:
    svc = deployed["names"]["service"]
    updated, out = run_quietly(shell, f"%amlmm service update {svc} --replicas 2")
    assert updated["numReplicas"] == 2 and f"Service {svc!r} updated." in out.splitlines()
    assert shell.run(f"%amlmm service score {svc} X[:1]") == [0]
    logs = shell.run(f"%amlmm service logs {svc} --tail 5")
    assert isinstance(logs, Text) and 0 < len(logs.splitlines()) <= 5
    deployments = shell.run(f"%amlmm deployment list --service-id {svc}")
    assert list(deployments["status"][:2]) == ["Running", "Expired"]
    one = shell.run(f"%amlmm deployment show {deployments['id'][0]}")
    assert one["serviceName"] == svc
    names = deployed["names"]
    for option in (f"--image {names['image']}", f"--model {names['model']}",
                   f"--manifest {names['manifest']}:1", f"--name {svc}"):
        assert list(shell.run(f"%amlmm service list {option}")["name"]) == [svc], option
    manifests = shell.run(f"%amlmm manifest list --model {names['model']}")
    assert list(manifests["name"]) == [names["manifest"]]
    images = shell.run(f"%amlmm image list --name {names['image']}")
    assert list(images["id"]) == [deployed["views"]["image"]["id"]]


def test_no_wait_returns_the_poller_and_operation_wait_resumes(
        shell: Shell, deployed: dict[str, Any]) -> None:
    name = unique("nowait")
    poller, out = run_quietly(shell, f"%amlmm image create --name {name} --manifest "
                                     f"{deployed['names']['manifest']} --no-wait")
    assert isinstance(poller, OperationPoller)
    assert out.strip() == (f"Image {name!r}: started (operation {poller.operation_id}). Wait "
                           f"with: %amlmm operation wait {poller.operation_id}")
    operation = shell.run(f"%amlmm operation show {poller.operation_id}")
    assert operation["operationType"] == "Image"
    image, out = run_quietly(shell, f"%amlmm operation wait {poller.operation_id}")
    assert image["name"] == name and image["creationState"] == "Succeeded"
    assert "Image operation (op " in out


def test_ctrl_c_stops_waiting_not_the_operation(shell: Shell, deployed: dict[str, Any],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(self: OperationPoller, timeout: Any = None, interval: Any = None) -> bool:
        self.poll()
        raise KeyboardInterrupt

    name = unique("ctrlc")
    with monkeypatch.context() as patch:
        patch.setattr(OperationPoller, "wait", interrupted)
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(KeyboardInterrupt):
            shell.run(f"%amlmm image create --name {name} --manifest "
                      f"{deployed['names']['manifest']}")
    printed = out.getvalue().splitlines()
    last = next(line for line in printed if line.startswith("Stopped waiting; operation "))
    assert printed.index(last) > 0  # after the progress lines
    operation_id = last.split()[3]
    assert last == (f"Stopped waiting; operation {operation_id} goes on. Resume with: "
                    f"%amlmm operation wait {operation_id}")
    image, _ = run_quietly(shell, f"%amlmm operation wait {operation_id}")
    assert image["name"] == name and image["creationState"] == "Succeeded"


def test_a_timeout_stops_waiting_with_the_resume_command(
        shell: Shell, deployed: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    name = unique("slow")
    with monkeypatch.context() as patch:
        patch.setattr(OperationPoller, "wait", lambda self, timeout=None, interval=None: False)
        with pytest.raises(AmlmmOperationError) as info, \
                contextlib.redirect_stdout(io.StringIO()):
            shell.run(f"%amlmm image create --name {name} --manifest "
                      f"{deployed['names']['manifest']} --timeout 30")
    op = info.value.operation_id
    assert info.value._render_traceback_() == [
        f"image create {name!r}: still running after 30 s; operation {op} goes on. Resume "
        f"with: %amlmm operation wait {op}"]
    run_quietly(shell, f"%amlmm operation wait {op}")


def test_register_from_a_cell_a_file_and_a_folder(shell: Shell, tmp_path: Path) -> None:
    name = unique("cellmodel")
    model, _ = run_quietly(shell, f"%%amlmm model register --name {name} --var lookup\n"
                                  "lookup = {'setosa': 0, 'versicolor': 1}\n")
    assert shell.ns["lookup"] == {"setosa": 0, "versicolor": 1}
    assert "format=cloudpickle" in model["tags"]
    path = tmp_path / "weights.joblib"
    joblib.dump({"w": [1, 2]}, path)
    from_file, _ = run_quietly(shell, f"%amlmm model register --path {path} --name "
                                      f"{unique('file')} --description 'weights file'")
    assert from_file["description"] == "weights file" and not from_file.get("unpack")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    from_folder, _ = run_quietly(shell, f"%amlmm model register --path {folder} --name "
                                        f"{unique('folder')}")
    assert from_folder["unpack"] is True


def test_a_cell_driver_and_an_explicit_binding(shell: Shell, tmp_path: Path) -> None:
    model_name = unique("bound")
    path = tmp_path / "clf.joblib"
    joblib.dump(shell.ns["clf"], path)
    run_quietly(shell, f"%amlmm model register --path {path} --name {model_name}")
    shell.run("other = clf\ndef predict_one(data):\n    return other.predict(data).tolist()\n")
    manifest, out = run_quietly(
        shell, f"%amlmm manifest create --name {unique('bound-mf')} --model "
               f"{model_name}=other --run predict_one --sample-input X[:1]")
    assert "run(sample): ok" in out
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("scikit-learn\n")
    cell = (f"%%amlmm manifest create --name {unique('cell-mf')} --model {model_name} "
            f"--requirements {requirements} --no-dry-run\n"
            "import joblib\nfrom amlmm_magics.scoring import model_path\n"
            "def init():\n    global m\n"
            f"    m = joblib.load(model_path('{model_name}'))\n"
            "def run(data):\n    return m.predict(data).tolist()\n")
    manifest, out = run_quietly(shell, cell)
    assert out.splitlines()[0] == "Dry run skipped."
    assert "requirements: joblib==" in out and "scikit-learn;" not in out
    assert manifest["modelIds"] == [shell.run(f"%amlmm model show {model_name}")["id"]]


def test_a_service_that_fails_to_start_is_deleted(shell: Shell, local: Any) -> None:
    cell = (f"%%amlmm manifest create --name {unique('svcfail')}\n"
            "import sys\n"
            "def init():\n"
            "    if sys.argv[0].endswith('__main__.py'):\n"
            "        raise RuntimeError('init fails in services only')\n"
            "def run(data):\n    return data\n")
    manifest, _ = run_quietly(shell, cell)
    image, _ = run_quietly(shell, f"%amlmm image create --name {unique('svcfail')} "
                                  f"--manifest {manifest['id']}")
    name = unique("svcfail")
    with pytest.raises(AmlmmOperationError) as info, contextlib.redirect_stdout(io.StringIO()):
        shell.run(f"%amlmm service create --name {name} --image {image['id']}")
    line = info.value._render_traceback_()[0]
    assert line.startswith(f"service create {name!r}: operation {info.value.operation_id} "
                           "failed: ")
    assert "RuntimeError: init fails in services only" in line
    assert line.endswith("; the failed service was deleted")
    assert [s for s in local.client.list_services(service_name=name)] == []


def test_a_failed_image_build_says_where_its_log_is(shell: Shell) -> None:
    cell = (f"%%amlmm manifest create --name {unique('imgfail')} --no-dry-run\n"
            "def init():\n    raise ValueError('broken init')\n"
            "def run(data):\n    return data\n")
    manifest, _ = run_quietly(shell, cell)
    name = unique("imgfail")
    with pytest.raises(AmlmmOperationError) as info, contextlib.redirect_stdout(io.StringIO()):
        shell.run(f"%amlmm image create --name {name} --manifest {manifest['id']}")
    line = info.value._render_traceback_()[0]
    image_id = line.rsplit(" ", 1)[-1]
    assert line == (f"image create {name!r}: operation {info.value.operation_id} failed: the "
                    "driver failed its check: ValueError: broken init; build log: "
                    f"%amlmm image log {image_id}")
    assert "ValueError: broken init" in shell.run(f"%amlmm image log {image_id}")


def test_delete_twice_is_fine(shell: Shell, deployed: dict[str, Any], local: Any) -> None:
    image = deployed["views"]["image"]
    name = unique("todelete")
    poller, _ = run_quietly(shell, f"%amlmm service create --name {name} --image "
                                   f"{image['id']} --no-wait")
    service, _ = run_quietly(shell, f"%amlmm operation wait {poller.operation_id}")
    assert service["name"] == name and service["state"] == "Succeeded"
    _, out = run_quietly(shell, f"%amlmm service delete {name}")
    assert out.strip().startswith(f"Deleted service {name!r} (")
    _, out = run_quietly(shell, f"%amlmm service delete {name}")
    assert out.strip() == f"No service {name!r}: nothing to delete."


def test_connect_local_and_to_an_account_with_a_token(shell: Shell, local: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from amlmm_magics.local import daemon
    from amlmm_magics.local.home import Home

    _, out = run_quietly(shell, "%amlmm connect")
    assert out.startswith("Connected to the embedded backend at http://127.0.0.1:")
    info = daemon.status(Home(local.home))
    monkeypatch.setenv("AMLMM_ACCESS_TOKEN", info.token)
    monkeypatch.setenv("TEST_CONTAINER_SAS", info.blob_container_sas_url)
    try:
        _, out = run_quietly(shell, f"%amlmm connect --url {info.url} --subscription local "
                                    "--resource-group local --account local --credential token "
                                    "--storage-sas-url-env TEST_CONTAINER_SAS")
        assert out.strip() == (f"Connected to account 'local' (subscription local, resource "
                               f"group local) at {info.url} as static token "
                               f"{info.token[:4]}***.")
        status = shell.run("%amlmm status")
        assert status["backend"] == "azure" and info.token not in repr(status)
        model, _ = run_quietly(shell, f"%amlmm model register clf --name {unique('azure')}")
        assert model["version"] == 1
    finally:
        run_quietly(shell, "%amlmm connect --local")
    assert magics_of(shell).session.connection.backend == "local"


def test_local_start_status_stop(shell: Shell, tmp_path: Path) -> None:
    home = tmp_path / "other-home"
    magics = magics_of(shell)
    previous = magics.home
    shell.config(f"AmlmmMagics.home = {str(home)!r}")
    try:
        _, out = run_quietly(shell, "%amlmm local start")
        assert out.startswith("The embedded backend runs at http://127.0.0.1:")
        status = shell.run("%amlmm local status")
        assert status["state"] == "running" and status["home"] == str(home.resolve())
        _, out = run_quietly(shell, "%amlmm local stop")
        assert out.startswith(f"Stopped the embedded backend (home {home.resolve()})")
        _, out = run_quietly(shell, "%amlmm local status")
        assert out.strip() == f"The embedded backend is not running (home {home.resolve()})."
        _, out = run_quietly(shell, "%amlmm local stop")
        assert out.strip() == f"The embedded backend was not running (home {home.resolve()})."
    finally:
        shell.config(f"AmlmmMagics.home = {previous!r}")
    assert processes_mentioning(str(home)) == []


def test_device_code_sign_in_shows_the_code_as_text_and_html(
        shell: Shell, local: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import time
    from datetime import datetime

    import azure.identity

    from amlmm_magics.api.auth import AccessToken
    from amlmm_magics.local import daemon
    from amlmm_magics.local.home import Home

    info = daemon.status(Home(local.home))

    class FakeDeviceCode:  # azure-identity's flow, minus Azure AD
        def __init__(self, prompt_callback: Any = None, **kw: Any) -> None:
            self.prompt = prompt_callback

        def get_token(self, *scopes: str, **kw: Any) -> AccessToken:
            self.prompt("https://microsoft.com/devicelogin", "ABCD-1234",
                        datetime(2030, 1, 1, 12, 34))
            return AccessToken(info.token, int(time.time()) + 3600)

    published: list[dict[str, str]] = []
    monkeypatch.setattr(azure.identity, "DeviceCodeCredential", FakeDeviceCode)
    monkeypatch.setattr(shell.ip.display_pub, "publish",
                        lambda data, *a, **kw: published.append(data))
    try:
        _, out = run_quietly(shell, f"%amlmm connect --url {info.url} --subscription local "
                                    "--resource-group local --account local --credential "
                                    "device-code")
        assert out.strip().endswith("as FakeDeviceCode.")
    finally:
        run_quietly(shell, "%amlmm connect --local")
    assert published == [{
        "text/plain": "To sign in, open https://microsoft.com/devicelogin and enter the code "
                      "ABCD-1234 (expires 12:34).",
        "text/html": "To sign in, open <a href='https://microsoft.com/devicelogin' "
                     "target='_blank'>https://microsoft.com/devicelogin</a> and enter the code "
                     "<code style='font-size:120%'>ABCD-1234</code> (expires 12:34)."}]


@pytest.mark.parametrize(("kind", "class_name"), [
    ("default", "DefaultAzureCredential"), ("cli", "AzureCliCredential"),
    ("environment", "EnvironmentCredential"), ("managed-identity", "ManagedIdentityCredential"),
])
def test_credential_kinds_map_to_azure_identity(kind: str, class_name: str) -> None:
    from amlmm_magics.commands.connect import make_credential

    assert type(make_credential(kind, None)).__name__ == class_name  # type: ignore[arg-type]


def test_collected_data_comes_back_as_a_dataframe(shell: Shell, local: Any,
                                                 tmp_path: Path) -> None:
    from flows import create_service, iris_image

    image, _, _ = iris_image(local, tmp_path)
    service = create_service(local, image.id, data_collection={"storageEnabled": True})
    try:
        shell.run(f"%amlmm service score {service.name} X[:2]")
        shell.run(f"%amlmm service score {service.name} X[2:3]")
        frame = shell.run(f"%amlmm service data {service.name}")
        assert list(frame.columns) == ["time", "input", "output", "status"]
        assert len(frame) == 2 and list(frame["status"]) == [200, 200]
        assert frame["input"].iloc[1] == shell.ns["X"][2:3].tolist()
        assert str(frame["time"].dtype).startswith("datetime64")
    finally:
        local.client.delete_service(service.id)
