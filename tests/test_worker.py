"""The translation worker for real: operator-made pod run by the loopback kubelet, real
livekit-server, recorded speech in, translated speech and transcripts out, control API."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import aiohttp
import pytest
from kubernetes_asyncio.client import CoreV1Api
from livekit import api as livekit_api

from lingo_api import resources as r
from lingo_api.session_tokens import TRANSLATOR_IDENTITY_PREFIX

from .helpers import (condition, create_session, delete_and_wait, eventually, get_session, read_tokens, wait_for_phase,
                      worker_ready)
from .speech import SENTENCE, ControlClient, audible_frames, listen_to_track, publish_speech, speech_wav

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("operator", "kubelet", "facade")]


@pytest.fixture
async def ready_session(kube, worker_namespace):
    await create_session(kube, worker_namespace, "talk", subscriberCount=2, targetLanguages=["es"])
    await wait_for_phase(kube, worker_namespace, "talk", r.Phase.READY)

    session = await eventually(lambda: worker_ready(kube, worker_namespace, "talk"), timeout=90, what="WorkerReady")
    tokens = await read_tokens(kube, worker_namespace, "talk")
    return session, tokens


async def test_speech_is_transcribed_translated_and_spoken(ready_session, tmp_path):
    session, tokens = ready_session
    status = session["status"]
    samples, rate = speech_wav(tmp_path, SENTENCE)

    listener, spanish_energy = await listen_to_track(status["streamUrl"], tokens["subscriber"][0], "translation_es")
    async with aiohttp.ClientSession() as http, http.ws_connect(
        status["controlUrl"], params={"token": tokens["subscriber"][1]}
    ) as ws:
        control = ControlClient(ws)
        assert (await control.next("authenticated"))["role"] == "subscriber"
        task = await control.next("current_task")
        assert task["target_languages"] == ["es"] and task["state"] == "running"

        speaker = await publish_speech(status["streamUrl"], tokens["publisher"][0], samples, rate)
        try:
            # The two sentences may arrive as one segment or two: read until both are in.
            heard, spoken = [], []
            while not ("friend" in " ".join(heard) and "today" in " ".join(heard)):
                validated = (await control.next("validated_transcription", timeout=60))["transcription"]
                assert validated["segments"][0]["end"] > validated["segments"][0]["start"] >= 0
                heard.append(validated["text"].lower())
                translated = (await control.next("translated_transcription", timeout=30))["transcription"]
                assert translated["language"] == "es"
                assert translated["transcription_id"] == validated["transcription_id"]
                spoken.append(translated["text"].lower())
            assert "amigo" in " ".join(spoken) and "hoy" in " ".join(spoken), spoken
            timings = await control.next("pipeline_timings", timeout=30)
            assert timings["transcription_id"].startswith("publisher-")
            assert timings["timings"]["asr_ms"] > 0 and "end_of_speech_to_audio_ms.es" in timings["timings"]

            async def audible():
                return audible_frames(spanish_energy) > 20

            await eventually(audible, timeout=20, what="audible frames on the translation_es track")
            # Every unit read is counted; a unit the talk's tail made after the reading stopped may
            # be counted too (simultaneous units are not one per sentence), so at least as many.
            async def counted():
                async with http.get(f"http://{status['workerEndpoint']}/metrics") as response:
                    exported = await response.text()
                segments = _metric(exported, "lingo_worker_segments_total")
                heard_es = _metric(exported, 'lingo_worker_end_of_speech_to_audio_seconds_count{language="es"}')
                return (segments, heard_es) if segments >= len(heard) and heard_es >= len(heard) else None

            await eventually(counted, timeout=20, what=f"{len(heard)} units in the worker's metrics")
        finally:
            await speaker.disconnect()
            await listener.disconnect()


async def test_control_api_enforces_token_permissions(ready_session):
    session, tokens = ready_session
    url = session["status"]["controlUrl"]
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url, params={"token": tokens["subscriber"][0]}) as ws:
            sub = ControlClient(ws)
            await sub.next("current_task")
            await sub.send("set_task", {"target_languages": ["ca"]})
            assert (await sub.next("error"))["code"] == "FORBIDDEN"
            for action in ("pause_task", "end_task"):
                await sub.send(action)
                assert (await sub.next("error"))["code"] == "FORBIDDEN"
            # Options that change what everyone hears are a publisher's (issue 24); captions are the listener's.
            await sub.send("set_task", {"options": {"vad_threshold": 0.6, "speech_rate": 180}})
            assert (await sub.next("error"))["code"] == "FORBIDDEN"
            await sub.send("set_task", {"options": {"partial_interval_ms": 800, "translate_partials": True}})
            task = await sub.next("current_task", where=lambda d: d["revision"] > 0)
            assert task["options"]["partial_interval_ms"] == 800 and task["options"]["vad_threshold"] == 0.5
            # Malformed input gets an error and the connection stays usable.
            for raw in ("not json", "[]", '{"message_type": 5}', '{"message_type": "dance"}',
                        '{"message_type": "set_task", "data": {"options": {"partial_interval_ms": -7}}}',
                        '{"message_type": "set_task", "data": {"bogus": 1}}'):
                await ws.send_str(raw)
                assert (await sub.next("error"))["code"] in (
                    "INVALID_MESSAGE", "UNKNOWN_MESSAGE_TYPE", "VALIDATION_ERROR")
            await sub.send("get_task")
            assert (await sub.next("current_task"))["options"]["partial_interval_ms"] == 800

        async with http.ws_connect(url) as ws:  # token in the first message instead of the URL
            pub = ControlClient(ws)
            await pub.send("authenticate", {"token": tokens["publisher"][0]})
            assert (await pub.next("authenticated"))["permissions"] == ["edit", "read", "write"]
            await pub.send("set_task", {"target_languages": ["de"]})
            assert "de" in (await pub.next("error"))["desc"]
            await pub.send("set_task", {"target_languages": ["es", "ca"]})
            assert (await pub.next("current_task", where=lambda d: d["target_languages"] == ["es", "ca"]))
            await pub.send("pause_task")
            assert (await pub.next("current_task", where=lambda d: d["state"] == "paused"))
            await pub.send("resume_task")
            assert (await pub.next("current_task", where=lambda d: d["state"] == "running"))

        forged = tokens["publisher"][0][:-4] + "AAAA"
        async with http.ws_connect(url, params={"token": forged}) as ws:
            denied = ControlClient(ws)
            assert (await denied.next("error"))["code"] == "UNAUTHORIZED"
            closed = await ws.receive(timeout=5)
            assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED) or ws.closed


def test_gpu_profile_without_models_fails_clearly(tmp_path):
    env = {**os.environ, "LINGO_ROOM": "r", "LIVEKIT_URL": "ws://127.0.0.1:9", "LINGO_WORKER_TOKEN": "t",
           "LINGO_WORKER_PROFILE": "gpu", "LINGO_MODEL_DIR": str(tmp_path / "missing"),
           "LINGO_WORKER_HOST": "127.0.0.1", "LINGO_WORKER_PORT": "0"}
    result = subprocess.run([sys.executable, "-m", "lingo_worker"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "model directory" in result.stderr and str(tmp_path / "missing") in result.stderr


async def test_worker_rejoins_after_losing_the_room(ready_session, livekit):
    session, _ = ready_session
    room = session["status"]["roomName"]
    async with livekit_api.LiveKitAPI(livekit.http_url, livekit.api_key, livekit.api_secret) as lk:
        async def worker_identities():
            listing = await lk.room.list_participants(livekit_api.ListParticipantsRequest(room=room))
            return [p.identity for p in listing.participants if p.identity.startswith(TRANSLATOR_IDENTITY_PREFIX)]

        identity = (await eventually(worker_identities, what="worker in the room"))[0]
        await lk.room.remove_participant(livekit_api.RoomParticipantIdentity(room=room, identity=identity))
        assert identity not in await worker_identities()

        async def back():
            return identity in await worker_identities()

        await eventually(back, timeout=30, what="worker back in the room")


async def test_a_cold_worker_joins_while_loading_and_translates_early_speech(kube, worker_namespace, livekit, tmp_path):
    """A session's own worker is in the room before its engines are ready, says when it is ready
    through `/readyz?wait=` (what the operator waits on), and speech that arrives while it loads
    is translated, not lost."""
    samples, rate = speech_wav(tmp_path, SENTENCE)
    await create_session(kube, worker_namespace, "early", targetLanguages=["es"])
    session = await wait_for_phase(kube, worker_namespace, "early", r.Phase.READY)
    tokens = await read_tokens(kube, worker_namespace, "early")
    room, core = session["status"]["roomName"], CoreV1Api(kube)

    async def pod_ip():
        pod = await core.read_namespaced_pod(r.worker_pod_name("early"), worker_namespace)
        running = any(s.state.running for s in pod.status.container_statuses or [])
        return pod.status.pod_ip if running else None

    readyz = f"http://{await eventually(pod_ip, what='worker running')}:{r.WORKER_PORT}/readyz"
    async with aiohttp.ClientSession() as http, \
            livekit_api.LiveKitAPI(livekit.http_url, livekit.api_key, livekit.api_secret) as lk:
        async def listening():
            try:
                async with http.get(readyz) as response:
                    return response.status in (200, 503)
            except aiohttp.ClientConnectionError:
                return False

        await eventually(listening, interval=0.02, what="worker listening")
        for bad in ("soon", "-1", "3600"):
            async with http.get(readyz, params={"wait": bad}) as response:
                assert response.status == 400 and (await response.json())["error"]["code"] == "VALIDATION_ERROR"
        waiting = asyncio.create_task(http.get(readyz, params={"wait": "60"}))

        async def translator_in_room():
            listing = await lk.room.list_participants(livekit_api.ListParticipantsRequest(room=room))
            return any(p.identity.startswith(TRANSLATOR_IDENTITY_PREFIX) for p in listing.participants)

        await eventually(translator_in_room, timeout=60, interval=0.02, what="translator in the room")
        ready_when_joined = not waiting.done()
        async with http.ws_connect(session["status"]["controlUrl"], params={"token": tokens["subscriber"][0]}) as ws:
            control = ControlClient(ws)
            speaker = await publish_speech(session["status"]["streamUrl"], tokens["publisher"][0], samples, rate)
            try:
                async with await asyncio.wait_for(waiting, 60) as response:
                    assert response.status == 200 and (await response.json())["ok"] is True
                translated = await control.next("translated_transcription", timeout=60)
                assert "amigo" in translated["transcription"]["text"].lower()
            finally:
                await speaker.disconnect()
    # The join came first: the readiness wait was still open when the translator was in the room.
    assert ready_when_joined
    await delete_and_wait(kube, worker_namespace, "early")


async def test_an_ended_task_frees_its_pod(kube, worker_namespace):
    """end_task: the worker exits, its pod completes (CPU or GPU freed at once, not at the TTL),
    the session says so and gets no other worker."""
    await create_session(kube, worker_namespace, "ending", targetLanguages=["es"])
    session = await eventually(lambda: worker_ready(kube, worker_namespace, "ending"), timeout=90, what="WorkerReady")
    tokens = await read_tokens(kube, worker_namespace, "ending")
    pod_name = session["status"]["workerPodName"]
    async with aiohttp.ClientSession() as http, http.ws_connect(
            session["status"]["controlUrl"], params={"token": tokens["publisher"][0]}) as ws:
        control = ControlClient(ws)
        await control.next("current_task")
        await control.send("end_task")
        assert (await control.next("current_task", where=lambda d: d["state"] == "ended"))

    core = CoreV1Api(kube)

    async def completed():
        pod = await core.read_namespaced_pod(pod_name, worker_namespace)
        return pod.status.phase == "Succeeded"

    await eventually(completed, timeout=30, what="the worker pod Succeeded")

    async def recorded():
        current = await get_session(kube, worker_namespace, "ending")
        return condition(current, r.Condition.WORKER_READY).get("reason") == "TaskEnded" and current

    ended = await eventually(recorded, timeout=30, what="WorkerReady False, TaskEnded")
    assert condition(ended, r.Condition.READY)["reason"] == "TaskEnded"
    await asyncio.sleep(3)  # no replacement worker comes
    pods = (await core.list_namespaced_pod(worker_namespace, label_selector=f"{r.LABEL_SESSION}=ending")).items
    assert [p.metadata.name for p in pods] == [pod_name]
    await delete_and_wait(kube, worker_namespace, "ending")


def _metric(exported: str, name: str) -> float:
    """A sample's value in Prometheus' text format (0 when absent)."""
    for line in exported.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0
