"""The operator against the real kube-apiserver and livekit-server."""

from __future__ import annotations

import asyncio
import secrets

import jwt
import pytest
from kubernetes_asyncio.client import ApiException, CoreV1Api, CustomObjectsApi
from livekit import api as livekit_api

from lingo_api import resources as r
from lingo_api.kube_time import parse_time
from lingo_loopback.processes import free_port
from lingo_loopback.stack import start_operator

from .helpers import (
    condition, create_session, delete_and_wait, eventually, get_session, gone, read_tokens, session_body, wait_for_phase,
)

pytestmark = pytest.mark.usefixtures("operator")


async def livekit_rooms(livekit) -> list[str]:
    async with livekit_api.LiveKitAPI(livekit.http_url, livekit.api_key, livekit.api_secret) as lk:
        return [room.name for room in (await lk.room.list_rooms(livekit_api.ListRoomsRequest())).rooms]


async def test_session_becomes_ready_with_room_tokens_and_worker_pod(kube, namespace, livekit):
    created = await create_session(kube, namespace, "demo", subscriberCount=3, targetLanguages=["es", "ca"])
    session = await wait_for_phase(kube, namespace, "demo", r.Phase.READY)
    status = session["status"]
    room = r.room_name(created["metadata"]["uid"])

    assert status["roomName"] == room
    assert room in await livekit_rooms(livekit)
    assert status["streamUrl"] == livekit.url
    assert status["controlUrl"].endswith("/session-storage/sessions/demo/control")  # clients append ?token=
    assert condition(session, r.Condition.ROOM_READY)["status"] == "True"
    assert condition(session, r.Condition.TOKENS_READY)["status"] == "True"
    assert condition(session, r.Condition.WORKER_READY)["status"] in ("False", "True")
    # The summary waits for the worker too (no kubelet runs here: it stays False, saying why).
    ready = condition(session, r.Condition.READY)
    assert (ready["status"], ready["reason"]) == ("False", "Waiting") and "WorkerReady" in ready["message"]
    assert all(c["observedGeneration"] == session["metadata"]["generation"] for c in session["status"]["conditions"])

    # Tokens: counts, distinct identities, grants checked by LiveKit's own verifier.
    tokens = await read_tokens(kube, namespace, "demo")
    assert len(tokens["publisher"]) == 1 and len(tokens["subscriber"]) == 3
    verifier = livekit_api.TokenVerifier(livekit.api_key, livekit.api_secret)
    identities = set()
    for token in tokens["publisher"]:
        claims = verifier.verify(token)
        assert claims.video.room == room and claims.video.room_join and claims.video.can_publish
        assert jwt.decode(token, options={"verify_signature": False})["lingo"]["permissions"] == ["read", "edit", "write"]
        identities.add(claims.identity)
    for token in tokens["subscriber"]:
        claims = verifier.verify(token)
        assert claims.video.room == room and claims.video.can_subscribe and not claims.video.can_publish
        assert jwt.decode(token, options={"verify_signature": False})["lingo"]["permissions"] == ["read", "edit"]
        identities.add(claims.identity)
    assert len(identities) == 4
    exp = jwt.decode(tokens["publisher"][0], options={"verify_signature": False})["exp"]
    assert abs(exp - parse_time(status["expiresAt"]).timestamp()) <= 1

    # The Secret and the Pod belong to the session.
    secret = tokens["secret"]
    assert secret.metadata.owner_references[0].uid == created["metadata"]["uid"]
    pod = await CoreV1Api(kube).read_namespaced_pod(r.worker_pod_name("demo"), namespace)
    assert pod.metadata.owner_references[0].uid == created["metadata"]["uid"]
    container = pod.spec.containers[0]
    env = {e.name: e for e in container.env}
    assert env["LINGO_ROOM"].value == room
    assert env["LINGO_TARGET_LANGUAGES"].value == "es,ca"
    assert env["LINGO_WORKER_TOKEN"].value_from.secret_key_ref.name == r.tokens_secret_name("demo")
    assert "LIVEKIT_API_SECRET" not in env, "the cluster-wide LiveKit secret must not reach worker pods"
    assert "nvidia.com/gpu" not in (container.resources.requests or {})

    # Nothing secret leaks into the status.
    assert not any(t in str(status) for t in tokens["publisher"] + tokens["subscriber"])


async def test_gpu_profile_requests_a_gpu(kube, namespace):
    await create_session(kube, namespace, "gpu", workerProfile="gpu")
    await wait_for_phase(kube, namespace, "gpu", r.Phase.READY)
    pod = await CoreV1Api(kube).read_namespaced_pod(r.worker_pod_name("gpu"), namespace)
    resources = pod.spec.containers[0].resources
    assert resources.requests["nvidia.com/gpu"] == "1" and resources.limits["nvidia.com/gpu"] == "1"
    assert any(t.key == "nvidia.com/gpu" for t in pod.spec.tolerations)
    assert {e.name: e.value for e in pod.spec.containers[0].env}["LINGO_MODEL_DIR"] == "/models"


async def test_invalid_spec_is_rejected_by_the_api_server(kube, namespace):
    for bad in ({"publisherCount": 0}, {"publisherCount": 1, "subscriberCount": 10_000},
                {"publisherCount": 1, "workerProfile": "tpu"}, {"publisherCount": 1, "targetLanguages": ["Spanish!"]}):
        with pytest.raises(ApiException) as info:
            await CustomObjectsApi(kube).create_namespaced_custom_object(
                r.GROUP, r.VERSION, namespace, r.SESSION_PLURAL,
                {"apiVersion": r.API_VERSION, "kind": r.SESSION_KIND, "metadata": {"name": "bad"}, "spec": bad},
            )
        assert info.value.status == 422


async def test_spec_is_immutable(kube, namespace):
    await create_session(kube, namespace, "fixed")
    with pytest.raises(ApiException) as info:
        await CustomObjectsApi(kube).patch_namespaced_custom_object(
            r.GROUP, r.VERSION, namespace, r.SESSION_PLURAL, "fixed",
            [{"op": "replace", "path": "/spec/ttlSeconds", "value": 7200}])
    assert info.value.status == 422 and "immutable" in info.value.body, info.value.body


async def test_delete_removes_room_and_garbage_collects_owned_objects(kube, namespace, livekit):
    created = await create_session(kube, namespace, "bye")
    await wait_for_phase(kube, namespace, "bye", r.Phase.READY)
    room = r.room_name(created["metadata"]["uid"])
    assert room in await livekit_rooms(livekit)
    await CustomObjectsApi(kube).delete_namespaced_custom_object(r.GROUP, r.VERSION, namespace, r.SESSION_PLURAL, "bye")

    core = CoreV1Api(kube)
    await eventually(lambda: gone(lambda: get_session(kube, namespace, "bye")), what="session deleted")
    assert room not in await livekit_rooms(livekit)
    await eventually(lambda: gone(lambda: core.read_namespaced_secret(r.tokens_secret_name("bye"), namespace)),
                     what="tokens Secret garbage-collected")
    await eventually(lambda: gone(lambda: core.read_namespaced_pod(r.worker_pod_name("bye"), namespace)),
                     what="worker pod garbage-collected")


async def test_ttl_expiry_tears_down_and_marks_expired(kube, namespace, livekit):
    created = await create_session(kube, namespace, "short", ttlSeconds=10)
    await wait_for_phase(kube, namespace, "short", r.Phase.READY)
    session = await wait_for_phase(kube, namespace, "short", r.Phase.EXPIRED, timeout=30)
    assert condition(session, r.Condition.ROOM_READY)["reason"] == "Expired"
    assert (condition(session, r.Condition.READY)["status"], condition(session, r.Condition.READY)["reason"]) \
        == ("False", r.Phase.EXPIRED)
    assert r.room_name(created["metadata"]["uid"]) not in await livekit_rooms(livekit)
    core = CoreV1Api(kube)
    assert await gone(lambda: core.read_namespaced_secret(r.tokens_secret_name("short"), namespace))
    assert await gone(lambda: core.read_namespaced_pod(r.worker_pod_name("short"), namespace))


async def test_expired_session_is_deleted_after_retention(cluster, kube, facade_url):
    namespace = f"retain-{secrets.token_hex(3)}"
    await CoreV1Api(kube).create_namespace({"metadata": {"name": namespace}})
    operator = start_operator(cluster, facade_url, namespaces=[namespace], name="operator-retention",
                              extra_env={"LINGO_EXPIRED_RETENTION_SECONDS": "3"})
    try:
        await create_session(kube, namespace, "brief", ttlSeconds=10)
        await wait_for_phase(kube, namespace, "brief", r.Phase.EXPIRED, timeout=30)
        await eventually(lambda: gone(lambda: get_session(kube, namespace, "brief")), timeout=20,
                         what="expired session deleted after retention")
    finally:
        operator.stop()
        await CoreV1Api(kube).delete_namespace(namespace)


async def test_a_session_no_client_received_is_deleted_and_a_delivered_one_kept(cluster, kube, facade_url):
    """The facade marks a session delivered once its client has the tokens (tests/test_facade.py);
    one still pending after the grace was lost with its facade and would hold a quota slot."""
    namespace = f"undelivered-{secrets.token_hex(3)}"
    await CoreV1Api(kube).create_namespace({"metadata": {"name": namespace}})
    operator = start_operator(cluster, facade_url, namespaces=[namespace], name="operator-undelivered",
                              extra_env={"LINGO_UNDELIVERED_GRACE_SECONDS": "4"})
    custom = CustomObjectsApi(kube)
    try:
        for name, delivery in (("lost", r.DELIVERY_PENDING), ("handed", r.DELIVERY_PENDING), ("by-hand", None)):
            body = session_body(name, room=False)
            if delivery:
                body["metadata"]["annotations"] = {r.ANNOTATION_DELIVERY: delivery}
            await custom.create_namespaced_custom_object(r.GROUP, r.VERSION, namespace, r.SESSION_PLURAL, body)
        await custom.patch_namespaced_custom_object(r.GROUP, r.VERSION, namespace, r.SESSION_PLURAL, "handed", {
            "metadata": {"annotations": {r.ANNOTATION_DELIVERY: r.DELIVERY_DELIVERED}}}, _content_type=r.MERGE_PATCH)
        await eventually(lambda: gone(lambda: get_session(kube, namespace, "lost")), timeout=30,
                         what="the undelivered session deleted")
        events = await CoreV1Api(kube).list_namespaced_event(namespace)
        assert any(e.reason == r.Reason.UNDELIVERED and e.involved_object.name == "lost" for e in events.items)
        await asyncio.sleep(3)
        for name in ("handed", "by-hand"):
            assert not (await get_session(kube, namespace, name))["metadata"].get("deletionTimestamp")
    finally:
        operator.stop()
        await CoreV1Api(kube).delete_namespace(namespace)


async def test_livekit_down_then_up_converges(cluster, kube, facade_url):
    """An operator pointed at a LiveKit that is not up yet reports why, makes nothing, then converges."""
    namespace = f"lkdown-{secrets.token_hex(3)}"
    await CoreV1Api(kube).create_namespace({"metadata": {"name": namespace}})
    port = free_port()
    operator = start_operator(
        cluster, facade_url, namespaces=[namespace], name="operator-lkdown",
        extra_env={"LIVEKIT_URL": f"ws://127.0.0.1:{port}"},
    )
    livekit_process = None
    try:
        await create_session(kube, namespace, "waiting")

        async def unavailable():
            session = await get_session(kube, namespace, "waiting")
            conditions = (session.get("status") or {}).get("conditions") or []
            return session if any(c["reason"] == "LiveKitUnavailable" for c in conditions) else None

        session = await eventually(unavailable, timeout=30, what="RoomReady=False/LiveKitUnavailable")
        assert session["status"]["phase"] == r.Phase.PROVISIONING
        core = CoreV1Api(kube)
        assert await gone(lambda: core.read_namespaced_secret(r.tokens_secret_name("waiting"), namespace))
        assert await gone(lambda: core.read_namespaced_pod(r.worker_pod_name("waiting"), namespace))

        livekit_process = _start_livekit_on(cluster, port)
        session = await wait_for_phase(kube, namespace, "waiting", r.Phase.READY, timeout=60)
        assert condition(session, r.Condition.ROOM_READY)["status"] == "True"
        await delete_and_wait(kube, namespace, "waiting")
    finally:
        operator.stop()
        if livekit_process:
            livekit_process.stop()
        await CoreV1Api(kube).delete_namespace(namespace)


def _start_livekit_on(cluster, port: int):
    """A second livekit-server with the same keys, on a chosen port."""
    import yaml

    from lingo_loopback.binaries import livekit_server_binary
    from lingo_loopback.processes import ManagedProcess, http_ok, wait_until

    config = yaml.safe_load((cluster.workdir / "livekit.yaml").read_text())
    config["port"] = port
    config["rtc"]["tcp_port"] = free_port()
    config["rtc"]["port_range_start"] += 300
    config["rtc"]["port_range_end"] += 300
    path = cluster.workdir / "livekit-late.yaml"
    path.write_text(yaml.safe_dump(config))
    process = ManagedProcess("livekit-late", [str(livekit_server_binary()), f"--config={path}"], cluster.log_dir)
    process.start()
    wait_until(lambda: http_ok(f"http://127.0.0.1:{port}"), process, "late livekit-server")
    return process


async def test_restart_after_partial_progress_converges(cluster, kube, livekit, facade_url):
    """A previous operator made the room and the Secret, then died. A new one adopts both."""
    import datetime as dt

    from lingo_api.session_spec import SessionSpec
    from lingo_operator.config import OperatorConfig
    from lingo_operator.tokens_secret import tokens_secret_manifest

    namespace = f"restart-{secrets.token_hex(3)}"
    core = CoreV1Api(kube)
    await core.create_namespace({"metadata": {"name": namespace}})
    try:
        created = await create_session(kube, namespace, "again", subscriberCount=1)  # no operator watches yet
        room = r.room_name(created["metadata"]["uid"])
        async with livekit_api.LiveKitAPI(livekit.http_url, livekit.api_key, livekit.api_secret) as lk:
            await lk.room.create_room(livekit_api.CreateRoomRequest(name=room))
        config = OperatorConfig(livekit_api_url=livekit.url, livekit_public_url=livekit.url,
                                livekit_worker_url=livekit.url, livekit_api_key=livekit.api_key,
                                livekit_api_secret=livekit.api_secret)
        expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
        earlier = tokens_secret_manifest(created, SessionSpec.model_validate(created["spec"]), config, room, expires)
        await core.create_namespaced_secret(namespace, earlier)

        operator = start_operator(cluster, facade_url, namespaces=[namespace], name="operator-restart")
        try:
            session = await wait_for_phase(kube, namespace, "again", r.Phase.READY)
            secret = await core.read_namespaced_secret(r.tokens_secret_name("again"), namespace)
            await core.read_namespaced_pod(r.worker_pod_name("again"), namespace)
        finally:
            await delete_and_wait(kube, namespace, "again")
            operator.stop()
        assert session["status"]["roomName"] == room
        assert secret.data == earlier["data"], "the tokens already handed out must stay valid"
    finally:
        await core.delete_namespace(namespace)


async def test_operator_exports_metrics(operator, kube, namespace):
    import aiohttp

    await create_session(kube, namespace, "counted")
    await wait_for_phase(kube, namespace, "counted", r.Phase.READY)
    async with aiohttp.ClientSession() as http, http.get(operator.endpoints["metrics"]) as response:
        text = await response.text()
    provisioned = next(line for line in text.splitlines() if line.startswith("lingo_sessions_provisioned_total "))
    assert float(provisioned.split()[1]) >= 1
    assert 'lingo_reconcile_step_seconds_bucket{le="0.1",step="room"}' in text
