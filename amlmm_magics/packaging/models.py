"""Model files from objects in memory and from paths, with the metadata a registration needs.

Large models are streamed: joblib writes arrays in 16 MiB chunks, and cloudpickle (pickle
protocol 5) hands contiguous array memory straight to the file, so neither holds a second
copy of the data. The extra pickling passes used to inspect an object (library versions,
the path to an unpicklable attribute) write to a null sink and keep array buffers
out-of-band, so they never copy array data either.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import mimetypes
import os
import pickle
import platform
import re
import stat
import sys
import tarfile
import tempfile
import types
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amlmm_magics.packaging.errors import PackagingError
from amlmm_magics.packaging.requirements import (
    distributions_of_module,
    installed_version,
    is_standard_library,
)

FORMATS = ("joblib", "cloudpickle", "file", "folder")
OCTET_STREAM = "application/octet-stream"
GZIP = "application/gzip"
_PICKLE_SUFFIXES = {"joblib": ".joblib", "cloudpickle": ".pkl"}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_ESTIMATOR_LIBRARIES = frozenset({"sklearn", "xgboost", "lightgbm"})
_ARRAY_CLASSES = frozenset({("numpy", "ndarray"), ("pandas", "DataFrame"), ("pandas", "Series")})
_PROTOCOL = 5
_MAX_WALK_DEPTH = 100
_ATOMIC = (str, bytes, int, float, complex, bool, type(None))
_FILE_TYPES = (
    io.FileIO,
    io.BufferedReader,
    io.BufferedWriter,
    io.BufferedRandom,
    io.BufferedRWPair,
    io.TextIOWrapper,
)
_DATABASE_MODULES = frozenset(
    {"sqlite3", "_sqlite3", "psycopg", "psycopg2", "pymysql", "MySQLdb", "pyodbc", "pymongo",
     "redis", "cx_Oracle", "oracledb", "sqlalchemy", "duckdb"}
)


@dataclass
class ModelArtifact:
    """A model file ready to upload and register, and what to say about it."""

    path: Path
    file_name: str
    mime_type: str
    unpack: bool
    format: str
    size: int
    sha256: str
    tags: list[str] = field(default_factory=list)
    description: str = ""
    libraries: dict[str, str] = field(default_factory=dict)
    python_version: str = field(default_factory=platform.python_version)


# ---------------------------------------------------------------- objects in memory


def choose_format(obj: Any) -> str:
    """``joblib`` for estimators and array-heavy data, ``cloudpickle`` for everything else."""
    return "joblib" if _is_estimator(obj) or _is_array_heavy(obj) else "cloudpickle"


def serialize_model(
    obj: Any,
    dest_dir: Path | str,
    *,
    name: str,
    format: str | None = None,
    label: str | None = None,
) -> ModelArtifact:
    """Write ``obj`` to ``dest_dir/<name>.joblib`` or ``.pkl``; ``label`` names it in errors."""
    _check_model_name(name)
    if format is not None and format not in _PICKLE_SUFFIXES:
        raise PackagingError(f"Unknown model format {format!r}: use joblib or cloudpickle")
    label = label or name
    fmt = format or choose_format(obj)
    recorder = _ModuleRecorder()
    if fmt == "joblib":
        fmt = _check_joblib(obj, label, recorder, explicit=format is not None)
    path = _make_dir(Path(dest_dir)) / f"{name}{_PICKLE_SUFFIXES[fmt]}"
    if fmt == "joblib":
        pickler: type[Any] = _ScanPickler
        dump = _dump_joblib
    else:
        pickler = _cloud_pickler_class()
        dump = functools.partial(_dump_cloudpickle, recorder=recorder)
    try:
        _write_atomically(path, lambda tmp: dump(obj, tmp))
    except PackagingError:
        raise
    except Exception as exc:  # whatever a __reduce__ raises: find the part that caused it
        raise _unpicklable(obj, label, pickler, exc) from None
    return _pickle_artifact(obj, path, fmt, _libraries(recorder.modules))


def _check_joblib(obj: Any, label: str, recorder: _ModuleRecorder, *, explicit: bool) -> str:
    """Pickle ``obj`` into a null sink as joblib would; answer the format to really use."""
    failure = _try_pickle(obj, _ScanPickler, recorder)
    if not explicit and (failure is not None or recorder.main_names):
        # Plain pickle saves notebook classes by reference, which a service cannot resolve.
        recorder.modules.clear()
        return "cloudpickle"
    if recorder.main_names:
        names = ", ".join(recorder.main_names)
        raise PackagingError(
            f"Cannot save {label} with joblib: it uses {names} defined in the notebook, which "
            "only cloudpickle can carry to a service; leave the format unset or use cloudpickle"
        )
    if failure is not None:
        raise _unpicklable(obj, label, _ScanPickler, failure)
    return "joblib"


def _dump_joblib(obj: Any, tmp: Path) -> None:
    import joblib

    joblib.dump(obj, tmp)


def _dump_cloudpickle(obj: Any, tmp: Path, *, recorder: _ModuleRecorder) -> None:
    with tmp.open("wb") as file:
        _cloud_pickler_class()(file, recorder).dump(obj)


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Let ``write`` fill a temporary file next to ``path``, then rename it into place."""
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as exc:
        raise PackagingError(f"Cannot write {path}: {exc.strerror or exc}") from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise PackagingError(f"Cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _make_dir(directory: Path) -> Path:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or exc
        raise PackagingError(f"Cannot create the folder {directory}: {reason}") from exc
    return directory


def _pickle_artifact(obj: Any, path: Path, fmt: str, libraries: dict[str, str]) -> ModelArtifact:
    size, sha256 = _size_and_digest(path)
    python = platform.python_version()
    class_name = _type_name(type(obj))
    tags = [f"format={fmt}", f"python={python}"]
    tags += [f"{dist}={version}" for dist, version in libraries.items()]
    tags.append(f"class={class_name}")
    return ModelArtifact(
        path=path,
        file_name=path.name,
        mime_type=OCTET_STREAM,
        unpack=False,
        format=fmt,
        size=size,
        sha256=sha256,
        tags=tags,
        description=_describe_object(obj, fmt, libraries, python, size),
        libraries=libraries,
        python_version=python,
    )


def _describe_object(
    obj: Any, fmt: str, libraries: dict[str, str], python: str, size: int
) -> str:
    cls = type(obj)
    origin = ""
    if cls.__module__ == "__main__":
        origin = " defined in the notebook"
    else:
        dist = next((d for d in distributions_of_module(cls.__module__) if d in libraries), None)
        if dist:
            origin = f" from {dist} {libraries[dist]}"
    return (
        f"{cls.__qualname__}{origin}, saved with {fmt} under Python {python} "
        f"({_human_size(size)})."
    )


def _is_estimator(obj: Any) -> bool:
    if isinstance(obj, type):
        return False
    if type(obj).__module__.partition(".")[0] in _ESTIMATOR_LIBRARIES:
        return True
    return hasattr(obj, "fit") and hasattr(obj, "get_params")


def _is_array(obj: Any) -> bool:
    return any(
        (cls.__module__.partition(".")[0], cls.__name__) in _ARRAY_CLASSES
        for cls in type(obj).__mro__
    )


def _is_array_heavy(obj: Any) -> bool:
    if _is_array(obj):
        return True
    if isinstance(obj, dict):
        values: Iterable[Any] = obj.values()
    elif isinstance(obj, list | tuple):
        values = obj
    else:
        return False
    flags = [_is_array(value) for value in values]
    return sum(flags) * 2 > len(flags)


def _check_model_name(name: str) -> None:
    if not _NAME_RE.match(name):
        raise PackagingError(
            f"Model name {name!r} cannot name a file: use letters, digits, '.', '-' and '_', "
            "starting with a letter or digit"
        )


# ------------------------------------------------------------ pickling with a record


class _ModuleRecorder:
    """Notes the module of every object a pickler meets, in the order first met."""

    def __init__(self) -> None:
        self.modules: dict[str, None] = {}
        self.main_names: dict[str, None] = {}

    def see(self, obj: Any) -> None:
        if isinstance(obj, types.ModuleType):
            self._add(obj.__name__, None)
            return
        cls = type(obj)
        self._add(cls.__module__, cls.__qualname__)
        if isinstance(obj, type | types.FunctionType | types.BuiltinFunctionType):
            self._add(getattr(obj, "__module__", None), getattr(obj, "__qualname__", None))

    def _add(self, module: object, qualname: object) -> None:
        if not isinstance(module, str):
            return
        self.modules.setdefault(module, None)
        if module == "__main__" and isinstance(qualname, str):
            self.main_names.setdefault(qualname, None)


def _refuse_open_file(obj: Any) -> None:
    # cloudpickle would store a readable file's contents; a service needs a file, not a handle.
    if isinstance(obj, _FILE_TYPES) and not any(
        obj is stream for stream in (sys.stdin, sys.stdout, sys.stderr)
    ):
        raise TypeError(f"cannot pickle {_type_name(type(obj))!r} object")


def _is_plain_array(obj: Any) -> bool:
    cls = type(obj)
    return cls.__name__ == "ndarray" and cls.__module__ == "numpy" and not obj.dtype.hasobject


_SKIPPED_ARRAY = (tuple, ())


class _ScanPickler(pickle.Pickler):
    """Plain pickle, as joblib uses it, recording the modules of what it pickles.

    With ``scan=True`` the output is thrown away, so arrays of plain numbers (which always
    pickle) are skipped: numpy would copy a non-contiguous array's data to pickle it.
    """

    def __init__(
        self, file: Any, recorder: _ModuleRecorder, *, scan: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(file, protocol=_PROTOCOL, **kwargs)
        self._recorder = recorder
        self._scan = scan

    def reducer_override(self, obj: Any) -> Any:
        self._recorder.see(obj)
        _refuse_open_file(obj)
        return _SKIPPED_ARRAY if self._scan and _is_plain_array(obj) else NotImplemented


@functools.cache
def _cloud_pickler_class() -> type[pickle.Pickler]:
    import cloudpickle

    class _CloudScanPickler(cloudpickle.Pickler):
        """cloudpickle, recording the modules of what it pickles."""

        def __init__(
            self, file: Any, recorder: _ModuleRecorder, *, scan: bool = False, **kwargs: Any
        ) -> None:
            super().__init__(file, protocol=_PROTOCOL, **kwargs)
            self._recorder = recorder
            self._scan = scan

        def reducer_override(self, obj: Any) -> Any:
            self._recorder.see(obj)
            _refuse_open_file(obj)
            if self._scan and _is_plain_array(obj):
                return _SKIPPED_ARRAY
            return super().reducer_override(obj)

    return _CloudScanPickler


class _NullSink:
    def write(self, data: Any) -> int:
        return len(data)


def _out_of_band(_buffer: pickle.PickleBuffer) -> bool:
    # False keeps the buffer out of the stream: array data is neither copied nor written.
    return False


def _try_pickle(obj: Any, pickler: type[Any], recorder: _ModuleRecorder) -> Exception | None:
    try:
        pickler(_NullSink(), recorder, scan=True, buffer_callback=_out_of_band).dump(obj)
    except Exception as exc:  # anything a __reduce__ may raise means "cannot pickle"
        return exc
    return None


def _libraries(modules: Iterable[str]) -> dict[str, str]:
    """Distribution → installed version for the third-party modules met while pickling."""
    libraries: dict[str, str] = {}
    for module in modules:
        if module.startswith("__main__") or is_standard_library(module):
            continue
        for dist in distributions_of_module(module):
            version = installed_version(dist)
            if version and dist not in libraries:
                libraries[dist] = version
    return libraries


# ------------------------------------------------- finding what cannot be pickled


def _unpicklable(obj: Any, label: str, pickler: type[Any], exc: Exception) -> PackagingError:
    path, leaf, leaf_exc = _find_leaf(obj, label, pickler, exc, set(), 0)
    return PackagingError(f"Cannot serialize {path}: {_why_unpicklable(leaf, leaf_exc)}")


def _find_leaf(
    obj: Any, path: str, pickler: type[Any], exc: Exception, seen: set[int], depth: int
) -> tuple[str, Any, Exception]:
    """Descend from ``obj`` into the first part that fails to pickle, as deep as it goes."""
    seen.add(id(obj))
    if depth < _MAX_WALK_DEPTH:
        for child_path, child in _children(obj, path):
            if id(child) in seen or isinstance(child, _ATOMIC):
                continue
            child_exc = _try_pickle(child, pickler, _ModuleRecorder())
            if child_exc is not None:
                return _find_leaf(child, child_path, pickler, child_exc, seen, depth + 1)
    return path, obj, exc


def _children(obj: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(obj, dict):
        for index, (key, value) in enumerate(obj.items()):
            yield f"{path}[{key!r}]", value
            yield f"{path}[key {index}]", key
    elif isinstance(obj, list | tuple):
        for index, item in enumerate(obj):
            yield f"{path}[{index}]", item
    elif isinstance(obj, set | frozenset):
        for index, item in enumerate(obj):
            yield f"{path}[set item {index}]", item
    else:
        yield from _state_children(obj, path)


def _state_children(obj: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Attributes as pickle sees them: ``__getstate__`` (``__dict__`` and ``__slots__``)."""
    if isinstance(obj, type | types.ModuleType):
        return
    try:
        state = obj.__getstate__()
    except Exception:
        return
    if isinstance(state, dict):
        mappings = [state]
    elif isinstance(state, tuple) and len(state) == 2 and all(
        part is None or isinstance(part, dict) for part in state
    ):
        mappings = [part for part in state if part]
    elif state is None or state is obj:
        return
    else:
        yield f"{path}.__getstate__()", state
        return
    for mapping in mappings:
        for key, value in mapping.items():
            yield f"{path}.{key}", value


def _why_unpicklable(leaf: Any, exc: Exception) -> str:
    kind = resource_kind(leaf)
    fix = "drop the attribute or re-create it in init()"
    hint = f"{kind} cannot be sent to a service; {fix}" if kind else fix
    if isinstance(exc, TypeError) and "pickle" in str(exc):
        return f"{_type_name(type(leaf))} objects cannot be pickled ({hint})"
    return f"{type(exc).__name__}: {exc} ({hint})"


def resource_kind(obj: Any) -> str | None:
    cls = type(obj)
    top = cls.__module__.partition(".")[0]
    if isinstance(obj, io.IOBase):
        return "open files"
    if isinstance(obj, types.GeneratorType | types.AsyncGeneratorType):
        return "generators"
    if isinstance(obj, types.CoroutineType):
        return "coroutines"
    if top == "_thread" or cls.__name__ in {"lock", "RLock", "Semaphore", "Condition"}:
        return "locks"
    if top in {"socket", "ssl", "_socket"}:
        return "network connections"
    if top in _DATABASE_MODULES:
        return "database connections"
    return None


def _type_name(cls: type) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


# --------------------------------------------------------------------------- paths


def package_path(path: Path | str, dest_dir: Path | str) -> ModelArtifact:
    """A file is used as is; a folder is packed as ``dest_dir/<folder name>.tar.gz``."""
    path = Path(path).expanduser()
    if path.is_dir():
        return _pack_folder(path, Path(dest_dir))
    if path.is_file():
        return _plain_file(path)
    raise PackagingError(f"No such file or folder: {path}")


def _plain_file(path: Path) -> ModelArtifact:
    size, sha256 = _size_and_digest(path)
    return ModelArtifact(
        path=path,
        file_name=path.name,
        mime_type=_guess_mime_type(path.name),
        unpack=False,
        format="file",
        size=size,
        sha256=sha256,
        tags=["format=file"],
        description=f"The file {path.name} ({_human_size(size)}), registered as is.",
    )


def _guess_mime_type(file_name: str) -> str:
    mime_type, encoding = mimetypes.guess_type(file_name, strict=False)
    if encoding == "gzip":
        return GZIP
    return mime_type if mime_type and not encoding else OCTET_STREAM


def _pack_folder(folder: Path, dest_dir: Path) -> ModelArtifact:
    root = folder.resolve()
    name = Path(os.path.abspath(folder)).name  # the name the user sees, even for a link
    target = _make_dir(dest_dir).resolve() / f"{name}.tar.gz"
    counts = {"files": 0, "bytes": 0}

    def write(tmp: Path) -> None:
        # mtime=0 and no file name in the gzip header: same folder, same archive bytes.
        with tmp.open("wb") as raw, gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, mtime=0
        ) as gz, tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            skip = {target, tmp.resolve()}
            _add_entry(tar, root, name, root, counts)
            for entry in _tree(root):
                if entry not in skip:
                    arcname = f"{name}/{entry.relative_to(root).as_posix()}"
                    _add_entry(tar, entry, arcname, root, counts)

    _write_atomically(target, write)
    size, sha256 = _size_and_digest(target)
    files, total = counts["files"], _human_size(counts["bytes"])
    return ModelArtifact(
        path=target,
        file_name=target.name,
        mime_type=GZIP,
        unpack=True,
        format="folder",
        size=size,
        sha256=sha256,
        tags=["format=folder", f"files={files}"],
        description=(
            f"The folder {name}/ ({files} files, {total}) packed as {target.name}; "
            f"the service unpacks it into {name}/."
        ),
    )


def _tree(root: Path) -> Iterator[Path]:
    """Every entry under ``root`` in sorted order; linked folders are not descended."""
    with os.scandir(root) as scan:
        entries = sorted(scan, key=lambda entry: entry.name)
    for entry in entries:
        yield Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            yield from _tree(Path(entry.path))


def _add_entry(
    tar: tarfile.TarFile, path: Path, arcname: str, root: Path, counts: dict[str, int]
) -> None:
    info = tar.gettarinfo(str(path), arcname)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if info.issym():
        info.linkname = _link_inside(path, root)
    if info.isreg():
        with path.open("rb") as data:
            tar.addfile(info, data)
        counts["files"] += 1
        counts["bytes"] += info.size
    elif info.isdir() or info.issym() or info.islnk():
        tar.addfile(info)
    else:
        kind = _special_file_kind(path)
        raise PackagingError(f"Cannot pack {path}: it is a {kind}, not a file, folder or link")


def _link_inside(link: Path, root: Path) -> str:
    """The link's target relative to the link, refusing targets outside the folder."""
    target = Path(os.path.realpath(link))
    if not target.is_relative_to(root):
        raise PackagingError(
            f"Cannot pack {link}: it links to {target}, outside {root}; copy the file into "
            "the folder instead"
        )
    return os.path.relpath(target, os.path.realpath(link.parent))


def _special_file_kind(path: Path) -> str:
    mode = path.lstat().st_mode
    kinds = [(stat.S_ISFIFO, "named pipe"), (stat.S_ISSOCK, "socket"),
             (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device")]
    return next((name for test, name in kinds if test(mode)), "special file")


# ------------------------------------------------------------------------- helpers


def _size_and_digest(path: Path) -> tuple[int, str]:
    with path.open("rb") as file:
        digest = hashlib.file_digest(file, "sha256").hexdigest()
    return path.stat().st_size, digest


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


# ------------------------------------------------------------- loaders for drivers

_LOADERS = {
    "joblib": '''def _amlmm_load_joblib(path):
    import joblib

    return joblib.load(path)
''',
    "cloudpickle": '''def _amlmm_load_cloudpickle(path):
    import cloudpickle

    with open(path, "rb") as file:
        return cloudpickle.load(file)
''',
    # Files and folders are whatever the user registered: the driver gets their path.
    "file": '''def _amlmm_load_file(path):
    return path
''',
    "folder": '''def _amlmm_load_folder(path):
    return path
''',
}


def loader_name(format: str) -> str:
    """Name of the function :func:`loader_source` defines for ``format``."""
    _check_format(format)
    return f"_amlmm_load_{format}"


def loader_source(format: str) -> str:
    """Source of a function ``_amlmm_load_<format>(path)`` that loads a model file."""
    _check_format(format)
    return _LOADERS[format]


def _check_format(format: str) -> None:
    if format not in _LOADERS:
        raise PackagingError(f"Unknown model format {format!r}: use one of {', '.join(FORMATS)}")
