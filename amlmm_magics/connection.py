"""A connection: the client of one account, plus where to upload files for it.

``connect_local()`` starts (or finds) the embedded backend and connects to it over HTTP with
its token; the notebook layer and the command line never call the backend any other way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amlmm_magics.api import ModelManagementClient
from amlmm_magics.redact import redact_text

LOCAL_ACCOUNT = ("local", "local", "local")  # subscription, resource group, account


@dataclass
class Connection:
    client: ModelManagementClient
    storage_sas_url: str | None
    backend: str  # "local" or "azure"
    home: Path | None = None

    def __repr__(self) -> str:
        sas = redact_text(self.storage_sas_url) if self.storage_sas_url else None
        return f"Connection({self.backend}, {self.client.account_url!r}, storage={sas!r})"


def connect_local(home: str | os.PathLike[str] | None = None, **client_options: Any) -> Connection:
    """Start or find the embedded backend of ``home`` ($AMLMM_HOME, ~/.amlmm) and connect."""
    from amlmm_magics.local import daemon
    from amlmm_magics.local.home import Home

    info = daemon.start(Home.resolve(home))
    client = ModelManagementClient(info.url, *LOCAL_ACCOUNT, info.token, **client_options)
    return Connection(client, info.blob_container_sas_url, "local", info.home)


def connect_azure(
    base_url: str,
    subscription_id: str,
    resource_group: str,
    account_name: str,
    credential: Any = None,
    *,
    storage_sas_url: str | None = None,
    **client_options: Any,
) -> Connection:
    client = ModelManagementClient(base_url, subscription_id, resource_group, account_name,
                                   credential, **client_options)
    return Connection(client, storage_sas_url, "azure")
