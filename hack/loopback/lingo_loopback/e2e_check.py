"""An end-to-end check of a running installation, through its public surfaces only.

POST a session at the facade, join the room with the publisher token, wait for the worker,
talk to the control API, list, and delete. The same check runs against the loopback stack
(tests, `python -m lingo_loopback.stack --check`) and against a kind cluster (hack/kind-e2e.sh).

Run: python -m lingo_loopback.e2e_check --facade URL --client-id ID --client-secret-file PATH
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp
from livekit import rtc

from lingo_api.livekit_sdk import run_and_exit

SESSIONS = "/session-storage/sessions"


class CheckFailed(AssertionError):
    pass


def _expect(condition: bool, what: str) -> None:
    if not condition:
        raise CheckFailed(what)


async def run_check(facade: str, client_id: str, client_secret: str, worker_timeout: float = 120) -> dict:
    headers = {"ClientID": client_id, "ClientSecret": client_secret}
    report: dict = {}
    async with aiohttp.ClientSession(base_url=facade) as http:
        started = time.perf_counter()
        async with http.post(SESSIONS, json={"data": {"publisher_count": 1, "subscriber_count": 3}},
                             headers=headers) as response:
            body = await response.json()
        _expect(response.status == 200 and body.get("ok"), f"POST answered {response.status}: {body.get('error')}")
        data = body["data"]
        report["create_ms"] = round((time.perf_counter() - started) * 1000)
        report["session_id"] = data["session_id"]
        _expect(len(data["publisher"]) == 1 and len(data["subscriber"]) == 3, "token counts")
        try:
            room = rtc.Room()
            await room.connect(data["stream_url"], data["publisher"][0])
            _expect(room.name == data["room_name"], "joined the wrong room")
            await room.disconnect()
            report["publisher_joined"] = True

            deadline = time.monotonic() + worker_timeout
            while True:
                async with http.get(f"{SESSIONS}/{data['session_id']}", headers=headers) as response:
                    session = (await response.json())["data"]
                if session["worker_ready"]:
                    break
                _expect(time.monotonic() < deadline, f"worker not ready: {session['conditions']}")
                await asyncio.sleep(0.5)
            report["worker_ready_s"] = round(time.perf_counter() - started, 1)

            async with http.ws_connect(data["control_url"], params={"token": data["subscriber"][0]}) as ws:
                messages = [json.loads((await ws.receive(timeout=10)).data) for _ in range(2)]
            kinds = [m["message_type"] for m in messages]
            _expect(kinds == ["authenticated", "current_task"], f"control API said {kinds}")
            report["control_api"] = messages[1]["data"]["state"]

            async with http.get(SESSIONS, headers=headers) as response:
                listed = [s["session_id"] for s in (await response.json())["data"]]
            _expect(data["session_id"] in listed, "session missing from the listing")
        finally:
            async with http.delete(f"{SESSIONS}/{data['session_id']}", headers=headers) as response:
                report["deleted"] = response.status == 200
    return report


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m lingo_loopback.e2e_check", description=__doc__.split("\n")[0])
    parser.add_argument("--facade", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret-file", required=True, type=Path)
    parser.add_argument("--worker-timeout", type=float, default=120)
    args = parser.parse_args()
    try:
        report = asyncio.run(run_check(args.facade, args.client_id, args.client_secret_file.read_text().strip(),
                                       args.worker_timeout))
    except CheckFailed as exc:
        print(f"e2e check FAILED: {exc}", file=sys.stderr)
        return 1
    print("e2e check passed: " + json.dumps(report))
    return 0


if __name__ == "__main__":
    run_and_exit(main)
