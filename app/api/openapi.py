"""The OpenAPI 3.1 document of the service API, served at ``GET /v1/openapi.json``.

Built from the route table (``routes.ENDPOINTS``) and the pydantic models, never written by
hand: what the server validates and answers is what the document says. OpenAPI 3.1 schemas are
JSON Schema 2020-12, which is what pydantic emits, so the models' schemas go in unchanged.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from typing import Any, Final

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from app import __version__
from app.api.models import ErrorBody
from app.api.routes import ENDPOINTS, Endpoint

__all__ = ["OPENAPI_PATH", "build_document", "openapi_view"]

OPENAPI_PATH: Final = "/v1/openapi.json"
_REF: Final = "#/components/schemas/{model}"
_PATH_PARAM: Final = re.compile(r"\{([^}]+)\}")
_ERRORS: Final = {
    400: "The body is not JSON",
    401: "No token, or one that does not verify",
    402: "The repository's budgets cannot pay for it: nothing was sent to a model",
    403: "The caller may not name this repository, or ask for this sandbox",
    404: "No such job or pull request",
    409: "The repository's configuration or the pull request's state does not allow a review",
    422: "The request does not validate",
    429: "Too many requests in the caller's window, or every job slot is taken",
    500: "The server failed",
    502: "The model or GitHub failed",
    503: "The gateway, GitHub or the OIDC issuer cannot be reached now",
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM.findall(endpoint.path)
    ]
    parameters += [
        {
            "name": q.name,
            "in": "query",
            "required": q.required,
            "description": q.description,
            "schema": dict(q.schema),
        }
        for q in endpoint.query
    ]
    responses: dict[str, Any] = {str(endpoint.status): _json(endpoint.response, "Success")}
    for status in sorted({401, 500, *endpoint.errors}):
        answer = _json(ErrorBody, _ERRORS[status])
        if status in {429, 503}:
            answer["headers"] = {
                "Retry-After": {
                    "description": "seconds to wait before asking again",
                    "schema": {"type": "integer"},
                }
            }
        responses[str(status)] = answer
    operation: dict[str, Any] = {
        "operationId": endpoint.operation_id,
        "summary": endpoint.summary,
        "security": [{"bearer": []}],
        "responses": responses,
    }
    if parameters:
        operation["parameters"] = parameters
    if endpoint.request is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(endpoint.request)}},
        }
    return operation


def build_document(endpoints: Sequence[Endpoint] = ENDPOINTS) -> dict[str, Any]:
    """The whole document for ``endpoints``."""
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorBody, "serialization")]
    for endpoint in endpoints:
        if endpoint.request is not None:
            models.append((endpoint.request, "validation"))
        models.append((endpoint.response, "serialization"))
    _, schemas = models_json_schema(list(dict.fromkeys(models)), ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint)
    paths[OPENAPI_PATH] = {
        "get": {
            "operationId": "getOpenApi",
            "summary": "This document",
            "security": [],
            "responses": {
                "200": {
                    "description": "The OpenAPI document",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "aigateway service API",
            "version": __version__,
            "description": (
                "The review, budget and feedback machinery of the aigateway GitHub App, for CI "
                "jobs and other services. Authenticate with the server's API_TOKEN or a GitHub "
                "Actions OIDC token whose audience is the server's API_OIDC_AUDIENCE."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "API_TOKEN, or a GitHub Actions OIDC token (a JWT)",
                }
            },
        },
    }


@functools.cache
def _document_bytes() -> bytes:
    return json.dumps(build_document(), separators=(",", ":")).encode()


async def openapi_view(_request: web.Request) -> web.Response:
    """The document; public, like any API description: it holds no data and no secret."""
    return web.Response(body=_document_bytes(), content_type="application/json")
