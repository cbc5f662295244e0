"""`lingo-webhook`: serve the REST facade."""

from __future__ import annotations

import argparse
import logging

from aiohttp import web

from lingo_api.kube_client import new_api_client
from lingo_api.untrusted import redact_malformed_requests

from .app import AccessLogger, FacadeConfig, build_app


async def make_app() -> web.Application:
    k8s = await new_api_client()
    app = build_app(k8s, FacadeConfig.from_env())

    async def lifecycle(app: web.Application):
        yield
        await k8s.close()

    app.cleanup_ctx.append(lifecycle)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lingo-webhook", description=__doc__)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    redact_malformed_requests()
    web.run_app(make_app(), host=args.host, port=args.port, access_log_class=AccessLogger, print=None)


if __name__ == "__main__":
    main()
