"""Hostile frames against a real worker's control socket, directly and through the facade."""

from __future__ import annotations

import asyncio
import base64
import json

import aiohttp
import numpy as np

from bench.common import process_table, rss_mb, worker_pids
from lingo_api import resources as r
from lingo_api import worker_env

from ..helpers import ACME, auth
from ..speech import SENTENCE, ControlClient, speech_wav

SESSIONS = "/session-storage/sessions"


async def _worker_log(cluster, facade_ns: str, session_id: str) -> str:
    return (cluster.log_dir / f"pod-{facade_ns}-{r.worker_pod_name(session_id)}.log").read_text(errors="replace")


async def _worker_url(http, session_id: str, kube, facade_ns: str) -> str:
    from kubernetes_asyncio.client import CustomObjectsApi

    session = await CustomObjectsApi(kube).get_namespaced_custom_object(
        r.GROUP, r.VERSION, facade_ns, r.SESSION_PLURAL, session_id)
    return f"ws://{session['status']['workerEndpoint']}{r.WORKER_CONTROL_PATH}"


async def test_a_deeply_nested_frame_before_authenticating_gets_an_error_not_a_traceback(
        ready_session, http_module, kube, facade_ns, cluster):
    url = await _worker_url(http_module, ready_session["session_id"], kube, facade_ns)
    nested = '{"message_type": "authenticate", "data": {"token": ' + "[" * 30000 + "]" * 30000 + "}}"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.send_str(nested)
        message = json.loads((await ws.receive(timeout=10)).data)
    assert message["message_type"] == "error" and message["data"]["code"] == "UNAUTHORIZED", message
    assert "Traceback" not in await _worker_log(cluster, facade_ns, ready_session["session_id"])


async def test_client_supplied_task_fields_are_bounded(ready_session):
    async with aiohttp.ClientSession() as http, http.ws_connect(
            ready_session["control_url"], params={"token": ready_session["publisher"][0]}) as ws:
        control = ControlClient(ws)
        await control.next("current_task")
        for voices in ({f"x{i}": "v" for i in range(500)},  # too many entries
                       {"es": "v" * 62_000},  # one huge value
                       {"../../etc": "x"}):  # a key that is no language
            await control.send("set_task", {"options": {"voices": voices}})
            assert (await control.next("error"))["code"] == "VALIDATION_ERROR"
        await control.send("set_task", {"options": {"voices": {"es": "es+f3"}}})
        task = await control.next("current_task", where=lambda d: d["options"]["voices"])
        assert task["options"]["voices"] == {"es": "es+f3"}
        await control.send("authenticate", {"token": "t" * 300_000})  # over the frame limit: closed, not crashed
        closed = await ws.receive(timeout=10)
        assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)


async def test_a_token_longer_than_any_issued_is_refused_at_once(ready_session, http_module):
    async with aiohttp.ClientSession() as http, http.ws_connect(
            ready_session["control_url"], params={"token": "x" * 5000}) as ws:
        message = json.loads((await ws.receive(timeout=10)).data)
    assert message["data"]["code"] == "UNAUTHORIZED"
    async with http_module.get(f"{SESSIONS}/{ready_session['session_id']}", headers=auth(ACME)) as response:
        assert response.status == 200  # the session is untouched


async def test_a_listener_cannot_change_what_everyone_hears(ready_session):
    """Issue 24, finding 1: a subscriber's set_task switched recognition off for the session."""
    async with aiohttp.ClientSession() as http, http.ws_connect(
            ready_session["control_url"], params={"token": ready_session["subscriber"][0]}) as ws:
        control = ControlClient(ws)
        before = await control.next("current_task")
        await control.send("set_task", {"options": {"vad_threshold": 0.95, "asr_engine": "pocketsphinx",
                                                    "min_silence_ms": 3000, "speech_rate": 400}})
        assert (await control.next("error"))["code"] == "FORBIDDEN"
        await control.send("set_task", {"pipeline": {"preprocessing": {"vad_threshold": 0.95}}})
        assert (await control.next("error"))["code"] == "FORBIDDEN"
        await control.send("set_task", {"options": {"translate_partials": True}})  # captions: a listener's to ask
        task = await control.next("current_task", where=lambda d: d["options"]["translate_partials"])
        assert {k: v for k, v in task["options"].items() if k != "translate_partials"} == \
            {k: v for k, v in before["options"].items() if k != "translate_partials"}


async def _flood(control_url: str, token: str, speech: np.ndarray, rate: int, seconds: float) -> list[tuple[str, str]]:
    """Send `seconds` of speech as fast as the socket takes it, wait 3 s, leave; the warnings
    and errors the worker answered with."""
    flood = np.tile(speech, int(seconds * rate / len(speech)) + 1)
    chunk = int(0.32 * rate)  # Palabra's largest input chunk
    codes: list[tuple[str, str]] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(control_url, params={"token": token}) as ws:
        control = ControlClient(ws)
        await control.next("current_task")
        await control.send("set_task", {"input_stream": {"content_type": "audio", "source": {
            "type": "ws", "format": "pcm_s16le", "sample_rate": rate, "channels": 1}}})
        await control.next("current_task", where=lambda d: d["revision"] > 0)

        async def collect():
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    data = json.loads(message.data)
                    if data["message_type"] in ("warning", "error"):
                        codes.append((data["message_type"], data["data"]["code"]))

        collecting = asyncio.create_task(collect())
        for start in range(0, len(flood), chunk):
            await control.send("input_audio_data", {"data": base64.b64encode(flood[start:start + chunk].tobytes()).decode()})
        await asyncio.sleep(3)
        await ws.close()  # leaves mid-flood: what was queued is dropped
        collecting.cancel()
    return codes


async def test_an_audio_flood_is_refused_and_memory_stays_flat(ready_session, facade_ns, cluster, tmp_path):
    """Issue 24, finding 4: 1800 s of speech sent in 23 s was all queued (RSS 409 -> 488 MB) and the
    worker ended with a traceback when the socket closed. Now audio past 2 s ahead of the clock is
    warned about, past 10 s ahead refused with an error, and a client that leaves mid-flood
    leaves no work behind (the worker is idle at once, where it used to play the queue for
    minutes) and no traceback. Memory is only checked loosely: the engines' first work and the
    allocator move RSS by tens of MB either way (342 -> 376 -> 429 -> 408 -> 384 -> 428 MB over
    five floods, measured), as much as the queued speech did."""
    (pid,) = worker_pids(f"{worker_env.SESSION_NAME}={ready_session['session_id']}\0".encode())
    speech, rate = speech_wav(tmp_path, SENTENCE)
    url, token = ready_session["control_url"], ready_session["publisher"][0]
    rss, busy = [rss_mb(pid)], []
    for _ in range(2):  # 300 s of speech each
        codes = await _flood(url, token, speech, rate, 300)
        assert ("warning", "AUDIO_STREAM_TOO_FAST") in codes and ("error", "AUDIO_STREAM_TOO_FAST") in codes, codes
        await asyncio.sleep(2)
        cpu = process_table()[pid][1]
        await asyncio.sleep(3)
        busy.append(process_table()[pid][1] - cpu)
        rss.append(rss_mb(pid))
    print(f"\nfloods of 300 s of speech: worker RSS {' -> '.join(f'{x:.0f}' for x in rss)} MB; "
          f"CPU in the 3 s after each client left: {', '.join(f'{x:.2f}' for x in busy)} s")
    assert max(rss) - rss[0] < 150, rss
    assert max(busy) < 1.0, busy  # nothing left translating for a client that is gone
    log = await _worker_log(cluster, facade_ns, ready_session["session_id"])
    assert "Traceback" not in log and "Task exception was never retrieved" not in log
