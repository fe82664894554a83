"""Pydantic models of the spec's definitions: request bodies (validated strictly) and answers.

Requests forbid unknown fields and use strict JSON types, so a typo or a string where a
number belongs is one clear 400 instead of being ignored or coerced. The read-only fields the
2017 clients echoed back (``id``, ``version``, ``createdAt``...) are accepted and ignored, and
``ID``/``URL`` are accepted for ``id``/``url`` (DESIGN.md, spec notes).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from amlmm_magics.names import NAME_MAX_LENGTH, NAME_PATTERN, NAME_RULE

# pattern -> what a user is told when a value does not match it
PATTERN_HINTS: dict[str, str] = {}


def _pattern(regex: str, hint: str) -> str:
    PATTERN_HINTS[regex] = hint
    return regex


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http(s) URL")
    return value


Name = Annotated[
    str,
    Field(
        min_length=1,
        max_length=NAME_MAX_LENGTH,
        pattern=_pattern(NAME_PATTERN, NAME_RULE),
    ),
]
ServiceName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=63,
        pattern=_pattern(
            r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
            "a service name is a DNS label: lower-case letters, digits and '-', not at either end",
        ),
    ),
]
Ident = Annotated[
    str,
    Field(
        min_length=1,
        max_length=255,
        pattern=_pattern(r"^[^\x00-\x1f/\\]+$", "no slashes or control characters"),
    ),
]
Text = Annotated[str, Field(max_length=4000)]
Tag = Annotated[
    str,
    Field(
        min_length=1, max_length=1000, pattern=_pattern(r"^[^\x00-\x1f]+$", "no control characters")
    ),
]
MimeType = Annotated[
    str,
    Field(
        min_length=3,
        max_length=255,
        pattern=_pattern(
            r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(\s*;[^\x00-\x1f]*)?$",
            "a MIME type such as application/octet-stream",
        ),
    ),
]
Url = Annotated[
    str,
    Field(
        min_length=8,
        max_length=8192,
        pattern=_pattern(r"^[^\x00-\x20]+$", "no spaces or control characters"),
        description="An http(s) URL, usually a blob SAS URL.",
    ),
    AfterValidator(_http_url),
]
# Kubernetes quantities, the units the spec names for reservations.
CpuQuantity = Annotated[
    str,
    Field(
        max_length=32,
        description="e.g. 0.5, 250m, 2",
        pattern=_pattern(
            r"^([0-9]+(\.[0-9]+)?|\.[0-9]+)m?$", "a Kubernetes CPU quantity such as 250m"
        ),
    ),
]
MemoryQuantity = Annotated[
    str,
    Field(
        max_length=32,
        description="e.g. 512Mi, 1Gi, 1G",
        pattern=_pattern(
            r"^([0-9]+(\.[0-9]+)?|\.[0-9]+)([EPTGMk]i?|Ki|e[0-9]+)?$",
            "a Kubernetes memory quantity such as 512Mi or 1Gi",
        ),
    ),
]

_READ_ONLY = frozenset({"id", "ID", "version", "createdAt", "createdTime"})
_ALIASES = {"ID": "id", "URL": "url"}


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _spec_tolerance(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = {}
        for key, value in data.items():
            name = _ALIASES.get(key, key)
            if name in cls.model_fields:
                out.setdefault(name, value)
            elif key not in _READ_ONLY:
                out[key] = value  # unknown: left for extra="forbid" to report
        return out


class ModelRequest(Request):
    name: Name
    mimeType: MimeType
    url: Url
    description: Text | None = None
    tags: list[Tag] | None = Field(default=None, max_length=100)
    unpack: bool | None = None


class Asset(Request):
    id: Ident | None = None
    url: Url
    mimeType: MimeType | None = None
    unpack: bool | None = None


class TargetRuntime(Request):
    runtimeType: Literal["Python", "SparkPython"]
    properties: dict[Annotated[str, Field(max_length=255)], Annotated[str, Field(max_length=8192)]]


class ManifestRequest(Request):
    name: Name
    driverProgram: Ident
    assets: list[Asset] = Field(min_length=1, max_length=100)
    targetRuntime: TargetRuntime
    modelIds: list[Ident] | None = Field(default=None, max_length=100)
    modelType: Literal["Registered"] | None = None
    description: Text | None = None
    webserviceType: Literal["Realtime"] | None = None

    @model_validator(mode="after")
    def _driver_is_an_asset(self) -> ManifestRequest:
        ids = [asset.id for asset in self.assets if asset.id]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"asset ids must be unique; repeated: {', '.join(duplicates)}")
        if self.driverProgram not in ids:
            raise ValueError(
                f"driverProgram '{self.driverProgram}' must be the id of one of the assets"
            )
        return self


class ImageRequest(Request):
    name: Name
    manifestId: Ident
    computeResourceId: Ident
    imageType: Literal["Docker"]
    description: Text | None = None


class ComputeResource(Request):
    id: Ident
    type: Literal["Cluster"] | None = None


class AutoScaler(Request):
    autoscaleEnabled: bool | None = None
    minReplicas: Annotated[int, Field(ge=0, le=100)] | None = None
    maxReplicas: Annotated[int, Field(ge=1, le=100)] | None = None
    refreshPeriodInSeconds: Annotated[int, Field(ge=1, le=3600)] | None = None
    targetUtilization: Annotated[int, Field(ge=0, le=100)] | None = None

    @model_validator(mode="after")
    def _bounds(self) -> AutoScaler:
        if (
            self.minReplicas is not None
            and self.maxReplicas is not None
            and self.minReplicas > self.maxReplicas
        ):
            raise ValueError("minReplicas must not exceed maxReplicas")
        return self


class ContainerResourceReservation(Request):
    cpu: CpuQuantity | None = None
    memory: MemoryQuantity | None = None


class ModelDataCollection(Request):
    eventHubEnabled: bool | None = None
    storageEnabled: bool | None = None


class ServiceSettings(Request):
    """The fields a service's create and update requests share."""

    numReplicas: Annotated[int, Field(ge=0, le=100)] | None = None
    autoScaler: AutoScaler | None = None
    containerResourceReservation: ContainerResourceReservation | None = None
    dataCollection: ModelDataCollection | None = None
    appInsightsEnabled: bool | None = None
    maxConcurrentRequestsPerContainer: Annotated[int, Field(ge=1, le=10_000)] | None = None

    @model_validator(mode="after")
    def _replicas_or_autoscaler(self) -> ServiceSettings:
        if self.numReplicas is not None and self.autoScaler and self.autoScaler.autoscaleEnabled:
            raise ValueError("numReplicas cannot be given when the autoscaler is enabled")
        return self


class ServiceCreateRequest(ServiceSettings):
    name: ServiceName
    imageId: Ident
    computeResource: ComputeResource


class ServiceUpdateRequest(ServiceSettings):
    imageId: Ident | None = None


class ServiceRegenerateKeyRequest(Request):
    keyType: Literal["Primary", "Secondary"] | None = Field(
        default=None, description="The key to regenerate; both when left out."
    )


class ComputeResourceRequest(Request):
    """Registers a Ray cluster as a compute resource (an extension of the spec)."""

    type: Literal["Ray"]
    dashboardUrl: Url = Field(description="The Ray dashboard's HTTP address, e.g. "
                                          "http://head:8265.")
    serveUrl: Url | None = Field(default=None, description="Where Serve's HTTP proxy answers "
                                 "(default: the dashboard's host, port 8000).")
    token: Annotated[str, Field(min_length=1, max_length=4096)] | None = Field(
        default=None, description="The cluster's token; kept by the backend, never returned.")


# -- answers (documentation of what the service sends; every field optional) ---------------


class Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorDetail(Answer):
    code: str
    message: str


class ErrorResponse(Answer):
    code: str
    message: str
    details: list[ErrorDetail] | None = None
    statusCode: int | None = None


class AssetOut(Answer):
    id: str | None = None
    url: str | None = None
    mimeType: str | None = None
    unpack: bool | None = None


class TargetRuntimeOut(Answer):
    runtimeType: str
    properties: dict[str, str]


class Model(Answer):
    id: str | None = None
    name: str
    version: int | None = None
    createdAt: str | None = None
    mimeType: str
    url: str
    description: str | None = None
    tags: list[str] | None = None
    unpack: bool | None = None


class Manifest(Answer):
    id: str | None = None
    name: str
    version: int | None = None
    createdTime: str | None = None
    driverProgram: str
    assets: list[AssetOut]
    targetRuntime: TargetRuntimeOut
    modelIds: list[str] | None = None
    modelType: str | None = None
    description: str | None = None
    webserviceType: str | None = None


OperationState = Literal["NotStarted", "Running", "Cancelled", "Succeeded", "Failed"]


class Image(Answer):
    id: str | None = None
    name: str | None = None
    version: int | None = None
    createdTime: str | None = None
    creationState: OperationState | None = None
    description: str | None = None
    error: ErrorResponse | None = None
    imageBuildLogUri: str | None = None
    imageLocation: str | None = None
    imageType: str | None = None
    manifest: Manifest | None = None
    computeResourceId: str | None = None


class ComputeResourceOut(Answer):
    id: str | None = None
    type: str | None = None


class ServiceResponse(Answer):
    ID: str | None = None
    name: str | None = None
    createdAt: str | None = None
    updatedAt: str | None = None
    state: OperationState | None = None
    scoringUri: str | None = None
    image: Image | None = None
    manifest: Manifest | None = None
    models: list[Model] | None = None
    computeResource: ComputeResourceOut
    numReplicas: int | None = None
    autoScaler: dict[str, Any] | None = None
    containerResourceReservation: dict[str, str] | None = None
    dataCollection: dict[str, bool] | None = None
    appInsightsEnabled: bool | None = None
    maxConcurrentRequestsPerContainer: int | None = None
    error: ErrorResponse | None = None


class ComputeResourceInfo(Answer):
    id: str
    type: str
    dashboardUrl: str | None = None
    serveUrl: str | None = None
    createdAt: str | None = None
    tokenSet: bool | None = None
    description: str | None = None


class ComputeResourceList(Answer):
    value: list[ComputeResourceInfo]


class Deployment(Answer):
    id: str | None = None
    serviceName: str | None = None
    imageId: str | None = None
    status: str | None = None
    createdAt: str | None = None
    expiredAt: str | None = None


class AsyncOperationStatus(Answer):
    id: str | None = None
    operationType: Literal["Image", "Service"] | None = None
    state: OperationState | None = None
    createdTime: str | None = None
    endTime: str | None = None
    resourceLocation: str | None = None
    error: ErrorResponse | None = None


class AuthKeys(Answer):
    primaryKey: str | None = None
    secondaryKey: str | None = None


class PaginatedModelList(Answer):
    value: list[Model] | None = None
    nextLink: str | None = None


class PaginatedManifestList(Answer):
    value: list[Manifest] | None = None
    nextLink: str | None = None


class PaginatedImageList(Answer):
    value: list[Image] | None = None
    nextLink: str | None = None


class PaginatedServiceList(Answer):
    value: list[ServiceResponse] | None = None
    nextLink: str | None = None


def describe_validation_errors(errors: list[dict[str, Any]]) -> tuple[str, list[dict[str, str]]]:
    """One readable line (the first problem) and a detail per problem, from pydantic errors."""
    details = []
    for error in errors:
        loc = list(error.get("loc", ()))
        if loc and loc[0] in ("body", "query", "path", "header"):
            loc = loc[1:]  # where in the request is clear from the name itself
        where = ".".join(str(p) for p in loc)
        kind = error.get("type", "")
        message = error.get("msg", "invalid")
        if kind == "extra_forbidden":
            message = "is not a field of this request"
        elif kind == "missing":
            message = "is required"
        elif kind == "string_pattern_mismatch":
            pattern = (error.get("ctx") or {}).get("pattern", "")
            message = f"has an invalid format: {PATTERN_HINTS.get(pattern, 'see the API')}"
        message = message.removeprefix("Value error, ")
        message = message[:1].lower() + message[1:]
        if where and where != "body":
            joined = message.startswith(("is ", "has "))
            message = f"{where} {message}" if joined else f"{where}: {message}"
        details.append({"code": _code_of(kind), "message": message})
    first = details[0]["message"] if details else "The request is not valid."
    more = f" (and {len(details) - 1} more problem(s))" if len(details) > 1 else ""
    return f"Invalid request: {first}{more}.", details


def _code_of(kind: str) -> str:
    return {"missing": "MissingField", "extra_forbidden": "UnknownField"}.get(kind, "InvalidField")
