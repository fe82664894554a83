"""Misuse: each case fails the cell with one exact line, and creates nothing.

Every case runs in a real InteractiveShell against the real embedded backend; the resources
of the kind a case could have made are counted before and after it.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flows import unique
from test_magics_shell import Shell, make_shell

from amlmm_magics.errors import AmlmmError

SETUP = """
import threading
import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
X, y = load_iris(return_X_y=True)
clf = LogisticRegression(max_iter=300).fit(X, y)
unregistered = LogisticRegression()
lock = threading.Lock()
def score(data):
    return clf.predict(np.asarray(data)).tolist()
def echo(data):
    return data
def failing(data):
    return 1 / 0
def uses_unregistered(data):
    return unregistered.predict(data)
def setup():
    pass
"""

# (cell, the exact line, the kind of resource it must not create). Placeholders: {model},
# {manifest}, {image}, {service} name resources that exist; {file} an existing file.
CASES: list[tuple[str, str, str | None]] = [
    # -- the line itself
    ("%amlmm modle list",
     "amlmm: error: unknown command 'modle'; did you mean 'model'? (choose from connect, "
     "status, config, local, model, manifest, image, service, deployment, operation, "
     "compute, panel, help)",
     None),
    ("%amlmm model frobnicate",
     "amlmm model: error: unknown command 'frobnicate' (choose from register, list, show)",
     None),
    ("%amlmm model", "amlmm model: error: missing action (choose from list, register, show)",
     None),
    ("%amlmm model show \"unclosed",
     "amlmm: error: cannot split the line: No closing quotation", None),
    ("%amlmm help model frobnicate",
     "amlmm help: error: unknown command 'model frobnicate' (choose from connect, status, "
     "config, local start, local stop, local status, model register, model list, model show, "
     "manifest create, manifest list, manifest show, image create, image list, image show, "
     "image log, service create, service list, service show, service update, service delete, "
     "service keys, service regenerate-key, service usage, service logs, service score, "
     "service data, service export, deployment list, deployment show, operation show, "
     "operation wait, compute add, compute list, compute remove, panel, help)", None),
    # -- model register
    ("%amlmm model register clf",
     "amlmm model register: error: the following arguments are required: --name", "model"),
    ("%amlmm model register clf --name m --nmae x",
     "amlmm model register: error: unrecognized arguments: --nmae x", "model"),
    ("%amlmm model register clf --nam m",
     "amlmm model register: error: the following arguments are required: --name", "model"),
    ("%amlmm model register clf --name 'bad name'",
     "model register: invalid model name 'bad name': use letters, digits, '.', '_' and '-', "
     "starting with a letter or digit", "model"),
    ("%amlmm model register never_defined --name m",
     "model register: cannot evaluate 'never_defined': NameError: name 'never_defined' is not "
     "defined", "model"),
    ("%amlmm model register 'X[' --name m",
     "model register: cannot evaluate 'X[': SyntaxError: '[' was never closed", "model"),
    ("%amlmm model register 1/0 --name m",
     "model register: cannot evaluate '1/0': ZeroDivisionError: division by zero", "model"),
    ("%amlmm model register lock --name m",
     "model register: cannot serialize lock: _thread.lock objects cannot be pickled (locks "
     "cannot be sent to a service; drop the attribute or re-create it in init())", "model"),
    ("%amlmm model register clf --path {file} --name m",
     "amlmm model register: error: give one model, not VAR and --path", "model"),
    ("%amlmm model register --name m",
     "amlmm model register: error: give the model: VAR, --path FILE_OR_DIR, or a cell with "
     "--var VAR", "model"),
    ("%amlmm model register --path /no/such/model.joblib --name m",
     "model register: no such file or folder: /no/such/model.joblib", "model"),
    ("%amlmm model register clf --name m --format pickle",
     "amlmm model register: error: argument --format: invalid choice 'pickle' (choose from "
     "joblib, cloudpickle)", "model"),
    ("%amlmm model register --path {file} --name m --format joblib",
     "amlmm model register: error: --format applies to a variable; a --path file is "
     "registered as it is", "model"),
    ("%amlmm model register --var v --name m",
     "amlmm model register: error: --var needs a cell (%%amlmm model register --var VAR) "
     "whose code defines VAR; on one line give VAR itself", "model"),
    ("%%amlmm model register --name m\nv = 1",
     "amlmm model register: error: with a cell, give --var VAR: the variable the cell "
     "defines", "model"),
    ("%%amlmm model register --name m --var never_set\nsomething_else = 1",
     "model register: cannot evaluate 'never_set': NameError: name 'never_set' is not "
     "defined", "model"),
    # -- model list / show
    ("%amlmm model show no-such-model",
     "model show: no model with the ID or name 'no-such-model'", None),
    ("%amlmm model show {model}:99", "model show: no model with the ID or name '{model}:99'",
     None),
    ("%amlmm model list --top 0",
     "amlmm model list: error: argument --top: must be a whole number of at least 1, not '0'",
     None),
    ("%amlmm model list --top 3 --all",
     "amlmm model list: error: argument --all: not allowed with argument --top", None),
    ("%amlmm model list -o 1x",
     "amlmm model list: error: argument -o/--output: '1x' is not a valid Python variable name",
     None),
    # -- manifest create
    ("%amlmm manifest create --name mf --model {model}",
     "amlmm manifest create: error: give the driver: a cell body (%%amlmm manifest create "
     "...), --run FUNC or --driver FILE", "manifest"),
    ("%%amlmm manifest create --name mf\ndef init():\n    pass\n",
     "manifest create 'mf': the driver program must define run(input); it defines: init",
     "manifest"),
    ("%%amlmm manifest create --name mf\ndef run(x):\n    return x +\n",
     "manifest create 'mf': syntax error in the driver program, line 2: invalid syntax",
     "manifest"),
    ("%%amlmm manifest create --name mf --run score\ndef run(x):\n    return x\n",
     "amlmm manifest create: error: give the driver once, not a cell body and --run",
     "manifest"),
    ("%amlmm manifest create --name mf --init setup",
     "amlmm manifest create: error: --init needs --run FUNC (a cell driver defines its own "
     "init())", "manifest"),
    ("%amlmm manifest create --name mf --run no_such_function",
     "manifest create 'mf': cannot evaluate 'no_such_function': NameError: name "
     "'no_such_function' is not defined", "manifest"),
    ("%amlmm manifest create --name mf --run X",
     "manifest create 'mf': the run function must be a Python function defined with def; got "
     "an ndarray", "manifest"),
    ("%amlmm manifest create --name mf --model no-such-model --run score",
     "manifest create 'mf': no model with the ID or name 'no-such-model'", "manifest"),
    ("%amlmm manifest create --name mf --model '{model}=1x' --run score",
     "manifest create 'mf': --model '{model}=1x': '1x' is not a Python name", "manifest"),
    ("%%amlmm manifest create --name mf --model {model}=clf\ndef run(x):\n    return x\n",
     "manifest create 'mf': --model {model}=clf binds a notebook global, which only --run FUNC "
     "drivers have: load the model in the driver's init() with model_path('{model}')",
     "manifest"),
    ("%amlmm manifest create --name mf --model {model} --run score --requirements "
     "/no/requirements.txt",
     "manifest create 'mf': cannot read the requirements file /no/requirements.txt: No such "
     "file or directory", "manifest"),
    ("%amlmm manifest create --name mf --model {model} --run score --sample-input no_sample",
     "manifest create 'mf': cannot evaluate 'no_sample': NameError: name 'no_sample' is not "
     "defined", "manifest"),
    ("%amlmm manifest create --name mf --run echo --sample-input 'object()'",
     "manifest create 'mf': cannot make a schema from the sample input: Object of type object "
     "is not JSON serializable", "manifest"),
    ("%amlmm manifest create --name mf --run failing --sample-input X[:1]",
     "manifest create 'mf': failing(sample) raised in the notebook: ZeroDivisionError: "
     "division by zero", "manifest"),
    ("%amlmm manifest create --name mf --run score",
     "manifest create 'mf': score() uses 'clf', registered in this session as model "
     "{model}:1: add --model {model}", "manifest"),
    ("%amlmm manifest create --name mf --run uses_unregistered",
     "manifest create 'mf': uses_unregistered() uses 'unregistered' (a LogisticRegression) "
     "from the notebook, which is not a model of this manifest: register it as a model and "
     "pass --model NAME=unregistered, or create it inside init()", "manifest"),
    ("%%amlmm manifest create --name mf --sample-input X[:1]\n"
     "def run(data):\n    return threshold\n",
     "manifest create 'mf': the driver failed its dry run in a fresh process: NameError: name "
     "'threshold' is not defined", "manifest"),
    ("%amlmm manifest create --name 'bad name' --run echo",
     "manifest create 'bad name': invalid manifest name 'bad name': use letters, digits, '.', "
     "'_' and '-', starting with a letter or digit", "manifest"),
    ("%amlmm manifest create --name mf --driver /no/driver.py",
     "manifest create 'mf': cannot read the driver file /no/driver.py: No such file or "
     "directory", "manifest"),
    # -- image
    ("%amlmm image create --name img",
     "amlmm image create: error: the following arguments are required: --manifest", "image"),
    ("%amlmm image create --name img --manifest no-such-manifest",
     "image create 'img': no manifest with the ID or name 'no-such-manifest'", "image"),
    ("%amlmm image create --name img --manifest {manifest} --compute-resource gpu",
     "image create 'img': 400 UnknownCompute: Unknown compute resource 'gpu'; this account "
     "has: local", "image"),
    ("%amlmm image create --name 'bad name' --manifest {manifest}",
     "image create 'bad name': 400 BadRequest: Invalid request: name has an invalid format: "
     "use letters, digits, '.', '_' and '-', starting with a letter or digit", "image"),
    ("%amlmm image create --name img --manifest {manifest} --timeout -1",
     "amlmm image create: error: argument --timeout: must be a number of seconds (0 or more), "
     "not '-1'", "image"),
    ("%amlmm image log no-such-image", "image log: no image with the ID or name "
     "'no-such-image'", None),
    # -- service
    ("%amlmm service create --name svc --image no-such-image",
     "service create 'svc': no image with the ID or name 'no-such-image'", "service"),
    ("%amlmm service create --name {service} --image {image}",
     "service create '{service}': 409 Conflict: A service named '{service}' already exists "
     "(state Succeeded); delete it first or pick another name", "service"),
    ("%amlmm service create --name svc --image {image} --replicas 2 --autoscale",
     "amlmm service create: error: argument --autoscale: not allowed with argument --replicas",
     "service"),
    ("%amlmm service create --name svc --image {image} --min-replicas 2",
     "amlmm service create: error: --min-replicas can only be used with --autoscale",
     "service"),
    ("%amlmm service create --name svc --image {image} --autoscale --min-replicas 3 "
     "--max-replicas 2",
     "amlmm service create: error: --min-replicas (3) is more than --max-replicas (2)",
     "service"),
    ("%amlmm service create --name Bad_Name --image {image}",
     "service create 'Bad_Name': 400 BadRequest: Invalid request: name has an invalid format: "
     "a service name is a DNS label: lower-case letters, digits and '-', not at either end",
     "service"),
    ("%amlmm service create --name svc --image {image} --cpu lots",
     "service create 'svc': 400 BadRequest: Invalid request: containerResourceReservation.cpu "
     "has an invalid format: a Kubernetes CPU quantity such as 250m", "service"),
    ("%amlmm service create --name svc --image {image} --replicas 0",
     "amlmm service create: error: argument --replicas: must be a whole number of at least 1, "
     "not '0'", "service"),
    ("%amlmm service score {service}",
     "amlmm service score: error: give the input: VAR, --data JSON (@FILE, or - for standard "
     "input) or a cell body", None),
    ("%amlmm service score {service} --data '{{bad'",
     "service score '{service}': --data is not valid JSON: Expecting property name enclosed in "
     "double quotes: line 1 column 2 (char 1)", None),
    ("%%amlmm service score {service}\n[1, 2",
     "service score '{service}': the cell body is not valid JSON: Expecting ',' delimiter: "
     "line 2 column 1 (char 6)", None),
    ("%amlmm service score {service} X --data '[1]'",
     "amlmm service score: error: give the input once, not VAR and --data", None),
    ("%amlmm service score no-such-service --data '[1]'",
     "service score 'no-such-service': no service with the ID or name 'no-such-service'", None),
    ("%amlmm service score {service} --data '[[1, 2]]'",
     "service score '{service}': 500 RunFailed: ValueError: X has 2 features, but "
     "LogisticRegression is expecting 4 features as input", None),
    ("%amlmm service score {service} 'object()'",
     "service score '{service}': object() cannot be sent as JSON: Object of type object is "
     "not JSON serializable", None),
    ("%amlmm service update {service}",
     "amlmm service update: error: nothing to update: give --image or a setting (--replicas, "
     "--autoscale, --cpu, --memory, ...)", None),
    ("%amlmm service update no-such-service --replicas 2",
     "service update 'no-such-service': no service with the ID or name 'no-such-service'",
     None),
    ("%amlmm service keys no-such-service",
     "service keys 'no-such-service': no service with the ID or name 'no-such-service'", None),
    ("%amlmm service regenerate-key {service} --key tertiary",
     "amlmm service regenerate-key: error: argument --key: invalid choice 'tertiary' (choose "
     "from primary, secondary)", None),
    ("%amlmm service regenerate-key {service}",
     "amlmm service regenerate-key: error: the following arguments are required: --key", None),
    ("%amlmm service logs {service} --tail 0",
     "amlmm service logs: error: argument --tail: must be a whole number of at least 1, not "
     "'0'", None),
    # -- deployments, operations
    ("%amlmm deployment show no-such-id", "deployment show: no deployment with the ID "
     "'no-such-id'", None),
    ("%amlmm operation show no-such-id", "operation show: no operation with the ID "
     "'no-such-id'", None),
    ("%amlmm operation wait no-such-id", "operation wait 'no-such-id': no operation with the "
     "ID 'no-such-id'", None),
    ("%amlmm operation wait some-id --timeout soon",
     "amlmm operation wait: error: argument --timeout: must be a number of seconds (0 or "
     "more), not 'soon'", None),
    # -- connect
    ("%amlmm connect --local --url http://127.0.0.1:9",
     "amlmm connect: error: --local cannot be combined with --url", None),
    ("%amlmm connect --url http://127.0.0.1:9",
     "amlmm connect: error: an Azure connection needs --url, --subscription, --resource-group "
     "and --account (or their settings); missing: --subscription, --resource-group, --account",
     None),
    ("%amlmm connect --url http://127.0.0.1:9 --subscription s --resource-group r --account a "
     "--credential token",
     "connect: --credential token reads the token from AMLMM_ACCESS_TOKEN, which is not set",
     None),
    ("%amlmm connect --url http://127.0.0.1:9 --subscription s --resource-group r --account a "
     "--credential token --storage-sas-url-env NO_SUCH_VARIABLE",
     "connect: the environment variable NO_SUCH_VARIABLE (--storage-sas-url-env) is not set",
     None),
    ("%amlmm connect --credential magic",
     "amlmm connect: error: argument --credential: invalid choice 'magic' (choose from "
     "default, cli, device-code, environment, managed-identity, token)", None),
    ("%amlmm connect --token abc",
     "amlmm connect: error: --token is not an option, and secrets are never given as "
     "arguments: put a token in AMLMM_ACCESS_TOKEN, a SAS URL in a variable named by "
     "--storage-sas-url-env", None),
    ("%amlmm connect --storage-sas-url=https://x/c?sig=abc",
     "amlmm connect: error: --storage-sas-url is not an option, and secrets are never given "
     "as arguments: put a token in AMLMM_ACCESS_TOKEN, a SAS URL in a variable named by "
     "--storage-sas-url-env", None),
    ("%amlmm service keys {service} --primary-key abcd",
     "amlmm service keys: error: --primary-key is not an option, and secrets are never given "
     "as arguments: put a token in AMLMM_ACCESS_TOKEN, a SAS URL in a variable named by "
     "--storage-sas-url-env", None),
]


def _count(client: Any, kind: str) -> int:
    return sum(1 for _ in getattr(client, f"list_{kind}s")())


@pytest.fixture(scope="module")
def shell(local_home: Path) -> Iterator[Shell]:
    shell = make_shell(local_home)
    shell.run(SETUP)
    yield shell


@pytest.fixture(scope="module")
def existing(shell: Shell, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    names = {kind: unique(f"misuse-{kind}") for kind in ("model", "manifest", "image",
                                                          "service")}
    with contextlib.redirect_stdout(io.StringIO()):
        shell.run(f"%amlmm model register clf --name {names['model']}")
        shell.run(f"%amlmm manifest create --name {names['manifest']} --model {names['model']} "
                  "--run score --no-dry-run")
        shell.run(f"%amlmm image create --name {names['image']} --manifest "
                  f"{names['manifest']}")
        shell.run(f"%amlmm service create --name {names['service']} --image {names['image']}")
    path = tmp_path_factory.mktemp("misuse") / "model.joblib"
    path.write_bytes(b"not really a model")
    return {**names, "file": str(path)}


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize(("cell", "message", "kind"), CASES, ids=[c[0][:60] for c in CASES])
def test_misuse_fails_the_cell_with_one_line_and_creates_nothing(
        shell: Shell, existing: dict[str, str], local: Any, monkeypatch: pytest.MonkeyPatch,
        cell: str, message: str, kind: str | None) -> None:
    monkeypatch.delenv("AMLMM_ACCESS_TOKEN", raising=False)
    before = _count(local.client, kind) if kind else None
    with pytest.raises(AmlmmError) as info, contextlib.redirect_stdout(io.StringIO()):
        shell.run(cell.format(**existing))
    assert info.value._render_traceback_() == [message.format(**existing)]
    if kind:
        assert _count(local.client, kind) == before, f"a {kind} was created"
