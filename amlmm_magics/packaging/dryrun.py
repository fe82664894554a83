"""The local dry run: the driver, its models and schema in a fresh process, before anything
is registered, so a driver that only worked because of notebook state fails here, in seconds.

It runs the same check an image build runs (``python -m amlmm_magics.scoring.check``):
import the driver, ``init()``, and ``run(sample)`` when the schema has a sample.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amlmm_magics.packaging.driver import DriverProgram
from amlmm_magics.packaging.errors import PackagingError
from amlmm_magics.packaging.schema import write_schema

TIMEOUT_S = 300.0


@dataclass(frozen=True)
class LocalModel:
    """A model file (or a tar archive to unpack) as the service will see it."""

    name: str
    path: Path
    unpack: bool = False
    version: int | None = None


@dataclass(frozen=True)
class DryRunReport:
    output: str  # the check's report: init() and run(sample) timings and a result preview


def dry_run(driver: DriverProgram, models: list[LocalModel], schema: dict[str, Any] | None,
            *, timeout: float = TIMEOUT_S, python: str = sys.executable) -> DryRunReport:
    """Run the driver's ``init()`` and ``run(sample)`` in a fresh process; raise
    :class:`PackagingError` with the driver's own error line when either fails."""
    with tempfile.TemporaryDirectory(prefix="amlmm-dryrun-") as tmp:
        app = Path(tmp) / "app"
        app.mkdir()
        driver_path = driver.write(app)
        entries = []
        for model in models:
            entries.append({"name": model.name, "version": model.version or 1,
                            "id": f"local-{model.name}", "path": _place(model, app)})
        (app / "models.json").write_text(json.dumps({"models": entries}))
        command = [python, "-m", "amlmm_magics.scoring.check", "--app-dir", str(app),
                   "--driver", driver_path.name]
        if schema is not None:
            command += ["--schema", str(write_schema(schema, Path(tmp)))]
        env = {**os.environ, "AMLMM_APP_DIR": str(app), "PYTHONDONTWRITEBYTECODE": "1"}
        try:
            done = subprocess.run(command, cwd=app, env=env, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            raise PackagingError(f"The dry run of the driver did not finish within "
                                 f"{timeout:g} s (is init() or run() stuck?).") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit code {done.returncode}"
        raise PackagingError(f"The driver failed its dry run in a fresh process: {reason}")
    return DryRunReport(done.stdout.strip())


def _place(model: LocalModel, app: Path) -> str:
    """Put a model where the service would: its file name, or unpacked; answer that path."""
    if model.unpack:
        with tarfile.open(model.path, "r:*") as tar:
            tar.extractall(app, filter="data")
            tops = sorted({Path(m.name).parts[0] for m in tar.getmembers() if m.name})
        return tops[0] if len(tops) == 1 else "."
    target = app / model.path.name
    try:
        os.link(model.path, target)  # no copy of a large model
    except OSError:
        shutil.copyfile(model.path, target)
    return target.name
