"""The operator is killed (SIGKILL) in the middle of its work and started again: every session
converges to exactly one room, Secret and worker pod, and no transition's events are lost."""

from __future__ import annotations

import asyncio
import os
import signal

from kubernetes_asyncio.client import CoreV1Api, CustomObjectsApi
from livekit import api as livekit_api

from lingo_api import resources as r

from ..helpers import create_session, delete_and_wait, eventually, get_session, gone, wait_for_phase, worker_ready


async def _events(kube, namespace: str, name: str) -> set[str]:
    listing = await CoreV1Api(kube).list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
    return {event.reason for event in listing.items}


async def test_sigkill_mid_create_converges_to_exactly_one_of_everything(stack):
    names = [f"crash-{i}" for i in range(10)]
    await asyncio.gather(*(create_session(stack.kube, stack.namespace, name, subscriberCount=1) for name in names))

    async def mid_create():
        """(sessions begun, sessions Ready) once the operator has begun some and not finished all."""
        statuses = [(await get_session(stack.kube, stack.namespace, name)).get("status") or {} for name in names]
        begun = sum(1 for status in statuses if status.get("roomName"))
        ready = sum(1 for status in statuses if status.get("phase") == r.Phase.READY)
        return (begun, ready) if begun and ready < len(names) else None

    begun, ready = await eventually(mid_create, timeout=30, interval=0.02, what="the operator part-way through the creates")
    os.kill(stack.operator.proc.pid, signal.SIGKILL)
    print(f"\nkilled with {begun} of {len(names)} sessions begun and {ready} Ready")
    stack.operator.proc.wait()
    stack.start_operator()
    for name in names:
        await wait_for_phase(stack.kube, stack.namespace, name, r.Phase.READY, timeout=60)
    core = CoreV1Api(stack.kube)
    sessions = {name: await get_session(stack.kube, stack.namespace, name) for name in names}
    lk = stack.cluster.livekit
    async with livekit_api.LiveKitAPI(lk.http_url, lk.api_key, lk.api_secret) as api:
        rooms = [room.name for room in (await api.room.list_rooms(livekit_api.ListRoomsRequest())).rooms]
    for name, session in sessions.items():
        selector = f"{r.LABEL_SESSION}={name}"
        assert len((await core.list_namespaced_secret(stack.namespace, label_selector=selector)).items) == 1
        assert len((await core.list_namespaced_pod(stack.namespace, label_selector=selector)).items) == 1
        assert rooms.count(r.room_name(session["metadata"]["uid"])) == 1


async def test_a_crash_right_after_the_status_write_loses_no_event(stack):
    """The crash point sits where events used to be posted: after the status write."""
    # No other session may be reconciled (resumed) by the crashing operator first: it would crash there.
    for name in [f"crash-{i}" for i in range(10)]:
        await delete_and_wait(stack.kube, stack.namespace, name)
    stack.operator.stop()
    crashing = stack.start_operator(name="operator-crash", extra_env={"LINGO_CRASH_AT": "reconcile.status_written"})
    await create_session(stack.kube, stack.namespace, "crash-events", subscriberCount=1)
    await eventually(lambda: asyncio.sleep(0, result=not crashing.alive()), timeout=30, what="the crash point")
    stack.start_operator()
    await wait_for_phase(stack.kube, stack.namespace, "crash-events", r.Phase.READY, timeout=30)

    async def all_posted():
        reasons = await _events(stack.kube, stack.namespace, "crash-events")
        return reasons if {"RoomCreated", "TokensIssued", "WorkerCreated"} <= reasons else None

    await eventually(all_posted, timeout=30, what="RoomCreated, TokensIssued and WorkerCreated events")


async def test_a_crash_between_claim_and_hand_over_keeps_the_claim(stack):
    """Killed after it labelled a pooled worker as the session's, before the worker heard of the
    session: the restarted operator finds the claim and finishes it; no second worker is taken."""
    custom, core = CustomObjectsApi(stack.kube), CoreV1Api(stack.kube)
    await custom.create_namespaced_custom_object(r.GROUP, r.VERSION, stack.namespace, r.POOL_PLURAL, {
        "apiVersion": r.API_VERSION, "kind": r.POOL_KIND, "metadata": {"name": "warm"}, "spec": {"minReady": 1}})

    async def pool_ready():
        pool = await custom.get_namespaced_custom_object(r.GROUP, r.VERSION, stack.namespace, r.POOL_PLURAL, "warm")
        return (pool.get("status") or {}).get("ready", 0) >= 1

    await eventually(pool_ready, timeout=90, what="an idle worker")
    stack.operator.stop()
    crashing = stack.start_operator(name="operator-claim-crash", extra_env={"LINGO_CRASH_AT": "claim.labelled"})
    session = await create_session(stack.kube, stack.namespace, "claim-crash", subscriberCount=1)
    await eventually(lambda: asyncio.sleep(0, result=not crashing.alive()), timeout=30, what="the crash point")
    stack.start_operator()

    current = await eventually(lambda: worker_ready(stack.kube, stack.namespace, "claim-crash"), timeout=60,
                               what="WorkerReady after the restart")
    assert next(c for c in current["status"]["conditions"] if c["type"] == r.Condition.WORKER_READY)["reason"] \
        == "WorkerClaimed"
    claims = (await core.list_namespaced_pod(
        stack.namespace, label_selector=f"{r.LABEL_CLAIMED_BY}={session['metadata']['uid']}")).items
    assert [p.metadata.name for p in claims] == [current["status"]["workerPodName"]]
    assert await gone(lambda: core.read_namespaced_pod(r.worker_pod_name("claim-crash"), stack.namespace))
