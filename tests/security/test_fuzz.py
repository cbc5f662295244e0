"""Bounded fuzzing (hypothesis, derandomized so CI runs the same cases): random JSON as the
create body and as control messages. The facade answers every body with a JSON error or a
quota refusal, never a 500; the worker answers every message and keeps the connection."""

from __future__ import annotations

import asyncio
import http.client
import json
import secrets

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..helpers import facade_knows, register_client

SESSIONS = "/session-storage/sessions"
FUZZ_SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                         suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=15), children, max_size=5),
    max_leaves=25,
)
field_names = st.sampled_from(["publisher_count", "subscriber_count", "source_language", "target_languages",
                               "ttl_seconds", "worker_profile", "publisherCount", "extra"])
create_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"data": st.dictionaries(field_names, json_values, max_size=6)}),
)
control_messages = st.one_of(
    json_values,
    st.fixed_dictionaries({
        "message_type": st.sampled_from(["get_task", "set_task", "pause_task", "resume_task", "authenticate",
                                         "end_task_not", "x"]) | st.text(max_size=10),
        "data": json_values | st.fixed_dictionaries({
            "options": st.dictionaries(st.sampled_from(["vad_threshold", "min_silence_ms", "voices", "speech_rate",
                                                        "asr_engine", "bogus"]), json_values, max_size=4)}),
    }),
)


@pytest.fixture(scope="module")
async def fuzz_client(facade, kube, facade_ns):
    """A client with a quota of zero: a valid body is answered 429 and creates nothing."""
    client = (f"fuzz-{secrets.token_hex(3)}", secrets.token_urlsafe(24))
    await register_client(kube, facade_ns, client, max_sessions=0)
    await facade_knows(facade, client)
    return client


def test_fuzzed_create_bodies_never_crash_the_facade(facade, fuzz_client):
    host, port = facade.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=15)
    headers = {"ClientID": fuzz_client[0], "ClientSecret": fuzz_client[1], "Content-Type": "application/json"}

    @FUZZ_SETTINGS
    @given(create_bodies)
    def check(body):
        connection.request("POST", SESSIONS, body=json.dumps(body), headers=headers)
        response = connection.getresponse()
        answer = json.loads(response.read())
        assert response.status in (413, 422, 429), (response.status, answer)
        assert answer["ok"] is False and answer["error"]["code"]

    try:
        check()
    finally:
        connection.close()


def test_fuzzed_control_messages_are_answered_and_keep_the_connection(ready_session):
    url, token = ready_session["control_url"], ready_session["publisher"][0]

    async def exchange(message) -> list[dict]:
        async with aiohttp.ClientSession() as http, http.ws_connect(url, params={"token": token}) as ws:
            for _ in range(2):  # authenticated, current_task
                await ws.receive(timeout=10)
            await ws.send_str(json.dumps(message))
            await ws.send_str(json.dumps({"message_type": "get_task", "data": {}}))
            replies = []
            while not replies or replies[-1]["message_type"] != "current_task" or len(replies) < 1:
                received = await ws.receive(timeout=10)
                assert received.type == aiohttp.WSMsgType.TEXT, f"connection dropped after {message!r}"
                replies.append(json.loads(received.data))
            return replies

    @FUZZ_SETTINGS
    @given(control_messages)
    def check(message):
        if isinstance(message, dict) and message.get("message_type") in ("end_task", "pause_task"):
            return  # would change the shared session for the next examples
        replies = asyncio.run(exchange(message))
        assert all(reply["message_type"] in ("error", "current_task") for reply in replies), replies

    check()
