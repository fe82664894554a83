"""The workflow steps behind the magics, against the real embedded backend."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flows import IRIS_DRIVER, iris_data, register_iris, unique
from sklearn.linear_model import LogisticRegression

from amlmm_magics import workflow
from amlmm_magics.packaging import ModelBinding, PackagingError, driver_from_cell
from amlmm_magics.workflow import ModelRef, NotFoundError, SessionModels, WorkflowError


@pytest.fixture(scope="module")
def fitted() -> LogisticRegression:
    x, y = iris_data()
    return LogisticRegression(max_iter=300).fit(x, y)


def _count_models(conn: Any, name: str) -> int:
    return sum(1 for _ in conn.client.list_models(name=name))


# -- names ----------------------------------------------------------------------------------------


def test_resolve_by_id_name_and_version(local: Any, tmp_path: Path) -> None:
    name = unique("resolve")
    first, _ = register_iris(local, tmp_path, name=name)
    second, _ = register_iris(local, tmp_path, name=name)
    client = local.client
    assert workflow.resolve(client, "model", first.id)["id"] == first.id
    assert workflow.resolve(client, "model", name)["id"] == second.id
    assert workflow.resolve(client, "model", f"{name}:1")["id"] == first.id
    assert workflow.resolve(client, "model", f"  {name}:2 ")["id"] == second.id
    with pytest.raises(NotFoundError, match=rf"^No model with the ID or name '{name}:3'$"):
        workflow.resolve(client, "model", f"{name}:3")
    with pytest.raises(WorkflowError, match="An empty model reference"):
        workflow.resolve(client, "model", " ")


def test_deployments_and_operations_resolve_by_id_only(local: Any) -> None:
    for kind in ("deployment", "operation"):
        with pytest.raises(NotFoundError, match=rf"^No {kind} with the ID 'nope'$"):
            workflow.resolve(local.client, kind, "nope")


def test_model_refs() -> None:
    assert ModelRef.parse("iris:2=clf") == ModelRef("iris:2", "clf")
    assert ModelRef.parse("abc123") == ModelRef("abc123", None)
    with pytest.raises(WorkflowError, match=r"'1x' is not a Python name"):
        ModelRef.parse("iris=1x")
    with pytest.raises(WorkflowError, match="give a model ID, name or name:version"):
        ModelRef.parse("=clf")


def test_names_are_checked_before_anything_is_uploaded() -> None:
    workflow.check_name("model", "iris-2.v_1")
    with pytest.raises(WorkflowError, match=r"^Invalid manifest name '-x': use letters"):
        workflow.check_name("manifest", "-x")


# -- models ---------------------------------------------------------------------------------------


def test_register_object_remembers_the_object(local: Any, fitted: Any, tmp_path: Path) -> None:
    session = SessionModels()
    name = unique("remember")
    entry = workflow.register_object(local, session, fitted, name=name, label="clf",
                                     tags=["team=ds"], workdir=tmp_path)
    assert entry.model["name"] == name and "team=ds" in entry.model["tags"]
    assert session.for_object(fitted) is entry
    assert session.by_model_id[entry.model["id"]] is entry
    assert session.for_object(LogisticRegression()) is None


def test_a_bad_name_registers_nothing(local: Any, tmp_path: Path) -> None:
    path = tmp_path / "m.bin"
    path.write_bytes(b"x")
    with pytest.raises(WorkflowError, match="Invalid model name 'a b'"):
        workflow.register_path(local, path, name="a b", workdir=tmp_path)
    assert _count_models(local, "a b") == 0


def test_no_storage_is_one_clear_error(local: Any, fitted: Any, tmp_path: Path) -> None:
    conn = dataclasses.replace(local, storage_sas_url=None)
    with pytest.raises(WorkflowError, match="No blob storage to upload to: connect with "
                                            "--storage-sas-url-env VAR"):
        workflow.register_object(conn, SessionModels(), fitted, name="x", workdir=tmp_path)


def test_libraries_come_from_packaging_tags_not_user_tags() -> None:
    model = {"tags": ["format=joblib", "python=3.11.7", "scikit-learn=1.9.1", "numpy=2.0.0",
                      "team=ds", "class=sklearn.X", "stage=prod"]}
    assert workflow.libraries_of(model) == ["scikit-learn==1.9.1", "numpy==2.0.0"]


@pytest.mark.parametrize(("model", "expected"), [
    ({"tags": ["format=cloudpickle"], "url": "http://h/a.joblib"}, "cloudpickle"),
    ({"tags": ["format=file"], "url": "http://h/a.joblib?sig=x"}, "joblib"),
    ({"tags": ["format=file"], "url": "http://h/a.pkl"}, "cloudpickle"),
    ({"tags": ["format=folder"], "url": "http://h/a.tar.gz", "unpack": True}, "folder"),
    ({"url": "http://h/weights.bin"}, "file"),
])
def test_how_a_model_loads(model: dict[str, Any], expected: str) -> None:
    assert workflow._format_of(model) == expected


# -- manifests ------------------------------------------------------------------------------------


def test_plan_and_register_a_manifest(local: Any, fitted: Any, tmp_path: Path) -> None:
    session = SessionModels()
    name = unique("plan")
    entry = workflow.register_object(local, session, fitted, name=name, workdir=tmp_path)
    driver = driver_from_cell(IRIS_DRIVER.format(model=name))
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# pinned by hand\nnumpy>=1.0\n")
    x, _ = iris_data()
    plan = workflow.plan_manifest(local, session, name=f"{name}-mf", driver=driver,
                                  models=[entry.model], sample=x[:2],
                                  requirements=str(requirements), description="d")
    assert "numpy>=1.0" in plan.requirements
    assert any(line.startswith("scikit-learn==") for line in plan.requirements)
    assert plan.schema is not None and plan.schema["sample"] == x[:2].tolist()
    summary = plan.dry_run_summary()
    assert summary.startswith("init(): ok (") and "run(sample): ok (" in summary
    manifest = workflow.register_manifest(local, plan)
    assert manifest["modelIds"] == [entry.model["id"]] and manifest["description"] == "d"
    properties = manifest["targetRuntime"]["properties"]
    assert properties["schemaAssetId"] == "schema" and "pipRequirements" in properties
    assert [a["id"] for a in manifest["assets"]] == ["driver", "schema"]


def test_a_dry_run_of_a_model_from_another_session_downloads_it(local: Any,
                                                                 tmp_path: Path) -> None:
    model, _ = register_iris(local, tmp_path, name=unique("download"))
    driver = driver_from_cell(IRIS_DRIVER.format(model=model.name))
    x, _ = iris_data()
    plan = workflow.plan_manifest(local, SessionModels(), name="dl", driver=driver,
                                  models=[model], sample=x[:1])
    assert "run(sample): ok" in plan.dry_run_summary()


def test_an_output_without_schema_keeps_the_input_schema(local: Any) -> None:
    driver = driver_from_cell("def run(x):\n    return x\n")
    plan = workflow.plan_manifest(local, SessionModels(), name="out", driver=driver, models=[],
                                  sample=[1, 2], output=object(), dry_run=False)
    assert plan.schema is not None and plan.schema["sample"] == [1, 2]
    assert plan.dry_run_report == ""


def test_unresolved_imports_are_reported(local: Any) -> None:
    driver = driver_from_cell("import not_a_real_module_anywhere\ndef run(x):\n    return x\n")
    plan = workflow.plan_manifest(local, SessionModels(), name="unres", driver=driver,
                                  models=[], dry_run=False)
    assert plan.unresolved == ["not_a_real_module_anywhere"]


def test_a_failing_dry_run_is_a_packaging_error(local: Any) -> None:
    driver = driver_from_cell("def init():\n    raise OSError('no data file')\n"
                              "def run(x):\n    return x\n")
    with pytest.raises(PackagingError, match="OSError: no data file"):
        workflow.plan_manifest(local, SessionModels(), name="fail", driver=driver, models=[])


def test_bindings_follow_the_registered_object_and_explicit_globals(
        local: Any, fitted: Any, tmp_path: Path) -> None:
    session = SessionModels()
    entry = workflow.register_object(local, session, fitted, name=unique("bind"),
                                     workdir=tmp_path)
    other, _ = register_iris(local, tmp_path, name=unique("other"))
    namespace = {"clf": fitted, "same": fitted, "_hidden": fitted, "x": np.zeros(2)}
    refs = [ModelRef(entry.model["name"]), ModelRef(other.name, "loaded")]
    bindings = workflow.model_bindings([entry.model, other], refs, session, namespace)
    assert sorted(bindings) == ["clf", "loaded", "same"]
    assert bindings["clf"].obj is fitted and bindings["clf"].format == "joblib"
    assert bindings["loaded"] == ModelBinding("loaded", other.name, "joblib")
