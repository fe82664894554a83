"""The same commands through the ``amlmm`` command line, in subprocesses, against the
session's embedded backend: outputs, exit codes, and the misuse lines of the magics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import pytest
from flows import IRIS_DRIVER, iris_data, unique
from sklearn.linear_model import LogisticRegression
from test_magics_misuse import CASES

TERMINAL = [sys.executable, "-m", "amlmm_magics.cli"]


class Cli:
    def __init__(self, home: Path, cwd: Path) -> None:
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("AMLMM_", "AZURE_"))}
        self.env.update(AMLMM_HOME=str(home), AMLMM_PROGRESS="text")
        self.cwd = cwd

    def __call__(self, *args: str, stdin: str | None = None,
                 expect: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*TERMINAL, *args], capture_output=True, text=True, input=stdin,
                              env=self.env, cwd=self.cwd, timeout=300)
        assert done.returncode == expect, (done.returncode, done.stdout, done.stderr)
        return done

    def json(self, *args: str, **kw: Any) -> Any:
        return json.loads(self(*args, **kw).stdout)


@pytest.fixture(scope="module")
def cli(local_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return Cli(local_home, tmp_path_factory.mktemp("cli"))


@pytest.fixture(scope="module")
def built(cli: Cli) -> Iterator[dict[str, Any]]:
    """model (a file) → manifest (a driver file, a JSON sample) → image → service."""
    x, y = iris_data()
    names = {kind: unique(f"cli-{kind}") for kind in ("model", "manifest", "image", "service")}
    joblib.dump(LogisticRegression(max_iter=300).fit(x, y), cli.cwd / "iris.joblib")
    (cli.cwd / "score.py").write_text(IRIS_DRIVER.format(model=names["model"]))
    (cli.cwd / "sample.json").write_text(json.dumps(x[:2].tolist()))
    done = {}
    done["model"] = cli("model", "register", "--path", "iris.joblib", "--name", names["model"],
                        "--tag", "team=ds")
    done["manifest"] = cli("manifest", "create", "--name", names["manifest"], "--model",
                           names["model"], "--driver", "score.py", "--sample-input",
                           "@sample.json")
    done["image"] = cli("image", "create", "--name", names["image"], "--manifest",
                        names["manifest"])
    done["service"] = cli("service", "create", "--name", names["service"], "--image",
                          names["image"])
    yield {"names": names, "done": done, "x": x}
    cli("service", "delete", names["service"])


def test_the_flow_prints_json_and_messages_on_stderr(built: dict[str, Any]) -> None:
    names, done = built["names"], built["done"]
    model = json.loads(done["model"].stdout)
    assert model["name"] == names["model"] and "team=ds" in model["tags"]
    assert "sig=***" in model["url"]  # redacted in the output
    assert done["model"].stderr.startswith(f"Registered model {names['model']!r} version 1")
    assert done["manifest"].stderr.splitlines()[0].startswith(
        "Dry run in a fresh process: init(): ok (")
    image = json.loads(done["image"].stdout)
    assert image["creationState"] == "Succeeded"
    progress = [line for line in done["image"].stderr.splitlines() if " (op " in line]
    assert progress[-1].split(": ", 1)[1].startswith("Succeeded in ")
    service = json.loads(done["service"].stdout)
    assert service["state"] == "Succeeded"
    assert f"(keys: amlmm service keys {names['service']})" in done["service"].stderr


def test_listings_are_tables(cli: Cli, built: dict[str, Any]) -> None:
    out = cli("model", "list", "--name", built["names"]["model"]).stdout
    header, row = out.splitlines()[:2]
    assert header.split()[:3] == ["id", "name", "version"]
    assert built["names"]["model"] in row and "sig=" not in out
    twice = unique("cli-twice")
    for _ in range(2):
        cli("model", "register", "--path", "iris.joblib", "--name", twice)
    assert cli("model", "list", "--name", twice, "--top", "1").stdout.rstrip().endswith(
        "showing 1 of more; use --all")
    assert cli("model", "list", "--name", "nothing-like-this").stdout == "no models\n"
    for kind in ("manifest", "service", "deployment"):
        assert cli(kind, "list", "--all").stdout.split()[0] == "id"


def test_show_by_name_and_version(cli: Cli, built: dict[str, Any]) -> None:
    names = built["names"]
    for kind in ("model", "manifest", "image"):
        shown = cli.json(kind, "show", f"{names[kind]}:1")
        assert shown["name"] == names[kind] and shown["version"] == 1
    assert cli.json("service", "show", names["service"])["name"] == names["service"]


def test_score_from_json_a_file_and_stdin(cli: Cli, built: dict[str, Any]) -> None:
    svc = built["names"]["service"]
    assert cli.json("service", "score", svc, "--data", "[[5.1, 3.5, 1.4, 0.2]]") == [0]
    assert cli.json("service", "score", svc, "--data", "@sample.json") == [0, 0]
    assert cli.json("service", "score", svc, "--data", "-", stdin="[[6.7, 3.0, 5.2, 2.3]]") \
        == [2]


def test_keys_usage_logs_and_regenerate(cli: Cli, built: dict[str, Any], local: Any) -> None:
    svc = built["names"]["service"]
    service_id = cli.json("service", "show", svc)["id"]
    real = local.client.get_service_keys(service_id)
    masked = cli.json("service", "keys", svc)
    assert masked == {"primaryKey": real["primaryKey"][:4] + "***",
                      "secondaryKey": real["secondaryKey"][:4] + "***"}
    assert cli.json("service", "keys", svc, "--show")["primaryKey"] == real["primaryKey"]
    usage = cli("service", "usage", svc).stdout
    assert "curl -sS -X POST" in usage and real["primaryKey"] not in usage
    assert 0 < len(cli("service", "logs", svc, "--tail", "3").stdout.splitlines()) <= 3
    regenerated = cli("service", "regenerate-key", svc, "--key", "primary")
    assert regenerated.stderr.startswith(f"Regenerated the primary key of service {svc!r}")
    assert local.client.get_service_keys(service_id)["primaryKey"] != real["primaryKey"]
    assert cli.json("service", "score", svc, "--data", "[[5.1, 3.5, 1.4, 0.2]]") == [0]


def test_image_log_deployments_and_operations(cli: Cli, built: dict[str, Any]) -> None:
    names = built["names"]
    assert "init(): ok" in cli("image", "log", names["image"]).stdout
    service_id = cli.json("service", "show", names["service"])["id"]
    deployments = cli("deployment", "list", "--service-id", names["service"]).stdout
    first = deployments.splitlines()[1].split()[0]
    assert cli.json("deployment", "show", first)["serviceName"] == names["service"]
    started = cli("image", "create", "--name", unique("cli-nowait"), "--manifest",
                  names["manifest"], "--no-wait")
    operation_id = json.loads(started.stdout)["operationId"]
    assert f"Wait with: amlmm operation wait {operation_id}" in started.stderr
    assert cli.json("operation", "show", operation_id)["operationType"] == "Image"
    assert cli.json("operation", "wait", operation_id)["creationState"] == "Succeeded"
    assert service_id


def test_help_config_status_local(cli: Cli, built: dict[str, Any], local_home: Path) -> None:
    manual = cli().stdout
    assert manual.startswith("amlmm COMMAND ...  (in a notebook: %amlmm COMMAND")
    assert "\n    amlmm service create --name N --image ID" in manual
    assert "e.g. amlmm service keys iris-svc" in manual
    assert "%amlmm" not in manual.split("\n", 1)[1]
    help_text = cli("service", "score", "-h").stdout
    assert help_text.startswith("usage: amlmm service score") and "amlmm service score " \
        "iris-svc X[:3]" in help_text
    assert cli("help", "model", "list").stdout.startswith("usage: amlmm model list")
    config = cli("config").stdout.splitlines()
    assert config[0].split() == ["setting", "value", "source", "environment", "variable"]
    assert any(line.split()[:3] == ["home", str(local_home), "environment"] for line in config)
    status = cli.json("status")
    assert status["backend"] == "local" and status["identity"].startswith("static token ")
    token = json.loads((local_home / "local.json").read_text())["token"]
    assert token not in json.dumps(status)
    local = cli.json("local", "status")
    assert local["state"] == "running" and token not in json.dumps(local)


def test_the_installed_console_script(cli: Cli) -> None:
    script = Path(sys.executable).parent / "amlmm"
    done = subprocess.run([str(script), "help", "local", "status"], capture_output=True,
                          text=True, env=cli.env, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("usage: amlmm local status")
    done = subprocess.run([str(script), "modle"], capture_output=True, text=True, env=cli.env,
                          timeout=60)
    assert done.returncode == 2 and "did you mean 'model'?" in done.stderr


def test_delete_twice(cli: Cli, built: dict[str, Any]) -> None:
    name = unique("cli-del")
    cli("service", "create", "--name", name, "--image", built["names"]["image"])
    assert cli("service", "delete", name).stderr.startswith(f"Deleted service {name!r} (")
    assert cli("service", "delete", name).stderr == f"No service {name!r}: nothing to delete.\n"


def test_ctrl_c_stops_waiting_and_exits_130(cli: Cli, built: dict[str, Any]) -> None:
    (cli.cwd / "slow.py").write_text("import time\ndef init():\n    time.sleep(6)\n"
                                     "def run(x):\n    return x\n")
    manifest = cli.json("manifest", "create", "--name", unique("cli-slow"), "--driver",
                        "slow.py", "--no-dry-run")
    # A shell ignores SIGINT in the jobs it starts in the background, and Python then keeps
    # ignoring it: the command must start with Ctrl-C live, as from a terminal.
    proc = subprocess.Popen([*TERMINAL, "image", "create", "--name", unique("cli-slow"),
                             "--manifest", manifest["id"]], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cli.env, cwd=cli.cwd,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stderr is not None
    first = proc.stderr.readline()  # the first progress line: waiting has begun
    assert " (op " in first
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 130
    line = next(line for line in rest.splitlines() if line.startswith("Stopped waiting"))
    operation_id = line.split()[3]
    assert line == (f"Stopped waiting; operation {operation_id} goes on. Resume with: "
                    f"amlmm operation wait {operation_id}")
    assert cli.json("operation", "wait", operation_id)["creationState"] == "Succeeded"


# -- misuse: the magics' table, where a line makes sense without a notebook -----------------------

TERMINAL_SAFE = [case for case in CASES if not case[0].startswith("%%") and not any(
    word in case[0] for word in (" clf", " lock", "'X[", "1/0", "never_defined", "--run",
                                 "--var", "-o ", "--init", "'object()'", " X --data",
                                 "--credential token", '"unclosed'))]


def exit_code_of(message: str) -> int:
    """2 for a usage error (the command line is wrong), 1 for any other expected failure."""
    return 2 if message.startswith(("amlmm ", "amlmm:")) or "is not valid JSON" in message \
        else 1

NOTEBOOK_ONLY = [
    (["model", "register", "clf", "--name", "m"],
     "amlmm: error: model register: a variable needs a notebook; use --path FILE"),
    (["model", "list", "-o", "models"], "amlmm model list: error: -o VAR needs a notebook"),
    (["manifest", "create", "--name", "mf", "--run", "score"],
     "amlmm: error: manifest create 'mf': --run FUNC needs a notebook; in a terminal give "
     "--driver FILE"),
    (["manifest", "create", "--name", "mf", "--driver", "/dev/null", "--sample-input", "X"],
     "amlmm: error: manifest create 'mf': --sample-input VAR needs a notebook; in a terminal "
     "give --sample-input @FILE.json"),
]


def test_the_terminal_table_is_large_enough() -> None:
    assert len(TERMINAL_SAFE) >= 40


@pytest.fixture(scope="module")
def terminal_misuse(cli: Cli, built: dict[str, Any], local: Any) -> dict[str, Any]:
    """Every terminal-safe misuse line, run as subprocesses side by side; and the number of
    resources of each kind before and after the whole batch."""
    import shlex
    from concurrent.futures import ThreadPoolExecutor

    names = {**built["names"], "file": str(cli.cwd / "iris.joblib")}
    kinds = ("model", "manifest", "image", "service")

    def count() -> dict[str, int]:
        return {k: sum(1 for _ in getattr(local.client, f"list_{k}s")()) for k in kinds}

    def run(line: str) -> subprocess.CompletedProcess[str]:
        argv = shlex.split(line.format(**names))[1:]
        return subprocess.run([*TERMINAL, *argv], capture_output=True, text=True, env=cli.env,
                              cwd=cli.cwd, timeout=120)

    before = count()
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = dict(zip([c[0] for c in TERMINAL_SAFE],
                        pool.map(run, [c[0] for c in TERMINAL_SAFE]), strict=True))
    return {"names": names, "done": done, "before": before, "after": count()}


def test_terminal_misuse_creates_nothing(terminal_misuse: dict[str, Any]) -> None:
    assert terminal_misuse["after"] == terminal_misuse["before"]


@pytest.mark.parametrize(("line", "message", "kind"), TERMINAL_SAFE,
                         ids=[c[0][:60] for c in TERMINAL_SAFE])
def test_misuse_in_a_terminal(terminal_misuse: dict[str, Any], line: str, message: str,
                              kind: str | None) -> None:
    done = terminal_misuse["done"][line]
    expected = message.format(**terminal_misuse["names"])
    if not expected.startswith("amlmm"):
        expected = f"amlmm: error: {expected}"
    assert done.stderr.splitlines()[-1] == expected, done.stderr
    assert done.returncode == exit_code_of(message) and done.stdout == ""


@pytest.mark.parametrize(("argv", "message"), NOTEBOOK_ONLY)
def test_variable_forms_say_they_need_a_notebook(cli: Cli, argv: list[str], message: str) -> None:
    done = cli(*argv, expect=2)
    assert done.stderr.splitlines()[-1] == message
