"""The settings every command reads: defaults, environment variables, and what a notebook set.

Precedence: a value set in the notebook (``%config AmlmmMagics.top = 5``, or a config file)
wins, then the environment variable ``AMLMM_<NAME>`` (then, for Azure names, the usual
``AZURE_*`` one), then the default. The magics declare these as traitlets; the command line
reads only the environment. ``%amlmm config`` shows each value and where it came from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from amlmm_magics.errors import AmlmmUsageError

PROGRESS_MODES = ("auto", "widget", "text", "none")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True)
class SettingSpec:
    name: str
    kind: type
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    fallback_env: tuple[str, ...] = ()

    @property
    def env(self) -> str:
        return f"AMLMM_{self.name.upper()}"

    def parse(self, text: str, origin: str) -> Any:
        """A value from an environment variable's text."""
        raw = text.strip()
        if self.kind is bool:
            if raw.lower() in _TRUE:
                return True
            if raw.lower() in _FALSE:
                return False
            raise AmlmmUsageError(f"config: {origin}={text!r} is not a yes/no value "
                                  "(use 1/0, true/false, yes/no, on/off)")
        if self.kind is int:
            if not raw.isdigit() or int(raw) < 1:
                raise AmlmmUsageError(f"config: {origin}={text!r} is not a whole number of at "
                                      "least 1")
            return int(raw)
        if self.kind is float:
            try:
                value = float(raw)
            except ValueError:
                value = -1.0
            if not value >= 0:
                raise AmlmmUsageError(f"config: {origin}={text!r} is not a number of seconds "
                                      "(0 or more)")
            return value
        if self.choices and raw not in self.choices:
            raise AmlmmUsageError(f"config: {origin}={text!r} is not one of "
                                  f"{', '.join(self.choices)}")
        return raw or None


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("top", int, 20, "rows a listing shows unless --top K or --all"),
    SettingSpec("short_errors", bool, True,
                "expected failures show one line; False shows the full traceback"),
    SettingSpec("timeout", float, 0.0,
                "seconds to wait for a long operation before giving up waiting; 0 = no limit"),
    SettingSpec("progress", str, "auto", "progress of long operations: auto|widget|text|none",
                choices=PROGRESS_MODES),
    SettingSpec("home", str, None,
                "the embedded backend's home folder (default ~/.amlmm)"),
    SettingSpec("base_url", str, None, "Azure: the account's service root URL"),
    SettingSpec("subscription", str, None, "Azure: subscription ID",
                fallback_env=("AZURE_SUBSCRIPTION_ID",)),
    SettingSpec("resource_group", str, None, "Azure: resource group",
                fallback_env=("AZURE_RESOURCE_GROUP",)),
    SettingSpec("account", str, None, "Azure: Model Management account name"),
    SettingSpec("api_version", str, "2017-09-01-preview", "API version sent with every request"),
    SettingSpec("credential", str, "default",
                "Azure sign-in: default|cli|device-code|environment|managed-identity|token",
                choices=("default", "cli", "device-code", "environment", "managed-identity",
                         "token")),
    SettingSpec("scope", str, "https://management.core.windows.net/.default",
                "Azure AD scope of the tokens"),
    SettingSpec("compute_resource", str, None,
                "where images build and services run when --compute-resource is not given "
                "(default on the embedded backend: local; Azure: the cluster's ARM ID)"),
    SettingSpec("storage_sas_url_env", str, None,
                "NAME of the environment variable holding the blob container SAS URL (never "
                "the URL itself)"),
    SettingSpec("dry_run", bool, True,
                "manifest create runs init() and run(sample) in a fresh process first"),
)
SPECS: dict[str, SettingSpec] = {s.name: s for s in SETTINGS}


@dataclass
class Settings:
    """The effective settings of one command, and where each value came from."""

    values: dict[str, Any]
    sources: dict[str, str] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    @classmethod
    def resolve(cls, explicit: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None, *, strict: bool = True) -> Settings:
        """``explicit``: the values the notebook set. With ``strict`` off a malformed
        environment value is reported in ``sources`` instead of raising (``%amlmm config``)."""
        explicit = explicit or {}
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for spec in SETTINGS:
            if spec.name in explicit:
                values[spec.name], sources[spec.name] = explicit[spec.name], "%config"
                continue
            values[spec.name], sources[spec.name] = spec.default, "default"
            for env in (spec.env, *spec.fallback_env):
                if env in environ:
                    try:
                        values[spec.name] = spec.parse(environ[env], env)
                        sources[spec.name] = f"environment ({env})"
                    except AmlmmUsageError as exc:
                        if strict:
                            raise
                        sources[spec.name] = f"default; {exc.message.removeprefix('config: ')}"
                    break
        return cls(values, sources)
