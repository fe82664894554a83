"""Imports → pinned pip requirements and the conda environment text."""

from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path

import pytest

from amlmm_magics.packaging import (
    PackagingError,
    RequirementsWarning,
    conda_environment,
    infer_requirements,
    modules_of_source,
    resolve_requirements,
    write_requirements,
)

SKLEARN = importlib.metadata.version("scikit-learn")
NUMPY = importlib.metadata.version("numpy")
PANDAS = importlib.metadata.version("pandas")


def test_modules_of_source_takes_top_level_names_of_every_import() -> None:
    source = (
        "import os.path\n"
        "import numpy as np\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "from . import sibling\n"
        "from .pkg import thing\n"
        "def init():\n"
        "    import joblib\n"
        "    from pandas import DataFrame\n"
    )
    assert modules_of_source(source) == {"os", "numpy", "sklearn", "joblib", "pandas"}


def test_modules_of_source_rejects_broken_source() -> None:
    with pytest.raises(PackagingError, match=r"^Syntax error in the source, line 1: "):
        modules_of_source("import (\n")


def test_estimator_modules_map_to_pinned_installed_distributions() -> None:
    lines = infer_requirements({"sklearn", "numpy", "sklearn.linear_model"})
    assert lines == [f"numpy=={NUMPY}", f"scikit-learn=={SKLEARN}"]


def test_standard_library_and_this_package_are_left_out() -> None:
    modules = {"os", "json", "importlib", "__future__", "sys", "amlmm_magics", "pandas"}
    assert infer_requirements(modules) == [f"pandas=={PANDAS}"]


def test_overrides_replace_the_same_distribution_and_add_others() -> None:
    overrides = [
        "# pinned by hand",
        "",
        "Scikit_Learn>=1.4  # any recent one",
        "requests",
        "--extra-index-url https://example.invalid/simple",
    ]
    lines = infer_requirements({"sklearn", "numpy"}, overrides=overrides)
    assert lines == [
        "--extra-index-url https://example.invalid/simple",
        f"numpy=={NUMPY}",
        "requests",
        "Scikit_Learn>=1.4",
    ]


def test_overrides_accept_a_requirements_file_text() -> None:
    text = "numpy>=1.26\n\n# comment\npandas[performance]>=2 ; python_version>'3'\n"
    lines = infer_requirements({"numpy", "pandas"}, overrides=[text])
    assert lines == ["numpy>=1.26", "pandas[performance]>=2 ; python_version>'3'"]


def test_output_does_not_depend_on_input_order() -> None:
    first = infer_requirements(["pandas", "sklearn", "numpy"])
    second = infer_requirements(["numpy", "pandas", "sklearn"])
    assert first == second == sorted(first, key=str.lower)


def test_modules_of_no_installed_distribution_are_reported() -> None:
    report = resolve_requirements({"numpy", "surely_not_installed_mod"})
    assert report.lines == [f"numpy=={NUMPY}"]
    assert report.unresolved == ["surely_not_installed_mod"]
    assert report.distributions == {"numpy": ["numpy"]}
    with pytest.warns(RequirementsWarning, match="surely_not_installed_mod"):
        assert infer_requirements({"surely_not_installed_mod"}) == []


def test_an_override_covers_an_unresolved_module() -> None:
    report = resolve_requirements({"mylib"}, overrides=["mylib==0.3"])
    assert report.lines == ["mylib==0.3"]
    assert report.unresolved == []


def test_write_requirements(tmp_path: Path) -> None:
    path = write_requirements(["numpy==2.0", "pandas==3.0"], tmp_path / "requirements.txt")
    assert path.read_text() == "numpy==2.0\npandas==3.0\n"


def test_conda_environment_text() -> None:
    text = conda_environment([f"numpy=={NUMPY}", "pkg[extra]>=1 ; python_version>'3'"], "3.11.7")
    assert text == (
        "# Conda environment of the scoring service, written by amlmm_magics.\n"
        "name: project_environment\n"
        "dependencies:\n"
        "  - python=3.11.7\n"
        "  - pip\n"
        "  - pip:\n"
        f"    - numpy=={NUMPY}\n"
        "    - \"pkg[extra]>=1 ; python_version>'3'\"\n"
    )


def test_conda_environment_is_yaml_of_the_2017_shape() -> None:
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load(conda_environment(["a==1", "b @ https://x.invalid/b.whl#sha=1"]))
    assert data == {
        "name": "project_environment",
        "dependencies": [
            f"python={platform.python_version()}",
            "pip",
            {"pip": ["a==1", "b @ https://x.invalid/b.whl#sha=1"]},
        ],
    }
    assert yaml.safe_load(conda_environment([]))["dependencies"][2] == {"pip": []}
