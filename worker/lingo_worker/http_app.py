"""The worker's HTTP port: the control WebSocket (worker/lingo_worker/control_api.py), liveness,
readiness (also awaited by the operator for a cold worker) and Prometheus metrics. A pooled
worker adds `POST /claim` (worker/lingo_worker/claim.py)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lingo_api import resources as r

from .control_api import ControlHub

MAX_READY_WAIT_SECONDS = 60
MAX_READY_WAITERS = 4  # the operator holds one; the port is not for crowds


def build_control_app(hub: ControlHub) -> web.Application:
    app = web.Application()

    async def healthz(_):
        return web.json_response({"ok": True})

    waiters = 0

    async def readyz(request: web.Request):
        """Readiness now, or with `?wait=SECONDS` as soon as it holds: the operator waits on a
        cold worker this way and reports WorkerReady at the join, not a probe period later."""
        nonlocal waiters
        try:
            wait = float(request.query.get("wait", "0"))
        except ValueError:
            wait = -1.0
        if not 0 <= wait <= MAX_READY_WAIT_SECONDS:
            return web.json_response({"ok": False, "error": {"code": "VALIDATION_ERROR", "desc": (
                f"wait must be a number of seconds from 0 to {MAX_READY_WAIT_SECONDS}")}}, status=400)
        if wait == 0:
            ready, why = hub.controller.ready()
        elif waiters >= MAX_READY_WAITERS:
            return web.json_response({"ok": False, "error": {"code": "TOO_MANY_REQUESTS", "desc": (
                f"at most {MAX_READY_WAITERS} readiness waits at a time")}}, status=429)
        else:
            waiters += 1
            try:
                ready, why = await hub.controller.wait_ready(wait)
            finally:
                waiters -= 1
        return web.json_response({"ok": ready, "reason": why}, status=200 if ready else 503)

    async def metrics_endpoint(_):
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get(r.WORKER_CONTROL_PATH, hub.handle)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    return app
