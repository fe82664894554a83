"""Model files from objects in memory and from paths; loaded back in fresh processes."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import socket
import sqlite3
import subprocess
import sys
import tarfile
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from amlmm_magics.packaging import (
    ModelArtifact,
    PackagingError,
    choose_format,
    loader_name,
    loader_source,
    package_path,
    serialize_model,
)

PYTHON = platform.python_version()
SKLEARN = importlib.metadata.version("scikit-learn")
NUMPY = importlib.metadata.version("numpy")
CLOUDPICKLE = importlib.metadata.version("cloudpickle")
FIX = "drop the attribute or re-create it in init()"


def run_fresh(code: str, cwd: Path) -> Any:
    """Run ``code`` in a new interpreter that never saw this process's objects."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def exec_as_main(source: str) -> dict[str, Any]:
    """Run ``source`` the way a notebook cell runs: in a namespace named __main__."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(textwrap.dedent(source), "<notebook cell>", "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def iris() -> tuple[LogisticRegression, np.ndarray]:
    features, target = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=1000).fit(features, target), features


@pytest.fixture()
def ipython_shell() -> Iterator[Any]:
    from IPython.core.interactiveshell import InteractiveShell

    main = sys.modules["__main__"]
    shell = InteractiveShell.instance()
    yield shell
    InteractiveShell.clear_instance()
    sys.modules["__main__"] = main


# ------------------------------------------------------------------ round trips


def test_estimator_round_trip_in_a_fresh_process(iris: Any, tmp_path: Path) -> None:
    clf, features = iris
    artifact = serialize_model(clf, tmp_path / "out", name="iris")
    np.save(tmp_path / "features.npy", features)
    predictions = run_fresh(
        f"""
        import json, joblib, numpy as np
        clf = joblib.load({str(artifact.path)!r})
        print(json.dumps(clf.predict(np.load("features.npy")).tolist()))
        """,
        tmp_path,
    )
    assert artifact.format == "joblib"
    assert predictions == clf.predict(features).tolist()


def test_estimator_metadata(iris: Any, tmp_path: Path) -> None:
    artifact = serialize_model(iris[0], tmp_path, name="iris")
    data = artifact.path.read_bytes()
    assert artifact == ModelArtifact(
        path=tmp_path / "iris.joblib",
        file_name="iris.joblib",
        mime_type="application/octet-stream",
        unpack=False,
        format="joblib",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        tags=[
            "format=joblib",
            f"python={PYTHON}",
            f"scikit-learn={SKLEARN}",
            f"numpy={NUMPY}",
            "class=sklearn.linear_model._logistic.LogisticRegression",
        ],
        description=(
            f"LogisticRegression from scikit-learn {SKLEARN}, saved with joblib under Python "
            f"{PYTHON} ({len(data)} B)."
        ),
        libraries={"scikit-learn": SKLEARN, "numpy": NUMPY},
        python_version=PYTHON,
    )


def test_notebook_class_loads_in_a_fresh_process(tmp_path: Path) -> None:
    namespace = exec_as_main(
        """
        class Doubler:
            def __init__(self, offset):
                self.offset = offset

            def predict(self, rows):
                return [2 * r + self.offset for r in rows]

        model = Doubler(1)
        """
    )
    artifact = serialize_model(namespace["model"], tmp_path, name="doubler")
    assert (artifact.format, artifact.file_name) == ("cloudpickle", "doubler.pkl")
    assert artifact.tags == [
        "format=cloudpickle", f"python={PYTHON}", f"cloudpickle={CLOUDPICKLE}",
        "class=__main__.Doubler",
    ]
    assert artifact.description.startswith(
        "Doubler defined in the notebook, saved with cloudpickle under Python"
    )
    result = run_fresh(
        """
        import json, pickle
        with open("doubler.pkl", "rb") as f:
            print(json.dumps(pickle.load(f).predict([1, 2])))
        """,
        tmp_path,
    )
    assert result == [3, 5]


def test_notebook_estimator_goes_to_cloudpickle_not_joblib(tmp_path: Path) -> None:
    # Has fit and get_params, so joblib is the first choice, but plain pickle would save
    # the class by reference to a __main__ that a service never ran.
    namespace = exec_as_main(
        """
        class Threshold:
            def __init__(self, cut=0.5):
                self.cut = cut

            def get_params(self, deep=True):
                return {"cut": self.cut}

            def fit(self, x, y=None):
                return self

            def predict(self, rows):
                return [int(r > self.cut) for r in rows]

        model = Threshold(0.25)
        """
    )
    model = namespace["model"]
    assert choose_format(model) == "joblib"
    artifact = serialize_model(model, tmp_path, name="cut")
    assert artifact.format == "cloudpickle"
    assert run_fresh(
        """
        import json, cloudpickle
        with open("cut.pkl", "rb") as f:
            print(json.dumps(cloudpickle.load(f).predict([0.1, 0.3])))
        """,
        tmp_path,
    ) == [0, 1]
    with pytest.raises(PackagingError) as caught:
        serialize_model(model, tmp_path / "j", name="cut", format="joblib")
    assert str(caught.value) == (
        "Cannot save cut with joblib: it uses Threshold defined in the notebook, which only "
        "cloudpickle can carry to a service; leave the format unset or use cloudpickle"
    )
    assert not (tmp_path / "j").exists() or not list((tmp_path / "j").iterdir())


def test_class_defined_in_an_ipython_cell_loads_in_a_fresh_process(
    ipython_shell: Any, tmp_path: Path
) -> None:
    cell = "class Scaler:\n    k = 3\n    def apply(self, x):\n        return x * self.k\n"
    cell += "sc = Scaler()\n"
    ipython_shell.run_cell(cell, store_history=True).raise_error()
    artifact = serialize_model(ipython_shell.user_ns["sc"], tmp_path, name="scaler")
    assert artifact.format == "cloudpickle"
    assert run_fresh(
        """
        import json, pickle
        print(json.dumps(pickle.load(open("scaler.pkl", "rb")).apply(5)))
        """,
        tmp_path,
    ) == 15


def test_numpy_array(tmp_path: Path) -> None:
    array = np.arange(12.0).reshape(3, 4)
    artifact = serialize_model(array, tmp_path, name="weights")
    assert (artifact.format, artifact.file_name) == ("joblib", "weights.joblib")
    assert artifact.tags == [
        "format=joblib", f"python={PYTHON}", f"numpy={NUMPY}", "class=numpy.ndarray",
    ]
    np.testing.assert_array_equal(joblib.load(artifact.path), array)


def test_format_is_chosen_by_type() -> None:
    assert choose_format({"w": np.zeros(3), "b": np.zeros(1), "name": "x"}) == "joblib"
    assert choose_format([np.zeros(3), "a", "b"]) == "cloudpickle"
    assert choose_format({"a": 1}) == "cloudpickle"
    assert choose_format(LogisticRegression()) == "joblib"
    assert choose_format(LogisticRegression) == "cloudpickle"


def test_format_override_and_unknown_format(tmp_path: Path) -> None:
    artifact = serialize_model([1, 2], tmp_path, name="l", format="joblib")
    assert artifact.file_name == "l.joblib"
    with pytest.raises(PackagingError) as caught:
        serialize_model([1], tmp_path, name="l", format="onnx")
    assert str(caught.value) == "Unknown model format 'onnx': use joblib or cloudpickle"


def test_model_name_must_be_a_plain_file_name(tmp_path: Path) -> None:
    with pytest.raises(PackagingError) as caught:
        serialize_model([1], tmp_path, name="../escape")
    assert str(caught.value) == (
        "Model name '../escape' cannot name a file: use letters, digits, '.', '-' and '_', "
        "starting with a letter or digit"
    )


def test_large_arrays_are_streamed_not_copied(tmp_path: Path) -> None:
    # 256 MiB of float64: a copy of the data would show as 256 MiB (128 MiB for the strided
    # half) of peak RSS growth; streaming costs joblib's 16 MiB chunk buffer at most.
    result = run_fresh(
        f"""
        import json, resource, numpy as np, joblib, cloudpickle
        from amlmm_magics.packaging import serialize_model
        data = np.random.default_rng(0).random(32 * 1024 * 1024)
        cases = {{
            "joblib": (data, "joblib"),
            "cloudpickle": (data, "cloudpickle"),
            "strided": (data.reshape(1024, -1)[:, ::2], None),
        }}
        growth = {{}}
        for name, (obj, fmt) in cases.items():
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            serialize_model(obj, {str(tmp_path)!r}, name=name, format=fmt)
            after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            growth[name] = (after - before) / 1024
        print(json.dumps(growth))
        """,
        tmp_path,
    )
    assert max(result.values()) < 64, result
    assert (tmp_path / "joblib.joblib").stat().st_size > 256 * 2**20
    assert (tmp_path / "cloudpickle.pkl").stat().st_size > 256 * 2**20
    assert (tmp_path / "strided.joblib").stat().st_size > 128 * 2**20


def test_destination_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("")
    with pytest.raises(PackagingError) as caught:
        serialize_model([1], tmp_path / "taken", name="m")
    assert str(caught.value) == f"Cannot create the folder {tmp_path / 'taken'}: File exists"


# ------------------------------------------------------------------ unpicklable


class Holder:
    """Attributes set by hand, like a model wrapper that grew a logger."""


def nested_open_file(tmp_path: Path) -> Holder:
    clf = Holder()
    clf.coef = np.zeros(3)
    clf.logger = Holder()
    handler = Holder()
    handler.stream = (tmp_path / "log.txt").open("w")
    clf.logger.handlers = [handler]
    return clf


def _generator() -> Iterator[int]:
    yield 1


UNPICKLABLE = {
    "open file": (
        nested_open_file,
        "clf",
        "Cannot serialize clf.logger.handlers[0].stream: _io.TextIOWrapper objects cannot be "
        f"pickled (open files cannot be sent to a service; {FIX})",
    ),
    "lock": (
        lambda _: {"guard": threading.Lock()},
        "state",
        "Cannot serialize state['guard']: _thread.lock objects cannot be pickled (locks cannot "
        f"be sent to a service; {FIX})",
    ),
    "generator": (
        lambda _: [1, _generator()],
        "batches",
        "Cannot serialize batches[1]: generator objects cannot be pickled (generators cannot be "
        f"sent to a service; {FIX})",
    ),
    "socket": (
        lambda _: socket.socket(),
        "conn",
        "Cannot serialize conn: socket.socket objects cannot be pickled (network connections "
        f"cannot be sent to a service; {FIX})",
    ),
    "database": (
        lambda _: ({"db": sqlite3.connect(":memory:")},),
        "store",
        "Cannot serialize store[0]['db']: sqlite3.Connection objects cannot be pickled (database "
        f"connections cannot be sent to a service; {FIX})",
    ),
}


@pytest.mark.parametrize("fmt", [None, "joblib", "cloudpickle"])
@pytest.mark.parametrize("case", sorted(UNPICKLABLE))
def test_unpicklable_objects_give_one_clear_error(
    case: str, fmt: str | None, tmp_path: Path
) -> None:
    make, label, message = UNPICKLABLE[case]
    obj = make(tmp_path)
    dest = tmp_path / "models"
    dest.mkdir()
    try:
        with pytest.raises(PackagingError) as caught:
            serialize_model(obj, dest, name="m", format=fmt, label=label)
        assert str(caught.value) == message
        assert list(dest.iterdir()) == []  # no partial or temporary file left behind
    finally:
        for resource in _resources(obj):
            resource.close()


def _resources(obj: Any) -> list[Any]:
    if isinstance(obj, Holder):
        return [obj.logger.handlers[0].stream]
    if isinstance(obj, socket.socket):
        return [obj]
    if isinstance(obj, tuple):
        return [obj[0]["db"]]
    return []


def test_slots_are_walked(tmp_path: Path) -> None:
    namespace = exec_as_main("class Slotted:\n    __slots__ = ('n', 'lock')\nobj = Slotted()\n")
    obj = namespace["obj"]
    obj.n, obj.lock = 1, threading.RLock()
    with pytest.raises(PackagingError, match=r"^Cannot serialize obj\.lock: _thread\.RLock "):
        serialize_model(obj, tmp_path, name="s", label="obj")


# ------------------------------------------------------------------------ paths


def test_plain_file_is_used_as_is(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    path.write_text('["a", "b"]')
    artifact = package_path(path, tmp_path / "out")
    assert artifact == ModelArtifact(
        path=path,
        file_name="labels.json",
        mime_type="application/json",
        unpack=False,
        format="file",
        size=10,
        sha256=hashlib.sha256(b'["a", "b"]').hexdigest(),
        tags=["format=file"],
        description="The file labels.json (10 B), registered as is.",
        python_version=PYTHON,
    )
    assert not (tmp_path / "out").exists()
    other = tmp_path / "model.onnx"
    other.write_bytes(b"\0")
    assert package_path(other, tmp_path).mime_type == "application/octet-stream"


def make_folder(root: Path) -> Path:
    folder = root / "resnet"
    (folder / "weights" / "deep").mkdir(parents=True)
    (folder / "config.json").write_text('{"layers": 50}')
    (folder / "weights" / "w.bin").write_bytes(bytes(range(256)) * 40)
    (folder / "weights" / "deep" / "x.txt").write_text("x")
    (folder / "latest.bin").symlink_to(Path("weights") / "w.bin")
    return folder


def test_folder_is_packed_and_unpacks_to_the_same_tree(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    artifact = package_path(folder, tmp_path / "out")
    assert (artifact.file_name, artifact.format, artifact.unpack, artifact.mime_type) == (
        "resnet.tar.gz", "folder", True, "application/gzip",
    )
    assert artifact.path == (tmp_path / "out" / "resnet.tar.gz").resolve()
    assert artifact.tags == ["format=folder", "files=3"]
    assert artifact.description == (
        "The folder resnet/ (3 files, 10.0 KiB) packed as resnet.tar.gz; the service unpacks "
        "it into resnet/."
    )
    assert artifact.sha256 == hashlib.sha256(artifact.path.read_bytes()).hexdigest()
    with tarfile.open(artifact.path) as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "unpacked", filter="data")
    assert names == [
        "resnet", "resnet/config.json", "resnet/latest.bin", "resnet/weights",
        "resnet/weights/deep", "resnet/weights/deep/x.txt", "resnet/weights/w.bin",
    ]
    unpacked = tmp_path / "unpacked" / "resnet"
    for relative in ("config.json", "weights/w.bin", "weights/deep/x.txt", "latest.bin"):
        assert (unpacked / relative).read_bytes() == (folder / relative).read_bytes()
    assert os.readlink(unpacked / "latest.bin") == "weights/w.bin"


def test_folder_archive_is_deterministic(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    first = package_path(folder, tmp_path / "a")
    second = package_path(folder, tmp_path / "b")
    assert first.sha256 == second.sha256


def test_folder_with_a_link_outside_is_refused(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    (tmp_path / "secret.txt").write_text("no")
    (folder / "leak").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(PackagingError) as caught:
        package_path(folder, tmp_path / "out")
    assert str(caught.value) == (
        f"Cannot pack {folder / 'leak'}: it links to {(tmp_path / 'secret.txt').resolve()}, "
        f"outside {folder.resolve()}; copy the file into the folder instead"
    )
    assert list((tmp_path / "out").iterdir()) == []


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(PackagingError) as caught:
        package_path(tmp_path / "nope", tmp_path)
    assert str(caught.value) == f"No such file or folder: {tmp_path / 'nope'}"


# ---------------------------------------------------------------------- loaders


@pytest.mark.parametrize("fmt", ["joblib", "cloudpickle"])
def test_loader_source_loads_what_serialize_wrote(fmt: str, tmp_path: Path) -> None:
    artifact = serialize_model({"k": [1, 2]}, tmp_path, name="m", format=fmt)
    namespace: dict[str, Any] = {}
    exec(loader_source(fmt), namespace)
    assert namespace[loader_name(fmt)](str(artifact.path)) == {"k": [1, 2]}


def test_file_loaders_answer_the_path() -> None:
    namespace: dict[str, Any] = {}
    exec(loader_source("folder") + loader_source("file"), namespace)
    assert namespace["_amlmm_load_folder"]("a/b") == "a/b"
    assert namespace["_amlmm_load_file"]("c") == "c"
    with pytest.raises(PackagingError, match=r"^Unknown model format 'h5'"):
        loader_source("h5")
