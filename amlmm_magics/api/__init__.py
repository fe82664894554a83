"""REST client of the Model Management Account API. Knows nothing of IPython or widgets."""

from amlmm_magics.api.auth import DEFAULT_SCOPE, StaticTokenCredential
from amlmm_magics.api.client import DEFAULT_API_VERSION, ModelManagementClient
from amlmm_magics.api.errors import (
    AuthenticationError,
    BadRequestError,
    CredentialError,
    ModelManagementError,
    OperationFailedError,
    OperationTimeoutError,
    PermissionDeniedError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceError,
    ServiceRequestError,
    ThrottledError,
)
from amlmm_magics.api.paging import ItemPager, Page
from amlmm_magics.api.polling import OperationPoller
from amlmm_magics.api.resources import Resource
from amlmm_magics.api.transport import RetryPolicy

__all__ = [
    "DEFAULT_API_VERSION",
    "DEFAULT_SCOPE",
    "AuthenticationError",
    "BadRequestError",
    "CredentialError",
    "ItemPager",
    "ModelManagementClient",
    "ModelManagementError",
    "OperationFailedError",
    "OperationPoller",
    "OperationTimeoutError",
    "Page",
    "PermissionDeniedError",
    "Resource",
    "ResourceExistsError",
    "ResourceNotFoundError",
    "RetryPolicy",
    "ServiceError",
    "ServiceRequestError",
    "StaticTokenCredential",
    "ThrottledError",
]
