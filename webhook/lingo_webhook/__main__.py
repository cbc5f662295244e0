"""`lingo-webhook`: serve the REST facade.

On SIGTERM the replica drains: readiness fails at once while requests are still served for
`LINGO_DRAIN_SECONDS` (Services stop routing here), then it stops listening and lets in-flight
requests finish (creates included) before it exits.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from aiohttp import web

from lingo_api.kube_client import new_api_client
from lingo_api.untrusted import log_to_stderr

from .app import AccessLogger, build_app
from .settings import FacadeConfig
from .metrics import metrics_endpoint

log = logging.getLogger("lingo.webhook")

# In-flight requests get this long after the drain (a create waits at most its ready timeout).
SHUTDOWN_TIMEOUT_SECONDS = 30


async def serve(host: str, port: int, metrics_port: int) -> None:
    k8s = await new_api_client()
    config = FacadeConfig.from_env()
    app = build_app(k8s, config)
    runner = web.AppRunner(app, access_log_class=AccessLogger, handle_signals=False,
                           shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS)
    await runner.setup()
    metrics_app = web.Application()
    metrics_app.router.add_get("/metrics", metrics_endpoint)
    metrics_runner = web.AppRunner(metrics_app, access_log=None, handle_signals=False)
    await metrics_runner.setup()
    stopping, loop = asyncio.Event(), asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    try:
        await web.TCPSite(runner, host, port).start()
        await web.TCPSite(metrics_runner, host, metrics_port).start()
        log.info("facade on %s:%s, metrics on :%s (replica %s)", host, port, metrics_port, config.replica)
        await stopping.wait()
        app["draining"] = True
        log.info("draining: not ready, still serving for %.0f s", config.drain_seconds)
        await asyncio.sleep(config.drain_seconds)
    finally:
        await runner.cleanup()  # stops listening, waits for in-flight requests
        await metrics_runner.cleanup()
        await k8s.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lingo-webhook", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--metrics-port", type=int, default=8001, help="/metrics only; not for the public")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    log_to_stderr(args.log_level.upper())
    asyncio.run(serve(args.host, args.port, args.metrics_port))


if __name__ == "__main__":
    main()
