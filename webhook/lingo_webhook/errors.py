"""Every failure leaves the facade as JSON {"ok": false, "error": {"code", "message"}}."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from aiohttp import web
from kubernetes_asyncio.client import ApiException

from lingo_api.failure_text import describe_failure

log = logging.getLogger("lingo.webhook")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: object | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details
        self.headers = headers


def error_response(status: int, code: str, message: str, details: object | None = None,
                   headers: dict[str, str] | None = None) -> web.Response:
    error: dict = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return web.json_response({"ok": False, "error": error}, status=status, headers=headers)


def kubernetes_unavailable(exc: BaseException) -> bool:
    """The API server could not be reached or failed (not a refusal of this request)."""
    if isinstance(exc, ApiException):
        return exc.status == 0 or exc.status >= 500
    return isinstance(exc, (aiohttp.ClientError, OSError, asyncio.TimeoutError))


# A write the API server has not answered in this long is answered 503 (its storage, etcd, may be
# down while the API server itself answers); a create that lands later is never handed out and
# the operator deletes it (resources.ANNOTATION_DELIVERY).
API_TIMEOUT_SECONDS = 5

KUBERNETES_UNAVAILABLE = ApiError(503, "kubernetes_unavailable",
                                  "the Kubernetes API is unreachable right now; retry shortly",
                                  headers={"Retry-After": "2"})
STORAGE_UNAVAILABLE = ApiError(503, KUBERNETES_UNAVAILABLE.code,
                               "the Kubernetes API cannot reach its storage (etcd) right now; retry shortly",
                               headers=KUBERNETES_UNAVAILABLE.headers)


def ok_response(data: object, status: int = 200) -> web.Response:
    # Answers carry tokens and per-client state: no cache between client and facade keeps them.
    return web.json_response({"ok": True, "data": data}, status=status, headers={"Cache-Control": "no-store"})


_HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    413: "payload_too_large", 415: "unsupported_media_type", 429: "too_many_requests",
}


@web.middleware
async def json_errors(request: web.Request, handler):
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        return error_response(exc.status, code, exc.reason or code.replace("_", " "))
    except Exception as exc:
        if kubernetes_unavailable(exc):
            log.warning("%s %s: Kubernetes API unavailable (%s)", request.method, request.path, describe_failure(exc))
            error = KUBERNETES_UNAVAILABLE
            return error_response(error.status, error.code, error.message, headers=error.headers)
        # The trace goes to the log (which never carries secrets), not to the client.
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal error; see the facade log")
