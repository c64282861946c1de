"""One error hierarchy for every way a call to the service API can fail.

``AiGatewayError`` is the base; each HTTP answer that is not a success maps to one subclass by
status (``from_status``), carrying the server's stable ``code``, its message, the status, the
request's id (``X-Request-Id``, for the server's audit log) and, for 429 and 503, how long the
server asked to wait. A request that never got an answer is a :class:`ConnectionFailed`.
"""

from __future__ import annotations

__all__ = [
    "AiGatewayError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExhaustedError",
    "ConflictError",
    "ConnectionFailed",
    "JobTimeoutError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "from_status",
]


class AiGatewayError(Exception):
    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        self.retry_after = retry_after

    def __str__(self) -> str:
        head = f"{self.status} {self.code}: " if self.status is not None else ""
        return head + self.message


class BadRequestError(AiGatewayError):
    """400 or 422: the request does not validate (the message names the fields)."""


class AuthenticationError(AiGatewayError):
    """401: no token, or one that does not verify (expired, another audience, ...)."""


class BudgetExhaustedError(AiGatewayError):
    """402: the repository's budgets cannot pay for it; nothing was sent to a model."""


class PermissionDeniedError(AiGatewayError):
    """403: the token is good but may not name this repository (or ask for this sandbox)."""


class NotFoundError(AiGatewayError):
    """404: no such job or pull request."""


class ConflictError(AiGatewayError):
    """409: the repository's configuration or the pull request's state allows no review."""


class RateLimitError(AiGatewayError):
    """429: too many requests in the caller's window, or every job slot taken; see retry_after."""


class ServerError(AiGatewayError):
    """5xx: the server, the model, GitHub or the OIDC issuer failed."""


class ConnectionFailed(AiGatewayError):
    """No answer at all (connection refused, timed out), after the retries."""


class JobTimeoutError(AiGatewayError):
    """``wait`` gave up before the job ended; the job goes on on the server."""


_BY_STATUS: dict[int, type[AiGatewayError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: BudgetExhaustedError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: BadRequestError,
    429: RateLimitError,
}


def from_status(status: int) -> type[AiGatewayError]:
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, AiGatewayError)
