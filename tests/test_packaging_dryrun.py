"""The local dry run: a driver, its models and schema in a fresh process before registering."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from amlmm_magics.packaging import (
    LocalModel,
    ModelBinding,
    PackagingError,
    driver_from_cell,
    driver_from_functions,
    dry_run,
    schema_from_sample,
    serialize_model,
)

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(scope="module")
def iris(tmp_path_factory):
    x, y = load_iris(return_X_y=True)
    frame = pd.DataFrame(x, columns=COLUMNS)
    clf = LogisticRegression(max_iter=300).fit(frame, y)
    artifact = serialize_model(clf, tmp_path_factory.mktemp("models"), name="iris")
    return clf, frame, artifact


def test_a_captured_run_function_passes_with_a_dataframe_sample(iris, tmp_path):
    clf, frame, artifact = iris
    namespace = {"__name__": "__main__", "clf": clf, "np": np}
    source = "def score(data):\n    return clf.predict(data).tolist()\n"
    path = tmp_path / "cell.py"
    path.write_text(source)
    exec(compile(source, str(path), "exec"), namespace)
    score = namespace["score"]
    driver = driver_from_functions(
        score, namespace=namespace,
        models={"clf": ModelBinding.from_artifact("clf", "iris", artifact, obj=clf)})
    schema = schema_from_sample(frame.head(2), score(frame.head(2)))
    report = dry_run(driver, [LocalModel("iris", artifact.path)], schema)
    assert "init(): ok" in report.output
    assert "run(sample): ok" in report.output and "[0,0]" in report.output


def test_a_cell_driver_that_leans_on_notebook_state_fails_with_its_error(iris):
    _, frame, artifact = iris
    cell = ("import joblib\nfrom amlmm_magics.scoring import model_path\n"
            "def init():\n    global model\n    model = joblib.load(model_path('iris'))\n"
            "def run(data):\n    return (model.predict_proba(data)[:, 0] > threshold).tolist()\n")
    driver = driver_from_cell(cell)
    with pytest.raises(PackagingError) as info:
        dry_run(driver, [LocalModel("iris", artifact.path)], schema_from_sample(frame.head(1)))
    assert str(info.value) == ("The driver failed its dry run in a fresh process: "
                               "NameError: name 'threshold' is not defined")


def test_init_failing_is_reported_without_a_sample(iris):
    driver = driver_from_cell("def init():\n    open('missing.csv')\ndef run(x):\n    return x\n")
    with pytest.raises(PackagingError, match=r"FileNotFoundError: .*missing\.csv"):
        dry_run(driver, [], None)


def test_a_sample_that_cannot_become_a_schema_is_one_clear_error():
    with pytest.raises(PackagingError, match="Cannot make a schema from the sample input"):
        schema_from_sample(object())
