"""The scoring runtime as real processes on loopback: auth, limits, schema, lifecycle."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import pytest
import requests
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from amlmm_magics.scoring import model_path
from amlmm_magics.scoring.keys import KeyChecker, KeysFileError, hash_keys
from amlmm_magics.scoring.schema import infer_schema

REPO = Path(__file__).resolve().parents[1]
PRIMARY = "primary-key-0123456789abcdef"
SECONDARY = "secondary-key-fedcba9876543210"
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROWS = [
    {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
    {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3},
]

DRIVERS = {
    "score.py": """
        import joblib
        from amlmm_magics.scoring import model_path

        def init():
            global model
            model = joblib.load(model_path("iris"))

        def run(data):
            return model.predict(data)
    """,
    "plain.py": """
        import os
        import time
        from pathlib import Path

        def run(data):
            if "marker" in data:
                Path(data["marker"]).write_text("running")
            if "sleep" in data:
                time.sleep(data["sleep"])
            if "fail" in data:
                raise ValueError(data["fail"])
            if "unencodable" in data:
                return {"value": object()}
            if "pid" in data:
                return {"pid": os.getpid()}
            return {"echo": data}
    """,
    "raw.py": """
        RAW_INPUT = True

        def run(body):
            return {"type": type(body).__name__, "length": len(body)}
    """,
    "broken_init.py": """
        def init():
            raise RuntimeError("cannot load the model")

        def run(data):
            return data
    """,
    "undefined_global.py": """
        def run(data):
            return x
    """,
}


# --- helpers ------------------------------------------------------------------------------


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pid_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie nobody reaped counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.pop("AMLMM_APP_DIR", None)
    return env


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Runtime:
    proc: subprocess.Popen[bytes]
    url: str
    dir: Path

    @property
    def stderr(self) -> str:
        return (self.dir / "stderr").read_text()

    @property
    def ready(self) -> Path:
        return self.dir / "ready"

    def score(self, body: Any, key: str | None = PRIMARY, **kw: Any) -> requests.Response:
        headers = {**(auth(key) if key else {}), **kw.pop("headers", {})}
        return requests.post(f"{self.url}/score", json=body, headers=headers, timeout=30, **kw)


class Launcher:
    """Starts runtimes in their own process groups and kills every group at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []

    def popen(self, cmd: list[str], workdir: Path, **kw: Any) -> subprocess.Popen[bytes]:
        workdir.mkdir(parents=True, exist_ok=True)
        with open(workdir / "stdout", "wb") as out, open(workdir / "stderr", "wb") as err:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=err, start_new_session=True, env=child_env(), **kw
            )
        self.procs.append(proc)
        return proc

    def start(
        self, app_dir: Path, *args: str, sock: socket.socket | None = None, wait: bool = True
    ) -> Runtime:
        workdir = self.root / f"runtime{len(self.procs)}"
        if sock is None:
            port = free_port()
            net = ["--port", str(port)]
            pass_fds: tuple[int, ...] = ()
        else:
            port = sock.getsockname()[1]
            net = ["--fd", str(sock.fileno())]
            pass_fds = (sock.fileno(),)
        cmd = [sys.executable, "-m", "amlmm_magics.scoring", "--app-dir", str(app_dir)]
        cmd += ["--ready-file", str(workdir / "ready"), *net, *args]
        proc = self.popen(cmd, workdir, pass_fds=pass_fds)
        runtime = Runtime(proc, f"http://127.0.0.1:{port}", workdir)
        if wait:
            wait_ready(runtime)
        return runtime

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def wait_ready(runtime: Runtime) -> None:
    wait_for(
        lambda: runtime.ready.exists() or runtime.proc.poll() is not None, 60, "the ready file"
    )
    if runtime.proc.poll() is not None:
        raise AssertionError(f"runtime exited {runtime.proc.returncode}:\n{runtime.stderr}")


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    app = tmp_path_factory.mktemp("app")
    x, y = load_iris(return_X_y=True, as_frame=True)
    x.columns = COLUMNS
    model = LogisticRegression(max_iter=1000).fit(x, y)
    joblib.dump(model, app / "model-v3.pkl")
    (app / "models.json").write_text(
        json.dumps(
            {
                "models": [
                    # model_path must answer the highest version: v1's file does not exist.
                    {"name": "iris", "version": 1, "id": "iris:1", "path": "model-v1.pkl"},
                    {"name": "iris", "version": 3, "id": "iris:3", "path": "model-v3.pkl"},
                ]
            }
        )
    )
    for name, code in DRIVERS.items():
        (app / name).write_text(textwrap.dedent(code))
    sample = x.head(2)
    (app / "schema.json").write_text(json.dumps(infer_schema(sample, model.predict(sample))))
    (app / "plain-schema.json").write_text(json.dumps(infer_schema({"a": 1})))
    (app / "keys.json").write_text(json.dumps(hash_keys([PRIMARY, SECONDARY])))
    return app


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    launched = Launcher(tmp_path)
    yield launched
    launched.close()


@pytest.fixture(scope="module")
def iris(app_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """The iris service with schema, keys, request log and data collection."""
    launched = Launcher(tmp_path_factory.mktemp("iris"))
    runtime = launched.start(
        app_dir,
        "--driver", "score.py",
        "--schema", str(app_dir / "schema.json"),
        "--keys-file", str(app_dir / "keys.json"),
        "--title", "iris-svc",
    )  # fmt: skip
    yield runtime
    launched.close()


def expected_predictions(app_dir: Path) -> list[int]:
    import pandas as pd

    model = joblib.load(app_dir / "model-v3.pkl")
    return model.predict(pd.DataFrame(ROWS, columns=COLUMNS)).tolist()


# --- routes and auth ----------------------------------------------------------------------


def test_health_needs_no_key_and_ready_file_holds_the_pid(iris: Runtime) -> None:
    reply = requests.get(iris.url + "/", timeout=10)
    assert (reply.status_code, reply.text) == (200, "Healthy")
    assert iris.ready.read_text().strip() == str(iris.proc.pid)


def test_score_needs_one_of_the_two_keys(iris: Runtime, app_dir: Path) -> None:
    missing = iris.score(ROWS, key=None)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert missing.headers["Content-Type"] == "application/json"
    assert missing.json()["error"]["code"] == "Unauthorized"

    wrong = iris.score(ROWS, key="not-the-key")
    assert wrong.status_code == 401
    assert wrong.json() == {"error": {"code": "Unauthorized", "message": "invalid key"}}
    basic = iris.score(ROWS, headers={"Authorization": f"Basic {PRIMARY}"}, key=None)
    assert basic.status_code == 401

    expected = expected_predictions(app_dir)
    for key in (PRIMARY, SECONDARY):
        reply = iris.score(ROWS, key=key)
        assert reply.status_code == 200, reply.text
        assert reply.json() == expected


def test_unknown_path_and_wrong_method(iris: Runtime) -> None:
    reply = requests.get(iris.url + "/nothing", timeout=10)
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "NotFound"
    reply = requests.get(iris.url + "/score", timeout=10)
    assert (reply.status_code, reply.headers["Allow"]) == (405, "POST")
    assert reply.json()["error"]["code"] == "MethodNotAllowed"
    reply = requests.post(iris.url + "/", timeout=10)
    assert (reply.status_code, reply.headers["Allow"]) == (405, "GET, HEAD")


def test_keep_alive_connection_is_reused(iris: Runtime) -> None:
    with requests.Session() as session:
        session.headers.update(auth(PRIMARY))
        ports = set()
        for _ in range(3):
            reply = session.post(iris.url + "/score", json=ROWS, timeout=10, stream=True)
            ports.add(reply.raw._connection.sock.getsockname()[1])
            reply.content  # noqa: B018 - read the body so the connection goes back to the pool
            assert reply.status_code == 200
            assert "close" not in reply.headers.get("Connection", "")
        assert len(ports) == 1


# --- schema -------------------------------------------------------------------------------


def test_schema_decodes_dataframe_and_names_bad_columns(iris: Runtime) -> None:
    renamed = [dict(ROWS[0]), {**{k: v for k, v in ROWS[1].items() if k != "petal_width"}}]
    renamed[1]["petal_wdith"] = 2.3
    reply = iris.score(renamed)
    assert reply.status_code == 400
    assert reply.json() == {
        "error": {"code": "InvalidInput", "message": "row 1: missing column 'petal_width' "
                                                     "(got unexpected column 'petal_wdith')"}
    }
    bad_value = [{**ROWS[0], "petal_width": "abc"}]
    reply = iris.score(bad_value)
    assert reply.status_code == 400
    assert reply.json()["error"]["message"] == (
        "row 0, column 'petal_width': expected float64, got 'abc'"
    )


def test_bad_json_is_400_with_position(iris: Runtime) -> None:
    reply = requests.post(
        iris.url + "/score", data=b'[{"sepal_length": 1,', headers=auth(PRIMARY), timeout=10
    )
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["code"] == "InvalidJson"
    assert error["message"] == (
        "request body is not valid JSON: Expecting property name enclosed in double quotes: "
        "line 1 column 21 (char 20)"
    )


def test_swagger_served_with_schema_only(iris: Runtime, launcher: Launcher, app_dir: Path) -> None:
    reply = requests.get(iris.url + "/swagger.json", timeout=10)
    assert reply.status_code == 200
    doc = reply.json()
    assert doc["swagger"] == "2.0"
    assert doc["info"]["title"] == "iris-svc"
    body = doc["definitions"]["ServiceInput"]
    assert body["example"] == json.loads((app_dir / "schema.json").read_text())["sample"]
    assert sorted(body["items"]["properties"]) == sorted(COLUMNS)

    plain = launcher.start(app_dir, "--driver", "plain.py", "--no-auth")
    assert requests.get(plain.url + "/swagger.json", timeout=10).status_code == 404


# --- failures in run ----------------------------------------------------------------------


def test_run_exception_is_500_with_type_and_message_only(launcher: Launcher, app_dir: Path) -> None:
    rt = launcher.start(app_dir, "--driver", "plain.py", "--keys-file", str(app_dir / "keys.json"))
    reply = rt.score({"fail": "the model exploded"})
    assert reply.status_code == 500
    assert reply.json() == {
        "error": {"code": "RunFailed", "message": "ValueError: the model exploded"}
    }
    log = wait_for(lambda: "ValueError: the model exploded" in rt.stderr and rt.stderr, 5, "log")
    assert "Traceback (most recent call last)" in log
    assert 'raise ValueError(data["fail"])' in log
    assert "plain.py" in log

    reply = rt.score({"unencodable": True})
    assert reply.status_code == 500
    error = reply.json()["error"]
    assert error["code"] == "OutputNotSerializable"
    assert error["message"] == (
        "run() returned a value that cannot be encoded as JSON: "
        "Object of type object is not JSON serializable"
    )
    assert rt.score({"a": 1}).json() == {"echo": {"a": 1}}  # still serving


def test_init_failure_stops_the_runtime_with_the_driver_error(
    launcher: Launcher, app_dir: Path
) -> None:
    rt = launcher.start(app_dir, "--driver", "broken_init.py", "--no-auth", wait=False)
    assert rt.proc.wait(timeout=30) == 1
    lines = rt.stderr.strip().splitlines()
    assert lines[-1] == "RuntimeError: cannot load the model"
    assert "Traceback" in rt.stderr
    assert not rt.ready.exists()


def test_missing_keys_file_is_refused(launcher: Launcher, app_dir: Path) -> None:
    rt = launcher.start(app_dir, "--driver", "plain.py", wait=False)
    assert rt.proc.wait(timeout=30) == 2
    assert "--keys-file is required" in rt.stderr


# --- limits -------------------------------------------------------------------------------


def test_oversize_body_is_413(launcher: Launcher, app_dir: Path) -> None:
    rt = launcher.start(app_dir, "--driver", "plain.py", "--no-auth", "--max-body-bytes", "1000")
    with requests.Session() as session:
        big = {"blob": "x" * 2000}
        reply = session.post(rt.url + "/score", json=big, timeout=10)
        assert reply.status_code == 413
        assert reply.json()["error"]["code"] == "PayloadTooLarge"

        def chunks() -> Iterator[bytes]:  # no Content-Length: the streamed size counts
            yield b'{"blob": "'
            for _ in range(30):
                yield b"y" * 100
            yield b'"}'

        reply = session.post(rt.url + "/score", data=chunks(), timeout=10)
        assert reply.status_code == 413
        small = session.post(rt.url + "/score", json={"blob": "x" * 900}, timeout=10)
        assert small.status_code == 200


def test_max_concurrent_answers_503_with_retry_after(
    launcher: Launcher, app_dir: Path, tmp_path: Path
) -> None:
    rt = launcher.start(app_dir, "--driver", "plain.py", "--no-auth", "--max-concurrent", "1")
    marker = tmp_path / "in-run"
    results: dict[str, requests.Response] = {}
    slow = threading.Thread(
        target=lambda: results.update(
            slow=rt.score({"sleep": 1.5, "marker": str(marker)}, key=None)
        )
    )
    slow.start()
    wait_for(marker.exists, 10, "the slow request to enter run()")
    busy = rt.score({"a": 1}, key=None)
    slow.join(timeout=30)
    assert busy.status_code == 503
    assert busy.headers["Retry-After"] == "1"
    assert busy.json()["error"]["code"] == "ServiceBusy"
    assert results["slow"].status_code == 200
    assert rt.score({"a": 1}, key=None).status_code == 200  # the slot was released


# --- keys ---------------------------------------------------------------------------------


def test_rewritten_keys_file_applies_on_the_next_request(
    launcher: Launcher, app_dir: Path, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps(hash_keys([PRIMARY, SECONDARY])))
    rt = launcher.start(app_dir, "--driver", "plain.py", "--keys-file", str(keys_file))
    assert rt.score({"a": 1}, key=PRIMARY).status_code == 200

    # Atomic replacement, as the backend does it.
    new1, new2 = "rotated-key-1111111111111111", "rotated-key-2222222222222222"
    tmp = tmp_path / "keys.json.tmp"
    tmp.write_text(json.dumps(hash_keys([new1, new2])))
    os.replace(tmp, keys_file)
    assert rt.score({"a": 1}, key=PRIMARY).status_code == 401
    assert rt.score({"a": 1}, key=new1).status_code == 200

    # In-place rewrite of the same size right away: same inode, maybe the same mtime tick.
    new3, new4 = "rotated-key-3333333333333333", "rotated-key-4444444444444444"
    keys_file.write_text(json.dumps(hash_keys([new3, new4])))
    assert rt.score({"a": 1}, key=new1).status_code == 401
    assert rt.score({"a": 1}, key=new4).status_code == 200

    # The plaintext form (a Kubernetes Secret mount) works as well.
    keys_file.write_text(json.dumps({"primaryKey": "plain-1", "secondaryKey": "plain-2"}))
    assert rt.score({"a": 1}, key="plain-2").status_code == 200
    assert rt.score({"a": 1}, key=new4).status_code == 401

    # A broken file fails closed.
    keys_file.write_text("{not json")
    assert rt.score({"a": 1}, key="plain-2").status_code == 401
    assert "plain-2" not in rt.stderr


def test_key_checker_forms_and_repr(tmp_path: Path) -> None:
    hashed = hash_keys(["k1", "k2"])
    assert len(bytes.fromhex(hashed["salt"])) == 16
    checker = KeyChecker(hashed)
    assert checker.check(b"Bearer k1")
    assert checker.check("bearer  k2 ")
    assert not checker.check(b"Bearer k3")
    assert not checker.check(b"Basic k1")
    assert not checker.check(b"Bearer ")
    assert not checker.check(None)
    assert "k1" not in repr(checker)
    assert all(h not in repr(checker) for h in hashed["sha256"])

    plain = KeyChecker({"primaryKey": "p", "secondaryKey": "s"})
    assert plain.check(b"Bearer p") and plain.check(b"Bearer s")
    assert not plain.check(b"Bearer ps")

    with pytest.raises(KeysFileError):
        KeyChecker({"keys": ["a"]})
    with pytest.raises(KeysFileError, match="keys file"):
        KeyChecker.from_file(tmp_path / "absent.json")


# --- modes --------------------------------------------------------------------------------


def test_raw_input_passes_the_body_bytes(launcher: Launcher, app_dir: Path) -> None:
    rt = launcher.start(
        app_dir, "--driver", "raw.py", "--no-auth", "--schema", str(app_dir / "plain-schema.json")
    )
    reply = requests.post(rt.url + "/score", data=b"\xff\x00not json", timeout=10)
    assert reply.status_code == 200
    assert reply.json() == {"type": "bytes", "length": 10}


def test_collects_data_and_logs_requests_without_keys(
    launcher: Launcher, app_dir: Path, tmp_path: Path
) -> None:
    collect = tmp_path / "collected"
    rt = launcher.start(
        app_dir,
        "--driver", "plain.py",
        "--keys-file", str(app_dir / "keys.json"),
        "--collect-dir", str(collect),
        "--log-requests",
    )  # fmt: skip
    assert rt.score({"a": 1}).status_code == 200
    assert rt.score({"fail": "no"}).status_code == 500
    bad = requests.post(rt.url + "/score", data=b"{", headers=auth(SECONDARY), timeout=10)
    assert bad.status_code == 400
    assert rt.score({"a": 2}, key="wrong").status_code == 401
    assert requests.get(rt.url + "/", timeout=10).status_code == 200

    lines = (collect / f"{rt.proc.pid}.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [(r["input"], r["status"]) for r in records] == [
        ({"a": 1}, 200),
        ({"fail": "no"}, 500),
        ("{", 400),
    ]  # the unauthorised request is not collected
    assert records[0]["output"] == {"echo": {"a": 1}}
    assert records[1]["output"]["error"]["message"] == "ValueError: no"
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["time"]) for r in records)

    pattern = re.compile(r"\S+Z (GET|POST) (/\S*) (\d{3}) \d+\.\dms")
    logged = wait_for(
        lambda: (
            [m.groups() for m in map(pattern.fullmatch, rt.stderr.splitlines()) if m]
            if rt.stderr.count("ms\n") >= 5
            else None
        ),
        5,
        "five request log lines",
    )
    assert logged == [
        ("POST", "/score", "200"),
        ("POST", "/score", "500"),
        ("POST", "/score", "400"),
        ("POST", "/score", "401"),
        ("GET", "/", "200"),
    ]
    for secret in (PRIMARY, SECONDARY, "wrong"):
        assert secret not in rt.stderr


# --- processes ----------------------------------------------------------------------------


def answering_pids(url: str, want: int, timeout: float = 20) -> set[int]:
    pids: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(pids) < want and time.monotonic() < deadline:
        reply = requests.post(
            url + "/score", json={"pid": True}, headers={"Connection": "close"}, timeout=10
        )
        pids.add(reply.json()["pid"])
    return pids


def test_replicas_share_one_inherited_socket(launcher: Launcher, app_dir: Path) -> None:
    sock = socket.create_server(("127.0.0.1", 0))
    with sock:
        first = launcher.start(app_dir, "--driver", "plain.py", "--no-auth", sock=sock)
        second = launcher.start(app_dir, "--driver", "plain.py", "--no-auth", sock=sock)
        url = first.url
        assert answering_pids(url, 2) == {first.proc.pid, second.proc.pid}

        # An update: the old replica stops, the new one keeps answering on the same port.
        first.proc.send_signal(signal.SIGTERM)
        first.proc.wait(timeout=20)
        for _ in range(5):
            assert answering_pids(url, 1) == {second.proc.pid}


def test_workers_option_runs_processes_on_one_port(launcher: Launcher, app_dir: Path) -> None:
    rt = launcher.start(app_dir, "--driver", "plain.py", "--no-auth", "--workers", "2")
    pids = answering_pids(rt.url, 2)
    assert len(pids) == 2 and rt.proc.pid in pids
    rt.proc.send_signal(signal.SIGTERM)
    rt.proc.wait(timeout=20)
    wait_for(lambda: all(pid_gone(p) for p in pids), 10, "every worker to exit")


def test_sigterm_lets_the_in_flight_request_finish(
    launcher: Launcher, app_dir: Path, tmp_path: Path
) -> None:
    rt = launcher.start(app_dir, "--driver", "plain.py", "--no-auth")
    marker = tmp_path / "in-run"
    results: dict[str, requests.Response] = {}
    slow = threading.Thread(
        target=lambda: results.update(
            slow=rt.score({"sleep": 1.0, "marker": str(marker)}, key=None)
        )
    )
    slow.start()
    wait_for(marker.exists, 10, "the slow request to enter run()")
    rt.proc.send_signal(signal.SIGTERM)
    slow.join(timeout=30)
    assert results["slow"].status_code == 200
    assert results["slow"].json()["echo"]["sleep"] == 1.0
    assert rt.proc.wait(timeout=20) in (0, -signal.SIGTERM)


def test_runtime_exits_when_its_parent_dies(launcher: Launcher, app_dir: Path) -> None:
    workdir = launcher.root / "parent"
    ready = workdir / "ready"
    runtime_cmd = [
        sys.executable, "-m", "amlmm_magics.scoring", "--app-dir", str(app_dir),
        "--driver", "plain.py", "--no-auth", "--port", str(free_port()),
        "--ready-file", str(ready),
    ]  # fmt: skip
    intermediate = launcher.popen(
        [
            sys.executable,
            "-c",
            "import os, subprocess, sys\n"
            "p = subprocess.Popen(sys.argv[1:] + ['--parent-pid', str(os.getpid())])\n"
            "p.wait()\n",
            *runtime_cmd,
        ],
        workdir,
    )
    wait_for(lambda: ready.exists() or intermediate.poll() is not None, 60, "the ready file")
    runtime_pid = int(ready.read_text())
    assert not pid_gone(runtime_pid)
    intermediate.kill()
    intermediate.wait(timeout=10)
    wait_for(lambda: pid_gone(runtime_pid), 5, "the orphaned runtime to exit")


# --- check.py -----------------------------------------------------------------------------


def run_check(app_dir: Path, driver: str, schema: str | None = "schema.json") -> Any:
    cmd = [sys.executable, "-m", "amlmm_magics.scoring.check"]
    cmd += ["--app-dir", str(app_dir), "--driver", driver]
    if schema:
        cmd += ["--schema", str(app_dir / schema)]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, env=child_env(), cwd=app_dir.parent
    )


def test_check_runs_init_and_the_sample(app_dir: Path) -> None:
    result = run_check(app_dir, "score.py")
    assert result.returncode == 0, result.stderr
    assert "init(): ok" in result.stdout
    # The sample is the first two iris rows: two setosas.
    assert re.search(r"^run\(sample\): ok \([\d.]+ ms\) -> \[0,0\]$", result.stdout, re.M)


@pytest.mark.parametrize(
    ("driver", "last_line"),
    [
        ("undefined_global.py", "NameError: name 'x' is not defined"),
        ("broken_init.py", "RuntimeError: cannot load the model"),
        ("absent.py", "driver program not found: {app}/absent.py"),
    ],
)
def test_check_failure_ends_stderr_with_the_error(
    app_dir: Path, driver: str, last_line: str
) -> None:
    result = run_check(app_dir, driver)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == last_line.format(app=app_dir.resolve())
    if driver != "absent.py":
        assert "Traceback (most recent call last)" in result.stderr


# --- model_path ---------------------------------------------------------------------------


def test_model_path_answers_highest_version(
    app_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMLMM_APP_DIR", str(app_dir))
    assert model_path("iris") == str(app_dir.resolve() / "model-v3.pkl")
    with pytest.raises(LookupError) as info:
        model_path("iriss")
    assert str(info.value) == "no model named 'iriss' in models.json; known models: 'iris'"

    monkeypatch.setenv("AMLMM_APP_DIR", str(tmp_path))
    with pytest.raises(LookupError, match=r"models\.json does not exist"):
        model_path("iris")
    (tmp_path / "models.json").write_text(
        json.dumps({"models": [{"name": "m", "version": 1, "id": "m:1", "path": "gone.pkl"}]})
    )
    with pytest.raises(FileNotFoundError, match=r"gone\.pkl"):
        model_path("m")
