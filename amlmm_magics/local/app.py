"""The embedded backend's HTTP surface: every route of the spec, on FastAPI.

Every API route needs ``Authorization: Bearer <token>`` and ``api-version``. Failures are the
spec's ErrorResponse: 400 for anything malformed (never FastAPI's 422 shape), 401, 404 for
unknown IDs, 409 for conflicts. The OpenAPI document is published at ``/swagger.json``; the
routes the spec does not have (service logs, collected data) are marked as extensions there.
The blob endpoint is mounted at ``/amlmmlocal``.
"""

# No `from __future__ import annotations`: FastAPI reads these route signatures at runtime,
# and they name types local to create_app.
import hmac
import logging
import os
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from amlmm_magics import __version__
from amlmm_magics.local import schemas
from amlmm_magics.local.backend import Account, Backend
from amlmm_magics.local.errors import ApiError
from amlmm_magics.local.store import Filter

log = logging.getLogger("amlmm_magics.local")

API_VERSION = "2017-09-01-preview"
PREFIX = ("/api/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}"
          "/accounts/{accountName}")
MAX_API_BODY = 4 * 1024 * 1024
EXTENSION = "Extension of the embedded backend (not in the 2017 spec)."

_bearer = HTTPBearer(auto_error=False, description="The daemon's token (local.json).")
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": schemas.ErrorResponse, "description": text}
    for code, text in [(400, "The request is not valid."), (401, "Missing or wrong token."),
                       (404, "No such resource."), (409, "Conflict with the current state."),
                       (413, "Request body too large."), ("default", "Error response.")]
}


def _error(status: int, code: str, message: str, details: list[dict[str, str]] | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(ApiError(status, code, message, details).body(), status_code=status,
                        headers=headers)


class LimitApiBody:
    """Refuse oversized API request bodies before anything reads them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api/"):
            length = dict(scope["headers"]).get(b"content-length", b"0")
            if length.isdigit() and int(length) > MAX_API_BODY:
                response = _error(413, "RequestTooLarge",
                                  f"Request bodies of this API are limited to {MAX_API_BODY} "
                                  "bytes.")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(backend: Backend, token: str) -> FastAPI:
    app = FastAPI(
        title="Azure ML Model Management Account API (amlmm_magics embedded backend)",
        version=API_VERSION,
        description="The 2017-09-01-preview Model Management Account API, served locally. "
                    "Routes marked as extensions are not part of the published spec.",
        openapi_url="/swagger.json", docs_url=None, redoc_url=None,
    )
    app.state.backend = backend
    # No redirects between "/x/" and "/x": a redirect turned an ID of "%2F" ("/models//")
    # into the listing of models. A path with a stray slash is not a route of this API.
    app.router.redirect_slashes = False
    _install_error_handlers(app)
    app.add_middleware(LimitApiBody)

    def authorize(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        given = credentials.credentials if credentials else ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise ApiError(401, "Unauthorized",
                           "Missing or wrong bearer token; the embedded backend's token is in "
                           "$AMLMM_HOME/local.json.", headers={"WWW-Authenticate": "Bearer"})

    def api_version(
        version: Annotated[Literal["2017-09-01-preview"], Query(
            alias="api-version", description="Version of the API.")],
    ) -> None:
        return None

    def account_of(
        subscriptionId: Annotated[str, Path(min_length=1, max_length=255)],
        resourceGroupName: Annotated[str, Path(min_length=1, max_length=255)],
        accountName: Annotated[str, Path(min_length=1, max_length=255)],
    ) -> Account:
        return Account(subscriptionId, resourceGroupName, accountName)

    AccountDep = Annotated[Account, Depends(account_of)]
    Id = Annotated[str, Path(min_length=1, max_length=255)]
    Count = Annotated[str | None, Query(description="Number of items in a page (1-1000).")]
    SkipToken = Annotated[str | None, Query(alias="$skipToken",
                                            description="Continuation token of nextLink.")]
    api = APIRouter(prefix=PREFIX, dependencies=[Depends(authorize), Depends(api_version)],
                    responses=_ERRORS)

    def page(request: Request, items: list[dict[str, Any]], token: str | None) -> JSONResponse:
        body: dict[str, Any] = {"value": items}
        if token:
            body["nextLink"] = str(request.url.include_query_params(**{"$skipToken": token}))
        return JSONResponse(body)

    def accepted(request: Request, account: Account, operation: dict[str, Any]) -> JSONResponse:
        location = (f"{str(request.base_url).rstrip('/')}{account.path}/operations/"
                    f"{operation['id']}?api-version={API_VERSION}")
        return JSONResponse(operation, status_code=202, headers={"Operation-Location": location})

    # -- models ------------------------------------------------------------------------------
    @api.post("/models", tags=["Models"], summary="Register a model",
              responses={200: {"model": schemas.Model}})
    def register_model(body: schemas.ModelRequest, account: AccountDep) -> JSONResponse:
        return JSONResponse(backend.register_model(account, body))

    @api.get("/models", tags=["Models"], summary="Query the list of models",
             responses={200: {"model": schemas.PaginatedModelList}})
    def list_models(request: Request, account: AccountDep, name: str | None = None,
                    tag: str | None = None, count: Count = None,
                    skip: SkipToken = None) -> JSONResponse:
        filters = [Filter.equals("$.name", name)] if name is not None else []
        if tag is not None:
            filters.append(Filter.has_item("$.tags", tag))
        return page(request, *backend.listing("model", account, filters, count, skip))

    @api.get("/models/{id}", tags=["Models"], summary="Get model details",
             responses={200: {"model": schemas.Model}})
    def get_model(id: Id, account: AccountDep) -> JSONResponse:
        return JSONResponse(backend.get("model", account, id))

    # -- manifests ---------------------------------------------------------------------------
    @api.post("/manifests", tags=["Manifests"], summary="Register a manifest",
              responses={200: {"model": schemas.Manifest}})
    def register_manifest(body: schemas.ManifestRequest, account: AccountDep) -> JSONResponse:
        return JSONResponse(backend.register_manifest(account, body))

    @api.get("/manifests", tags=["Manifests"], summary="Query the list of manifests",
             responses={200: {"model": schemas.PaginatedManifestList}})
    def list_manifests(request: Request, account: AccountDep, modelId: str | None = None,
                       manifestName: str | None = None, count: Count = None,
                       skip: SkipToken = None) -> JSONResponse:
        filters = [Filter.has_item("$.modelIds", modelId)] if modelId is not None else []
        if manifestName is not None:
            filters.append(Filter.equals("$.name", manifestName))
        return page(request, *backend.listing("manifest", account, filters, count, skip))

    @api.get("/manifests/{id}", tags=["Manifests"], summary="Get manifest details",
             responses={200: {"model": schemas.Manifest}})
    def get_manifest(id: Id, account: AccountDep) -> JSONResponse:
        return JSONResponse(backend.get("manifest", account, id))

    # -- images ------------------------------------------------------------------------------
    @api.post("/images", tags=["Images"], status_code=202, summary="Create an image",
              responses={202: {"model": schemas.AsyncOperationStatus,
                               "headers": {"Operation-Location": {"schema": {"type": "string"}}}}})
    def create_image(request: Request, body: schemas.ImageRequest,
                     account: AccountDep) -> JSONResponse:
        return accepted(request, account, backend.create_image(account, body))

    @api.get("/images", tags=["Images"], summary="Query the list of images",
             responses={200: {"model": schemas.PaginatedImageList}})
    def list_images(request: Request, account: AccountDep, manifestId: str | None = None,
                    manifestName: str | None = None, count: Count = None,
                    skip: SkipToken = None) -> JSONResponse:
        filters = [Filter.equals("$.manifest.id", manifestId)] if manifestId is not None else []
        if manifestName is not None:
            filters.append(Filter.equals("$.manifest.name", manifestName))
        return page(request, *backend.listing("image", account, filters, count, skip))

    @api.get("/images/{id}", tags=["Images"], summary="Get image details",
             responses={200: {"model": schemas.Image}})
    def get_image(id: Id, account: AccountDep) -> JSONResponse:
        return JSONResponse(backend.get("image", account, id))

    # -- services ----------------------------------------------------------------------------
    @api.post("/services", tags=["Services"], status_code=202, summary="Create a service",
              responses={202: {"model": schemas.AsyncOperationStatus,
                               "headers": {"Operation-Location": {"schema": {"type": "string"}}}}})
    def create_service(request: Request, body: schemas.ServiceCreateRequest,
                       account: AccountDep) -> JSONResponse:
        return accepted(request, account, backend.create_service(account, body))

    @api.get("/services", tags=["Services"], summary="Query the list of services",
             responses={200: {"model": schemas.PaginatedServiceList}})
    def list_services(request: Request, account: AccountDep,
                      serviceName: str | None = None, modelId: str | None = None,
                      modelName: str | None = None, manifestId: str | None = None,
                      manifestName: str | None = None, imageId: str | None = None,
                      computeResourceId: str | None = None,
                      count: Count = None, skip: SkipToken = None) -> JSONResponse:
        # modelId filters by model ID and modelName by name (the spec's texts are swapped).
        wanted = [
            (serviceName, lambda v: Filter.equals("$.name", v)),
            (modelId, lambda v: Filter.has_item_with("$.models", "id", v)),
            (modelName, lambda v: Filter.has_item_with("$.models", "name", v)),
            (manifestId, lambda v: Filter.equals("$.manifest.id", v)),
            (manifestName, lambda v: Filter.equals("$.manifest.name", v)),
            (imageId, lambda v: Filter.equals("$.image.id", v)),
            (computeResourceId, lambda v: Filter.equals("$.computeResource.id", v)),
        ]
        filters = [make(value) for value, make in wanted if value is not None]
        return page(request, *backend.listing("service", account, filters, count, skip))

    @api.get("/services/{id}", tags=["Services"], summary="Get service details",
             responses={200: {"model": schemas.ServiceResponse}})
    def get_service(id: Id, account: AccountDep) -> JSONResponse:
        return JSONResponse(backend.get("service", account, id))

    @api.put("/services/{id}", tags=["Services"], status_code=202, summary="Update a service",
             responses={202: {"model": schemas.AsyncOperationStatus,
                              "headers": {"Operation-Location": {"schema": {"type": "string"}}}}})
    def update_service(request: Request, id: Id, body: schemas.ServiceUpdateRequest,
                       account: AccountDep) -> JSONResponse:
        return accepted(request, account, backend.update_service(account, id, body))

    @api.delete("/services/{id}", tags=["Services"], summary="Delete a service",
                responses={200: {"description": "Deleted."},
                           204: {"description": "There was no such service."}})
    def delete_service(id: Id, account: AccountDep) -> Any:
        from fastapi import Response

        if backend.delete_service(account, id):
            return JSONResponse({"deleted": id})
        return Response(status_code=204)

    @api.get("/services/{id}/keys", tags=["Services"], summary="Get service keys",
             responses={200: {"model": schemas.AuthKeys}})
    def get_keys(id: Id, account: AccountDep) -> JSONResponse:
        return JSONResponse(backend.get_keys(account, id))

    regenerate_doc = {200: {"model": schemas.AuthKeys}}

    @api.post("/services/{id}/regenerateKeys", tags=["Services"],
              summary="Regenerate service keys", responses=regenerate_doc)
    def regenerate_keys(id: Id, body: schemas.ServiceRegenerateKeyRequest,
                        account: AccountDep) -> JSONResponse:
        return JSONResponse(backend.regenerate_keys(account, id, body.keyType))

    @api.post("/services/{id}/keys", tags=["Services"], responses=regenerate_doc,
              summary="Regenerate service keys (the path of older versions of the spec)")
    def regenerate_keys_legacy(id: Id, body: schemas.ServiceRegenerateKeyRequest,
                               account: AccountDep) -> JSONResponse:
        return JSONResponse(backend.regenerate_keys(account, id, body.keyType))

    @api.get("/services/{id}/logs", tags=["Extensions"],
             summary="The service's log (its scoring processes' output)", description=EXTENSION,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    def service_logs(id: Id, account: AccountDep,
                     tail: Annotated[int, Query(ge=1, le=100_000)] = 200) -> PlainTextResponse:
        return PlainTextResponse(backend.service_logs(account, id, tail))

    @api.get("/services/{id}/collectedData", tags=["Extensions"], description=EXTENSION,
             summary="Inputs and outputs recorded when data collection is on")
    def collected_data(id: Id, account: AccountDep,
                       top: Annotated[int, Query(ge=1, le=100_000)] = 1000) -> JSONResponse:
        return JSONResponse({"value": backend.collected_data(account, id, top)})

    # -- compute resources (an extension of the spec) -----------------------------------------
    @api.get("/computeResources", tags=["Extensions"], description=EXTENSION,
             summary="Where services can run: 'local' and registered Ray clusters",
             responses={200: {"model": schemas.ComputeResourceList}})
    def list_compute(account: AccountDep) -> JSONResponse:
        return JSONResponse({"value": backend.list_compute(account)})

    @api.get("/computeResources/{name}", tags=["Extensions"], description=EXTENSION,
             summary="One compute resource", responses={200: {
                 "model": schemas.ComputeResourceInfo}})
    def get_compute(name: Id, account: AccountDep) -> JSONResponse:
        return JSONResponse(backend.get_compute(account, name))

    @api.put("/computeResources/{name}", tags=["Extensions"], description=EXTENSION,
             summary="Register or replace a Ray cluster (checked before it is stored)",
             responses={200: {"model": schemas.ComputeResourceInfo}})
    def put_compute(name: Id, body: schemas.ComputeResourceRequest,
                    account: AccountDep) -> JSONResponse:
        return JSONResponse(backend.register_compute(account, name, body))

    @api.delete("/computeResources/{name}", tags=["Extensions"], description=EXTENSION,
                summary="Remove a registered Ray cluster",
                responses={200: {"description": "Removed."},
                           204: {"description": "There was no such compute resource."}})
    def delete_compute(name: Id, account: AccountDep) -> Any:
        from fastapi import Response

        if backend.remove_compute(account, name):
            return JSONResponse({"deleted": name})
        return Response(status_code=204)

    # -- deployments and operations ----------------------------------------------------------
    @api.get("/deployments", tags=["Deployments"], summary="Query the list of deployments",
             responses={200: {"model": list[schemas.Deployment]}})
    def list_deployments(account: AccountDep, serviceId: str | None = None) -> JSONResponse:
        return JSONResponse(backend.list_deployments(account, serviceId))

    @api.get("/deployments/{id}", tags=["Deployments"], summary="Get deployment details",
             responses={200: {"model": schemas.Deployment}})
    def get_deployment(id: Id, account: AccountDep) -> JSONResponse:
        return JSONResponse(backend.get("deployment", account, id))

    @api.get("/operations/{id}", tags=["Operations"], summary="Get operation details",
             responses={200: {"model": schemas.AsyncOperationStatus}})
    def get_operation(id: Id, account: AccountDep) -> JSONResponse:
        return JSONResponse(backend.get("operation", account, id))

    app.include_router(api)

    @app.get("/health", include_in_schema=False)
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "pid": os.getpid()}

    app.openapi = lambda: _published(app)  # type: ignore[method-assign]
    return app


def _published(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, without the 422 answers FastAPI documents but this API never
    gives (its validation failures are 400 ErrorResponses)."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        doc = get_openapi(title=app.title, version=app.version, description=app.description,
                          routes=app.routes)
        for path in doc.get("paths", {}).values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        schemas_ = doc.get("components", {}).get("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas_.pop(unused, None)
        app.openapi_schema = doc
    return app.openapi_schema


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers or None)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return _error(400, "InvalidJson", "The request body is not valid JSON.")
        message, details = schemas.describe_validation_errors(errors)
        return _error(400, "BadRequest", message, details)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        codes = {404: "RouteNotFound", 405: "MethodNotAllowed"}
        message = {404: f"No route {request.url.path} in this API.",
                   405: f"{request.method} is not allowed on {request.url.path}."}
        return _error(exc.status_code, codes.get(exc.status_code, "Error"),
                      message.get(exc.status_code, str(exc.detail)),
                      headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error answering %s %s", request.method, request.url.path)
        return _error(500, "InternalError", "An unexpected error occurred in the embedded "
                      "backend; its log ($AMLMM_HOME/logs/daemon.log) has the details.")
