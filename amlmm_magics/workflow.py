"""The steps behind the magics and the command line: from notebook objects to API resources.

Each function validates everything it can before it registers anything, so a failure leaves
nothing half-created: a model is registered only after it serialized and uploaded; a
manifest only after its driver passed a dry run in a fresh process. It uses the REST client
(over HTTP) and the packaging layer; it knows nothing of IPython.
"""

from __future__ import annotations

import re
import tempfile
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amlmm_magics.api import ModelManagementClient, Resource, ResourceNotFoundError
from amlmm_magics.api.blob import upload_blob
from amlmm_magics.connection import Connection
from amlmm_magics.names import NAME_RULE, is_valid_name

SCHEMA_ASSET = "schema"
DRIVER_ASSET = "driver"
# Tags the packaging layer writes that are not distribution pins.
_NON_LIBRARY_TAGS = frozenset({"format", "python", "class"})
_REF_RE = re.compile(r"^(?P<name>[^:]+?)(?::(?P<version>\d+))?$")


class WorkflowError(Exception):
    """An expected failure of a step, with one line that says what to do."""


class NotFoundError(WorkflowError):
    """No resource has the ID, name or name:version given."""


def check_name(kind: str, name: str) -> None:
    """Refuse a name the service would refuse, before anything is uploaded for it."""
    if not is_valid_name(name or ""):
        raise WorkflowError(f"Invalid {kind} name {name!r}: {NAME_RULE}")


@dataclass
class RegisteredObject:
    """A model this session registered from memory: its object, artifact and resource."""

    obj: Any
    artifact: Any  # packaging.ModelArtifact
    model: Resource


@dataclass
class SessionModels:
    """What this session registered from memory, so a run function's globals bind to it."""

    by_object: dict[int, RegisteredObject] = field(default_factory=dict)
    by_model_id: dict[str, RegisteredObject] = field(default_factory=dict)

    def add(self, entry: RegisteredObject) -> None:
        self.by_object[id(entry.obj)] = entry
        self.by_model_id[entry.model["id"]] = entry

    def for_object(self, obj: Any) -> RegisteredObject | None:
        entry = self.by_object.get(id(obj))
        return entry if entry is not None and entry.obj is obj else None


# -- names and IDs ------------------------------------------------------------------------------

_FINDERS: dict[str, Any] = {
    "model": lambda c, name: c.list_models(name=name),
    "manifest": lambda c, name: c.list_manifests(manifest_name=name),
    "service": lambda c, name: c.list_services(service_name=name),
    # Images cannot be listed by name: the listing is filtered below.
    "image": lambda c, name: c.list_images(),
}


def _newest(resource: Mapping[str, Any]) -> tuple[int, str]:
    created = resource.get("createdAt") or resource.get("createdTime") or ""
    return (int(resource.get("version") or 0), str(created))


def resolve(client: ModelManagementClient, kind: str, ref: str) -> Resource:
    """The resource an ID, a name (its latest version) or ``name:version`` refers to.

    Deployments and operations have IDs only.
    """
    ref = ref.strip()
    if not ref:
        raise WorkflowError(f"An empty {kind} reference: give an ID, a name or name:version")
    getter = getattr(client, f"get_{kind}")
    try:
        return getter(ref)
    except ResourceNotFoundError:
        if kind not in _FINDERS:
            raise NotFoundError(f"No {kind} with the ID {ref!r}") from None
    match = _REF_RE.match(ref)
    name, version = (match["name"], match["version"]) if match else (ref, None)
    candidates = [c for c in _FINDERS[kind](client, name) if c.get("name") == name]
    if version is not None:
        candidates = [c for c in candidates if str(c.get("version")) == version]
    if not candidates:
        what = f"{name}:{version}" if version else name
        raise NotFoundError(f"No {kind} with the ID or name {what!r}")
    return max(candidates, key=_newest)


# -- models ---------------------------------------------------------------------------------------

def _blob_name(kind: str, name: str, file_name: str) -> str:
    return f"{kind}/{name}/{uuid.uuid4().hex}/{file_name}"


def _require_storage(conn: Connection) -> str:
    if not conn.storage_sas_url:
        raise WorkflowError(
            "No blob storage to upload to: connect with --storage-sas-url-env VAR, VAR "
            "holding a container SAS URL with read, create and write permissions.")
    return conn.storage_sas_url


def register_artifact(conn: Connection, artifact: Any, *, name: str,
                      description: str | None = None, tags: Iterable[str] = ()) -> Resource:
    """Upload a packaged model file and register it."""
    sas = _require_storage(conn)
    url = upload_blob(sas, artifact.path, _blob_name("models", name, artifact.file_name),
                      content_type=artifact.mime_type)
    return conn.client.register_model(
        name=name, url=url, mime_type=artifact.mime_type,
        description=description or artifact.description or None,
        tags=[*artifact.tags, *tags] or None, unpack=True if artifact.unpack else None)


def register_object(conn: Connection, session: SessionModels, obj: Any, *, name: str,
                    label: str | None = None, format: str | None = None,
                    description: str | None = None, tags: Iterable[str] = (),
                    workdir: Path) -> RegisteredObject:
    """Serialize an in-memory object, upload it and register it as a model."""
    from amlmm_magics.packaging import serialize_model

    check_name("model", name)
    artifact = serialize_model(obj, workdir, name=name, format=format, label=label)
    model = register_artifact(conn, artifact, name=name, description=description, tags=tags)
    entry = RegisteredObject(obj, artifact, model)
    session.add(entry)
    return entry


def register_path(conn: Connection, path: Path, *, name: str, description: str | None = None,
                  tags: Iterable[str] = (), workdir: Path) -> Resource:
    """A file as is, or a folder packed as tar.gz (unpacked in the service)."""
    from amlmm_magics.packaging import package_path

    check_name("model", name)
    if not path.exists():
        raise WorkflowError(f"No such file or folder: {path}")
    return register_artifact(conn, package_path(path, workdir), name=name,
                             description=description, tags=tags)


def libraries_of(model: Mapping[str, Any]) -> list[str]:
    """Requirement pins from a model's ``dist=version`` tags (as packaging writes them).

    A user's own ``key=value`` tag is no pin: only tags naming an installed distribution
    count.
    """
    from importlib import metadata

    pins = []
    for tag in model.get("tags") or []:
        key, sep, version = tag.partition("=")
        if not sep or key in _NON_LIBRARY_TAGS or not re.fullmatch(r"[\w.+!-]+", version):
            continue
        try:
            metadata.distribution(key)
        except (metadata.PackageNotFoundError, ValueError):
            continue
        pins.append(f"{key}=={version}")
    return pins


# -- manifests ------------------------------------------------------------------------------------

@dataclass
class ModelRef:
    """``--model ID_OR_NAME[:VERSION][=GLOBAL]``."""

    ref: str
    global_name: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        ref, sep, global_name = text.partition("=")
        if sep and not global_name.isidentifier():
            raise WorkflowError(f"--model {text!r}: {global_name!r} is not a Python name.")
        if not ref.strip():
            raise WorkflowError(f"--model {text!r}: give a model ID, name or name:version.")
        return cls(ref.strip(), global_name or None)


def read_requirements(path: Path) -> list[str]:
    try:
        return [line.strip() for line in path.read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    except OSError as exc:
        raise WorkflowError(f"Cannot read the requirements file {path}: {exc.strerror}") \
            from None


def requirement_lines(driver: Any, models: list[Resource], requirements: str | Path | None,
                      ) -> tuple[list[str], list[str]]:
    """``auto`` (the default): from the driver's imports and the models' libraries; a file:
    its lines on top of what is inferred (they win for the distributions they name).

    Answers the lines and the imported modules no installed distribution provides.
    """
    from amlmm_magics.packaging import resolve_requirements

    pins = [pin for model in models for pin in libraries_of(model)]
    user = [] if requirements in (None, "auto") else read_requirements(Path(requirements))
    report = resolve_requirements(driver.modules, overrides=[*pins, *user])
    return report.lines, report.unresolved


def _local_copy(model: Resource, session: SessionModels, workdir: Path) -> Any:
    """The model's file for the dry run: this session's artifact, or a download."""
    import requests

    from amlmm_magics.packaging import LocalModel

    entry = session.by_model_id.get(model["id"])
    if entry is not None:
        return LocalModel(model["name"], entry.artifact.path, entry.artifact.unpack,
                          model.get("version"))
    file_name = Path(str(model["url"]).split("?")[0]).name or model["name"]
    target = workdir / uuid.uuid4().hex / file_name
    target.parent.mkdir(parents=True)
    try:
        with requests.get(model["url"], stream=True, timeout=(10, 300)) as answer:
            if answer.status_code != 200:
                raise WorkflowError(
                    f"Cannot download model {model['name']}:{model.get('version')} for the "
                    f"dry run ({answer.status_code} {answer.reason}); --no-dry-run skips it")
            with target.open("wb") as out:
                for chunk in answer.iter_content(1024 * 1024):
                    out.write(chunk)
    except requests.RequestException as exc:
        raise WorkflowError(f"Cannot download model {model['name']}:{model.get('version')} "
                            f"for the dry run ({type(exc).__name__}); --no-dry-run skips it"
                            ) from None
    return LocalModel(model["name"], target, bool(model.get("unpack")), model.get("version"))


@dataclass
class ManifestPlan:
    """Everything a manifest registers, checked before anything is uploaded."""

    name: str
    driver: Any  # packaging.DriverProgram
    models: list[Resource]
    schema: dict[str, Any] | None
    requirements: list[str]
    description: str | None = None
    dry_run_report: str = ""
    unresolved: list[str] = field(default_factory=list)  # imports no distribution provides

    def dry_run_summary(self) -> str:
        """The dry run's report as one line (``init(): ok (0.4 s); run(sample): ok ...``)."""
        lines = [line.strip() for line in self.dry_run_report.splitlines()
                 if line.strip() and not line.startswith("driver:")]
        return "; ".join(lines)


def _schema(sample: Any, output: Any) -> dict[str, Any] | None:
    from amlmm_magics.packaging import PackagingError, schema_from_sample

    if sample is None:
        return None
    if output is None:
        return schema_from_sample(sample)
    try:
        return schema_from_sample(sample, output)
    except PackagingError:
        # An output no schema describes still leaves the input's schema (and the sample).
        return schema_from_sample(sample)


def plan_manifest(conn: Connection, session: SessionModels, *, name: str, driver: Any,
                  models: list[Resource], sample: Any = None, output: Any = None,
                  requirements: str | Path | None = None, description: str | None = None,
                  dry_run: bool = True) -> ManifestPlan:
    """Schema, requirements and the dry run: everything short of uploading."""
    from amlmm_magics.packaging import dry_run as run_dry

    check_name("manifest", name)
    schema = _schema(sample, output)
    lines, unresolved = requirement_lines(driver, models, requirements)
    plan = ManifestPlan(name, driver, models, schema, lines, description,
                        unresolved=unresolved)
    if dry_run:
        with tempfile.TemporaryDirectory(prefix="amlmm-models-") as tmp:
            local = [_local_copy(m, session, Path(tmp)) for m in models]
            plan.dry_run_report = run_dry(driver, local, schema).output
    return plan


def register_manifest(conn: Connection, plan: ManifestPlan) -> Resource:
    """Upload the driver, requirements and schema; register the manifest."""
    import io
    import json

    sas = _require_storage(conn)

    def put(data: str, file_name: str, content_type: str) -> str:
        payload = data.encode()
        return upload_blob(sas, io.BytesIO(payload), _blob_name("manifests", plan.name, file_name),
                           content_type=content_type, length=len(payload))

    assets = [{"id": DRIVER_ASSET, "url": put(plan.driver.source, plan.driver.file_name,
                                              "application/x-python"),
               "mimeType": "application/x-python"}]
    properties: dict[str, str] = {}
    if plan.requirements:
        properties["pipRequirements"] = put("\n".join(plan.requirements) + "\n",
                                            "requirements.txt", "text/plain")
    if plan.schema is not None:
        assets.append({"id": SCHEMA_ASSET, "url": put(json.dumps(plan.schema, indent=2),
                                                      "schema.json", "application/json"),
                       "mimeType": "application/json"})
        properties["schemaAssetId"] = SCHEMA_ASSET
    return conn.client.register_manifest(
        name=plan.name, driver_program=DRIVER_ASSET, assets=assets,
        target_runtime={"runtimeType": "Python", "properties": properties},
        model_ids=[m["id"] for m in plan.models] or None,
        model_type="Registered" if plan.models else None,
        description=plan.description, webservice_type="Realtime")


def model_bindings(models: list[Resource], refs: list[ModelRef], session: SessionModels,
                   namespace: Mapping[str, Any]) -> dict[str, Any]:
    """Globals of the notebook that are models of the manifest: named with ``=GLOBAL``, or
    bound to the very object this session registered."""
    from amlmm_magics.packaging import ModelBinding

    bindings: dict[str, Any] = {}
    for model, ref in zip(models, refs, strict=True):
        entry = session.by_model_id.get(model["id"])
        fmt = entry.artifact.format if entry else _format_of(model)
        names = [ref.global_name] if ref.global_name else []
        if entry is not None:
            names += [g for g, v in namespace.items() if v is entry.obj and g.isidentifier()
                      and not g.startswith("_")]
        for global_name in names:
            if entry is not None:
                bindings[global_name] = ModelBinding.from_artifact(
                    global_name, model["name"], entry.artifact, obj=entry.obj)
            else:
                bindings[global_name] = ModelBinding(global_name, model["name"], fmt)
    return bindings


def _format_of(model: Mapping[str, Any]) -> str:
    """How a model not registered in this session loads: its ``format=`` tag, else (and for
    a file registered as is) what its file name says."""
    tagged = next((tag.split("=", 1)[1] for tag in model.get("tags") or []
                   if tag.startswith("format=")), None)
    if tagged not in (None, "file"):
        return tagged
    url = str(model.get("url", "")).split("?")[0].lower()
    if url.endswith(".joblib"):
        return "joblib"
    if url.endswith((".pkl", ".pickle", ".cloudpickle")):
        return "cloudpickle"
    return "folder" if model.get("unpack") else "file"
