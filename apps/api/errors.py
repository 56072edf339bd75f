"""One error shape for the whole API: {"error": {"code", "message", "param", "type"}}.

`code` is a stable machine word (not_found, invalid_request, rate_limited, …), `param` the field
the error is about (or null), `type` OpenAI's error class for the same case, so the official
`openai` client raises its matching exception (NotFoundError, RateLimitError, …). A request
refused with several field errors also carries `fields` ({field: message}).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, JsonResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, Throttled
from ninja.errors import ValidationError as NinjaValidationError

from apps.api.auth import InvalidToken
from apps.api.ratelimit import RateLimited
from apps.jobs.services import JobParamsError, JobQuotaExceeded

TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class ApiError(Exception):
    """Raise from an endpoint to answer with the error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str = "",
        param: str | None = None,
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _default_code(status)
        self.param = param
        self.fields = fields
        self.headers = headers or {}
        self.extra = extra


def _default_code(status: int) -> str:
    return {
        400: "invalid_request",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        409: "conflict",
        413: "too_large",
        429: "rate_limited",
    }.get(status, "error")


def error_response(
    status: int,
    message: str,
    *,
    code: str = "",
    param: str | None = None,
    fields: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JsonResponse:
    body: dict[str, Any] = {
        "code": code or _default_code(status),
        "message": message,
        "param": param,
        "type": TYPES.get(status, "api_error"),
    }
    if fields:
        body["fields"] = fields
    body.update(extra)
    response = JsonResponse({"error": body}, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def params_error(exc: JobParamsError, message: str = "Invalid job parameters") -> JsonResponse:
    """A refused submit: 429 + Retry-After when waiting helps (a cap, the monthly quota), 400
    otherwise, naming the first field at fault."""
    param = next(iter(exc.errors), None)
    if param == "__all__":
        param = None
    if isinstance(exc, JobQuotaExceeded):
        detail = "; ".join(exc.errors.values())
        if exc.retry_after is not None:
            return error_response(
                429,
                detail,
                code="quota_exceeded",
                param=param,
                fields=exc.errors,
                headers={"Retry-After": str(exc.retry_after)},
            )
        return error_response(400, detail, code="budget_exceeded", param=param, fields=exc.errors)
    return error_response(400, message, code="invalid_params", param=param, fields=exc.errors)


def _validation_param(loc: tuple | list) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "form", "file", "payload")]
    return ".".join(parts) or None


def install(api: NinjaAPI) -> None:
    """Route every error of `api` through the one shape."""

    @api.exception_handler(ApiError)
    def _api_error(request: HttpRequest, exc: ApiError):
        return error_response(
            exc.status,
            exc.message,
            code=exc.code,
            param=exc.param,
            fields=exc.fields,
            headers=exc.headers,
            **exc.extra,
        )

    @api.exception_handler(NinjaValidationError)
    def _invalid(request: HttpRequest, exc: NinjaValidationError):
        fields: dict[str, str] = {}
        for err in exc.errors:
            fields.setdefault(
                _validation_param(err.get("loc", ())) or "__all__", err.get("msg", "")
            )
        param = next(iter(fields), None)
        message = f"{param}: {fields[param]}" if param and param != "__all__" else "Invalid request"
        return error_response(
            400,
            message,
            code="invalid_request",
            param=None if param == "__all__" else param,
            fields=fields,
        )

    @api.exception_handler(JobParamsError)
    def _params(request: HttpRequest, exc: JobParamsError):
        return params_error(exc)

    @api.exception_handler(AuthenticationError)
    def _unauthenticated(request: HttpRequest, exc: AuthenticationError):
        return error_response(
            401,
            "Authentication required: send 'Authorization: Bearer <token>' "
            "(make one on your API tokens page)",
            code="unauthorized",
            headers={"WWW-Authenticate": "Bearer"},
        )

    @api.exception_handler(InvalidToken)
    def _bad_token(request: HttpRequest, exc: InvalidToken):
        return error_response(
            401,
            "This API token is unknown, revoked or expired",
            code="invalid_api_key",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )

    @api.exception_handler(RateLimited)
    def _limited(request: HttpRequest, exc: RateLimited):
        return error_response(
            429, str(exc), code="rate_limited", headers={"Retry-After": str(exc.retry_after)}
        )

    @api.exception_handler(Throttled)
    def _throttled(request: HttpRequest, exc: Throttled):
        wait = int(exc.wait or 1)
        return error_response(
            429, "Too many requests", code="rate_limited", headers={"Retry-After": str(wait)}
        )

    @api.exception_handler(Http404)
    def _not_found(request: HttpRequest, exc: Http404):
        return error_response(404, str(exc) or "Not found")

    @api.exception_handler(PermissionDenied)
    def _forbidden(request: HttpRequest, exc: PermissionDenied):
        return error_response(403, str(exc) or "Forbidden")

    @api.exception_handler(DjangoValidationError)
    def _django_invalid(request: HttpRequest, exc: DjangoValidationError):
        if hasattr(exc, "message_dict"):
            fields = {k: " ".join(v) for k, v in exc.message_dict.items()}
            param = next(iter(fields), None)
            return error_response(
                400,
                "; ".join(fields.values()),
                param=None if param == "__all__" else param,
                fields=fields,
            )
        return error_response(400, " ".join(exc.messages))

    @api.exception_handler(HttpError)
    def _http_error(request: HttpRequest, exc: HttpError):
        return error_response(exc.status_code, str(exc))


class SchemaCachedAPI(NinjaAPI):
    """A NinjaAPI that builds its OpenAPI schema once per prefix: the operations never change
    after start-up, and building it walks every pydantic model (~0.1 s a request otherwise)."""

    def get_openapi_schema(self, *, path_prefix=None, path_params=None):
        if path_prefix is None:
            path_prefix = self.get_root_path(path_params or {})
        cache = self.__dict__.setdefault("_schema_cache", {})
        if path_prefix not in cache:
            cache[path_prefix] = super().get_openapi_schema(path_prefix=path_prefix)
        return cache[path_prefix]
