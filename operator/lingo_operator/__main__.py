"""`lingo-operator`: run the StreamingSession operator (kopf) in this process."""

from __future__ import annotations

import argparse
import logging
import os
import socket

import kopf
import prometheus_client

from . import pool_handlers, session_handlers, session_lifetime, startup, worker_readiness  # noqa: F401 - registers the handlers with kopf


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lingo-operator", description=__doc__)
    parser.add_argument("--namespace", "-n", action="append", default=[],
                        help="namespace (glob) to watch; repeat for more. Default: all namespaces")
    parser.add_argument("--liveness", default="http://0.0.0.0:8081/healthz",
                        help="liveness endpoint URL, or '' to disable")
    parser.add_argument("--peering", default="",
                        help="kopf peering name for running several replicas (needs the KopfPeering CRDs)")
    parser.add_argument("--metrics-port", type=int, default=8082, help="Prometheus /metrics port, 0 to disable")
    parser.add_argument("--metrics-host", default="0.0.0.0")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    # kopf's handler is the only one on the root logger (a second one printed every line twice).
    kopf.configure(verbose=args.log_level.upper() == "DEBUG")
    logging.getLogger().setLevel(args.log_level.upper())
    if args.metrics_port:
        prometheus_client.start_http_server(args.metrics_port, addr=args.metrics_host)
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        standalone=not args.peering,
        peering_name=args.peering or None,
        liveness_endpoint=args.liveness or None,
        identity=operator_identity(),
        memo=kopf.Memo(watch_namespaces=args.namespace),
    )


if __name__ == "__main__":
    main()
