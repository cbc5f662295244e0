"""Issue 24, finding 3: one address, one lockout for all. Failed logins lock out the pair of
address and client ID (an address only after failing for many clients), and behind a trusted
proxy the address is the client's, read from X-Forwarded-For."""

from __future__ import annotations

import secrets

import aiohttp
import pytest

from lingo_loopback.processes import free_port
from lingo_loopback.stack import start_facade

from ..helpers import auth, facade_knows, register_client

SESSIONS = "/session-storage/sessions"
PROXY = "127.0.0.3"  # plays the Ingress in front of the second facade


@pytest.fixture(scope="module")
async def two_clients(kube, facade_ns, facade):
    clients = [(f"lockout-{name}-{secrets.token_hex(3)}", secrets.token_urlsafe(24)) for name in ("a", "b")]
    for client in clients:
        await register_client(kube, facade_ns, client, max_sessions=0)
    await facade_knows(facade, clients[-1])
    return clients


@pytest.fixture(scope="module")
def proxied_facade(cluster, facade_ns, two_clients):
    port = free_port()
    process = start_facade(cluster, port, facade_ns, name="facade-behind-proxy",
                           extra_env={"LINGO_TRUSTED_PROXIES": f"{PROXY}/32"})
    yield f"http://127.0.0.1:{port}"
    process.stop()


async def _statuses(url: str, local: str, attempts: list[tuple[tuple[str, str], str | None]]) -> list[int]:
    """One login after another from `local`, each (client, X-Forwarded-For)."""
    statuses = []
    async with aiohttp.ClientSession(base_url=url, connector=aiohttp.TCPConnector(local_addr=(local, 0))) as http:
        for client, forwarded in attempts:
            headers = {**auth(client), **({"X-Forwarded-For": forwarded} if forwarded else {})}
            async with http.get(SESSIONS, headers=headers) as response:
                statuses.append(response.status)
    return statuses


async def test_failures_lock_out_the_client_guessed_at_not_the_whole_address(facade, two_clients):
    a, b = two_clients
    wrong_a = (a[0], "wrong-" + secrets.token_hex(4))
    statuses = await _statuses(facade, "127.0.0.4", [(wrong_a, None)] * 7 + [(a, None), (b, None)])
    assert statuses[:7] == [401] * 6 + [429], statuses  # five failures are free, the sixth locks
    assert statuses[7] == 429, "the pair is locked: a's right secret from there waits too"
    assert statuses[8] == 200, "another client from the same address is not locked out"


async def test_behind_a_trusted_proxy_the_forwarded_address_is_the_one_counted(proxied_facade, two_clients):
    a, b = two_clients
    await facade_knows(proxied_facade, b)
    wrong_a = (a[0], "wrong-" + secrets.token_hex(4))
    attacker, user = "198.51.100.7", "198.51.100.8"
    statuses = await _statuses(proxied_facade, PROXY, [(wrong_a, attacker)] * 7 + [(a, user), (b, attacker)])
    assert statuses[6] == 429 and statuses[7:] == [200, 200], statuses
    # From an address that is no trusted proxy the header is not believed: the peer is counted.
    # (The attacker cannot hide behind the user's address either: the user's pair would be untouched.)
    spoofed = await _statuses(proxied_facade, "127.0.0.5", [(wrong_a, user)] * 7)
    assert spoofed == [401] * 6 + [429], spoofed
    assert (await _statuses(proxied_facade, PROXY, [(wrong_a, user)]))[0] == 401, "the user's pair was not counted"
