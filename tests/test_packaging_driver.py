"""Driver programs from cells and from notebook functions, run in fresh processes."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import io
import json
import linecache
import os
import platform
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from amlmm_magics.packaging import (
    DriverProgram,
    ModelArtifact,
    ModelBinding,
    PackagingError,
    driver_from_cell,
    driver_from_functions,
    serialize_model,
)

PYTHON = platform.python_version()
SKLEARN = importlib.metadata.version("scikit-learn")
NUMPY = importlib.metadata.version("numpy")
RUFF = Path(sys.executable).parent / "ruff"

# Stands in for amlmm_magics.scoring (written elsewhere) in the fresh processes.
SHIM = '''
import json
import os


def model_path(name):
    with open("models.json") as f:
        models = json.load(f)["models"]
    for model in models:
        if model["name"] == name:
            return os.path.abspath(model["path"])
    raise KeyError(name)
'''

RUNNER = '''
import json, sys
{prelude}
import amlmm_magics.scoring
import score
score.init()
result = score.run(json.loads(sys.argv[1]))
print(json.dumps({{"result": result, "scoring": amlmm_magics.scoring.__file__}}))
'''


# ------------------------------------------------------------------------ helpers


@pytest.fixture()
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A real IPython shell that keeps its history in memory."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    main = sys.modules["__main__"]
    shell = InteractiveShell.instance(config=config)
    yield shell
    InteractiveShell.clear_instance()
    sys.modules["__main__"] = main


def run_cells(shell: Any, *cells: str) -> dict[str, Any]:
    for cell in cells:
        shell.run_cell(textwrap.dedent(cell), store_history=True).raise_error()
    return shell.user_ns


@pytest.fixture(scope="module")
def iris() -> tuple[LogisticRegression, np.ndarray]:
    features, target = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=1000).fit(features, target), features


def make_app(root: Path, program: DriverProgram, *artifacts: tuple[str, ModelArtifact]) -> Path:
    """A service's working directory: the driver, the model files, models.json, the shim."""
    app = root / "app"
    app.mkdir()
    program.write(app)
    models = []
    for version, (name, artifact) in enumerate(artifacts, start=1):
        shutil.copy(artifact.path, app / artifact.file_name)
        models.append({"name": name, "version": version, "id": "x", "path": artifact.file_name})
    (app / "models.json").write_text(json.dumps({"models": models}))
    shim = root / "shim" / "amlmm_magics" / "scoring"
    shim.mkdir(parents=True)
    (shim.parent / "__init__.py").write_text("")
    (shim / "__init__.py").write_text(SHIM)
    return app


def run_driver(app: Path, request: Any, prelude: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join([str(app.parent / "shim"), str(app)])
    return subprocess.run(
        [sys.executable, "-c", RUNNER.format(prelude=prelude), json.dumps(request)],
        cwd=app, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


def driver_result(app: Path, request: Any) -> Any:
    done = run_driver(app, request)
    assert done.returncode == 0, done.stderr
    output = json.loads(done.stdout.strip().splitlines()[-1])
    assert output["scoring"].startswith(str(app.parent / "shim"))
    return output["result"]


def pyflakes_problems(source: str, tmp_path: Path) -> str:
    if not RUFF.exists():
        pytest.skip("ruff is not installed next to this Python")
    path = tmp_path / "generated_driver.py"
    path.write_text(source)
    done = subprocess.run(
        [str(RUFF), "check", "--isolated", "--no-cache", "--select", "F,E9", str(path)],
        capture_output=True, text=True, check=False,
    )
    return "" if done.returncode == 0 else done.stdout


NOTEBOOK = [
    """
    import numpy as np
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    X, y = load_iris(return_X_y=True)
    clf = LogisticRegression(max_iter=1000).fit(X, y)
    """,
    """
    SCALE = 10.0
    NAMES = ("setosa", "versicolor", "virginica")

    def prepare(rows):
        return np.asarray(rows, dtype=float) / SCALE
    """,
    """
    def score(input):
        predictions = clf.predict(prepare(input))
        return [NAMES[int(p)] for p in predictions]
    """,
]


# --------------------------------------------------------------- notebook capture


def test_notebook_function_runs_in_a_fresh_process(shell: Any, tmp_path: Path) -> None:
    first = shell.execution_count  # the shell may have run cells of other tests before
    ns = run_cells(shell, *NOTEBOOK)
    artifact = serialize_model(ns["clf"], tmp_path / "models", name="iris")
    binding = ModelBinding.from_artifact("clf", "iris", artifact)
    program = driver_from_functions(ns["score"], namespace=ns, models={"iris": binding})

    assert program.origin == [f"In [{first + 1}]", f"In [{first + 2}]"]
    assert program.model_globals == {"clf": "iris"}
    assert program.modules == {"numpy", "amlmm_magics", "joblib", "importlib", "platform"}
    assert program.file_name == "score.py"
    assert program.source.splitlines()[:2] == [
        "# Scoring driver generated by amlmm_magics.",
        f"# Source: In [{first + 1}], In [{first + 2}].",
    ]
    assert "import numpy as np\n" in program.source
    assert "SCALE = 10.0\nNAMES = ('setosa', 'versicolor', 'virginica')\n" in program.source
    assert program.source.rstrip().endswith("run = score")
    assert "X = " not in program.source and "load_iris" not in program.source
    assert pyflakes_problems(program.source, tmp_path) == ""

    app = make_app(tmp_path, program, ("iris", artifact))
    rows = (ns["X"][::10] * 10).tolist()
    expected = [ns["NAMES"][int(p)] for p in ns["clf"].predict(ns["X"][::10])]
    assert driver_result(app, rows) == expected


def test_generated_driver_reads_top_to_bottom(shell: Any, tmp_path: Path) -> None:
    ns = run_cells(shell, *NOTEBOOK)
    binding = ModelBinding(
        "clf", "iris", "joblib", libraries={"scikit-learn": "1.9.1"}, python_version="3.11.7"
    )
    source = driver_from_functions(ns["score"], namespace=ns, models={"iris": binding}).source
    head, _, tail = source.partition("def _amlmm_load(name, loader):")
    assert head == textwrap.dedent(
        '''\
        # Scoring driver generated by amlmm_magics.
        # Source: In [2], In [3].
        # init() loads the models of the manifest; run(input) answers one request.


        import numpy as np
        from amlmm_magics.scoring import model_path


        SCALE = 10.0
        NAMES = ('setosa', 'versicolor', 'virginica')


        def prepare(rows):
            return np.asarray(rows, dtype=float) / SCALE


        # Set by init(): the models of the manifest, loaded from their registered files.
        clf = None


        # How each model was saved, to explain a failure to load it here.
        _AMLMM_MODELS = {
            "iris": {
                "format": "joblib",
                "libraries": {"scikit-learn": "1.9.1"},
                "python": "3.11.7",
            },
        }


        def _amlmm_load_joblib(path):
            import joblib

            return joblib.load(path)


        '''
    )
    assert tail.endswith(
        textwrap.dedent(
            '''\
            def init():
                global clf
                clf = _amlmm_load("iris", _amlmm_load_joblib)


            def score(input):
                predictions = clf.predict(prepare(input))
                return [NAMES[int(p)] for p in predictions]


            run = score
            '''
        )
    )


def test_model_found_by_identity_and_user_init_kept(shell: Any, tmp_path: Path) -> None:
    ns = run_cells(
        shell,
        *NOTEBOOK[:2],
        """
        model = clf

        def setup():
            global CLASSES
            CLASSES = len(model.classes_)

        def run(input):
            return {"classes": CLASSES, "first": int(model.predict(prepare(input))[0])}

        setup()
        """,
    )
    assert ns["CLASSES"] == 3
    artifact = serialize_model(ns["clf"], tmp_path / "models", name="iris")
    binding = ModelBinding.from_artifact("clf", "iris", artifact, obj=ns["clf"])
    program = driver_from_functions(
        ns["run"], ns["setup"], namespace=ns, models={"iris": binding}
    )
    assert program.model_globals == {"model": "iris"}
    assert "    model = _amlmm_load(\"iris\", _amlmm_load_joblib)\n    setup()\n" in program.source
    assert "\nCLASSES = None\n" in program.source
    assert "\nrun = " not in program.source
    assert pyflakes_problems(program.source, tmp_path) == ""
    app = make_app(tmp_path, program, ("iris", artifact))
    assert driver_result(app, [(ns["X"][0] * 10).tolist()]) == {"classes": 3, "first": 0}


def test_user_init_called_init_is_renamed(shell: Any, tmp_path: Path) -> None:
    ns = run_cells(
        shell,
        """
        def init():
            global GREETING
            GREETING = "hello"

        def answer(input):
            return f"{GREETING} {input}"
        """,
    )
    program = driver_from_functions(ns["answer"], ns["init"], namespace=ns, models={})
    assert "def _user_init():\n    global GREETING\n" in program.source
    assert "def init():\n    _user_init()\n" in program.source
    assert pyflakes_problems(program.source, tmp_path) == ""
    app = make_app(tmp_path, program)
    assert driver_result(app, "world") == "hello world"


BLOCK_SKLEARN = """
class _NoSklearn:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "sklearn":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _NoSklearn())
"""


def test_load_failure_names_saved_and_installed_versions(iris: Any, tmp_path: Path) -> None:
    artifact = serialize_model(iris[0], tmp_path / "models", name="iris")
    binding = ModelBinding(
        "clf", "iris", "joblib",
        libraries={"scikit-learn": SKLEARN, "not-a-real-dist": "0.1"}, python_version="3.11.0",
    )
    cell = "def run(input):\n    return clf.predict(input).tolist()\n"
    filename = "<ipython-input-4-0123abcd>"
    namespace: dict[str, Any] = {"__name__": "__main__"}
    linecache.cache[filename] = (len(cell), None, cell.splitlines(keepends=True), filename)
    try:
        exec(compile(cell, filename, "exec"), namespace)
        program = driver_from_functions(
            namespace["run"], namespace=namespace, models={"iris": binding}
        )
    finally:
        del linecache.cache[filename]
    assert program.origin == ["In [4]"]
    app = make_app(tmp_path, program, ("iris", artifact))
    done = run_driver(app, [[1, 2, 3, 4]], prelude=BLOCK_SKLEARN)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == (
        "RuntimeError: Loading model 'iris' failed (ModuleNotFoundError: No module named "
        f"'sklearn'); it was saved with scikit-learn={SKLEARN}, not-a-real-dist=0.1 under "
        f"Python 3.11.0; this environment has scikit-learn={SKLEARN}, no not-a-real-dist under "
        f"Python {PYTHON}"
    )


def test_functions_from_a_module_work_without_ipython(tmp_path: Path) -> None:
    path = tmp_path / "nbmod.py"
    path.write_text(
        textwrap.dedent(
            """
            import math as m
            from collections import Counter
            from os.path import join as pjoin

            LIMIT = 3
            FLAGS = frozenset({"b", "a"})
            TABLE = {"x": [1, 2.5, None], "y": (True, b"\\x00"), "z": set(), "w": float("inf")}


            def helper(words):
                return Counter(w for w in words if len(w) <= LIMIT)


            def predict(input):
                counts = helper(input)
                return {
                    "counts": dict(counts),
                    "root": m.sqrt(16),
                    "joined": pjoin("a", "b"),
                    "flags": sorted(FLAGS),
                    "table": repr(TABLE),
                }
            """
        )
    )
    spec = importlib.util.spec_from_file_location("nbmod", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["nbmod"] = module
    try:
        spec.loader.exec_module(module)
        program = driver_from_functions(module.predict, namespace=vars(module), models={})
        expected = module.predict(["a", "bb", "cccc", "a"])
    finally:
        del sys.modules["nbmod"]
    assert program.origin == ["nbmod.py"]
    assert "import math as m\n" in program.source
    assert "from collections import Counter\n" in program.source
    assert "from posixpath import join as pjoin\n" in program.source or os.name != "posix"
    assert "FLAGS = frozenset({'a', 'b'})\n" in program.source
    assert pyflakes_problems(program.source, tmp_path) == ""
    app = make_app(tmp_path, program)
    assert driver_result(app, ["a", "bb", "cccc", "a"]) == json.loads(json.dumps(expected))


def test_cell_label_found_through_the_input_history(tmp_path: Path) -> None:
    # ipykernel names cells like /tmp/ipykernel_<pid>/<hash>.py; the history tells In [N].
    cell = "def run(input):\n    return input\n"
    filename = "/tmp/ipykernel_4242/2791546133.py"
    namespace: dict[str, Any] = {"__name__": "__main__", "_ih": ["", "x = 1\n", cell, "y = 2\n"]}
    linecache.cache[filename] = (len(cell), None, cell.splitlines(keepends=True), filename)
    try:
        exec(compile(cell, filename, "exec"), namespace)
        program = driver_from_functions(namespace["run"], namespace=namespace, models={})
    finally:
        del linecache.cache[filename]
    assert program.origin == ["In [2]"]
    assert "# Source: In [2].\n" in program.source
    assert "def init():\n    pass\n" in program.source


def test_notebook_class_and_recursive_helpers_are_copied(shell: Any, tmp_path: Path) -> None:
    ns = run_cells(
        shell,
        """
        BASE = 2

        class Power:
            def __init__(self, n):
                self.n = n

            def of(self, x):
                return x ** self.n + offset(0)

        def offset(k):
            return 0 if k > 3 else offset(k + 1)

        def run(input):
            return Power(BASE).of(input)
        """,
    )
    program = driver_from_functions(ns["run"], namespace=ns, models={})
    assert program.source.count("class Power:") == 1
    assert program.source.count("def offset(k):") == 1
    assert pyflakes_problems(program.source, tmp_path) == ""
    app = make_app(tmp_path, program)
    assert driver_result(app, 5) == 25


def test_decorated_functions_and_dataclasses_are_copied_once(shell: Any, tmp_path: Path) -> None:
    ns = run_cells(
        shell,
        "import functools\nfrom dataclasses import dataclass\n",
        """
        @dataclass
        class Point:
            x: float
            y: float = 0.0

        @functools.lru_cache(maxsize=None)
        def fib(n):
            return n if n < 2 else fib(n - 1) + fib(n - 2)

        cached = fib

        def run(input):
            return [Point(float(input)).x, fib(input), cached(input)]
        """,
    )
    program = driver_from_functions(ns["run"], namespace=ns, models={})
    assert program.source.count("@dataclass\nclass Point:") == 1
    assert program.source.count("def fib(n):") == 1
    assert "\ncached = fib\n" in program.source
    assert "import functools\nfrom dataclasses import dataclass\n" in program.source
    assert pyflakes_problems(program.source, tmp_path) == ""
    assert driver_result(make_app(tmp_path, program), 10) == [10.0, 55, 55]


# ------------------------------------------------------------------------- errors


def capture_error(shell: Any, cells: list[str], run: str = "run", **kwargs: Any) -> str:
    ns = run_cells(shell, *cells)
    with pytest.raises(PackagingError) as caught:
        driver_from_functions(ns[run], namespace=ns, models=kwargs.get("models", {}))
    return str(caught.value)


def test_lambda_helper_is_refused(shell: Any) -> None:
    message = capture_error(shell, ["f = lambda x: x + 1\ndef run(input):\n    return f(input)\n"])
    assert message == (
        "run() uses 'f', a lambda, whose source cannot be captured on its own: define it with def"
    )


def test_lambda_run_is_refused(shell: Any) -> None:
    message = capture_error(shell, ["score = lambda input: input\n"], run="score")
    assert message == (
        "The run function is a lambda, whose source cannot be captured on its own: define it "
        "with def"
    )


def test_builtin_run_is_refused() -> None:
    with pytest.raises(PackagingError) as caught:
        driver_from_functions(len, namespace={}, models={})
    assert str(caught.value) == (
        "The run function must be a Python function defined with def; got built-in function len"
    )


def test_closure_over_an_enclosing_variable_is_refused(shell: Any) -> None:
    cells = [
        """
        def make(threshold):
            def check(x):
                return x > threshold
            return check

        is_big = make(10)

        def run(input):
            return is_big(input)
        """
    ]
    assert capture_error(shell, cells) == (
        "run() uses 'is_big', a closure over 'threshold' from the function that made it: define "
        "it at the top level of a cell and make 'threshold' a notebook constant or a default "
        "argument"
    )
    assert capture_error(shell, [], run="is_big") == (
        "check() is a closure over 'threshold' from the function that made it: define it at the "
        "top level of a cell and make 'threshold' a notebook constant or a default argument"
    )


def test_unregistered_notebook_object_is_refused(shell: Any, iris: Any) -> None:
    shell.user_ns["scaler"] = StandardScaler().fit(iris[1])
    cells = ["def run(input):\n    return scaler.transform(input).tolist()\n"]
    assert capture_error(shell, cells) == (
        "run() uses 'scaler' (a StandardScaler) from the notebook, which is not a model of this "
        "manifest: register it as a model and pass --model NAME=scaler, or create it inside "
        "init()"
    )


def test_open_file_global_is_refused(shell: Any, tmp_path: Path) -> None:
    with (tmp_path / "log.txt").open("w") as log:
        shell.user_ns["log"] = log
        message = capture_error(shell, ["def run(input):\n    log.write(input)\n"])
    assert message == (
        "run() uses 'log' (a TextIOWrapper) from the notebook; open files cannot be sent to a "
        "service: create it inside init()"
    )


def test_too_large_constant_is_refused(shell: Any) -> None:
    shell.user_ns["VOCAB"] = {f"word{i}": i for i in range(20_000)}
    message = capture_error(shell, ["def run(input):\n    return VOCAB[input]\n"])
    assert message == (
        "run() uses 'VOCAB' (a dict of 20000 items) from the notebook, too large to copy into "
        "the driver: register it as a model and pass --model NAME=VOCAB, or create it inside "
        "init()"
    )


def test_undefined_name_is_refused(shell: Any) -> None:
    message = capture_error(shell, ["def run(input):\n    return not_defined_anywhere(input)\n"])
    assert message == (
        "run() uses 'not_defined_anywhere', which is not defined in the notebook: define it "
        "before creating the driver"
    )


def test_function_without_source_is_refused() -> None:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec("def helper(x):\n    return x\n", namespace)
    exec(compile("def run(input):\n    return helper(input)\n", "<string>", "exec"), namespace)
    with pytest.raises(PackagingError) as caught:
        driver_from_functions(namespace["run"], namespace=namespace, models={})
    assert str(caught.value) == (
        "The run function run() has no source code to copy (it was made by exec() or comes "
        "from a compiled module): define it in a notebook cell or a .py file"
    )
    source_less = namespace["helper"]
    linecache.cache["<cell>"] = (1, None, ["def run(input):\n", "    return helper(input)\n"], "")
    try:
        exec(compile("def run(input):\n    return helper(input)\n", "<cell>", "exec"), namespace)
        assert namespace["helper"] is source_less
        with pytest.raises(PackagingError) as caught:
            driver_from_functions(namespace["run"], namespace=namespace, models={})
    finally:
        del linecache.cache["<cell>"]
    assert str(caught.value) == (
        "run() uses 'helper', which has no source code to copy (it was made by exec() or comes "
        "from a compiled module): define it in a notebook cell or a .py file"
    )


def test_run_and_init_signatures_are_checked(shell: Any) -> None:
    ns = run_cells(shell, "def run():\n    return 1\n", "def setup(x):\n    pass\n")
    with pytest.raises(PackagingError) as caught:
        driver_from_functions(ns["run"], namespace=ns, models={})
    assert str(caught.value) == (
        "run() must take the request input as its argument, as in run(input)"
    )
    ns = run_cells(shell, "def run(input):\n    return 1\n")
    with pytest.raises(PackagingError) as caught:
        driver_from_functions(ns["run"], ns["setup"], namespace=ns, models={})
    assert str(caught.value) == "setup() must take no arguments to be init()"


def test_helper_named_init_clashes_with_the_generated_init(shell: Any) -> None:
    cells = ["def init():\n    return 1\n", "def run(input):\n    return init()\n"]
    assert capture_error(shell, cells) == (
        "The driver would define 'init' twice (as the generated init() and as def): rename one "
        "of them in the notebook"
    )


# ---------------------------------------------------------------- cell as driver


def test_cell_driver_is_taken_as_is() -> None:
    source = (
        "import joblib\nimport numpy as np\n\n"
        "def init():\n    global model\n    model = joblib.load('model.pkl')\n\n"
        "def run(input):\n    return model.predict(np.asarray(input)).tolist()"
    )
    program = driver_from_cell(source, label="In [7]")
    assert program.source == source + "\n"
    assert program.origin == ["In [7]"]
    assert program.modules == {"joblib", "numpy"}
    assert program.model_globals == {}


def test_cell_driver_may_assign_run() -> None:
    assert driver_from_cell("def score(x):\n    return x\nrun = score\n").origin == []


def test_cell_without_run_is_refused() -> None:
    with pytest.raises(PackagingError) as caught:
        driver_from_cell("import os\ndef init():\n    pass\ndef helper(x):\n    return x\n")
    assert str(caught.value) == (
        "The driver program must define run(input); it defines: init, helper"
    )
    with pytest.raises(PackagingError) as caught:
        driver_from_cell("import os\n")
    assert str(caught.value) == "The driver program must define run(input); it defines: nothing"


def test_cell_with_a_syntax_error_is_refused() -> None:
    with pytest.raises(PackagingError) as caught:
        driver_from_cell("def run(input):\n    return input\nx = = 1\n")
    assert str(caught.value) == "Syntax error in the driver program, line 3: invalid syntax"
    with pytest.raises(PackagingError) as caught:
        driver_from_cell("def run(input):\n    pass\nreturn 1\n")
    assert str(caught.value) == (
        "Syntax error in the driver program, line 3: 'return' outside function"
    )


def test_cell_run_must_take_the_input() -> None:
    with pytest.raises(PackagingError) as caught:
        driver_from_cell("def run():\n    return 1\n")
    assert str(caught.value) == (
        "run() must take the request input as its argument, as in run(input)"
    )


def test_driver_program_writes_its_file(tmp_path: Path) -> None:
    program = driver_from_cell("def run(input):\n    return input\n")
    assert program.write(tmp_path).read_text() == "def run(input):\n    return input\n"
    assert io.StringIO(program.source).read() == program.source
