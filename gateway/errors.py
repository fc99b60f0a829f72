"""OpenAI error objects and HTTP status codes, in one place.

Every error leaves the gateway as `{"error": {"message", "type", "param", "code"}}` with the status
OpenAI's API uses, so the official client raises the matching exception class (BadRequestError,
AuthenticationError, NotFoundError, RateLimitError, ...). FastAPI's 422 for validation errors is
replaced by 400, as OpenAI sends.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("sluicegate.gateway")

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_exceeded",
    500: "server_error",
    503: "service_unavailable",
}


class APIError(Exception):
    """An error the gateway reports to its client; raise it anywhere in a route."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or _TYPE_BY_STATUS.get(status, "invalid_request_error")
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


# --- constructors for the statuses the gateway sends --------------------------------------------

def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def unauthorized() -> APIError:
    return APIError(401, "Incorrect API key provided. Pass it as `Authorization: Bearer <key>`.",
                    code="invalid_api_key")


def model_not_found(model: str) -> APIError:
    return APIError(404, f"The model `{model}` does not exist or you do not have access to it.",
                    param="model", code="model_not_found")


def body_too_large(limit: int) -> APIError:
    return APIError(413, f"Request body too large: the limit is {limit} bytes.", code="request_too_large")


def queue_full(retry_after_s: int, message: str | None = None) -> APIError:
    return APIError(429, message or "The server is at capacity: too many queued requests. Retry shortly.",
                    code="queue_full", headers={"Retry-After": str(retry_after_s)})


def not_ready(draining: bool) -> APIError:
    message = ("The server is shutting down and takes no new requests." if draining
               else "The model is still loading. Retry shortly.")
    return APIError(503, message, code="draining" if draining else "model_loading",
                    headers={"Retry-After": "1"})


def server_error(message: str) -> APIError:
    return APIError(500, message, code="internal_error")


def api_key_matches(expected: str, authorization: str | None, x_api_key: str | None = None) -> bool:
    """Constant-time check of `Authorization: Bearer <key>` (or `x-api-key`) against the key."""
    presented = ""
    if authorization and authorization[:7].lower() == "bearer ":
        presented = authorization[7:].strip()
    elif x_api_key:
        presented = x_api_key.strip()
    return hmac.compare_digest(presented.encode(), expected.encode())


# --- validation errors: FastAPI/pydantic detail -> one OpenAI message ----------------------------

def _loc_to_param(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body",)]
    # pydantic inserts the union member's tag (e.g. 'user', 'function-after[...]'); drop those
    parts = [p for p in parts if "[" not in p]
    if not parts:
        return None
    out = parts[0]
    for p in parts[1:]:
        out += f"[{p}]" if p.isdigit() else f".{p}"
    return out


def validation_error(exc: RequestValidationError) -> APIError:
    errors = exc.errors()
    if not errors:
        return bad_request("Invalid request body.")
    first = errors[0]
    param = _loc_to_param(tuple(first.get("loc", ())))
    if first.get("type") == "extra_forbidden":
        return bad_request(f"Unrecognized request argument supplied: {param}. The accepted fields are listed in "
                           f"sluicegate's docs/api.md.", param=param, code="unrecognized_argument")
    if first.get("type") == "json_invalid":
        return bad_request("We could not parse the JSON body of your request. It must be valid JSON.")
    if first.get("type") == "missing":
        return bad_request(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
    msg = str(first.get("msg", "invalid value"))
    msg = msg.removeprefix("Value error, ")
    return bad_request(f"Invalid value for '{param}': {msg}" if param else msg, param=param,
                       code="invalid_value")


def install_error_handlers(app: FastAPI) -> None:
    """Route every error through the OpenAI error object."""

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error(exc).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail) if exc.detail else "HTTP error"
        if exc.status_code == 404:
            message = "Not found: no such endpoint."
        code = "request_too_large" if exc.status_code == 413 else None
        err = APIError(exc.status_code, message, code=code, headers=dict(exc.headers or {}))
        return err.response()

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error in a request")
        return server_error(f"Internal server error: {type(exc).__name__}").response()


def from_engine_error(exc: BaseException, retry_after_s: int = 1) -> APIError | None:
    """Map the engine's and grammars' refusals to HTTP; None for anything else (a bug: 500)."""
    from sluicegate.engine.params import (
        InvalidRequestError,  # the engine's light module, imported on first use
    )
    from sluicegate.grammars.backend import GrammarError

    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, InvalidRequestError):
        return bad_request(exc.message, param=exc.param, code=exc.code)
    if isinstance(exc, GrammarError):
        return bad_request(exc.message, param=exc.param or "response_format", code="invalid_grammar")
    if type(exc).__name__ == "QueueFullError":  # engine.QueueFullError, matched by name: no engine import
        return queue_full(retry_after_s, str(exc) or None)
    return None
