"""The REST facade as a real process, over the real control plane, operator and livekit-server."""

from __future__ import annotations

import asyncio
import secrets

import aiohttp
import pytest
from kubernetes_asyncio.client import CoreV1Api, CustomObjectsApi
from livekit import api as livekit_api
from livekit import rtc
from livekit.rtc.participant import PublishTrackError

from lingo_api import resources as r
from lingo_loopback.processes import free_port
from lingo_loopback.stack import start_facade

from .helpers import ACME, OTHER, auth, eventually, gone, register_client

SESSIONS = "/session-storage/sessions"


async def create(http, client=ACME, data=None) -> tuple[int, dict]:
    async with http.post(SESSIONS, json={"data": data or {"publisher_count": 1, "subscriber_count": 3}},
                         headers=auth(client)) as response:
        return response.status, await response.json()


async def test_create_returns_tokens_that_livekit_accepts(http, livekit):
    status, body = await create(http)
    assert status == 200, body
    data = body["data"]
    assert body["ok"] is True
    assert len(data["publisher"]) == 1 and len(data["subscriber"]) == 3
    assert data["room_name"].startswith("lingo-") and data["stream_url"] == livekit.url
    assert data["control_url"].startswith("ws://") and f"/sessions/{data['session_id']}/control" in data["control_url"]

    room = rtc.Room()
    await room.connect(data["stream_url"], data["publisher"][0])
    try:
        assert room.name == data["room_name"]
        source = rtc.AudioSource(16000, 1)
        track = rtc.LocalAudioTrack.create_audio_track("mic", source)
        publication = await room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )
        assert publication.sid
    finally:
        await room.disconnect()

    listener = rtc.Room()
    await listener.connect(data["stream_url"], data["subscriber"][0])
    try:
        # LiveKit took the subscriber token without the right to publish, and a publication is
        # never accepted (the server ignores it: the SDK's wait is what ends).
        permissions = listener.local_participant.permissions
        assert permissions.can_subscribe and not permissions.can_publish, permissions
        track = rtc.LocalAudioTrack.create_audio_track("mic", rtc.AudioSource(16000, 1))
        with pytest.raises((PublishTrackError, TimeoutError)):
            await asyncio.wait_for(listener.local_participant.publish_track(track), 10)
        async with livekit_api.LiveKitAPI(livekit.http_url, livekit.api_key, livekit.api_secret) as lk:
            listing = await lk.room.list_participants(livekit_api.ListParticipantsRequest(room=data["room_name"]))
        assert not [p.tracks for p in listing.participants if p.identity == listener.local_participant.identity
                    and p.tracks]
    finally:
        await listener.disconnect()


async def test_list_get_delete_and_ownership(http, kube, facade_ns):
    status, body = await create(http, data={"publisher_count": 1, "subscriber_count": 0, "target_languages": ["ca"],
                                            "ttl_seconds": 600})
    assert status == 200, body
    session_id = body["data"]["session_id"]
    # Handed to its client: the operator leaves it be (an undelivered one it deletes: test_operator.py).
    stored = await CustomObjectsApi(kube).get_namespaced_custom_object(r.GROUP, r.VERSION, facade_ns, r.SESSION_PLURAL,
                                                                       session_id)
    assert stored["metadata"]["annotations"][r.ANNOTATION_DELIVERY] == r.DELIVERY_DELIVERED

    async with http.get(SESSIONS, headers=auth(ACME)) as response:
        listed = await response.json()
    assert response.status == 200 and session_id in [s["session_id"] for s in listed["data"]]
    async with http.get(SESSIONS, headers=auth(OTHER)) as response:
        assert session_id not in [s["session_id"] for s in (await response.json())["data"]]

    async with http.get(f"{SESSIONS}/{session_id}", headers=auth(ACME)) as response:
        described = (await response.json())["data"]
    assert described["phase"] == "Ready" and described["target_languages"] == ["ca"]
    assert "publisher" not in described, "tokens are only returned at creation"

    for method in ("GET", "DELETE"):
        async with http.request(method, f"{SESSIONS}/{session_id}", headers=auth(OTHER)) as response:
            assert response.status == 403
            assert (await response.json())["error"]["code"] == "forbidden"
    async with http.get(f"{SESSIONS}/ss-nope", headers=auth(ACME)) as response:
        assert response.status == 404 and (await response.json())["ok"] is False

    async with http.delete(f"{SESSIONS}/{session_id}", headers=auth(ACME)) as response:
        assert response.status == 200 and (await response.json())["data"]["deleted"] is True
    custom = CustomObjectsApi(kube)
    await eventually(lambda: gone(lambda: custom.get_namespaced_custom_object(
        r.GROUP, r.VERSION, facade_ns, r.SESSION_PLURAL, session_id)), what="session deleted")


@pytest.mark.parametrize("headers", [{}, {"ClientID": "acme"}, {"ClientID": "acme", "ClientSecret": "wrong"},
                                     {"ClientID": "nobody", "ClientSecret": "whatever"}])
async def test_bad_credentials_get_401(http, headers):
    async with http.post(SESSIONS, json={"data": {"publisher_count": 1}}, headers=headers) as response:
        body = await response.json()
    assert response.status == 401 and body == {"ok": False, "error": body["error"]}
    assert body["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("payload, code", [
    (b"not json", "invalid_json"),
    (b"[1, 2]", "invalid_body"),
    (b'{"data": {"publisher_count": "many"}}', "validation_error"),
    (b'{"data": {"publisher_count": 0}}', "validation_error"),
    (b'{"data": {"publisher_count": 1, "subscriber_count": 100000}}', "validation_error"),
    (b'{"data": {"publisher_count": 1, "colour": "blue"}}', "validation_error"),
    (b'{"data": {"publisher_count": 1}, "extra": 1}', "validation_error"),
    (b'{"data": {"publisher_count": 1, "target_languages": ["es", "es"]}}', "validation_error"),
    (b'{}', "validation_error"),
])
async def test_bad_bodies_get_422(http, payload, code):
    async with http.post(SESSIONS, data=payload, headers={**auth(ACME), "Content-Type": "application/json"}) as response:
        body = await response.json()
    assert response.status == 422, body
    assert body["ok"] is False and body["error"]["code"] == code


async def test_oversized_body_gets_413(http):
    payload = b'{"data": {"publisher_count": 1, "pad": "' + b"x" * 100_000 + b'"}}'
    async with http.post(SESSIONS, data=payload, headers={**auth(ACME), "Content-Type": "application/json"}) as response:
        assert response.status == 413
        assert (await response.json())["error"]["code"] == "payload_too_large"


async def test_unknown_route_and_method_are_json(http):
    async with http.get("/nope") as response:
        assert response.status == 404 and (await response.json())["ok"] is False
    async with http.put(SESSIONS) as response:
        assert response.status == 405 and (await response.json())["error"]["code"] == "method_not_allowed"


async def test_quota_gives_429(http):
    status, body = await create(http, client=OTHER)
    assert status == 200, body
    status, body = await create(http, client=OTHER)
    assert status == 429 and body["error"]["code"] == "quota_exceeded"
    async with http.delete(f"{SESSIONS}/{(await _first_session(http, OTHER))}", headers=auth(OTHER)):
        pass


async def _first_session(http, client) -> str:
    async with http.get(SESSIONS, headers=auth(client)) as response:
        return (await response.json())["data"][0]["session_id"]


async def test_concurrent_creates_get_distinct_rooms(http):
    results = await asyncio.gather(*(create(http, data={"publisher_count": 1, "subscriber_count": 1})
                                     for _ in range(4)))
    assert all(status == 200 for status, _ in results), results
    rooms = {body["data"]["room_name"] for _, body in results}
    assert len(rooms) == 4
    for _, body in results:
        async with http.delete(f"{SESSIONS}/{body['data']['session_id']}", headers=auth(ACME)) as response:
            assert response.status == 200


async def test_not_ready_in_time_gives_503_and_cleans_up(cluster, kube):
    """A facade whose namespace no operator watches: the session never becomes ready."""
    namespace = f"unwatched-{secrets.token_hex(3)}"
    await CoreV1Api(kube).create_namespace({"metadata": {"name": namespace}})
    await register_client(kube, namespace, ACME, max_sessions=2)
    port = free_port()
    process = start_facade(cluster, port, namespace, ready_timeout=1.5, name="facade-unwatched")
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
            # More attempts than the quota (2): sessions that never came up must not use it up.
            for _ in range(3):
                status, body = await create(http)
                assert status == 503 and body["error"]["code"] == "session_not_ready", body
        listing = await CustomObjectsApi(kube).list_namespaced_custom_object(
            r.GROUP, r.VERSION, namespace, r.SESSION_PLURAL)
        assert listing["items"] == []
    finally:
        process.stop()
        await CoreV1Api(kube).delete_namespace(namespace)


async def test_openapi_and_health(http):
    async with http.get("/session-storage/openapi.json") as response:
        document = await response.json()
    assert document["openapi"].startswith("3.") and "/session-storage/sessions" in document["paths"]
    for path in ("/healthz", "/readyz"):
        async with http.get(path) as response:
            assert response.status == 200


async def test_metrics_count_requests_by_route(http, facade_process):
    async with http.get(f"{SESSIONS}/ss-nope", headers=auth(ACME)):
        pass
    async with http.get("/metrics") as response:  # not on the public port (issue 24): client IDs are labels
        assert response.status == 404
    async with aiohttp.ClientSession() as own, own.get(facade_process.endpoints["metrics"]) as response:
        text = await response.text()
    assert 'route="/session-storage/sessions/{id}"' in text and 'status="404"' in text
    assert "ss-nope" not in text, "session IDs must not become label values"
    assert "lingo_facade_sessions_created_total" in text


async def test_logs_never_contain_secrets(cluster, http):
    status, body = await create(http)
    assert status == 200
    tokens = body["data"]["publisher"] + body["data"]["subscriber"]
    logs = list(cluster.log_dir.glob("*.log"))
    assert any(p.name == "facade.log" for p in logs) and any(p.name == "operator.log" for p in logs)
    for path in logs:
        name, text = path.name, path.read_text(errors="replace")
        assert ACME[1] not in text and OTHER[1] not in text, f"client secret in {name} log"
        assert not any(token in text for token in tokens), f"session token in {name} log"
        assert cluster.livekit.api_secret not in text, f"LiveKit secret in {name} log"


async def test_palabras_create_route_answers_in_palabras_shape(http):
    """POST /session-storage/session (singular) takes Palabra's body and answers in its shape."""
    for body in ({"subscriber_count": 0, "intent": "api"}, {"subscriber_count": 1, "publisher_can_subscribe": True}):
        async with http.post(f"{SESSIONS[:-1]}", json={"data": body}, headers=auth(ACME)) as response:
            answer = await response.json()
        assert response.status == 200 and answer["ok"] is True, answer
        data = answer["data"]
        assert isinstance(data["publisher"], str) and len(data["subscriber"]) == body["subscriber_count"]
        assert data["webrtc_room_name"].startswith("lingo-") and data["webrtc_url"].startswith("ws://")
        assert data["ws_url"].endswith(f"/sessions/{data['id']}/control")  # no query: clients append ?token=
        async with http.delete(f"{SESSIONS}/{data['id']}", headers=auth(ACME)) as response:
            assert response.status == 200


@pytest.mark.parametrize("headers", [{}, {"ClientID": "acme", "ClientSecret": "wrong"}])
async def test_palabras_create_route_answers_404_for_wrong_credentials(http, headers):
    """Palabra's SDK reports a 404 as "Invalid API credentials"; the project's own routes say 401."""
    async with http.post(f"{SESSIONS[:-1]}", json={"data": {"subscriber_count": 0}}, headers=headers) as response:
        answer = await response.json()
    assert response.status == 404 and answer["error"]["code"] == "invalid_credentials"
