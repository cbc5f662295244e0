"""Rooms and tokens live exactly as long as their session; a worker killed mid-session comes
back; 60 create/delete cycles leave nothing behind."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import time
import uuid
from pathlib import Path

import aiohttp
import pytest
from kubernetes_asyncio.client import CoreV1Api, CustomObjectsApi
from livekit import api as livekit_api
from livekit import rtc

from lingo_api import resources as r
from lingo_webhook.control_proxy import FOLLOW_POLL_SECONDS, worker_endpoint

from ..conftest import TEST_NAMESPACE_PREFIX
from ..helpers import ACME, auth, eventually, facade_knows, register_client
from ..speech import ControlClient

SESSIONS = "/session-storage/sessions"


async def _create(http, client=ACME, ttl: int | None = None) -> dict:
    data = {"publisher_count": 1, "subscriber_count": 1, **({"ttl_seconds": ttl} if ttl else {})}
    async with http.post(SESSIONS, json={"data": data}, headers=auth(client)) as response:
        body = await response.json()
    assert response.status == 200, body
    return body["data"]


async def _worker_ready(http, session_id: str, client=ACME) -> None:
    async def ready():
        async with http.get(f"{SESSIONS}/{session_id}", headers=auth(client)) as response:
            return (await response.json())["data"]["worker_ready"]

    await eventually(ready, timeout=90, what=f"{session_id}'s worker")


async def _rooms(livekit) -> list:
    async with livekit_api.LiveKitAPI(livekit.http_url, livekit.api_key, livekit.api_secret) as api:
        return list((await api.room.list_rooms(livekit_api.ListRoomsRequest())).rooms)


async def _cannot_join(url: str, token: str) -> bool:
    room = rtc.Room()
    try:
        await asyncio.wait_for(room.connect(url, token), 10)
    except rtc.ConnectError:  # refused by LiveKit; a timeout is not a refusal and fails the test
        return True
    await room.disconnect()
    return False


def _worker_pids(session_ids: set[str], engines_too: bool = False) -> list[int]:
    """Worker processes (run by the loopback kubelet) serving any of these sessions; with
    `engines_too`, their engine processes (Apertium pipelines, Festival) as well."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            is_worker = b"lingo-worker" in (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if not (is_worker or engines_too):
            continue
        for entry in environ:
            if entry.startswith(b"LINGO_SESSION_NAME=") and entry.split(b"=", 1)[1].decode() in session_ids:
                pids.append(int(proc.name))
    return pids


async def test_a_deleted_sessions_room_stays_gone_and_its_tokens_stop_working(http, livekit):
    data = await _create(http)
    await _worker_ready(http, data["session_id"])
    async with http.delete(f"{SESSIONS}/{data['session_id']}", headers=auth(ACME)) as response:
        assert response.status == 200

    async def room_gone():
        return data["room_name"] not in [room.name for room in await _rooms(livekit)]

    await eventually(room_gone, timeout=20, what="the room to go")
    await asyncio.sleep(3)  # long enough for a worker to have reconnected, if it were going to
    assert await room_gone(), "the room came back after its session was deleted"
    assert await _cannot_join(data["stream_url"], data["publisher"][0])
    assert await room_gone()


async def test_an_expired_sessions_room_stays_gone_and_its_tokens_stop_working(http, livekit):
    data = await _create(http, ttl=12)
    await _worker_ready(http, data["session_id"])

    async def room_gone():
        return data["room_name"] not in [room.name for room in await _rooms(livekit)]

    await eventually(room_gone, timeout=40, what="the room to go at expiry")
    await asyncio.sleep(3)
    assert await room_gone(), "the room came back after its session expired"
    assert await _cannot_join(data["stream_url"], data["publisher"][0])
    async with http.delete(f"{SESSIONS}/{data['session_id']}", headers=auth(ACME)):
        pass


async def test_a_room_that_belongs_to_no_session_is_removed(livekit, operator):
    """Rooms exist only while their session does: one left behind (here made by hand, with the
    metadata of a session that does not exist, in a namespace the operator watches) goes."""
    name = r.room_name(str(uuid.uuid4()))
    owner = {"namespace": f"{TEST_NAMESPACE_PREFIX}gone", "session": "ghost", "uid": "0"}
    async with livekit_api.LiveKitAPI(livekit.http_url, livekit.api_key, livekit.api_secret) as api:
        await api.room.create_room(livekit_api.CreateRoomRequest(name=name, metadata=json.dumps(owner)))
    started = time.monotonic()

    async def gone():
        return name not in [room.name for room in await _rooms(livekit)]

    await eventually(gone, timeout=30, what="the orphan room to be removed")
    print(f"\norphan room removed after {time.monotonic() - started:.1f}s")


async def test_a_killed_worker_is_restarted_and_serves_again(http):
    data = await _create(http)
    await _worker_ready(http, data["session_id"])
    (pid,) = _worker_pids({data["session_id"]})
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()

    async def restarted():
        pids = _worker_pids({data["session_id"]})
        return pids and pids[0] != pid

    await eventually(restarted, timeout=30, what="a new worker process")
    await _worker_ready(http, data["session_id"])
    print(f"\nworker serving again {time.monotonic() - killed_at:.1f}s after SIGKILL")
    async with http.delete(f"{SESSIONS}/{data['session_id']}", headers=auth(ACME)):
        pass


async def test_a_frozen_worker_is_replaced_within_seconds(http, kube, facade_ns):
    """Issue 25: a worker that stops answering (SIGSTOP: its node frozen or cut off) while its
    pod still looks Ready is deleted after three missed health checks, and the session gets
    another worker, without waiting for Kubernetes to notice. A control socket open through the
    facade stays open: it is told, and then talks to the new worker."""
    data = await _create(http)
    session_id = data["session_id"]
    await _worker_ready(http, session_id)
    async with aiohttp.ClientSession() as plain:
        async with plain.ws_connect(data["control_url"], params={"token": data["publisher"][0]}) as ws:
            control = ControlClient(ws)
            await control.next("current_task")
            (pid,) = _worker_pids({session_id})
            os.kill(pid, signal.SIGSTOP)
            frozen_at = time.monotonic()
            try:
                async def replaced():
                    pids = _worker_pids({session_id})
                    return bool(pids) and pid not in pids

                await eventually(replaced, timeout=45, what="another worker process")
                await _worker_ready(http, session_id)
                told = await control.next("warning", timeout=60)
                assert told["code"] == "WORKER_REPLACED", told
                await control.next("current_task", timeout=30)  # from the new worker, on the same socket
            finally:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass  # killed with its deleted pod, as it should be
    print(f"\nfrozen worker replaced, the new one ready {time.monotonic() - frozen_at:.1f}s after SIGSTOP")
    events = await CoreV1Api(kube).list_namespaced_event(facade_ns, field_selector=f"involvedObject.name={session_id}")
    assert r.Reason.WORKER_UNRESPONSIVE in {event.reason for event in events.items}
    async with http.delete(f"{SESSIONS}/{session_id}", headers=auth(ACME)):
        pass


async def test_a_worker_briefly_not_ready_keeps_its_control_socket(http, kube, facade_ns):
    """A worker too busy to answer its readiness probe in time (three talks at once on a 2-core
    machine did it) is marked not ready, and the operator clears the session's workerEndpoint
    until it answers again. That is no replacement: the control socket through the facade stays
    with the same worker, which goes on answering on it. (The facade used to take the cleared
    endpoint for a move, drop its link to the worker and wait for a different one, and the
    client lost its session.) The worker is stopped until its probe fails, well before the
    operator would give it up as silent (worker_liveness.py: about 6 s)."""
    data = await _create(http)
    session_id = data["session_id"]
    await _worker_ready(http, session_id)
    sessions = CustomObjectsApi(kube)

    async def named_worker() -> str | None:  # as the facade reads it
        return worker_endpoint(await sessions.get_namespaced_custom_object(r.GROUP, r.VERSION, facade_ns,
                                                                           r.SESSION_PLURAL, session_id))

    async def pod_ready() -> bool:  # the kubelet's view: the session may be told sooner, by the worker
        pods = await CoreV1Api(kube).list_namespaced_pod(facade_ns, label_selector=f"{r.LABEL_SESSION}={session_id}")
        return any(c.type == "Ready" and c.status == "True" for pod in pods.items for c in pod.status.conditions or [])

    await eventually(pod_ready, timeout=30, what="the worker pod Ready")
    async with aiohttp.ClientSession() as plain:
        async with plain.ws_connect(data["control_url"], params={"token": data["publisher"][0]}) as ws:
            control = ControlClient(ws)
            await control.next("current_task")
            (pid,) = _worker_pids({session_id})
            endpoint = await named_worker()
            assert endpoint, "the facade sees the session's worker"
            os.kill(pid, signal.SIGSTOP)
            try:
                async def cleared():
                    return await named_worker() is None

                await eventually(cleared, timeout=5, interval=0.1, what="the session's endpoint cleared")
                await asyncio.sleep(FOLLOW_POLL_SECONDS * 1.5)  # the facade looks at the session meanwhile
            finally:
                os.kill(pid, signal.SIGCONT)

            async def named_again():
                return await named_worker() == endpoint

            await eventually(named_again, timeout=10, what="the worker ready again")
            await control.send("get_task")
            await control.next("current_task", timeout=10)
            assert not [m for m in control.messages if m["message_type"] in ("warning", "error")], control.messages
            assert _worker_pids({session_id}) == [pid]
    async with http.delete(f"{SESSIONS}/{session_id}", headers=auth(ACME)):
        pass


@pytest.mark.timeout(600)
async def test_sixty_create_delete_cycles_leave_nothing_behind(http, facade, kube, facade_ns, livekit):
    client = (f"churn-{secrets.token_hex(3)}", secrets.token_urlsafe(24))
    await register_client(kube, facade_ns, client, max_sessions=4)
    await facade_knows(facade, client)
    made: set[str] = set()
    uids: set[str] = set()

    async def cycle() -> None:
        async with http.post(SESSIONS, json={"data": {"publisher_count": 1, "subscriber_count": 1}},
                             headers=auth(client)) as response:
            body = await response.json()
        assert response.status == 200, body
        session_id = body["data"]["session_id"]
        made.add(session_id)
        uids.add(body["data"]["room_name"])
        await asyncio.sleep(0.5)  # let the worker start, so deletion meets a running one
        async with http.delete(f"{SESSIONS}/{session_id}", headers=auth(client)) as response:
            assert response.status == 200

    started = time.monotonic()
    for _ in range(15):
        await asyncio.gather(*(cycle() for _ in range(4)))
    assert len(made) == 60

    custom, core = CustomObjectsApi(kube), CoreV1Api(kube)

    async def nothing_left():
        sessions = (await custom.list_namespaced_custom_object(
            r.GROUP, r.VERSION, facade_ns, r.SESSION_PLURAL, label_selector=f"{r.LABEL_CLIENT}={client[0]}"))["items"]
        secrets_left = [s for s in (await core.list_namespaced_secret(facade_ns)).items
                        if (s.metadata.labels or {}).get(r.LABEL_SESSION) in made]
        pods_left = [p for p in (await core.list_namespaced_pod(facade_ns)).items
                     if (p.metadata.labels or {}).get(r.LABEL_SESSION) in made]
        rooms_left = [room.name for room in await _rooms(livekit) if room.name in uids]
        workers_left = _worker_pids(made, engines_too=True)
        left = sessions or secrets_left or pods_left or rooms_left or workers_left
        return None if left else True

    await eventually(nothing_left, timeout=90, interval=1, what="no session, Secret, pod, room or worker left")
    print(f"\n60 create/delete cycles (4 at a time) and full cleanup in {time.monotonic() - started:.1f}s")
