"""Where things are in a service, for every layer that builds or describes one: the file
name a model or asset gets beside the driver, and the app folder and port in an image."""

from __future__ import annotations

from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

APP_DIR_IN_IMAGE = "/var/amlmm/app"
SCORING_PORT = 5001
# Manifest targetRuntime properties: the 2017 ones, and ours.
PIP_REQUIREMENTS = "pipRequirements"
CONDA_ENV_FILE = "condaEnvFile"
SCHEMA_ASSET = "schemaAssetId"


def file_name_of(url: str, fallback: str) -> str:
    """The last path segment of a URL (the file name in the service), else ``fallback``."""
    name = unquote(PurePosixPath(urlsplit(url).path).name)
    return _safe_name(name) or _safe_name(fallback) or "asset"


def _safe_name(name: str) -> str:
    name = name.replace("\\", "_").replace("/", "_").strip()
    return "" if name in ("", ".", "..") else name
