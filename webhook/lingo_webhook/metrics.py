"""Prometheus metrics of the facade, served at /metrics on a port of their own (`--metrics-port`,
webhook/lingo_webhook/__main__.py): not on the public port, where they would tell anyone the
client IDs (issue 24)."""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

REQUESTS = Counter("lingo_facade_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "lingo_facade_request_seconds", "HTTP request latency (WebSocket relays excluded)", ["method", "route"],
    buckets=(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 20),
)
SESSIONS_CREATED = Counter("lingo_facade_sessions_created_total", "Sessions handed out", ["client"])


@web.middleware
async def record(request: web.Request, handler):
    # The route template, not the path: session IDs must not become label values.
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        REQUESTS.labels(request.method, route, str(status)).inc()
        if not route.endswith("/control"):
            LATENCY.labels(request.method, route).observe(time.perf_counter() - started)


async def metrics_endpoint(_: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
