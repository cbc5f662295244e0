"""The address a request comes from, for the login throttle: the peer, or, when the peer is one of
the operator's listed proxies (an Ingress, a load balancer), the address that proxy saw.

`X-Forwarded-For` is read right to left and only through trusted hops: a client can put anything
in the header, but the last address before the first untrusted hop is the one that connected to
our proxy. Without trusted proxies the header is ignored.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """`LINGO_TRUSTED_PROXIES`: comma-separated addresses or CIDRs; ValueError names a bad one."""
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if item:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"LINGO_TRUSTED_PROXIES: {item[:60]!r} is not an address or CIDR") from None
    return tuple(networks)


def _trusted(address: str, proxies: Iterable[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(peer: str, forwarded_for: str | None, proxies: tuple[Network, ...]) -> str:
    if not proxies or not forwarded_for or not _trusted(peer, proxies):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",")][-32:]
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            try:
                return str(ipaddress.ip_address(hop))  # never an arbitrary string as a throttle key
            except ValueError:
                return peer
    return peer


def peer_of(request: web.Request) -> str:
    """The address the login throttle counts for a request of the facade."""
    return client_address(request.remote or "", request.headers.get("X-Forwarded-For"),
                          request.app["config"].trusted_proxies)
