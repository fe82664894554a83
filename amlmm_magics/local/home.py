"""The embedded backend's home folder (``$AMLMM_HOME``, default ``~/.amlmm``) and its files."""

from __future__ import annotations

import base64
import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOME_ENV = "AMLMM_HOME"


def default_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".amlmm").expanduser().resolve()


def write_private(path: Path, data: bytes | str) -> None:
    """Write a file readable by its owner only, atomically (never a half-written secret)."""
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Secrets:
    """What the daemon keeps across restarts: its API token and its blob account key."""

    token: str
    account_key: bytes

    def __repr__(self) -> str:
        return "Secrets(***)"


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def resolve(cls, root: str | os.PathLike[str] | None = None) -> Home:
        return cls(Path(root).expanduser().resolve() if root else default_home())

    # -- layout ------------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        """local.json: pid, url, token and container SAS URL of the running daemon."""
        return self.root / "local.json"

    @property
    def secrets_file(self) -> Path:
        return self.root / "secrets.json"

    @property
    def lock_file(self) -> Path:
        return self.root / "daemon.lock"

    @property
    def database(self) -> Path:
        return self.root / "amlmm.sqlite"

    @property
    def blobs(self) -> Path:
        return self.root / "blobs"

    @property
    def contexts(self) -> Path:
        return self.root / "contexts"

    @property
    def services(self) -> Path:
        return self.root / "services"

    @property
    def data_collection(self) -> Path:
        return self.root / "datacollection"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def daemon_log(self) -> Path:
        return self.logs / "daemon.log"

    def service_dir(self, service_id: str) -> Path:
        return self.services / service_id

    def create(self) -> Home:
        for folder in (
            self.root,
            self.blobs,
            self.contexts,
            self.services,
            self.data_collection,
            self.logs,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        return self

    # -- secrets -----------------------------------------------------------------------------
    def load_or_create_secrets(self) -> Secrets:
        """The daemon's token and account key; made once, so SAS URLs outlive restarts."""
        if self.secrets_file.exists():
            data: dict[str, Any] = json.loads(self.secrets_file.read_text())
            return Secrets(data["token"], base64.b64decode(data["accountKey"]))
        made = Secrets(secrets.token_urlsafe(32), secrets.token_bytes(32))
        write_private(
            self.secrets_file,
            json.dumps(
                {"token": made.token, "accountKey": base64.b64encode(made.account_key).decode()}
            ),
        )
        return made
