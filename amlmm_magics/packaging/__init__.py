"""Notebook objects → deployable artifacts: model files, driver programs, requirements.

Knows nothing of HTTP and needs no IPython: plain objects and module functions work too.
"""

from amlmm_magics.packaging.driver import (
    DriverProgram,
    ModelBinding,
    driver_from_cell,
    driver_from_functions,
)
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

__all__ = [
    "DriverProgram",
    "ModelArtifact",
    "ModelBinding",
    "PackagingError",
    "RequirementsReport",
    "RequirementsWarning",
    "choose_format",
    "conda_environment",
    "driver_from_cell",
    "driver_from_functions",
    "infer_requirements",
    "loader_name",
    "loader_source",
    "modules_of_source",
    "package_path",
    "resolve_requirements",
    "serialize_model",
    "write_requirements",
]
