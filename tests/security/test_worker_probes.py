"""Hostile frames against a real worker's control socket, directly and through the facade."""

from __future__ import annotations

import json

import aiohttp

from lingo_api import resources as r

from ..helpers import ACME, auth
from ..speech import ControlClient

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
