"""`lingo-operator`: run the StreamingSession operator (kopf) in this process; with
`--leader-elect`, only while this replica holds the leader Lease (leadership.py)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from urllib.parse import urlsplit

import kopf
import prometheus_client
from aiohttp import web
from kubernetes_asyncio.client import CoordinationV1Api

from lingo_api.kube_client import new_api_client

from . import metrics
from . import (pool_handlers, session_handlers, session_lifetime, startup,  # noqa: F401 - registers the handlers with kopf
               worker_liveness, worker_pod_index, worker_readiness)
from .leadership import LeaderElection, LeaseTiming
from .memo import OperatorMemo

log = logging.getLogger("lingo.operator")


@kopf.on.login()
def login(**kwargs):
    """Service account inside a pod, kubeconfig anywhere else; nothing else is tried."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


def operator_identity() -> str:
    """This replica's name among its peers: the pod name (POD_ID, from the downward API) or host/pid.

    Passed to kopf explicitly: kopf's own default asks getpass.getuser(), which raises under a
    uid with no passwd entry (the chart runs the image as uid 10001).
    """
    return os.environ.get("POD_ID") or f"{socket.gethostname()}/{os.getpid()}"


async def standby_health(liveness_url: str) -> web.AppRunner | None:
    """While standing by, the liveness endpoint answers 200 (kopf serves it once leading)."""
    if not liveness_url:
        return None
    parts = urlsplit(liveness_url)
    app = web.Application()
    app.router.add_get(parts.path or "/", lambda _: web.json_response({"ok": True, "role": "standby"}))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, parts.hostname, parts.port).start()
    return runner


async def run(args: argparse.Namespace) -> int:
    operator = dict(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        standalone=True,  # one reconciler: the Lease decides which replica (kopf's peering is not used)
        liveness_endpoint=args.liveness or None,
        identity=operator_identity(),
        memo=OperatorMemo(watch_namespaces=list(args.namespace or []), election=None),
    )
    if not args.leader_elect:
        metrics.LEADER.set(1)
        await kopf.operator(**operator)
        return 0

    api = await new_api_client()
    election = LeaderElection(CoordinationV1Api(api), args.leader_elect_namespace, args.leader_elect_lease,
                              operator["identity"], LeaseTiming(args.lease_duration, args.renew_deadline,
                                                                args.lease_retry))
    loop, stopping = asyncio.get_running_loop(), asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    health = await standby_health(args.liveness)
    acquiring, stop_asked = asyncio.create_task(election.acquire()), asyncio.create_task(stopping.wait())
    try:
        await asyncio.wait([acquiring, stop_asked], return_when=asyncio.FIRST_COMPLETED)
        if not acquiring.done():
            return 0
        acquiring.result()
    finally:
        for task in (acquiring, stop_asked):
            task.cancel()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)  # kopf installs its own
        if health:
            await health.cleanup()  # kopf's liveness endpoint takes the port over

    metrics.LEADER.set(1)
    operator["memo"].election = election  # released by the cleanup handler, once kopf stopped reconciling
    keeping = asyncio.create_task(election.keep())
    lost = asyncio.Event()  # kopf stops when the Lease could not be renewed
    keeping.add_done_callback(lambda task: election.lost and lost.set())
    try:
        await kopf.operator(**operator, stop_flag=lost)
    finally:
        keeping.cancel()
        metrics.LEADER.set(0)
        await election.release()
        await api.close()
    if election.lost:
        log.error("exiting: no longer the leader")
        return 1
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lingo-operator", description=__doc__)
    parser.add_argument("--namespace", "-n", action="append", default=[],
                        help="namespace (glob) to watch; repeat for more. Default: all namespaces")
    parser.add_argument("--liveness", default="http://0.0.0.0:8081/healthz",
                        help="liveness endpoint URL, or '' to disable")
    parser.add_argument("--leader-elect", action="store_true",
                        help="run several replicas: only the holder of the leader Lease reconciles")
    parser.add_argument("--leader-elect-namespace", default=os.environ.get("POD_NAMESPACE", "default"),
                        help="namespace of the leader Lease (default: $POD_NAMESPACE, else 'default')")
    parser.add_argument("--leader-elect-lease", default="lingo-operator", help="name of the leader Lease")
    defaults = LeaseTiming()
    parser.add_argument("--lease-duration", type=float, default=defaults.lease_duration,
                        help="seconds a standby waits on a Lease that is not renewed before taking it")
    parser.add_argument("--renew-deadline", type=float, default=defaults.renew_deadline,
                        help="seconds the leader keeps trying to renew before it stops reconciling")
    parser.add_argument("--lease-retry", type=float, default=defaults.retry, help="seconds between Lease tries")
    parser.add_argument("--metrics-port", type=int, default=8082, help="Prometheus /metrics port, 0 to disable")
    parser.add_argument("--metrics-host", default="0.0.0.0")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    # kopf's handler is the only one on the root logger (a second one printed every line twice).
    kopf.configure(verbose=args.log_level.upper() == "DEBUG")
    logging.getLogger().setLevel(args.log_level.upper())
    if args.metrics_port:
        prometheus_client.start_http_server(args.metrics_port, addr=args.metrics_host)
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
