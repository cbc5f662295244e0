"""The facade's settings, read from its environment once (the chart sets them: facade.yaml)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from .client_address import parse_networks


# How long a create waits for the session's room and tokens: longer than an operator leader
# hand-over (a 15 s lease, 2 s between tries, then the reconcile), so a create sent while the
# leader is lost waits for the new one instead of failing (issue 25).
READY_TIMEOUT_SECONDS = 30.0


@dataclass
class FacadeConfig:
    namespace: str = "default"
    clients_namespace: str = "default"
    ready_timeout_seconds: float = READY_TIMEOUT_SECONDS
    # Namespaces (globs) whose sessions the control relay may reach; the facade's own by default.
    control_namespaces: tuple[str, ...] = ()
    # This replica's name among the facade's replicas (it holds clients' quota Leases under it).
    replica: str = field(default_factory=lambda: f"{socket.gethostname()}/{os.getpid()}")
    # After SIGTERM: seconds of failing readiness while still serving, so that Services stop
    # sending new requests here before it stops listening.
    drain_seconds: float = 5.0
    # LiveKit's URL as clients dial it (the console's Content-Security-Policy allows it).
    livekit_public_url: str = ""
    # Proxies in front of the facade whose X-Forwarded-For is believed (webhook/lingo_webhook/client_address.py).
    trusted_proxies: tuple = ()

    @classmethod
    def from_env(cls) -> "FacadeConfig":
        namespace = os.environ.get("LINGO_SESSIONS_NAMESPACE", "default")
        extra = [n.strip() for n in os.environ.get("LINGO_CONTROL_NAMESPACES", "").split(",") if n.strip()]
        return cls(
            namespace=namespace,
            clients_namespace=os.environ.get("LINGO_CLIENTS_NAMESPACE", namespace),
            ready_timeout_seconds=float(os.environ.get("LINGO_READY_TIMEOUT_SECONDS", READY_TIMEOUT_SECONDS)),
            control_namespaces=(namespace, *extra),
            replica=os.environ.get("POD_NAME") or f"{socket.gethostname()}/{os.getpid()}",
            drain_seconds=float(os.environ.get("LINGO_DRAIN_SECONDS", "5")),
            livekit_public_url=os.environ.get("LINGO_LIVEKIT_PUBLIC_URL") or os.environ.get("LIVEKIT_URL", ""),
            trusted_proxies=parse_networks(os.environ.get("LINGO_TRUSTED_PROXIES", "")),
        )
