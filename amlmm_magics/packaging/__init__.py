"""Notebook objects → deployable artifacts: model files, driver programs, requirements.

Knows nothing of HTTP and needs no IPython: plain objects and module functions work too.
"""

from amlmm_magics.packaging.driver import (
    DriverProgram,
    ModelBinding,
    driver_from_cell,
    driver_from_functions,
)
from amlmm_magics.packaging.dryrun import DryRunReport, LocalModel, dry_run
from amlmm_magics.packaging.errors import PackagingError
from amlmm_magics.packaging.models import (
    ModelArtifact,
    choose_format,
    loader_name,
    loader_source,
    package_path,
    serialize_model,
)
from amlmm_magics.packaging.requirements import (
    RequirementsReport,
    RequirementsWarning,
    conda_environment,
    infer_requirements,
    modules_of_source,
    resolve_requirements,
    write_requirements,
)
from amlmm_magics.packaging.schema import schema_from_sample, write_schema

__all__ = [
    "DriverProgram",
    "DryRunReport",
    "LocalModel",
    "ModelArtifact",
    "ModelBinding",
    "PackagingError",
    "RequirementsReport",
    "RequirementsWarning",
    "choose_format",
    "conda_environment",
    "driver_from_cell",
    "driver_from_functions",
    "dry_run",
    "infer_requirements",
    "loader_name",
    "loader_source",
    "modules_of_source",
    "package_path",
    "resolve_requirements",
    "schema_from_sample",
    "serialize_model",
    "write_requirements",
    "write_schema",
]
