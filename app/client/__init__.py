"""A Python client for aigateway's service API, for CI jobs and other services.

    from app.client import AiGatewayClient, ClientConfig, GitHubActionsOidc

    config = ClientConfig(base_url="https://aigateway.example.com",
                          token_source=GitHubActionsOidc(audience="aigateway"))
    with AiGatewayClient(config) as client:
        result = client.review(diff=patch, changed_paths=paths)
        print(result.recommendation.action, result.confidence)

``AsyncAiGatewayClient`` has the same methods, awaited. Responses are the server's own models
(``app.api.models``); failures are :class:`AiGatewayError` subclasses (``app.client.errors``).
"""

from app.client.client import AiGatewayClient, AsyncAiGatewayClient
from app.client.config import ClientConfig, GitHubActionsOidc, StaticToken, TokenSource
from app.client.errors import (
    AiGatewayError,
    AuthenticationError,
    BadRequestError,
    BudgetExhaustedError,
    ConflictError,
    ConnectionFailed,
    JobTimeoutError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)

__all__ = [
    "AiGatewayClient",
    "AiGatewayError",
    "AsyncAiGatewayClient",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExhaustedError",
    "ClientConfig",
    "ConflictError",
    "ConnectionFailed",
    "GitHubActionsOidc",
    "JobTimeoutError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "StaticToken",
    "TokenSource",
]
