"""WorkerPools on the loopback stack with real worker processes: idle workers fill the pool, a
session claims one and has its translator in the room when the claim returns, concurrent
creates never share a worker, and the pool's scale-down and deletion leave claimed workers
serving."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import time

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from kubernetes_asyncio.client import CoreV1Api, CustomObjectsApi
from livekit import api as livekit_api

from bench.common import worker_pids
from lingo_api import claim_grant, worker_env
from lingo_api import resources as r

from lingo_operator import claim_signing
from lingo_operator.worker_pod import SAFE_TO_EVICT

from .helpers import (condition, create_pool, create_session, eventually, get_session, gone, kubectl,
                      wait_for_ready_workers, worker_ready)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("operator", "kubelet")]

OPERATOR_NAMESPACE = "default"  # the loopback operator's own (no POD_NAMESPACE): its claim-signing key


async def translator_in_room(livekit, room: str) -> bool:
    async with livekit_api.LiveKitAPI(livekit.http_url, livekit.api_key, livekit.api_secret) as lk:
        listing = await lk.room.list_participants(livekit_api.ListParticipantsRequest(room=room))
    return any(p.identity.startswith("palabra_translator") for p in listing.participants)


async def _events(kube, namespace: str, name: str) -> set[str]:
    listing = await CoreV1Api(kube).list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
    return {event.reason for event in listing.items}


async def test_a_session_claims_a_ready_worker_that_is_in_the_room_when_ready(kube, worker_namespace, livekit, cluster):
    core = CoreV1Api(kube)
    await create_pool(kube, worker_namespace)
    await wait_for_ready_workers(kube, worker_namespace, 2)

    started = time.monotonic()
    await create_session(kube, worker_namespace, "warm-1", subscriberCount=1)
    session = await eventually(lambda: worker_ready(kube, worker_namespace, "warm-1"), timeout=20, interval=0.05,
                               what="WorkerReady")
    elapsed = time.monotonic() - started
    ready = condition(session, r.Condition.WORKER_READY)
    assert ready["reason"] == "WorkerClaimed", ready
    print(f"\ncreate -> WorkerReady from the pool: {elapsed * 1000:.0f} ms")
    # WorkerReady from a claim means the translator has joined: it is in the room already.
    assert await translator_in_room(livekit, session["status"]["roomName"])

    pod = await core.read_namespaced_pod(session["status"]["workerPodName"], worker_namespace)
    assert pod.metadata.owner_references[0].kind == r.SESSION_KIND
    assert pod.metadata.labels[r.LABEL_SESSION] == "warm-1"
    assert pod.metadata.labels[r.LABEL_CLAIMED_BY] == session["metadata"]["uid"]
    assert await gone(lambda: core.read_namespaced_pod(r.worker_pod_name("warm-1"), worker_namespace))  # no cold one
    assert "WorkerClaimed" in await _events(kube, worker_namespace, "warm-1")
    # A live session's worker keeps its node from being scaled away; an idle one does not.
    assert pod.metadata.annotations[SAFE_TO_EVICT] == "false"
    idle = (await core.list_namespaced_pod(worker_namespace,
                                           label_selector=f"{r.LABEL_POOL_STATE}={r.POOL_STATE_IDLE}")).items
    assert idle and all(p.metadata.annotations[SAFE_TO_EVICT] == "true" for p in idle)
    # The summary condition: what `kubectl wait --for=condition=Ready` waits for.
    waited = kubectl(cluster, "-n", worker_namespace, "wait", "--for=condition=Ready", "streamingsession/warm-1",
                     "--timeout=20s")
    assert waited.returncode == 0, waited.stderr
    summary = condition(await get_session(kube, worker_namespace, "warm-1"), r.Condition.READY)
    assert summary["reason"] == "SessionReady" and summary["observedGeneration"] == session["metadata"]["generation"]

    # The pool refills behind the claim.
    status = await wait_for_ready_workers(kube, worker_namespace, 2)
    assert status["claimed"] == 1
    assert condition({"status": status}, r.Condition.READY)["status"] == "True"

    # The session's deletion takes its worker with it (no reuse by a later session).
    await CustomObjectsApi(kube).delete_namespaced_custom_object(r.GROUP, r.VERSION, worker_namespace,
                                                                 r.SESSION_PLURAL, "warm-1")
    await eventually(lambda: gone(lambda: core.read_namespaced_pod(pod.metadata.name, worker_namespace)),
                     timeout=30, what="the claimed worker deleted with its session")


async def test_concurrent_creates_never_share_a_worker_and_all_get_one(kube, worker_namespace):
    core = CoreV1Api(kube)
    await create_pool(kube, worker_namespace)
    await wait_for_ready_workers(kube, worker_namespace, 2)
    names = [f"race-{i}" for i in range(4)]
    await asyncio.gather(*(create_session(kube, worker_namespace, name, subscriberCount=1) for name in names))
    sessions = [await eventually(lambda n=name: worker_ready(kube, worker_namespace, n), timeout=120,
                                 what=f"WorkerReady of {name}") for name in names]
    pods = [s["status"]["workerPodName"] for s in sessions]
    assert len(set(pods)) == len(names), pods
    reasons = {s["metadata"]["name"]: condition(s, r.Condition.WORKER_READY)["reason"] for s in sessions}
    claimed = [name for name, reason in reasons.items() if reason == "WorkerClaimed"]
    assert 1 <= len(claimed) <= 2, reasons  # two idle workers; the pool refills while the others start cold
    for name in set(names) - set(claimed):
        assert "NoIdleWorker" in await _events(kube, worker_namespace, name)
    for session in sessions:
        selector = f"{r.LABEL_SESSION}={session['metadata']['name']}"
        assert len((await core.list_namespaced_pod(worker_namespace, label_selector=selector)).items) == 1
    owners = {}
    for pod in (await core.list_namespaced_pod(worker_namespace,
                                               label_selector=f"{r.LABEL_POOL_STATE}={r.POOL_STATE_CLAIMED}")).items:
        owners.setdefault(pod.metadata.labels[r.LABEL_CLAIMED_BY], []).append(pod.metadata.name)
    assert all(len(p) == 1 for p in owners.values()), owners


async def test_scale_down_and_pool_deletion_leave_claimed_workers_serving(kube, worker_namespace, livekit):
    core, custom = CoreV1Api(kube), CustomObjectsApi(kube)
    await create_pool(kube, worker_namespace)
    await wait_for_ready_workers(kube, worker_namespace, 2)
    await create_session(kube, worker_namespace, "keeps", subscriberCount=1)
    session = await eventually(lambda: worker_ready(kube, worker_namespace, "keeps"), timeout=20, what="WorkerReady")
    worker = session["status"]["workerPodName"]

    await custom.patch_namespaced_custom_object(r.GROUP, r.VERSION, worker_namespace, r.POOL_PLURAL, "warm",
                                                {"spec": {"minReady": 0, "maxReady": 0}},
                                                _content_type="application/merge-patch+json")

    async def no_idle():
        pods = await core.list_namespaced_pod(worker_namespace,
                                              label_selector=f"{r.LABEL_POOL_STATE}={r.POOL_STATE_IDLE}")
        return not [p for p in pods.items if not p.metadata.deletion_timestamp]

    await eventually(no_idle, timeout=30, what="the idle workers scaled away")
    await custom.delete_namespaced_custom_object(r.GROUP, r.VERSION, worker_namespace, r.POOL_PLURAL, "warm")
    await eventually(lambda: gone(lambda: custom.get_namespaced_custom_object(
        r.GROUP, r.VERSION, worker_namespace, r.POOL_PLURAL, "warm")), timeout=30, what="pool deleted")
    await asyncio.sleep(2)  # time for a wrong garbage collection to happen
    pod = await core.read_namespaced_pod(worker, worker_namespace)
    assert not pod.metadata.deletion_timestamp
    assert await worker_ready(kube, worker_namespace, "keeps")
    assert await translator_in_room(livekit, session["status"]["roomName"])


async def test_the_claim_endpoint_refuses_strangers_bad_input_and_a_second_session(kube, worker_namespace, cluster):
    """Only the operator's grant for this pod and this body claims a worker (issue 24, finding 8):
    nothing in the sessions namespace (pods, Secrets) is enough to make one."""
    core = CoreV1Api(kube)
    await create_pool(kube, worker_namespace, minReady=1)
    await wait_for_ready_workers(kube, worker_namespace, 1)
    (idle,) = (await core.list_namespaced_pod(worker_namespace,
                                              label_selector=f"{r.LABEL_POOL_STATE}={r.POOL_STATE_IDLE}")).items
    url = f"http://{idle.status.pod_ip}:{r.WORKER_PORT}/claim"
    secrets_here = (await core.list_namespaced_secret(worker_namespace)).items
    assert all(s.metadata.name.endswith("-tokens") for s in secrets_here), [s.metadata.name for s in secrets_here]
    signing = await core.read_namespaced_secret(claim_signing.SECRET_NAME, OPERATOR_NAMESPACE)
    operator_key = load_pem_private_key(base64.b64decode(signing.data[claim_signing.SECRET_KEY]), password=None)
    claim = {"session": "someone", "namespace": worker_namespace, "room": "lingo-x", "worker_token": "t",
             "client_tokens": [], "source_language": "en", "target_languages": ["es"]}
    payload = json.dumps(claim).encode()

    def bearer(grant: str) -> dict:
        return {"Authorization": f"Bearer {grant}", "Content-Type": "application/json"}

    refused = {
        "no grant": {},
        "not a grant": bearer("wrong"),
        "another key": bearer(claim_grant.sign(Ed25519PrivateKey.generate(), idle.metadata.uid, payload)),
        "another pod": bearer(claim_grant.sign(operator_key, "some-other-uid", payload)),
        "another body": bearer(claim_grant.sign(operator_key, idle.metadata.uid, payload + b" ")),
        "expired": bearer(claim_grant.sign(operator_key, idle.metadata.uid, payload, now=time.time() - 600)),
    }
    async with aiohttp.ClientSession() as http:
        for what, headers in refused.items():
            async with http.post(url, data=payload, headers=headers) as response:
                answer = await response.json()
                assert response.status == 401 and answer["error"]["code"] == "UNAUTHORIZED", (what, answer)
        for body in (b"{not json", b"[" * 30000 + b"]" * 30000, json.dumps({**claim, "target_languages": ["../x"]}).encode(),
                     json.dumps({**claim, "extra": 1}).encode()):
            async with http.post(url, data=body, headers=bearer(claim_grant.sign(operator_key, idle.metadata.uid,
                                                                                  body))) as response:
                answer = await response.json()
                assert response.status == 400 and answer["error"]["code"] == "VALIDATION_ERROR", answer

    # Claimed by a session, it refuses to serve another one, even with a good grant.
    await create_session(kube, worker_namespace, "owner", subscriberCount=1)
    session = await eventually(lambda: worker_ready(kube, worker_namespace, "owner"), timeout=20, what="WorkerReady")
    assert session["status"]["workerPodName"] == idle.metadata.name
    async with aiohttp.ClientSession() as http, http.post(
            url, data=payload, headers=bearer(claim_grant.sign(operator_key, idle.metadata.uid, payload))) as response:
        assert response.status == 409 and (await response.json())["error"]["code"] == "ALREADY_CLAIMED"
    log = (cluster.log_dir / f"pod-{worker_namespace}-{idle.metadata.name}.log").read_text(errors="replace")
    assert "Traceback" not in log


async def test_a_claimed_worker_that_goes_away_is_replaced_at_once(kube, worker_namespace, livekit):
    core = CoreV1Api(kube)
    await create_pool(kube, worker_namespace)
    await wait_for_ready_workers(kube, worker_namespace, 2)
    await create_session(kube, worker_namespace, "phoenix", subscriberCount=1)
    session = await eventually(lambda: worker_ready(kube, worker_namespace, "phoenix"), timeout=20, what="WorkerReady")
    first = session["status"]["workerPodName"]
    await core.delete_namespaced_pod(first, worker_namespace)  # a node lost, an eviction, a kill

    async def replaced():
        current = await worker_ready(kube, worker_namespace, "phoenix")
        return current if current and current["status"]["workerPodName"] != first else None

    # Well before the 30-second drift check: the pod watcher replaces it when it sees it go.
    current = await eventually(replaced, timeout=20, what="another worker")
    assert await translator_in_room(livekit, current["status"]["roomName"])
    assert "WorkerReplaced" in await _events(kube, worker_namespace, "phoenix")


async def test_a_worker_lost_mid_claim_is_followed_by_the_next_idle_one(kube, worker_namespace):
    """Issue 25: the oldest idle worker is frozen (SIGSTOP: its node hangs) when a session claims
    it; the hand-over times out, that worker is deleted, and the session gets the next idle
    worker rather than a cold start."""
    core, custom = CoreV1Api(kube), CustomObjectsApi(kube)
    await create_pool(kube, worker_namespace, minReady=1)
    await wait_for_ready_workers(kube, worker_namespace, 1)
    (oldest,) = (await core.list_namespaced_pod(worker_namespace,
                                                label_selector=f"{r.LABEL_POOL_STATE}={r.POOL_STATE_IDLE}")).items
    await custom.patch_namespaced_custom_object(r.GROUP, r.VERSION, worker_namespace, r.POOL_PLURAL, "warm",
                                                {"spec": {"minReady": 2}}, _content_type="application/merge-patch+json")
    await wait_for_ready_workers(kube, worker_namespace, 2)
    (pid,) = worker_pids(f"{worker_env.POD_UID}={oldest.metadata.uid}\0".encode())
    os.kill(pid, signal.SIGSTOP)
    try:
        await create_session(kube, worker_namespace, "second-try", subscriberCount=1)
        session = await eventually(lambda: worker_ready(kube, worker_namespace, "second-try"), timeout=45,
                                   what="WorkerReady from the next idle worker")
    finally:
        os.kill(pid, signal.SIGCONT)
    assert session["status"]["workerPodName"] != oldest.metadata.name
    assert r.Reason.CLAIM_FAILED in await _events(kube, worker_namespace, "second-try")
    assert session["status"]["workerPodName"] != r.worker_pod_name("second-try")  # not a cold one


async def test_idle_workers_made_from_an_older_template_are_replaced(kube, worker_namespace):
    """The pool's languages change (or the operator's worker settings): idle workers made before
    are replaced by ones made from the current template; a change of size alone replaces none."""
    core, custom = CoreV1Api(kube), CustomObjectsApi(kube)
    await create_pool(kube, worker_namespace, "renewed", minReady=1)
    await wait_for_ready_workers(kube, worker_namespace, 1, "renewed")

    async def idle_pods():
        listed = await core.list_namespaced_pod(
            worker_namespace, label_selector=f"{r.LABEL_POOL}=renewed,{r.LABEL_POOL_STATE}={r.POOL_STATE_IDLE}")
        return [p for p in listed.items if not p.metadata.deletion_timestamp]

    (old,) = await idle_pods()

    async def patch(spec: dict):
        await custom.patch_namespaced_custom_object(r.GROUP, r.VERSION, worker_namespace, r.POOL_PLURAL, "renewed",
                                                    {"spec": spec}, _content_type="application/merge-patch+json")

    await patch({"maxReady": 3})
    await asyncio.sleep(2)
    assert [p.metadata.name for p in await idle_pods()] == [old.metadata.name]
    await patch({"targetLanguages": ["ca"]})

    async def renewed():
        pods = await idle_pods()
        return pods if pods and all(p.metadata.name != old.metadata.name for p in pods) else None

    (new,) = await eventually(renewed, timeout=30, what="the idle worker replaced")
    assert new.metadata.labels[r.LABEL_POOL_TEMPLATE] != old.metadata.labels[r.LABEL_POOL_TEMPLATE]
    env = {e.name: e.value for e in new.spec.containers[0].env}
    assert env["LINGO_TARGET_LANGUAGES"] == "ca"
    await custom.delete_namespaced_custom_object(r.GROUP, r.VERSION, worker_namespace, r.POOL_PLURAL, "renewed")


async def rooms(livekit) -> list[str]:
    async with livekit_api.LiveKitAPI(livekit.http_url, livekit.api_key, livekit.api_secret) as lk:
        return [room.name for room in (await lk.room.list_rooms(livekit_api.ListRoomsRequest())).rooms]


@pytest.mark.parametrize("pooled", [True, False], ids=["claimed", "cold"])
async def test_a_session_without_a_room_gets_a_worker_and_no_room(kube, worker_namespace, livekit, pooled):
    """spec.room false (Palabra 2.x's streams): no LiveKit room is made, the worker is ready
    without one, and the control WebSocket serves it; a transcription-only task (no targets)
    is claimed from a pool like any other."""
    if pooled:
        await create_pool(kube, worker_namespace, minReady=1)
        await wait_for_ready_workers(kube, worker_namespace, 1)
    await create_session(kube, worker_namespace, "roomless", room=False, targetLanguages=[])
    session = await eventually(lambda: worker_ready(kube, worker_namespace, "roomless"), timeout=60,
                               what="WorkerReady")
    assert condition(session, r.Condition.WORKER_READY)["reason"] == ("WorkerClaimed" if pooled else "WorkerReady"), \
        session["status"]["conditions"]
    assert condition(session, r.Condition.ROOM_READY)["reason"] == r.Reason.NO_ROOM
    assert session["status"]["roomName"] not in await rooms(livekit)

    tokens = json.loads(base64.b64decode((await CoreV1Api(kube).read_namespaced_secret(
        r.tokens_secret_name("roomless"), worker_namespace)).data[r.SECRET_PUBLISHER_TOKENS]))
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"ws://{session['status']['workerEndpoint']}{r.WORKER_CONTROL_PATH}",
                                   params={"token": tokens[0]}) as ws:
            assert (await ws.receive_json(timeout=10))["message_type"] == "authenticated"
            task = (await ws.receive_json(timeout=10))["data"]
            assert task["target_languages"] == [] and task["state"] == "running", task
    # The room watch (every 2 s) does not make the room it would make again for a lost one.
    await asyncio.sleep(5)
    assert session["status"]["roomName"] not in await rooms(livekit)
    assert condition(await get_session(kube, worker_namespace, "roomless"), r.Condition.ROOM_READY)["status"] == "True"

    await CustomObjectsApi(kube).delete_namespaced_custom_object(r.GROUP, r.VERSION, worker_namespace,
                                                                 r.SESSION_PLURAL, "roomless")
    await eventually(lambda: gone(lambda: get_session(kube, worker_namespace, "roomless")), timeout=30,
                     what="the session deleted without a room to remove")
