"""`lingo-operator`: run the StreamingSession operator (kopf) in this process."""

from __future__ import annotations

import argparse
import logging

import kopf
import prometheus_client

from . import handlers  # noqa: F401 - registers the handlers with kopf


@kopf.on.login()
def login(**kwargs):
    """Service account inside a pod, kubeconfig anywhere else; nothing else is tried."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


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
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    kopf.configure(verbose=args.log_level.upper() == "DEBUG")
    if args.metrics_port:
        prometheus_client.start_http_server(args.metrics_port, addr=args.metrics_host)
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        standalone=not args.peering,
        peering_name=args.peering or None,
        liveness_endpoint=args.liveness or None,
    )


if __name__ == "__main__":
    main()
