"""Driver programs: a Python file defining ``init()`` and ``run(input)`` for the scoring runtime.

Two ways to get one: a cell whose body *is* the driver (:func:`driver_from_cell`), or the
scoring function written in the notebook plus exactly what it needs from the notebook
(:func:`driver_from_functions`): imports, constants and helper definitions are copied as
source; the manifest's models become globals that the generated ``init()`` loads from their
registered files. The runtime imports only ``amlmm_magics.scoring.model_path`` for that.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import json
import linecache
import math
import re
import symtable
import sys
import textwrap
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amlmm_magics.packaging.errors import PackagingError
from amlmm_magics.packaging.models import ModelArtifact, loader_name, loader_source, resource_kind
from amlmm_magics.packaging.requirements import modules_of_source

DEFAULT_FILE_NAME = "score.py"
_MODEL_PATH_IMPORT = "from amlmm_magics.scoring import model_path"
# Names every module has; a function reading them means the driver's own, not the notebook's.
_MODULE_DUNDERS = frozenset(
    {"__name__", "__doc__", "__file__", "__spec__", "__loader__", "__package__",
     "__builtins__", "__cached__", "__annotations__", "__dict__"}
)
_MAX_LITERAL_CHARS = 100_000
_MAX_LITERAL_DEPTH = 20
_IPYTHON_INPUT_RE = re.compile(r"^<ipython-input-(\d+)-[0-9a-f]+>$")
_IN_LABEL_RE = re.compile(r"^In \[(\d+)\]$")


@dataclass
class ModelBinding:
    """A notebook global that is a model of the manifest, loaded by the driver's ``init()``.

    ``obj`` is the in-memory object registered in this session, when there is one: any global
    bound to that very object is treated as this model too.
    """

    global_name: str
    model_name: str
    format: str
    libraries: dict[str, str] = field(default_factory=dict)
    python_version: str | None = None
    obj: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_artifact(
        cls, global_name: str, model_name: str, artifact: ModelArtifact, obj: Any = None
    ) -> ModelBinding:
        return cls(
            global_name=global_name,
            model_name=model_name,
            format=artifact.format,
            libraries=dict(artifact.libraries),
            python_version=artifact.python_version,
            obj=obj,
        )


@dataclass
class DriverProgram:
    """A driver's source and what a manifest needs to know about it."""

    source: str
    file_name: str = DEFAULT_FILE_NAME
    modules: set[str] = field(default_factory=set)
    model_globals: dict[str, str] = field(default_factory=dict)
    origin: list[str] = field(default_factory=list)

    def write(self, directory: Path | str) -> Path:
        path = Path(directory) / self.file_name
        path.write_text(self.source, encoding="utf-8")
        return path


# ------------------------------------------------------------------ a cell as driver


def driver_from_cell(source: str, *, label: str | None = None) -> DriverProgram:
    """The body of a ``%%amlmm manifest create`` cell, checked to be a driver program."""
    tree = _compile_driver(source, label or "<driver>")
    defined = _top_level_definitions(tree)
    if "run" not in defined:
        names = ", ".join(name for name, node in defined.items() if not _is_import(node))
        raise PackagingError(
            f"The driver program must define run(input); it defines: {names or 'nothing'}"
        )
    run = defined["run"]
    if isinstance(run, ast.FunctionDef | ast.AsyncFunctionDef) and not _takes_an_argument(run):
        raise PackagingError(_RUN_SIGNATURE_MESSAGE.format(name="run"))
    text = source if source.endswith("\n") else f"{source}\n"
    return DriverProgram(
        source=text, modules=modules_of_source(text), origin=[label] if label else []
    )


_RUN_SIGNATURE_MESSAGE = "{name}() must take the request input as its argument, as in run(input)"


def _compile_driver(source: str, filename: str) -> ast.Module:
    try:
        tree = ast.parse(source, filename=filename)
        compile(tree, filename, "exec")  # some errors ('return' outside a function) only here
    except SyntaxError as exc:
        raise PackagingError(
            f"Syntax error in the driver program, line {exc.lineno}: {exc.msg}"
        ) from None
    except ValueError as exc:  # e.g. null bytes
        raise PackagingError(f"The driver program cannot be compiled: {exc}") from None
    return tree


def _top_level_definitions(tree: ast.Module) -> dict[str, ast.AST]:
    """Names bound at module level (also inside if/try/with blocks), in order of appearance."""
    defined: dict[str, ast.AST] = {}
    for node in _module_level_statements(tree.body):
        for name in _bound_names(node):
            defined.setdefault(name, node)
    return defined


def _module_level_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    for node in body:
        yield node
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        for attr in ("body", "orelse", "finalbody"):
            yield from _module_level_statements(getattr(node, attr, []))
        for handler in getattr(node, "handlers", []):
            yield from _module_level_statements(handler.body)


def _bound_names(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.Import | ast.ImportFrom):
        return [(alias.asname or alias.name).partition(".")[0] for alias in node.names]
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AnnAssign | ast.AugAssign):
        targets = [node.target]
    return [
        n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)
    ]


def _is_import(node: ast.AST) -> bool:
    return isinstance(node, ast.Import | ast.ImportFrom)


def _takes_an_argument(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    args = node.args
    return bool(args.posonlyargs or args.args or args.vararg)


# ------------------------------------------------------- functions from the notebook


def driver_from_functions(
    run: Callable[..., Any],
    init: Callable[[], Any] | None = None,
    *,
    namespace: Mapping[str, Any],
    models: Mapping[str, ModelBinding],
) -> DriverProgram:
    """A driver from the notebook's scoring function, its optional init and their closure.

    ``models`` maps model names to the notebook globals that hold them. Raises
    :class:`PackagingError` naming what the functions use that cannot go into a driver.
    """
    capture = _Capture(namespace, models.values())
    # init first: the globals it sets are not taken from the notebook for run either.
    user_init = capture.entry(init, "init") if init is not None else None
    run_name = capture.entry(run, "run")
    capture.finish()
    source = _render(capture, run_name, user_init)
    _check_generated(source)
    return DriverProgram(
        source=source,
        modules=modules_of_source(source),
        model_globals={name: b.model_name for name, b in capture.model_globals.items()},
        origin=capture.origins(),
    )


@dataclass
class _Definition:
    """A function or class of the notebook, copied into the driver as source."""

    name: str
    source: str
    label: str
    aliases: list[str] = field(default_factory=list)


class _Capture:
    """Walks from the entry functions through every notebook name they use."""

    def __init__(self, namespace: Mapping[str, Any], bindings: Iterable[ModelBinding]) -> None:
        self.namespace = namespace
        self.main_modules = {"__main__", namespace.get("__name__")}
        self.bindings: list[ModelBinding] = list(bindings)
        self.imports: dict[str, str] = {}
        self.constants: dict[str, str] = {}
        self.definitions: dict[int, _Definition] = {}
        self.order: list[_Definition] = []
        self.model_globals: dict[str, ModelBinding] = {}
        self.placeholders: dict[str, None] = {}
        self.claims: dict[str, tuple[str, object]] = {}
        self.missing: dict[str, str] = {}
        self.assigned_globals: set[str] = set()
        self.init_globals: set[str] = set()
        self.resolved: set[str] = set()
        self._claim("init", "the generated init()", None)

    # -- entries

    def entry(self, fn: Callable[..., Any], role: str) -> str:
        """Capture ``run`` or ``init``; answer the name it has in the driver."""
        fn = _check_entry_function(fn, role)
        source, label = self._function_source(fn, f"The {role} function {fn.__name__}()")
        def_name = _defined_name(source)
        if role == "init":
            self.init_globals = _global_names(source)[1]
            if def_name == "init":
                source, def_name = _rename_definition(source, "_user_init"), "_user_init"
        elif def_name == "init":
            raise PackagingError("The run function cannot be called init: rename it")
        elif def_name != "run":
            self._claim("run", "def", id(fn))  # the driver's `run = <name>` alias
        definition = _Definition(def_name, source, label)
        self._claim(def_name, "def", id(fn))
        self.definitions[id(fn)] = definition
        self._resolve_references(definition, f"{fn.__name__}()", self._globals_of(fn))
        return def_name

    def finish(self) -> None:
        if self.model_globals:
            self._claim("model_path", "import", _MODEL_PATH_IMPORT)
        for name, user in self.missing.items():
            if name in self.assigned_globals:
                self._add_placeholder(name)
            else:
                raise PackagingError(
                    f"{user} uses '{name}', which is not defined in the notebook: define it "
                    "before creating the driver"
                )
        for name in self.init_globals:
            self._add_placeholder(name)

    def origins(self) -> list[str]:
        labels = dict.fromkeys(d.label for d in self.definitions.values() if d.label)
        return sorted(labels, key=_origin_sort_key)

    # -- references

    def _resolve_references(
        self, definition: _Definition, user: str, scope: Mapping[str, Any]
    ) -> None:
        references, assigned = _global_names(definition.source)
        self.assigned_globals |= assigned
        for name in references:
            if name != definition.name and name not in _MODULE_DUNDERS:
                self._resolve(name, user, scope)

    def _resolve(self, name: str, user: str, scope: Mapping[str, Any]) -> None:
        if name in self.resolved:
            return
        self.resolved.add(name)
        binding = self._binding_for(name, scope)
        if binding is not None:
            self._add_model_global(name, binding)
        elif name in self.init_globals:
            self._add_placeholder(name)
        elif name not in scope:
            if not _is_builtin(name):
                self.missing.setdefault(name, user)
        else:
            self._resolve_value(name, scope[name], user)

    def _resolve_value(self, name: str, value: Any, user: str) -> None:
        if isinstance(value, types.ModuleType):
            self._add_import(name, _module_import(name, value, user))
        elif self._is_notebook_definition(value):
            self._add_definition(name, value, user)
        elif (line := _from_import(name, value)) is not None:
            if line:
                self._add_import(name, line)
        else:
            self._add_constant(name, _constant_source(name, value, user))

    def _binding_for(self, name: str, scope: Mapping[str, Any]) -> ModelBinding | None:
        for binding in self.bindings:
            if binding.global_name == name:
                return binding
        if name in scope:
            value = scope[name]
            for binding in self.bindings:
                if binding.obj is not None and binding.obj is value:
                    return binding
        return None

    def _is_notebook_definition(self, value: Any) -> bool:
        if isinstance(value, type):
            return value.__module__ in self.main_modules
        try:
            fn = inspect.unwrap(value) if callable(value) else value
        except ValueError:
            return False
        return isinstance(fn, types.FunctionType) and fn.__module__ in self.main_modules

    # -- definitions

    def _add_definition(self, name: str, value: Any, user: str) -> None:
        target = value if isinstance(value, type) else inspect.unwrap(value)
        key = id(target)  # a decorated function's source re-creates its wrapper
        if key not in self.definitions:
            if isinstance(target, type):
                source, label = _class_source(target, self.namespace, user, name)
                who = f"class {target.__name__}"
            else:
                _check_function(target, user, name)
                source, label = self._function_source(target, f"{user} uses '{name}', which")
                who = f"{target.__name__}()"
            scope = self._globals_of(target)
            definition = _Definition(_defined_name(source), source, label)
            self._claim(definition.name, "def", key)
            self.definitions[key] = definition  # before descending: recursion terminates
            self._resolve_references(definition, who, scope)
            self.order.append(definition)  # after its dependencies
        definition = self.definitions[key]
        if name != definition.name:
            self._claim(name, "def", key)
            definition.aliases.append(name)

    def _function_source(self, fn: types.FunctionType, subject: str) -> tuple[str, str]:
        try:
            source = textwrap.dedent(inspect.getsource(fn))
        except (OSError, TypeError):
            raise PackagingError(
                f"{subject} has no source code to copy (it was made by exec() or comes from a "
                "compiled module): define it in a notebook cell or a .py file"
            ) from None
        return source, _source_label(fn.__code__.co_filename, self.namespace, fn.__module__)

    def _globals_of(self, obj: Any) -> Mapping[str, Any]:
        """Where the names ``obj`` uses live: the notebook, or its own module's globals."""
        if obj.__module__ in self.main_modules:
            return self.namespace
        if isinstance(obj, types.FunctionType):
            return obj.__globals__
        module = sys.modules.get(obj.__module__)
        return vars(module) if module is not None else self.namespace

    # -- the other kinds of names

    def _add_import(self, name: str, line: str) -> None:
        self._claim(name, "import", line)
        self.imports[name] = line

    def _add_constant(self, name: str, literal: str) -> None:
        self._claim(name, "constant", literal)
        self.constants[name] = literal

    def _add_model_global(self, name: str, binding: ModelBinding) -> None:
        self._claim(name, "model", binding.model_name)
        self.model_globals[name] = binding

    def _add_placeholder(self, name: str) -> None:
        if name not in self.model_globals and name not in self.placeholders:
            self._claim(name, "set by init()", name)
            self.placeholders[name] = None

    def _claim(self, name: str, kind: str, what: object) -> None:
        previous = self.claims.setdefault(name, (kind, what))
        if previous != (kind, what):
            raise PackagingError(
                f"The driver would define '{name}' twice (as {previous[0]} and as {kind}): "
                "rename one of them in the notebook"
            )


# -------------------------------------------------------------- checks and messages


def _check_entry_function(fn: Any, role: str) -> types.FunctionType:
    target = inspect.unwrap(fn) if callable(fn) else fn
    if not isinstance(target, types.FunctionType):
        raise PackagingError(
            f"The {role} function must be a Python function defined with def; "
            f"got {_describe_value(fn)}"
        )
    _check_function(target, None, target.__name__, role)
    _check_entry_signature(target, role)
    return target


def _check_entry_signature(fn: types.FunctionType, role: str) -> None:
    signature = inspect.signature(fn)
    try:
        if role == "run":
            signature.bind(None)
        else:
            signature.bind()
    except TypeError:
        if role == "run":
            raise PackagingError(_RUN_SIGNATURE_MESSAGE.format(name=fn.__name__)) from None
        raise PackagingError(f"{fn.__name__}() must take no arguments to be init()") from None


def _check_function(
    fn: types.FunctionType, user: str | None, name: str, role: str | None = None
) -> None:
    head = f"{user} uses '{name}'," if user else f"The {role} function is"
    if fn.__name__ == "<lambda>":
        raise PackagingError(
            f"{head} a lambda, whose source cannot be captured on its own: define it with def"
        )
    if fn.__code__.co_freevars:
        free = ", ".join(f"'{v}'" for v in fn.__code__.co_freevars)
        what = (
            "a notebook constant or a default argument"
            if len(fn.__code__.co_freevars) == 1
            else "notebook constants or default arguments"
        )
        where = f"{user} uses '{name}'," if user else f"{fn.__name__}() is"
        raise PackagingError(
            f"{where} a closure over {free} from the function that made it: define it at the "
            f"top level of a cell and make {free} {what}"
        )


def _unsupported_value(name: str, value: Any, user: str, reason: str | None = None) -> str:
    kind = resource_kind(value)
    if kind:
        return (
            f"{user} uses '{name}' ({_describe_value(value)}) from the notebook; {kind} cannot "
            "be sent to a service: create it inside init()"
        )
    why = f", {reason}" if reason else ", which is not a model of this manifest"
    return (
        f"{user} uses '{name}' ({_describe_value(value)}) from the notebook{why}: register it "
        f"as a model and pass --model NAME={name}, or create it inside init()"
    )


def _describe_value(value: Any) -> str:
    if isinstance(value, types.BuiltinFunctionType):
        return f"built-in function {value.__name__}"
    if isinstance(value, types.FunctionType):
        return f"function {value.__qualname__}"
    if isinstance(value, type):
        return f"class {value.__qualname__}"
    noun = type(value).__name__
    if isinstance(value, dict | list | tuple | set | frozenset):
        noun = f"{noun} of {len(value)} items"
    # "an ndarray": the article follows the sound, and "nd" is read as letters.
    article = "an" if noun[:1].lower() in "aeiou" or noun.startswith("nd") else "a"
    return f"{article} {noun}"


# ------------------------------------------------------------------------ sources


def _definition_node(source: str) -> ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef:
    try:
        body = ast.parse(source).body
    except SyntaxError:
        body = []
    node = body[0] if len(body) == 1 else None
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        first = source.strip().splitlines()[0] if source.strip() else ""
        raise PackagingError(
            f"Cannot copy this source into a driver, it is not one definition: {first!r}"
        )
    return node


def _defined_name(source: str) -> str:
    return _definition_node(source).name


def _rename_definition(source: str, new_name: str) -> str:
    """Rename the top-level def in ``source`` (on its ``def`` line, after decorators)."""
    node = _definition_node(source)
    lines = source.splitlines(keepends=True)
    index = node.lineno - 1
    pattern = rf"\b(def\s+){re.escape(node.name)}\b"
    lines[index] = re.sub(pattern, rf"\g<1>{new_name}", lines[index], count=1)
    return "".join(lines)


def _global_names(source: str) -> tuple[list[str], set[str]]:
    """Global names ``source`` reads (in order of appearance) and those it assigns."""
    table = symtable.symtable(source, "<captured>", "exec")
    references: dict[str, None] = {}
    assigned: set[str] = set()
    for symbol in table.get_symbols():
        if symbol.is_referenced() and not symbol.is_imported():
            references.setdefault(symbol.get_name(), None)
    for child in table.get_children():
        _collect_globals(child, references, assigned)
    return list(references), assigned


def _collect_globals(
    table: symtable.SymbolTable, references: dict[str, None], assigned: set[str]
) -> None:
    for symbol in table.get_symbols():
        if symbol.is_global() and symbol.is_referenced():
            references.setdefault(symbol.get_name(), None)
        if symbol.is_declared_global() and symbol.is_assigned():
            assigned.add(symbol.get_name())
    for child in table.get_children():
        _collect_globals(child, references, assigned)


def _class_source(
    cls: type, namespace: Mapping[str, Any], user: str, name: str
) -> tuple[str, str]:
    """A class's source; IPython cells need a search, as ``inspect`` finds no file for them."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
        filename = inspect.getsourcefile(cls) or ""
        return source, _source_label(filename, namespace, cls.__module__)
    except (OSError, TypeError):
        pass
    for filename, line in _candidate_locations(cls):
        found = _find_class(filename, cls.__name__, line)
        if found is not None:
            return found, _source_label(filename, namespace, cls.__module__)
    raise PackagingError(
        f"{user} uses '{name}', a class whose source code cannot be found: define it in a "
        "notebook cell or a .py file"
    )


def _candidate_locations(cls: type) -> Iterator[tuple[str, int | None]]:
    """Where the class body may be: its methods' code, then the newest cells."""
    prefix = f"{cls.__qualname__}."
    for value in vars(cls).values():
        fn = getattr(value, "__func__", getattr(value, "fget", value))
        if isinstance(fn, types.FunctionType) and fn.__qualname__.startswith(prefix):
            yield fn.__code__.co_filename, fn.__code__.co_firstlineno
    # A class without methods of its own (or with generated ones, as dataclasses have) can
    # only be found by name; IPython keeps cells in linecache without a modification time.
    cells = [name for name, entry in linecache.cache.items() if len(entry) == 4 and not entry[1]]
    for filename in reversed(cells):
        yield filename, None


def _find_class(filename: str, name: str, line: int | None) -> str | None:
    lines = linecache.getlines(filename)
    try:
        tree = ast.parse("".join(lines))
    except SyntaxError:
        return None
    matches = [
        node for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and node.name == name
        and (line is None or node.lineno <= line <= (node.end_lineno or node.lineno))
    ]
    if not matches:
        return None
    node = matches[-1]
    start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return textwrap.dedent("".join(lines[start - 1 : node.end_lineno]))


def _source_label(filename: str, namespace: Mapping[str, Any], module: str) -> str:
    """``In [N]`` for an IPython cell when the history tells, else the file's name."""
    match = _IPYTHON_INPUT_RE.match(filename)
    if match:
        return f"In [{match.group(1)}]"
    history = namespace.get("_ih", namespace.get("In"))
    lines = linecache.getlines(filename)
    if isinstance(history, list) and lines:
        text = "".join(lines).strip()
        for number in range(len(history) - 1, 0, -1):
            if isinstance(history[number], str) and history[number].strip() == text:
                return f"In [{number}]"
    if filename.startswith("<") or not filename:
        return module if module != "__main__" else filename
    return Path(filename).name


def _origin_sort_key(label: str) -> tuple[int, int, str]:
    match = _IN_LABEL_RE.match(label)
    return (0, int(match.group(1)), label) if match else (1, 0, label)


# ----------------------------------------------------------------- names to source


def _is_builtin(name: str) -> bool:
    # IPython adds display() etc. to builtins; only Python's own builtins exist in a service.
    if not hasattr(builtins, name):
        return False
    value = getattr(builtins, name)
    return getattr(value, "__module__", "builtins") == "builtins" or name in {
        "__build_class__", "__import__"
    }


def _module_import(name: str, module: types.ModuleType, user: str) -> str:
    module_name = module.__name__
    if sys.modules.get(module_name) is not module:
        raise PackagingError(
            f"{user} uses '{name}', a module that cannot be imported by name "
            f"({module_name!r}): import it in a .py file or define what it needs in a cell"
        )
    if module_name == name:
        return f"import {name}"
    parent, _, last = module_name.rpartition(".")
    if parent and last == name:
        return f"from {parent} import {name}"
    return f"import {module_name} as {name}"


def _from_import(name: str, value: Any) -> str | None:
    """``from module import attr [as name]`` for an importable function or class.

    Answers ``""`` for a Python builtin under its own name (nothing to import), ``None``
    when ``value`` is no importable function or class.
    """
    module = getattr(value, "__module__", None)
    attr = getattr(value, "__name__", None)
    if not (isinstance(module, str) and isinstance(attr, str) and callable(value)):
        return None
    if module == "builtins" and attr == name and getattr(builtins, name, None) is value:
        return ""
    for candidate in _public_prefixes(module):
        owner = sys.modules.get(candidate)
        try:
            found = getattr(owner, attr, None) if owner is not None else None
        except Exception:  # lazy modules may fail to import a submodule here
            found = None
        if found is value:
            return f"from {candidate} import {attr}" + (f" as {name}" if name != attr else "")
    return None


def _public_prefixes(module: str) -> Iterator[str]:
    """``a``, ``a.b``, ... up to the first private part, then ``module`` itself."""
    parts = module.split(".")
    for end in range(1, len(parts)):
        if parts[end - 1].startswith("_"):
            break
        yield ".".join(parts[:end])
    yield module


def _constant_source(name: str, value: Any, user: str) -> str:
    try:
        literal = _literal(value, 0)
    except _TooLarge:
        literal = None
        reason = "too large to copy into the driver"
    else:
        reason = None
    if literal is None:
        raise PackagingError(_unsupported_value(name, value, user, reason))
    if len(literal) > _MAX_LITERAL_CHARS:
        reason = "too large to copy into the driver"
        raise PackagingError(_unsupported_value(name, value, user, reason))
    return literal


class _TooLarge(Exception):
    pass


def _literal(value: Any, depth: int) -> str | None:
    """Python source that evaluates to ``value``, for plain data only; else ``None``."""
    if depth > _MAX_LITERAL_DEPTH:
        return None
    kind = type(value)
    if value is None or kind in (bool, int, str, bytes):
        try:
            return repr(value)
        except ValueError:  # an int beyond the digit limit of str()
            raise _TooLarge from None
    if kind is float:
        return repr(value) if math.isfinite(value) else f'float("{value!r}")'
    if kind in (list, tuple, set, frozenset):
        return _sequence_literal(value, depth)
    if kind is dict:
        return _dict_literal(value, depth)
    return None


def _sequence_literal(value: Any, depth: int) -> str | None:
    items = _item_literals(value, depth)
    if items is None:
        return None
    if isinstance(value, set | frozenset):
        items.sort()  # set order depends on hashing: sort for the same driver every time
        body = f"{{{', '.join(items)}}}" if items else ""
        if type(value) is set:
            return body or "set()"
        return f"frozenset({body})"
    if type(value) is tuple:
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    return f"[{', '.join(items)}]"


def _dict_literal(value: dict[Any, Any], depth: int) -> str | None:
    keys = _item_literals(value.keys(), depth)
    values = _item_literals(value.values(), depth)
    if keys is None or values is None:
        return None
    return "{" + ", ".join(f"{k}: {v}" for k, v in zip(keys, values, strict=True)) + "}"


def _item_literals(items: Any, depth: int) -> list[str] | None:
    out: list[str] = []
    size = 0
    for item in items:
        literal = _literal(item, depth + 1)
        if literal is None:
            return None
        size += len(literal) + 2
        if size > _MAX_LITERAL_CHARS:
            raise _TooLarge
        out.append(literal)
    return out


# ------------------------------------------------------------------------- render


def _render(capture: _Capture, run_name: str, user_init: str | None) -> str:
    blocks = [_header(capture.origins())]
    blocks.append(_imports_block(capture))
    if capture.constants:
        blocks.append("".join(f"{n} = {v}\n" for n, v in capture.constants.items()))
    blocks.extend(_definition_block(d) for d in capture.order)
    if capture.model_globals or capture.placeholders:
        blocks.append(_globals_block(capture))
    if capture.model_globals:
        blocks.extend(_loading_blocks(capture))
    entries = {d.name: d for d in capture.definitions.values()}
    if user_init is not None:
        blocks.append(_definition_block(entries[user_init]))
    blocks.append(_init_block(capture, user_init))
    run_block = _definition_block(entries[run_name])
    if run_name != "run":
        run_block += "\n\nrun = " + run_name + "\n"
    blocks.append(run_block)
    return "\n\n".join(block.rstrip("\n") + "\n" for block in blocks if block)


def _header(origins: list[str]) -> str:
    where = ", ".join(origins) if origins else "the notebook"
    return (
        "# Scoring driver generated by amlmm_magics.\n"
        f"# Source: {where}.\n"
        "# init() loads the models of the manifest; run(input) answers one request.\n"
    )


def _imports_block(capture: _Capture) -> str:
    lines = set(capture.imports.values())
    if capture.model_globals:
        lines.add(_MODEL_PATH_IMPORT)
    plain = sorted(line for line in lines if line.startswith("import "))
    from_lines = sorted(line for line in lines if line.startswith("from "))
    return "".join(f"{line}\n" for line in plain + from_lines)


def _definition_block(definition: _Definition) -> str:
    text = definition.source.rstrip("\n") + "\n"
    aliases = [a for a in definition.aliases if a != definition.name]
    if aliases:
        text += "\n\n" + "".join(f"{alias} = {definition.name}\n" for alias in aliases)
    return text


def _globals_block(capture: _Capture) -> str:
    lines = ["# Set by init(): the models of the manifest, loaded from their registered files."]
    lines += [f"{name} = None" for name in capture.model_globals]
    lines += [f"{name} = None" for name in capture.placeholders]
    return "\n".join(lines) + "\n"


def _loading_blocks(capture: _Capture) -> list[str]:
    lines = [
        "# How each model was saved, to explain a failure to load it here.",
        "_AMLMM_MODELS = {",
    ]
    seen: set[str] = set()
    for binding in capture.model_globals.values():
        if binding.model_name in seen:
            continue
        seen.add(binding.model_name)
        libraries = ", ".join(f"{_q(d)}: {_q(v)}" for d, v in binding.libraries.items())
        lines += [
            f"    {_q(binding.model_name)}: {{",
            f"        \"format\": {_q(binding.format)},",
            f"        \"libraries\": {{{libraries}}},",
            f"        \"python\": {_q(binding.python_version or 'unknown')},",
            "    },",
        ]
    lines.append("}")
    formats = dict.fromkeys(b.format for b in capture.model_globals.values())
    return ["\n".join(lines) + "\n", *(loader_source(fmt) for fmt in formats), _LOAD_HELPERS]


def _q(text: str) -> str:
    """A double-quoted Python string literal (JSON strings are valid Python literals)."""
    return json.dumps(text)


_LOAD_HELPERS = '''def _amlmm_load(name, loader):
    try:
        return loader(model_path(name))
    except Exception as exc:
        raise RuntimeError(_amlmm_load_failure(name, exc)) from exc


def _amlmm_load_failure(name, exc):
    import importlib.metadata
    import platform

    saved = _AMLMM_MODELS[name]

    def installed(dist):
        try:
            return f"{dist}={importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            return f"no {dist}"

    then = ", ".join(f"{dist}={version}" for dist, version in saved["libraries"].items())
    now = ", ".join(installed(dist) for dist in saved["libraries"])
    return (
        f"Loading model {name!r} failed ({type(exc).__name__}: {exc}); it was saved "
        f"{'with ' + then + ' ' if then else ''}under Python {saved['python']}; this "
        f"environment has {now + ' ' if now else ''}under Python {platform.python_version()}"
    )
'''


def _init_block(capture: _Capture, user_init: str | None) -> str:
    lines = ["def init():"]
    by_model: dict[str, list[str]] = {}
    formats: dict[str, str] = {}
    for name, binding in capture.model_globals.items():
        by_model.setdefault(binding.model_name, []).append(name)
        formats[binding.model_name] = binding.format
    if by_model:
        lines.append(f"    global {', '.join(capture.model_globals)}")
    for model_name, names in by_model.items():
        targets = " = ".join(names)
        loader = loader_name(formats[model_name])
        lines.append(f"    {targets} = _amlmm_load({_q(model_name)}, {loader})")
    if user_init is not None:
        lines.append(f"    {user_init}()")
    if len(lines) == 1:
        lines.append("    pass")
    return "\n".join(lines) + "\n"


def _check_generated(source: str) -> None:
    try:
        compile(source, DEFAULT_FILE_NAME, "exec")
    except SyntaxError as exc:
        raise PackagingError(
            f"The generated driver does not compile (line {exc.lineno}: {exc.msg}); this is a "
            "bug in amlmm_magics"
        ) from None
