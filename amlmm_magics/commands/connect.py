"""connect, status, config and local start|stop|status."""

from __future__ import annotations

import argparse
import os
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from amlmm_magics import __version__
from amlmm_magics.commands.context import Context
from amlmm_magics.commands.results import ConfigView, ResourceView
from amlmm_magics.commands.settings import SETTINGS
from amlmm_magics.errors import AmlmmConnectionError, AmlmmUsageError
from amlmm_magics.redact import mask_secret, redact_text

TOKEN_ENV = "AMLMM_ACCESS_TOKEN"
CONNECTION_SETTINGS = ("home", "base_url", "subscription", "resource_group", "account",
                       "api_version", "credential", "scope", "storage_sas_url_env")
_AZURE_OPTIONS = (("url", "--url", "base_url"), ("subscription", "--subscription", "subscription"),
                  ("resource_group", "--resource-group", "resource_group"),
                  ("account", "--account", "account"))


def _home(ctx: Context) -> Any:
    from amlmm_magics.local.home import Home

    return Home.resolve(ctx.settings.home)


def connect_local(ctx: Context) -> Any:
    from amlmm_magics.connection import connect_local as connect

    return connect(_home(ctx).root)


def make_credential(kind: str, ctx: Context) -> Any:
    """The credential object of ``--credential KIND`` (azure-identity imported only here)."""
    if kind == "token":
        from amlmm_magics.api import StaticTokenCredential

        token = os.environ.get(TOKEN_ENV, "").strip()
        if not token:
            raise AmlmmConnectionError(f"{ctx.command}: --credential token reads the token "
                                       f"from {TOKEN_ENV}, which is not set")
        return StaticTokenCredential(token)
    try:
        from azure import identity
    except ImportError:
        raise AmlmmConnectionError(f"{ctx.command}: azure-identity is not installed "
                                   "(pip install azure-identity)") from None
    if kind == "device-code":
        def prompt(uri: str, code: str, expires_on: datetime) -> None:
            when = expires_on.strftime("%H:%M") if expires_on else "soon"
            ctx.out.rich(
                f"To sign in, open {uri} and enter the code {code} (expires {when}).",
                f"To sign in, open <a href='{uri}' target='_blank'>{uri}</a> and enter the "
                f"code <code style='font-size:120%'>{code}</code> (expires {when}).")
        return identity.DeviceCodeCredential(prompt_callback=prompt)
    classes = {"default": identity.DefaultAzureCredential, "cli": identity.AzureCliCredential,
               "environment": identity.EnvironmentCredential,
               "managed-identity": identity.ManagedIdentityCredential}
    return classes[kind]()


def storage_sas_url(variable: str | None, ctx: Context) -> str | None:
    """The container SAS URL from the environment variable *named* by the setting."""
    if not variable:
        return None
    value = os.environ.get(variable, "").strip()
    if not value:
        raise AmlmmConnectionError(f"{ctx.command}: the environment variable {variable} "
                                   "(--storage-sas-url-env) is not set")
    if urlsplit(value).scheme not in ("http", "https"):
        raise AmlmmConnectionError(f"{ctx.command}: the environment variable {variable} does "
                                   "not hold an http(s) container SAS URL")
    return value


def connect_azure(ctx: Context, *, url: str, subscription: str, resource_group: str,
                  account: str, credential: str, api_version: str,
                  storage_env: str | None) -> Any:
    from amlmm_magics.connection import connect_azure as connect

    sas = storage_sas_url(storage_env, ctx)
    try:
        return connect(url, subscription, resource_group, account,
                       make_credential(credential, ctx), storage_sas_url=sas,
                       api_version=api_version, scope=ctx.settings.scope)
    except ValueError as exc:  # the client's own argument checks (e.g. not an http(s) URL)
        raise AmlmmUsageError.of(f"{ctx.command}", exc) from None


def connect_from_settings(ctx: Context) -> Any:
    """The lazy connection: Azure when the settings name an account URL, else local."""
    s = ctx.settings
    if not s.base_url:
        return connect_local(ctx)
    missing = [flag for _, flag, name in _AZURE_OPTIONS if not getattr(s, name)]
    if missing:
        raise AmlmmConnectionError(
            f"{ctx.command}: the base_url setting names an Azure account, but these settings "
            f"are missing: {', '.join(m.lstrip('-').replace('-', '_') for m in missing)}")
    return connect_azure(ctx, url=s.base_url, subscription=s.subscription,
                         resource_group=s.resource_group, account=s.account,
                         credential=s.credential, api_version=s.api_version,
                         storage_env=s.storage_sas_url_env)


def connect(args: argparse.Namespace, ctx: Context) -> None:
    s = ctx.settings
    given = [flag for dest, flag, _ in _AZURE_OPTIONS if getattr(args, dest)]
    if args.local and given:
        raise AmlmmUsageError(f"amlmm connect: error: --local cannot be combined with "
                              f"{', '.join(given)}")
    azure = not args.local and bool(given or s.base_url)
    ctx.session.disconnect()
    if not azure:
        conn = connect_local(ctx)
        ctx.session.connection = conn
        ctx.out.info(f"Connected to the embedded backend at {conn.client.base_url} "
                     f"(home {conn.home}).")
        return None
    values = {name: getattr(args, dest) or getattr(s, name) for dest, _, name in _AZURE_OPTIONS}
    missing = [flag for _, flag, name in _AZURE_OPTIONS if not values[name]]
    if missing:
        raise AmlmmUsageError(f"amlmm connect: error: an Azure connection needs --url, "
                              f"--subscription, --resource-group and --account (or their "
                              f"settings); missing: {', '.join(missing)}")
    conn = connect_azure(ctx, url=values["base_url"], subscription=values["subscription"],
                         resource_group=values["resource_group"], account=values["account"],
                         credential=args.credential or s.credential,
                         api_version=args.api_version or s.api_version,
                         storage_env=args.storage_sas_url_env or s.storage_sas_url_env)
    # One cheap request proves the URL, the account and the credential (device code: the
    # sign-in prompt shows now, not in the middle of a later command).
    conn.client.list_models(count=1).take(1)
    ctx.session.connection = conn
    ctx.out.info(f"Connected to account {values['account']!r} (subscription "
                 f"{values['subscription']}, resource group {values['resource_group']}) at "
                 f"{conn.client.base_url} as {_identity(conn)}.")
    return None


def _identity(conn: Any) -> str:
    credential = conn.client.credential
    name = type(credential).__name__
    if name == "StaticTokenCredential":
        return f"static token {mask_secret(str(credential.get_token('').token))}"
    return name


def status(args: argparse.Namespace, ctx: Context) -> ResourceView:
    from amlmm_magics.local import daemon

    s = ctx.settings
    info: dict[str, Any] = {"amlmm_magics": __version__, "apiVersion": s.api_version}
    conn = ctx.current_connection()
    if conn is None and not s.base_url and daemon.status(_home(ctx)) is None:
        # Status never starts anything.
        info.update(backend="local (not running: it starts on the first command, or with "
                            "`local start`)", home=str(_home(ctx).root))
        return ResourceView(info, "status", title="amlmm status")
    conn = conn or ctx.connection()
    client = conn.client
    info.update(backend=conn.backend, url=client.base_url,
                account=f"{client.subscription_id}/{client.resource_group}/{client.account_name}",
                identity=_identity(conn),
                storage=redact_text(conn.storage_sas_url) if conn.storage_sas_url else "none")
    if conn.backend == "local":
        running = daemon.status(_home(ctx))
        if running is not None:
            info.update(home=str(running.home), pid=running.pid,
                        backendVersion=running.version or "unknown")
    return ResourceView(info, "status", title="amlmm status")


def config(args: argparse.Namespace, ctx: Context) -> ConfigView:
    s = ctx.settings
    rows = []
    for spec in SETTINGS:
        value = s.values[spec.name]
        envs = " / ".join((spec.env, *spec.fallback_env))
        rows.append((spec.name, "" if value is None else str(value), s.sources[spec.name], envs))
    return ConfigView(rows)


def local_start(args: argparse.Namespace, ctx: Context) -> None:
    from amlmm_magics.local import daemon

    info = daemon.start(_home(ctx))
    ctx.out.info(f"The embedded backend runs at {info.url} (pid {info.pid}, home {info.home}).")


def local_stop(args: argparse.Namespace, ctx: Context) -> None:
    from amlmm_magics.local import daemon

    home = _home(ctx)
    conn = ctx.session.connection
    if conn is not None and conn.backend == "local" and conn.home == home.root:
        ctx.session.disconnect()
    if daemon.stop(home):
        ctx.out.info(f"Stopped the embedded backend (home {home.root}); its services stopped "
                     "with it and start again with it.")
    else:
        ctx.out.info(f"The embedded backend was not running (home {home.root}).")


def local_status(args: argparse.Namespace, ctx: Context) -> ResourceView | None:
    from amlmm_magics.local import daemon

    home = _home(ctx)
    info = daemon.status(home)
    if info is None:
        ctx.out.info(f"The embedded backend is not running (home {home.root}).")
        return None
    return ResourceView({"state": "running", "url": info.url, "pid": info.pid,
                         "home": str(info.home), "version": info.version or "unknown",
                         "token": mask_secret(info.token)}, "local backend",
                        title="Embedded backend")
