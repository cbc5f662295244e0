"""kube-apiserver dies and comes back: the facade answers reads from its cache and 503 (never
500) for what needs the API server, and creates work again soon after it returns."""

from __future__ import annotations

import time

import aiohttp

from ..helpers import eventually

SESSIONS = "/session-storage/sessions"


async def test_facade_serves_from_cache_and_recovers(stack):
    headers = {"ClientID": stack.client[0], "ClientSecret": stack.client[1]}
    body = {"data": {"publisher_count": 1, "subscriber_count": 1}}
    async with aiohttp.ClientSession(base_url=stack.facade_url) as http:
        async with http.post(SESSIONS, json=body, headers=headers) as response:
            created = (await response.json())["data"]
        assert response.status == 200, created

        apiserver = stack.cluster.process("kube-apiserver")
        apiserver.stop()
        try:
            async with http.get(SESSIONS, headers=headers) as response:
                listed = await response.json()
            assert response.status == 200 and created["session_id"] in [s["session_id"] for s in listed["data"]]
            async with http.get(f"{SESSIONS}/{created['session_id']}", headers=headers) as response:
                assert response.status == 200
            for method, path, payload in (("POST", SESSIONS, body), ("DELETE", f"{SESSIONS}/{created['session_id']}",
                                                                     None)):
                async with http.request(method, path, json=payload, headers=headers) as response:
                    answer = await response.json()
                assert response.status == 503, (method, answer)
                assert answer["error"]["code"] == "kubernetes_unavailable" and response.headers["Retry-After"]
            async with http.get("/readyz") as response:
                assert response.status == 503
        finally:
            stack.cluster.restart("kube-apiserver")
        back_at = time.monotonic()

        async def created_again():
            async with http.post(SESSIONS, json=body, headers=headers) as response:
                answer = await response.json()
            assert response.status in (200, 503), answer
            return answer["data"] if response.status == 200 else None

        again = await eventually(created_again, timeout=60, interval=0.5, what="a create after the restart")
        print(f"\nfirst successful create {time.monotonic() - back_at:.1f}s after kube-apiserver was back")
        for session in (created, again):
            async with http.delete(f"{SESSIONS}/{session['session_id']}", headers=headers) as response:
                assert response.status == 200
    log = stack.facade.log_tail(200_000)
    assert "Traceback" not in log and " 500 " not in log, log[-3000:]
