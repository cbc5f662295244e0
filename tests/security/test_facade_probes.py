"""Hostile input against the real facade process: each test replays a probe that once found a
bug (issue 12), with raw sockets where an HTTP client would normalise the bytes."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import time
from pathlib import Path

import aiohttp
import pytest

from lingo_loopback.processes import ManagedProcess

from lingo_api import resources as r

from ..helpers import ACME, auth, create_session, eventually, facade_knows, read_tokens, register_client, wait_for_phase

SESSIONS = "/session-storage/sessions"


def raw_request(url: str, request: bytes, timeout: float = 10) -> tuple[int, bytes]:
    """Send bytes as they are; returns (status, body)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    response = b"".join(chunks)
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def http_request(method: str, path: str, headers: dict[str, bytes] | None = None, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: facade", b"Connection: close",
             f"Content-Length: {len(body)}".encode()]
    lines += [name.encode() + b": " + value for name, value in (headers or {}).items()]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def log_of(process: ManagedProcess) -> str:
    return Path(process.log_path).read_text(errors="replace")


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.fixture
def clean_log(facade_process):
    """Fails the test if the facade logged a traceback while it ran."""
    before = len(log_of(facade_process))
    yield
    added = log_of(facade_process)[before:]
    assert "Traceback" not in added, added[-3000:]


@pytest.mark.parametrize("headers", [
    {"ClientID": b"acme", "ClientSecret": b"\xff"},
    {"ClientID": b"\xff\xfe", "ClientSecret": b"whatever"},
    {"ClientID": b"acme", "ClientSecret": "\u00e9t\u00e9".encode()},
    {"ClientID": b"a" * 300, "ClientSecret": b"x"},
    {"ClientID": b"acme", "ClientSecret": b"y" * 5000},
])
def test_credentials_with_bytes_no_client_has_are_401(facade, clean_log, headers):
    status, body = raw_request(facade, http_request("GET", SESSIONS, headers))
    assert status == 401, body
    assert json.loads(body)["error"]["code"] == "unauthorized"


def test_a_control_character_in_a_secret_is_refused_and_never_logged(facade, facade_process, clean_log):
    marker = secrets.token_hex(8)
    status, _ = raw_request(facade, http_request("GET", SESSIONS, {"ClientID": b"acme",
                                                                  "ClientSecret": f"ab\x01{marker}".encode()}))
    assert status in (400, 401)
    time.sleep(0.2)
    assert marker not in log_of(facade_process)


MALFORMED_SESSION_PATHS = [f"{SESSIONS}/.", f"{SESSIONS}/%2e", f"{SESSIONS}/..", f"{SESSIONS}/%ff", f"{SESSIONS}/UPPER",
                           f"{SESSIONS}/{'a' * 64}", f"{SESSIONS}/-x"]
MALFORMED_CONTROL_PATHS = [f"{SESSIONS}/%ff/control", f"{SESSIONS}/%2e/control"]


@pytest.mark.parametrize("method, path", [*[(method, path) for method in ("GET", "DELETE") for path in MALFORMED_SESSION_PATHS],
                                          *[("GET", path) for path in MALFORMED_CONTROL_PATHS]])  # control: GET only
def test_malformed_session_ids_are_404_before_kubernetes(facade, clean_log, path, method):
    status, body = raw_request(facade, http_request(method, path, {"ClientID": ACME[0].encode(),
                                                                   "ClientSecret": ACME[1].encode()}))
    assert status == 404, body
    assert json.loads(body)["error"]["code"] == "session_not_found"


@pytest.mark.parametrize("payload", [
    b'{"data": ' + b"[" * 8000 + b"]" * 8000 + b"}",
    b'{"data": {"publisher_count": ' + b"9" * 5000 + b"}}",
    b'{"data": {"publisher_count": 1, "subscriber_count": 1e999}}',
    b"\xff\xfe{}",
])
def test_hostile_bodies_are_422(facade, clean_log, payload):
    status, body = raw_request(facade, http_request("POST", SESSIONS, {
        "ClientID": ACME[0].encode(), "ClientSecret": ACME[1].encode(), "Content-Type": b"application/json"}, payload))
    assert status == 422, body
    assert json.loads(body)["ok"] is False


def test_plain_gets_on_the_control_url_open_no_upstream_connections(facade, facade_process, ready_session, clean_log):
    path = ready_session["control_url"].split("://", 1)[1].split("/", 1)[1]
    before = open_files(facade_process.proc.pid)
    for _ in range(100):
        status, body = raw_request(facade, http_request("GET", "/" + path))
        assert status == 400 and json.loads(body)["error"]["code"] == "websocket_required"
    assert open_files(facade_process.proc.pid) - before < 10


async def _control_answer(url: str, token: str | None) -> dict:
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url, params={"token": token} if token else None) as ws:
            if token is None:
                await ws.send_str(json.dumps({"message_type": "authenticate", "data": {"token": "forged"}}))
            message = await ws.receive(timeout=10)
            return json.loads(message.data)


async def test_the_control_path_says_the_same_for_a_missing_session_and_a_wrong_token(
        facade, ready_session, kube, namespace):
    real = ready_session["control_url"]
    missing = real.replace(ready_session["session_id"], "ss-doesnotexist")
    # A session the operator serves, in a namespace the relay does not reach.
    await create_session(kube, namespace, "elsewhere")
    await wait_for_phase(kube, namespace, "elsewhere", r.Phase.READY)
    elsewhere_token = (await read_tokens(kube, namespace, "elsewhere"))["subscriber"][0]
    answers = [
        await _control_answer(real, "forged." + secrets.token_urlsafe(40)),
        await _control_answer(real, None),
        await _control_answer(missing, ready_session["subscriber"][0]),
        await _control_answer(missing, None),
        await _control_answer(real.replace(ready_session["session_id"], "elsewhere"), elsewhere_token),
    ]
    assert all(answer == answers[0] for answer in answers), answers
    assert answers[0]["data"]["code"] == "UNAUTHORIZED"
    # The right token still gets in.
    assert (await _control_answer(real, ready_session["subscriber"][0]))["message_type"] == "authenticated"


async def test_a_flood_of_wrong_secrets_does_not_starve_a_real_login(facade, kube, facade_ns, clean_log):
    """100 parallel wrong secrets from one address; a client logging in for the first time from
    another address is still served promptly, and the flood is turned away cheaply."""
    newcomer = (f"newcomer-{secrets.token_hex(3)}", secrets.token_urlsafe(24))
    await register_client(kube, facade_ns, newcomer, max_sessions=1)
    # The newcomer's first login is the one measured: a client registered after it is polled for
    # instead (the facade reads all its clients at once).
    marker = (f"marker-{secrets.token_hex(3)}", secrets.token_urlsafe(24))
    await register_client(kube, facade_ns, marker, max_sessions=0)
    await facade_knows(facade, marker)
    attacker = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0), limit=0)
    async with aiohttp.ClientSession(base_url=facade, connector=attacker) as flood_http, \
            aiohttp.ClientSession(base_url=facade) as http:
        async def bad_login(i: int) -> tuple[int, float]:
            started = time.monotonic()
            async with flood_http.get(SESSIONS, headers={"ClientID": ACME[0], "ClientSecret": f"wrong-{i}"}) as response:
                return response.status, time.monotonic() - started

        flood = [asyncio.ensure_future(bad_login(i)) for i in range(100)]
        await asyncio.sleep(0.05)
        started = time.monotonic()
        async with http.get(SESSIONS, headers=auth(newcomer)) as response:
            assert response.status == 200, await response.text()
        newcomer_seconds = time.monotonic() - started
        results = await asyncio.gather(*flood)
    statuses = [status for status, _ in results]
    print(f"\nflood: {statuses.count(401)}×401 {statuses.count(429)}×429 {statuses.count(503)}×503, "
          f"slowest {max(s for _, s in results):.2f}s; newcomer's first login {newcomer_seconds:.2f}s")
    assert set(statuses) <= {401, 429, 503}
    assert statuses.count(401) <= 25, "most of the flood must be refused before scrypt"
    assert newcomer_seconds < 1.5


async def test_a_path_cannot_forge_a_log_line_or_write_nul_bytes(facade, facade_process, clean_log):
    """Issue 24, finding 6: the access log wrote the decoded path."""
    marker = secrets.token_hex(6)
    status, _ = raw_request(facade, http_request("GET", f"/x%0a{marker}%20INFO%20forged%00end"))
    assert status == 404

    async def logged() -> str | None:
        text = Path(facade_process.log_path).read_bytes().decode(errors="replace")
        return text if marker in text else None

    text = await eventually(logged, timeout=10, what="the request in the facade's log")
    assert "\x00" not in text
    assert not [line for line in text.splitlines() if line.startswith(marker)], "a forged line"
    assert f"/x\\x0a{marker} INFO forged\\x00end" in text


async def test_responses_that_carry_tokens_are_not_stored(facade, http):
    """Issue 24, finding 7: a cache between client and facade must not keep tokens."""
    async with http.post(SESSIONS, json={"data": {"publisher_count": 1}}, headers=auth(ACME)) as response:
        created = await response.json()
        assert response.status == 200 and response.headers.get("Cache-Control") == "no-store", response.headers
    session = created["data"]["session_id"]
    try:
        async with http.get(f"{SESSIONS}/{session}/tokens", headers=auth(ACME)) as response:
            assert response.status == 200 and response.headers.get("Cache-Control") == "no-store"
    finally:
        async with http.delete(f"{SESSIONS}/{session}", headers=auth(ACME)):
            pass
