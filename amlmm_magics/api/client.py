"""The client of the Azure ML Model Management Account API (api-version 2017-09-01-preview).

One method per operation of the spec, named as the Azure SDK guidelines name them. Body
fields are keyword arguments in snake_case; nested objects are dicts in the spec's camelCase.
Resources come back as :class:`Resource` dicts in the spec's camelCase.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from amlmm_magics.api.auth import DEFAULT_SCOPE, TokenCache, resolve_credential
from amlmm_magics.api.errors import (
    ModelManagementError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from amlmm_magics.api.paging import SKIP_TOKEN, ItemPager
from amlmm_magics.api.polling import OperationPoller, retry_after_seconds
from amlmm_magics.api.resources import Resource, parse_json
from amlmm_magics.api.transport import RetryPolicy, Transport

DEFAULT_API_VERSION = "2017-09-01-preview"
# Older published versions of the spec regenerate keys here instead of at regenerateKeys.
_LEGACY_REGENERATE_PATH = "keys"


def _body(**fields: Any) -> dict[str, Any]:
    """A request body from snake_case keyword arguments, None fields left out."""
    out = {}
    for name, value in fields.items():
        if value is None:
            continue
        head, *rest = name.split("_")
        out[head + "".join(part[:1].upper() + part[1:] for part in rest)] = value
    return out


def _require(**values: Any) -> None:
    missing = [name for name, value in values.items() if value is None or value == ""]
    if missing:
        raise ValueError(f"Missing required argument(s): {', '.join(missing)}")


def _id(value: Any, what: str) -> str:
    if isinstance(value, dict):
        value = value.get("id") or value.get("ID")
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"A {what} ID must be a non-empty string, not {value!r}.")
    return value


class ModelManagementClient:
    """Speaks the Model Management Account API of one account.

    :param base_url: the service root, e.g. ``https://eastus2.modelmanagement.azureml.net``
        or the embedded backend's ``http://127.0.0.1:PORT``.
    :param credential: an azure-identity ``TokenCredential``, a static bearer token string,
        or None (``AMLMM_ACCESS_TOKEN`` if set, else ``DefaultAzureCredential``).
    """

    def __init__(
        self,
        base_url: str,
        subscription_id: str,
        resource_group: str,
        account_name: str,
        credential: Any = None,
        *,
        api_version: str = DEFAULT_API_VERSION,
        scope: str = DEFAULT_SCOPE,
        timeout: tuple[float, float] = (10.0, 120.0),
        retry: RetryPolicy | None = None,
    ) -> None:
        _require(
            base_url=base_url,
            subscription_id=subscription_id,
            resource_group=resource_group,
            account_name=account_name,
            api_version=api_version,
        )
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be an http(s) URL, not {base_url!r}.")
        self.base_url = base_url.rstrip("/")
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.account_name = account_name
        self.api_version = api_version
        self.credential = resolve_credential(credential)
        self._origin = (parts.scheme, parts.netloc.lower())
        self._transport = Transport(
            TokenCache(self.credential, scope),
            base_url=self.base_url,
            api_version=api_version,
            timeout=timeout,
            retry=retry,
        )
        self.account_url = (
            f"{self.base_url}/api/subscriptions/{quote(subscription_id, safe='')}"
            f"/resourceGroups/{quote(resource_group, safe='')}"
            f"/accounts/{quote(account_name, safe='')}"
        )

    # -- plumbing ----------------------------------------------------------------------------
    def _url(self, *segments: str) -> str:
        return "/".join([self.account_url, *(quote(s, safe="") for s in segments)])

    def _link(self, link: str) -> str:
        """An absolute URL for a nextLink/Operation-Location/resourceLocation of the service.

        Links to another host are refused: the bearer token must not leave for it.
        """
        url = urljoin(self.base_url + "/", link) if not urlsplit(link).scheme else link
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc.lower()) != self._origin:
            raise ModelManagementError(
                f"The service answered a link to another host ({parts.scheme}://{parts.netloc}); "
                "refusing to send the credential there."
            )
        return url

    def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        return parse_json(self._transport.request(method, url, **kwargs).content)

    def _get(self, url: str, params: dict[str, Any] | None = None) -> Any:
        return self._call("GET", url, params=params)

    def _pager(self, kind: str, collection: str, filters: dict[str, Any]) -> ItemPager:
        url = self._url(collection)
        params = {k: (str(v) if v is not None else None) for k, v in filters.items()}

        def first(token: str | None) -> Any:
            return self._get(url, {**params, SKIP_TOKEN: token})

        def following(link: str) -> Any:
            return self._get(self._link(link))

        return ItemPager(kind, first, following)

    def _begin(
        self, method: str, url: str, body: dict[str, Any], kind: str, target: str | None
    ) -> OperationPoller:
        response = self._transport.request(method, url, json=body, ok=(200, 201, 202))
        location = response.headers.get("Operation-Location") or response.headers.get(
            "Location"
        )
        if not location:
            raise ModelManagementError(
                f"{method} {kind} was accepted but the answer had no Operation-Location header.",
                status_code=response.status_code,
            )
        operation_url = self._link(location)
        operation_id = urlsplit(operation_url).path.rstrip("/").rsplit("/", 1)[-1]

        def get_operation() -> tuple[Any, str | None]:
            answer = self._transport.request("GET", operation_url)
            return parse_json(answer.content), answer.headers.get("Retry-After")

        def get_resource(location: str) -> Any:
            return self._get(self._link(location))

        return OperationPoller(
            get_operation,
            get_resource,
            operation_location=operation_url,
            operation_id=operation_id,
            kind=kind,
            target_name=target,
            first_delay=retry_after_seconds(response.headers.get("Retry-After")),
        )

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> ModelManagementClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"ModelManagementClient({self.base_url!r}, subscription={self.subscription_id!r}, "
            f"resource_group={self.resource_group!r}, account={self.account_name!r}, "
            f"credential={type(self.credential).__name__})"
        )

    # -- models ------------------------------------------------------------------------------
    def register_model(
        self,
        *,
        name: str,
        url: str,
        mime_type: str,
        description: str | None = None,
        tags: list[str] | None = None,
        unpack: bool | None = None,
    ) -> Resource:
        """Register a model whose bytes are at ``url`` (usually a blob SAS URL)."""
        _require(name=name, url=url, mime_type=mime_type)
        body = _body(
            name=name, url=url, mime_type=mime_type, description=description, tags=tags,
            unpack=unpack,
        )
        return self._call("POST", self._url("models"), json=body)

    def list_models(
        self, *, name: str | None = None, tag: str | None = None, count: int | None = None
    ) -> ItemPager:
        return self._pager("model", "models", {"name": name, "tag": tag, "count": count})

    def get_model(self, id: str) -> Resource:
        return self._get(self._url("models", _id(id, "model")))

    # -- manifests ---------------------------------------------------------------------------
    def register_manifest(
        self,
        *,
        name: str,
        driver_program: str,
        assets: list[dict[str, Any]],
        target_runtime: dict[str, Any],
        model_ids: list[str] | None = None,
        model_type: str | None = None,
        description: str | None = None,
        webservice_type: str | None = None,
    ) -> Resource:
        _require(name=name, driver_program=driver_program, assets=assets,
                 target_runtime=target_runtime)
        body = _body(
            name=name,
            driver_program=driver_program,
            assets=[_lower_keys(a) for a in assets],
            target_runtime=target_runtime,
            model_ids=model_ids,
            model_type=model_type,
            description=description,
            webservice_type=webservice_type,
        )
        return self._call("POST", self._url("manifests"), json=body)

    def list_manifests(
        self,
        *,
        model_id: str | None = None,
        manifest_name: str | None = None,
        count: int | None = None,
    ) -> ItemPager:
        return self._pager(
            "manifest",
            "manifests",
            {"modelId": model_id, "manifestName": manifest_name, "count": count},
        )

    def get_manifest(self, id: str) -> Resource:
        return self._get(self._url("manifests", _id(id, "manifest")))

    # -- images ------------------------------------------------------------------------------
    def begin_create_image(
        self,
        *,
        name: str,
        manifest_id: str,
        compute_resource_id: str,
        image_type: str = "Docker",
        description: str | None = None,
    ) -> OperationPoller:
        _require(name=name, manifest_id=manifest_id, compute_resource_id=compute_resource_id,
                 image_type=image_type)
        body = _body(
            name=name,
            manifest_id=manifest_id,
            compute_resource_id=compute_resource_id,
            image_type=image_type,
            description=description,
        )
        return self._begin("POST", self._url("images"), body, "image", name)

    def list_images(
        self,
        *,
        manifest_id: str | None = None,
        manifest_name: str | None = None,
        count: int | None = None,
    ) -> ItemPager:
        return self._pager(
            "image",
            "images",
            {"manifestId": manifest_id, "manifestName": manifest_name, "count": count},
        )

    def get_image(self, id: str) -> Resource:
        return self._get(self._url("images", _id(id, "image")))

    # -- services ----------------------------------------------------------------------------
    def begin_create_service(
        self,
        *,
        name: str,
        image_id: str,
        compute_resource: dict[str, Any],
        num_replicas: int | None = None,
        auto_scaler: dict[str, Any] | None = None,
        container_resource_reservation: dict[str, Any] | None = None,
        data_collection: dict[str, Any] | None = None,
        app_insights_enabled: bool | None = None,
        max_concurrent_requests_per_container: int | None = None,
    ) -> OperationPoller:
        _require(name=name, image_id=image_id, compute_resource=compute_resource)
        body = _body(
            name=name,
            image_id=image_id,
            compute_resource=_lower_keys(compute_resource),
            num_replicas=num_replicas,
            auto_scaler=auto_scaler,
            container_resource_reservation=container_resource_reservation,
            data_collection=data_collection,
            app_insights_enabled=app_insights_enabled,
            max_concurrent_requests_per_container=max_concurrent_requests_per_container,
        )
        return self._begin("POST", self._url("services"), body, "service", name)

    def list_services(
        self,
        *,
        service_name: str | None = None,
        model_id: str | None = None,
        model_name: str | None = None,
        manifest_id: str | None = None,
        manifest_name: str | None = None,
        image_id: str | None = None,
        compute_resource_id: str | None = None,
        count: int | None = None,
    ) -> ItemPager:
        # The spec's descriptions of modelId and modelName are swapped; these mean what
        # their names say (DESIGN.md, spec notes).
        return self._pager(
            "service",
            "services",
            {
                "serviceName": service_name,
                "modelId": model_id,
                "modelName": model_name,
                "manifestId": manifest_id,
                "manifestName": manifest_name,
                "imageId": image_id,
                "computeResourceId": compute_resource_id,
                "count": count,
            },
        )

    def get_service(self, id: str) -> Resource:
        return self._get(self._url("services", _id(id, "service")))

    def begin_update_service(
        self,
        id: str,
        *,
        image_id: str | None = None,
        num_replicas: int | None = None,
        auto_scaler: dict[str, Any] | None = None,
        container_resource_reservation: dict[str, Any] | None = None,
        data_collection: dict[str, Any] | None = None,
        app_insights_enabled: bool | None = None,
        max_concurrent_requests_per_container: int | None = None,
    ) -> OperationPoller:
        body = _body(
            image_id=image_id,
            num_replicas=num_replicas,
            auto_scaler=auto_scaler,
            container_resource_reservation=container_resource_reservation,
            data_collection=data_collection,
            app_insights_enabled=app_insights_enabled,
            max_concurrent_requests_per_container=max_concurrent_requests_per_container,
        )
        if not body:
            raise ValueError("Nothing to update: give at least one field.")
        return self._begin("PUT", self._url("services", _id(id, "service")), body, "service", id)

    def delete_service(self, id: str) -> bool:
        """Delete a service; False when there was no such service (deleting is idempotent)."""
        response = self._transport.request(
            "DELETE", self._url("services", _id(id, "service")), ok=(200, 202, 204)
        )
        return response.status_code != 204

    def get_service_keys(self, id: str) -> Resource:
        return self._get(self._url("services", _id(id, "service"), "keys"))

    def regenerate_service_key(self, id: str, key_type: str) -> Resource:
        """Regenerate the ``Primary`` or ``Secondary`` key; answers both keys."""
        if key_type not in ("Primary", "Secondary"):
            raise ValueError(f"key_type must be 'Primary' or 'Secondary', not {key_type!r}.")
        service = _id(id, "service")
        body = {"keyType": key_type}
        try:
            response = self._transport.request(
                "POST", self._url("services", service, "regenerateKeys"), json=body
            )
        except ResourceNotFoundError as exc:
            # A route the server does not have (an older version of the spec) rather than
            # a service it does not have: try the older path once.
            if exc.code not in (None, "NotFound", "RouteNotFound", "Not Found"):
                raise
            try:
                response = self._transport.request(
                    "POST", self._url("services", service, _LEGACY_REGENERATE_PATH), json=body
                )
            except (ResourceNotFoundError, ServiceRequestError):
                raise exc from None
        return parse_json(response.content)

    # -- extensions of the embedded backend (not in the 2017 spec) --------------------------
    def get_service_logs(self, id: str, tail: int = 200) -> str:
        """The last ``tail`` lines of the service's log (embedded backend only)."""
        response = self._transport.request(
            "GET", self._url("services", _id(id, "service"), "logs"), params={"tail": tail})
        return response.text

    def get_collected_data(self, id: str, top: int = 1000) -> list[Resource]:
        """Inputs and outputs recorded by data collection, oldest first (embedded backend)."""
        data = self._get(self._url("services", _id(id, "service"), "collectedData"),
                         {"top": top})
        return list(data.get("value") or [])

    def list_compute_resources(self) -> list[Resource]:
        """Where services can run: ``local`` and registered Ray clusters (embedded backend)."""
        return list(self._get(self._url("computeResources")).get("value") or [])

    def get_compute_resource(self, name: str) -> Resource:
        return self._get(self._url("computeResources", _id(name, "compute resource")))

    def set_compute_resource(self, name: str, *, dashboard_url: str,
                             serve_url: str | None = None, token: str | None = None,
                             type: str = "Ray") -> Resource:
        """Register (or replace) a Ray cluster; the token is kept by the backend only."""
        body = _body(type=type, dashboard_url=dashboard_url, serve_url=serve_url, token=token)
        return self._call("PUT", self._url("computeResources", _id(name, "compute resource")),
                          json=body)

    def delete_compute_resource(self, name: str) -> bool:
        response = self._transport.request(
            "DELETE", self._url("computeResources", _id(name, "compute resource")),
            ok=(200, 204))
        return response.status_code != 204

    # -- deployments & operations ------------------------------------------------------------
    def list_deployments(self, *, service_id: str | None = None) -> ItemPager:
        return self._pager("deployment", "deployments", {"serviceId": service_id})

    def get_deployment(self, id: str) -> Resource:
        return self._get(self._url("deployments", _id(id, "deployment")))

    def get_operation(self, id: str) -> Resource:
        return self._get(self._url("operations", _id(id, "operation")))


def _lower_keys(obj: dict[str, Any]) -> dict[str, Any]:
    """Send ``id``/``url`` in lower case even when the caller spelled them ``ID``/``URL``."""
    if not isinstance(obj, dict):
        raise ValueError(f"Expected an object (dict), got {type(obj).__name__}.")
    return {({"ID": "id", "URL": "url"}).get(k, k): v for k, v in obj.items()}
