"""Image builds of the embedded backend: a manifest becomes a validated build context.

A build context is what ``docker build`` needs to make a runnable image on
``python:3.11-slim``: the driver, the models and assets (archives unpacked safely), the
scoring runtime's code, ``requirements.txt``, ``image.json`` and a ``Dockerfile``. It is
stored content-addressed (its digest is the image's location) and validated by importing the
driver in a fresh process and calling ``init()`` (and ``run(sample)`` when the manifest has
a schema sample), so a broken driver fails here, with its log, not when a service starts.
Local services run from this very context.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

import amlmm_magics.scoring
from amlmm_magics.layout import (
    APP_DIR_IN_IMAGE,
    CONDA_ENV_FILE,
    PIP_REQUIREMENTS,
    SCHEMA_ASSET,
    SCORING_PORT,
    file_name_of,
)
from amlmm_magics.local.errors import ApiError

BASE_IMAGE = "python:3.11-slim"
# What the scoring runtime itself needs in an image.
RUNTIME_DISTRIBUTIONS = ("uvicorn", "httptools", "uvloop")
SCHEMA_DISTRIBUTIONS = ("numpy", "pandas")
ARCHIVE_TYPES = ("application/x-tar", "application/gzip", "application/x-gzip",
                 "application/zip", "application/x-compressed-tar")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")
CHECK_TIMEOUT_S = 600


class BuildLog:
    """The build's log: a file, published as a blob while the build runs."""

    def __init__(self, path: Path, publish: Any) -> None:
        self.path = path
        self._publish = publish
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        self._last_publish = 0.0

    def line(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        with self._lock, self.path.open("a") as out:
            for part in text.rstrip("\n").splitlines() or [""]:
                out.write(f"{stamp} {part}\n")
        if time.monotonic() - self._last_publish > 0.5:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            data = self.path.read_bytes()
            self._last_publish = time.monotonic()
        self._publish(data)


@dataclass
class BuildInput:
    image_id: str
    image_name: str
    image_version: int
    manifest: dict[str, Any]
    models: list[dict[str, Any]]
    fetch: Any  # (url, dest: Path, what: str) -> None
    python: str = sys.executable


@dataclass
class BuildResult:
    context: Path
    digest: str
    meta: dict[str, Any] = field(default_factory=dict)


def is_archive(mime_type: str | None, name: str) -> bool:
    return (mime_type or "").split(";")[0].strip() in ARCHIVE_TYPES or name.endswith(
        ARCHIVE_SUFFIXES)


def unpack_safely(archive: Path, dest: Path) -> list[str]:
    """Extract a tar or zip archive into ``dest``, refusing anything that would escape it.

    Answers the top-level names it created.
    """
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member_name(member.name, archive.name)
            try:
                tar.extractall(dest, filter="data")
            except tarfile.FilterError as exc:
                raise ApiError(400, "UnsafeArchive",
                               f"Archive {archive.name} was refused: {exc}") from None
        names = [m.name for m in members]
    elif zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            for info in zf.infolist():
                _check_zip_member(info, archive.name)
            zf.extractall(dest)
    else:
        raise ApiError(400, "InvalidArchive",
                       f"{archive.name} is marked unpack=true but is not a tar or zip archive.")
    return sorted({PurePosixPath(n).parts[0] for n in names if PurePosixPath(n).parts})


def _check_member_name(name: str, archive: str, is_link: bool = False) -> None:
    """Refuse what would land outside the app folder (tarfile's data filter checks links)."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or is_link:
        raise ApiError(400, "UnsafeArchive",
                       f"Archive {archive} was refused: member {name!r} would land outside "
                       "the app folder (absolute path, '..' or a link).")


def _check_zip_member(info: zipfile.ZipInfo, archive: str) -> None:
    is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
    _check_member_name(info.filename, archive, is_link)


def tree_digest(root: Path) -> str:
    """sha256 over every file's relative path and content: the context's address."""
    outer = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        inner = hashlib.sha256()
        with path.open("rb") as stream:
            for chunk in iter(lambda s=stream: s.read(1024 * 1024), b""):
                inner.update(chunk)
        outer.update(path.relative_to(root).as_posix().encode() + b"\0" + inner.digest())
    return outer.hexdigest()


def merge_requirements(*groups: Iterable[str]) -> list[str]:
    """Requirement lines, one per distribution; a later group's line wins over an earlier."""
    merged: dict[str, str] = {}
    for group in groups:
        for raw in group:
            line = raw.split("#", 1)[0].strip()
            if not line or line.startswith("-"):
                continue
            try:
                merged[canonicalize_name(Requirement(line).name)] = line
            except InvalidRequirement as exc:
                raise ApiError(400, "InvalidRequirements",
                               f"Invalid requirement line {line!r}: {exc}") from None
    return [merged[k] for k in sorted(merged)]


def pinned(distribution: str) -> str | None:
    try:
        return f"{distribution}=={metadata.version(distribution)}"
    except metadata.PackageNotFoundError:
        return None


def unsatisfied(requirements: Iterable[str]) -> tuple[list[str], list[str]]:
    """(missing, different): requirement lines this Python cannot honour as written."""
    missing, different = [], []
    for line in requirements:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            installed = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            missing.append(line)
            continue
        if req.specifier and not req.specifier.contains(installed, prereleases=True):
            different.append(f"{line} (installed: {installed})")
    return missing, different


def conda_pip_lines(text: str) -> list[str]:
    """The pip requirements listed under ``- pip:`` in a 2017 conda_dependencies.yml."""
    lines, inside, indent = [], False, 0
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("- pip:"):
            inside, indent = True, len(raw) - len(raw.lstrip())
            continue
        if inside:
            depth = len(raw) - len(raw.lstrip())
            if stripped.startswith("- ") and depth > indent:
                lines.append(stripped[2:].strip().strip("'\""))
            elif stripped:
                inside = False
    return lines


def dockerfile(meta: dict[str, Any]) -> str:
    schema = ["--schema", f"{APP_DIR_IN_IMAGE}/{meta['schema']}"] if meta.get("schema") else []
    command = ["python", "-m", "amlmm_magics.scoring", "--app-dir", APP_DIR_IN_IMAGE,
               "--driver", meta["driver"], *schema, "--host", "0.0.0.0",
               "--port", str(SCORING_PORT), "--keys-file", "/var/amlmm/keys/keys.json",
               "--title", meta["image"]["name"]]
    return "\n".join([
        f"# Image {meta['image']['name']}:{meta['image']['version']}, built by the amlmm_magics",
        "# embedded backend. Mount the service keys (JSON: primaryKey, secondaryKey) at",
        "# /var/amlmm/keys/keys.json; replicas: add --workers N to the command.",
        f"FROM {BASE_IMAGE}",
        "ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PYTHONPATH=/opt/amlmm/runtime \\",
        f"    AMLMM_APP_DIR={APP_DIR_IN_IMAGE}",
        "COPY requirements.txt /opt/amlmm/requirements.txt",
        "RUN pip install --no-cache-dir -r /opt/amlmm/requirements.txt",
        "COPY runtime/ /opt/amlmm/runtime/",
        f"COPY app/ {APP_DIR_IN_IMAGE}/",
        f"WORKDIR {APP_DIR_IN_IMAGE}",
        f"EXPOSE {SCORING_PORT}",
        f"HEALTHCHECK CMD python -c \"import urllib.request; "
        f"urllib.request.urlopen('http://127.0.0.1:{SCORING_PORT}/')\"",
        f"CMD {json.dumps(command)}",
        "",
    ])


def copy_runtime(dest: Path) -> None:
    """The scoring runtime's own files, under a stub package so drivers can import it."""
    package = dest / "amlmm_magics"
    (package / "scoring").mkdir(parents=True)
    (package / "__init__.py").write_text(
        '"""The part of amlmm_magics that runs in a service: the scoring runtime."""\n')
    source = Path(amlmm_magics.scoring.__file__).parent
    for path in sorted(source.glob("*.py")):
        shutil.copyfile(path, package / "scoring" / path.name)


class ImageBuilder:
    def __init__(self, contexts: Path, logs_dir: Path) -> None:
        self.contexts = contexts
        self.logs_dir = logs_dir

    def build(self, job: BuildInput, log: BuildLog) -> BuildResult:
        manifest = job.manifest
        runtime = manifest["targetRuntime"]
        if runtime.get("runtimeType") != "Python":
            raise ApiError(400, "UnsupportedRuntime",
                           f"The embedded backend runs Python drivers; runtimeType "
                           f"{runtime.get('runtimeType')!r} needs a Spark cluster.")
        work = self.contexts / f"tmp-{job.image_id}"
        shutil.rmtree(work, ignore_errors=True)
        app = work / "app"
        app.mkdir(parents=True)
        try:
            meta = self._assemble(job, app, log)
            requirements = self._requirements(job, work, meta, log)
            (work / "requirements.txt").write_text("\n".join(requirements) + "\n")
            copy_runtime(work / "runtime")
            (work / "image.json").write_text(json.dumps(meta, indent=2) + "\n")
            (work / "Dockerfile").write_text(dockerfile(meta))
            log.line("Validating the driver in a fresh process: import, init()"
                     + (", run(sample)" if meta.get("schema") else ""))
            self._validate(work, meta, job.python, log)
            digest = tree_digest(work)
            final = self.contexts / f"sha256-{digest}"
            if final.exists():
                shutil.rmtree(work)
                log.line("An identical build context exists already: reusing it.")
            else:
                os.replace(work, final)
            log.line(f"Build context sha256:{digest} ready.")
            return BuildResult(final, digest, meta)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise

    def _assemble(self, job: BuildInput, app: Path, log: BuildLog) -> dict[str, Any]:
        manifest = job.manifest
        driver_id = manifest["driverProgram"]
        schema_id = manifest["targetRuntime"].get("properties", {}).get(SCHEMA_ASSET)
        meta: dict[str, Any] = {
            "image": {"id": job.image_id, "name": job.image_name, "version": job.image_version},
            "manifest": {"id": manifest["id"], "name": manifest["name"],
                         "version": manifest.get("version")},
            "driver": None, "schema": None, "models": [],
        }
        taken: set[str] = set()
        for asset in manifest["assets"]:
            name = file_name_of(asset["url"], asset.get("id") or "asset")
            if asset.get("id") == driver_id and not name.endswith(".py"):
                name = f"{name}.py"  # importable whatever the upload was called
            log.line(f"Asset {asset.get('id')}: {name}")
            placed = self._place(job, asset["url"], name, asset.get("mimeType"),
                                 bool(asset.get("unpack")), app, taken, f"asset {asset.get('id')}")
            if asset.get("id") == driver_id:
                meta["driver"] = placed
            if schema_id and asset.get("id") == schema_id:
                meta["schema"] = placed
        if schema_id and not meta["schema"]:
            raise ApiError(400, "InvalidManifest",
                           f"The schema asset '{schema_id}' is not among the manifest's assets.")
        for model in job.models:
            name = file_name_of(model["url"], model["name"])
            log.line(f"Model {model['name']}:{model.get('version')} ({model['id']}): {name}")
            placed = self._place(job, model["url"], name, model.get("mimeType"),
                                 bool(model.get("unpack")), app, taken,
                                 f"model {model['name']}")
            meta["models"].append({"name": model["name"], "version": model.get("version"),
                                   "id": model["id"], "path": placed})
        (app / "models.json").write_text(json.dumps({"models": meta["models"]}, indent=2) + "\n")
        return meta

    def _place(self, job: BuildInput, url: str, name: str, mime_type: str | None,
               unpack: bool, app: Path, taken: set[str], what: str) -> str:
        """Fetch one file into the app folder (or unpack it there); answer its path in it."""
        if unpack and is_archive(mime_type, name):
            archive = app.parent / f"download-{len(taken)}-{name}"
            job.fetch(url, archive, what)
            tops = unpack_safely(archive, app)
            archive.unlink()
            clash = taken.intersection(tops)
            if clash:
                raise ApiError(400, "InvalidManifest",
                               f"Unpacking the {what} would overwrite {', '.join(sorted(clash))}.")
            taken.update(tops)
            return tops[0] if len(tops) == 1 else "."
        if name in taken:
            raise ApiError(400, "InvalidManifest",
                           f"Two files of the manifest are both called {name!r}; the service "
                           "places every file under its own name.")
        taken.add(name)
        job.fetch(url, app / name, what)
        return name

    def _requirements(self, job: BuildInput, work: Path, meta: dict[str, Any],
                      log: BuildLog) -> list[str]:
        properties = job.manifest["targetRuntime"].get("properties", {})
        user: list[str] = []
        for key in (PIP_REQUIREMENTS, CONDA_ENV_FILE):
            if properties.get(key):
                target = work / ("user-requirements.txt" if key == PIP_REQUIREMENTS
                                 else "conda_dependencies.yml")
                job.fetch(properties[key], target, f"{key} file")
                text = target.read_text(errors="replace")
                user += text.splitlines() if key == PIP_REQUIREMENTS else conda_pip_lines(text)
                if key == PIP_REQUIREMENTS:
                    target.unlink()
        base = [p for d in RUNTIME_DISTRIBUTIONS if (p := pinned(d))]
        if meta.get("schema"):
            base += [p for d in SCHEMA_DISTRIBUTIONS if (p := pinned(d))]
        requirements = merge_requirements(base, user)
        missing, different = unsatisfied(merge_requirements(user))
        for line in different:
            log.line(f"Note: {line}: local services use the installed version; a Docker "
                     "build of this context installs the one required.")
        if missing:
            raise ApiError(400, "RequirementNotInstalled",
                           f"{', '.join(missing)} not installed where the embedded backend runs "
                           f"({job.python}); install them there (pip install "
                           f"{' '.join(repr(m) for m in missing)}) and build again.")
        log.line(f"Requirements: {', '.join(requirements)}")
        return requirements

    def _validate(self, work: Path, meta: dict[str, Any], python: str, log: BuildLog) -> None:
        command = [python, "-m", "amlmm_magics.scoring.check", "--app-dir", str(work / "app"),
                   "--driver", meta["driver"]]
        if meta.get("schema"):
            command += ["--schema", str(work / "app" / meta["schema"])]
        env = {**os.environ, "PYTHONPATH": str(work / "runtime"),
               "AMLMM_APP_DIR": str(work / "app"), "PYTHONDONTWRITEBYTECODE": "1"}
        try:
            done = subprocess.run(command, cwd=work / "app", env=env, capture_output=True,
                                  text=True, timeout=CHECK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ApiError(400, "DriverCheckTimedOut",
                           f"The driver's init()/run(sample) did not finish within "
                           f"{CHECK_TIMEOUT_S} s.") from None
        for stream in (done.stdout, done.stderr):
            if stream.strip():
                log.line(stream)
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            reason = lines[-1] if lines else f"exit code {done.returncode}"
            raise ApiError(400, "DriverFailed",
                           f"The driver failed its check: {reason}",
                           details=[{"code": "BuildLog",
                                     "message": "The image build log has the traceback."}])
