"""Imports → pip requirements pinned to the versions installed here; conda environment text."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import json
import platform
import re
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from amlmm_magics.packaging.errors import PackagingError

# The scoring runtime provides amlmm_magics itself; pinning it would fight the runtime's copy.
_OWN_MODULES = frozenset({"amlmm_magics"})
_OWN_DISTRIBUTIONS = frozenset({"amlmm-magics"})
# A PEP 508 name followed by what may follow a name; anything else (a URL, a path) is unnamed.
_REQUIREMENT_NAME_RE = re.compile(
    r"^([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:[\[(<>=!~;@]|$)"
)
# pip's rule: '#' starts a comment at the start of a line or after whitespace (not in a URL).
_COMMENT_RE = re.compile(r"(^|\s)#.*$")
_YAML_PLAIN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=<>!~+-]*$")


class RequirementsWarning(UserWarning):
    """Some imported modules come from no installed distribution."""


@dataclass
class RequirementsReport:
    """The requirement lines and what could not be mapped to a distribution."""

    lines: list[str]
    unresolved: list[str] = field(default_factory=list)
    distributions: dict[str, list[str]] = field(default_factory=dict)


def canonical_name(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def modules_of_source(source: str) -> set[str]:
    """Top-level names of the modules ``source`` imports anywhere (relative imports ignored)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise PackagingError(f"Syntax error in the source, line {exc.lineno}: {exc.msg}") from None
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.partition(".")[0])
    return modules


def is_standard_library(module: str) -> bool:
    top = module.partition(".")[0]
    return top in sys.stdlib_module_names or top in sys.builtin_module_names


@functools.cache
def _packages_distributions() -> dict[str, tuple[str, ...]]:
    # Reads every installed distribution's file list: about a second on a data-science venv.
    mapping = importlib.metadata.packages_distributions()
    return {module: tuple(dict.fromkeys(dists)) for module, dists in mapping.items()}


def refresh_installed() -> None:
    """Forget the cached module → distribution map (after a ``pip install``)."""
    _packages_distributions.cache_clear()


def distributions_of_module(module: str) -> tuple[str, ...]:
    """Installed distributions that provide ``module``'s top-level package."""
    return _packages_distributions().get(module.partition(".")[0], ())


def installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def resolve_requirements(
    modules: Iterable[str], *, overrides: Iterable[str] = ()
) -> RequirementsReport:
    """Map ``modules`` to pinned distributions, apply ``overrides``, report the unmapped."""
    inferred: dict[str, str] = {}
    unresolved: set[str] = set()
    sources: dict[str, list[str]] = {}
    for top in sorted({m.partition(".")[0] for m in modules}):
        if not top or top in _OWN_MODULES or is_standard_library(top):
            continue
        provided_by = distributions_of_module(top)
        if not provided_by:
            unresolved.add(top)
        dists = [d for d in provided_by if canonical_name(d) not in _OWN_DISTRIBUTIONS]
        for dist in dists:
            version = installed_version(dist)
            inferred[canonical_name(dist)] = f"{dist}=={version}" if version else dist
        if dists:
            sources[top] = dists
    unnamed, named = _parse_overrides(overrides)
    inferred.update(named)
    unresolved -= {m for m in unresolved if canonical_name(m) in named}
    lines = unnamed + [inferred[key] for key in sorted(inferred)]
    return RequirementsReport(lines=lines, unresolved=sorted(unresolved), distributions=sources)


def infer_requirements(modules: Iterable[str], *, overrides: Iterable[str] = ()) -> list[str]:
    """Pinned requirement lines for ``modules``; warns about modules no distribution provides."""
    report = resolve_requirements(modules, overrides=overrides)
    if report.unresolved:
        warnings.warn(
            RequirementsWarning(_unresolved_message(report.unresolved)), stacklevel=2
        )
    return report.lines


def _unresolved_message(modules: list[str]) -> str:
    return (
        f"No installed distribution provides {', '.join(modules)}: they are not in the "
        "requirements; add a requirement line for them or ship them with the driver"
    )


def _parse_overrides(lines: Iterable[str]) -> tuple[list[str], dict[str, str]]:
    """Split requirement-file lines into unnamed lines (options, URLs) and named ones."""
    unnamed: list[str] = []
    named: dict[str, str] = {}
    for raw in lines:
        for line in raw.splitlines() or [""]:
            text = _COMMENT_RE.sub("", line).strip()
            if not text:
                continue
            match = None if text.startswith("-") else _REQUIREMENT_NAME_RE.match(text)
            if match:
                named[canonical_name(match.group(1))] = text
            else:
                unnamed.append(text)
    return unnamed, named


def write_requirements(lines: Iterable[str], path: Path | str) -> Path:
    """Write a requirements.txt with one line per requirement."""
    path = Path(path)
    text = "".join(f"{line}\n" for line in lines)
    path.write_text(text, encoding="utf-8")
    return path


def conda_environment(lines: Iterable[str], python_version: str | None = None) -> str:
    """The 2017 ``conda_dependencies.yml`` form: python, pip, and the pip requirement lines."""
    version = python_version or platform.python_version()
    out = [
        "# Conda environment of the scoring service, written by amlmm_magics.",
        "name: project_environment",
        "dependencies:",
        f"  - {_yaml_scalar(f'python={version}')}",
        "  - pip",
    ]
    pip_lines = list(lines)
    if pip_lines:
        out.append("  - pip:")
        out.extend(f"    - {_yaml_scalar(line)}" for line in pip_lines)
    else:
        out.append("  - pip: []")
    return "\n".join(out) + "\n"


def _yaml_scalar(text: str) -> str:
    # A JSON string is a valid YAML double-quoted scalar, so no YAML library is needed.
    return text if _YAML_PLAIN_RE.match(text) else json.dumps(text)
