"""Cluster DNS for the real node: `<service>.<namespace>.svc.cluster.local` and pod names, nothing else.

A stand-in for CoreDNS's `kubernetes` plugin, small enough to read in one sitting (CoreDNS is a
7-minute cold build). It answers A queries for Services (their ClusterIP) and for
`a-b-c-d.<namespace>.pod.cluster.local`; a name in the zone that does not exist is NXDOMAIN, and
every name outside it is REFUSED: there is no upstream, so nothing a pod resolves ever leaves
the machine. Services are polled from the API server once a second.

Run: python -m lingo_node.dns --listen IP --port 53 --kubeconfig PATH
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import struct
import threading
import time
import urllib.request

import yaml

from lingo_loopback.processes import INSECURE_TLS

ZONE = "cluster.local"
TTL_SECONDS = 5
TYPE_A, TYPE_AAAA, CLASS_IN = 1, 28, 1
NOERROR, FORMERR, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 3, 4, 5

log = logging.getLogger("lingo-dns")


class ServiceTable:
    """`name.namespace` → ClusterIP, refreshed from the API server in a background thread."""

    def __init__(self, api_url: str, token: str):
        self.api_url, self.token = api_url, token
        self.addresses: dict[str, str | None] = {}
        self.ready = threading.Event()

    def refresh(self) -> None:
        request = urllib.request.Request(f"{self.api_url}/api/v1/services",
                                         headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, context=INSECURE_TLS, timeout=5) as response:
            items = json.load(response)["items"]
        table = {}
        for service in items:
            meta, ip = service["metadata"], service["spec"].get("clusterIP")
            table[f"{meta['name']}.{meta['namespace']}"] = ip if ip and ip != "None" else None
        self.addresses = table
        self.ready.set()

    def run_forever(self) -> None:
        while True:
            try:
                self.refresh()
            except Exception as exc:  # the API server may restart; keep the last table
                log.warning("service refresh failed: %s", exc)
            time.sleep(1)


def resolve(name: str, services: ServiceTable) -> tuple[int, str | None]:
    """(rcode, IPv4 address or None) for one name, lower-cased, without the trailing dot."""
    if name != ZONE and not name.endswith("." + ZONE):
        return REFUSED, None
    labels = name[: -len(ZONE)].rstrip(".").split(".") if name != ZONE else []
    if len(labels) == 3 and labels[2] == "svc":
        key = f"{labels[0]}.{labels[1]}"
        if key in services.addresses:
            return NOERROR, services.addresses[key]
    if len(labels) == 3 and labels[2] == "pod":
        try:
            return NOERROR, str(ipaddress.IPv4Address(labels[0].replace("-", ".")))
        except ValueError:
            pass
    return NXDOMAIN, None


def parse_question(packet: bytes) -> tuple[str, int, int, int]:
    """(name, qtype, qclass, end offset) of the first question; ValueError when malformed."""
    offset, labels = 12, []
    while True:
        if offset >= len(packet):
            raise ValueError("truncated name")
        length = packet[offset]
        offset += 1
        if length == 0:
            break
        if length & 0xC0:
            raise ValueError("compressed question name")
        labels.append(packet[offset:offset + length].decode("ascii", "replace"))
        offset += length
    if offset + 4 > len(packet):
        raise ValueError("truncated question")
    qtype, qclass = struct.unpack("!HH", packet[offset:offset + 4])
    return ".".join(labels).lower(), qtype, qclass, offset + 4


def answer(packet: bytes, services: ServiceTable) -> bytes | None:
    if len(packet) < 12:
        return None
    query_id, flags, qdcount = struct.unpack("!HHH", packet[:6])
    if flags & 0x8000:  # a response, not a query
        return None
    response_flags = 0x8000 | (flags & 0x7900) | 0x0400  # QR, opcode and RD copied, AA
    try:
        if (flags >> 11) & 0xF:
            raise NotImplementedError
        if qdcount != 1:
            raise ValueError("one question per query")
        name, qtype, qclass, end = parse_question(packet)
    except NotImplementedError:
        return struct.pack("!HHHHHH", query_id, response_flags | NOTIMP, 0, 0, 0, 0)
    except ValueError:
        return struct.pack("!HHHHHH", query_id, response_flags | FORMERR, 0, 0, 0, 0)
    rcode, address = resolve(name, services)
    question = packet[12:end]
    records = b""
    if rcode == NOERROR and address and qtype == TYPE_A and qclass == CLASS_IN:
        records = struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, TTL_SECONDS, 4) + ipaddress.IPv4Address(address).packed
    header = struct.pack("!HHHHHH", query_id, response_flags | rcode, 1, 1 if records else 0, 0, 0)
    return header + question + records


class UdpServer(asyncio.DatagramProtocol):
    def __init__(self, services: ServiceTable):
        self.services = services

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        reply = answer(data, self.services)
        if reply:
            self.transport.sendto(reply, addr)


async def serve(listen: str, port: int, services: ServiceTable) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: UdpServer(services), local_addr=(listen, port))

    async def tcp_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                reply = answer(await reader.readexactly(length), services)
                if not reply:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(tcp_client, listen, port)
    log.info("serving %s on %s:%d (udp, tcp)", ZONE, listen, port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m lingo_node.dns", description=__doc__.split("\n")[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--kubeconfig", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = yaml.safe_load(open(args.kubeconfig))
    services = ServiceTable(config["clusters"][0]["cluster"]["server"], config["users"][0]["user"]["token"])
    threading.Thread(target=services.run_forever, daemon=True).start()
    services.ready.wait(30)
    asyncio.run(serve(args.listen, args.port, services))


if __name__ == "__main__":
    main()
