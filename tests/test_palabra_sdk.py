"""Palabra's official Python SDK (palabra-ai 0.6.11, unmodified) against the loopback stack, in
both of its modes: it creates a session with `POST /session-storage/session`, sends spoken
English, gets Spanish speech and transcripts back, and deletes the session."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import eventually, register_client
from .speech import SENTENCE, speech_wav

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("operator", "kubelet", "facade")]

RUNNER = Path(__file__).with_name("palabra_sdk_run.py")


@pytest.fixture(scope="module")
async def palabra_client(kube, facade_ns):
    client = (f"palabra-{secrets.token_hex(3)}", secrets.token_urlsafe(24))
    await register_client(kube, facade_ns, client, max_sessions=2)
    return client


@pytest.mark.parametrize("mode", ["webrtc", "ws"])
async def test_the_unmodified_sdk_translates_a_file(mode, facade, palabra_client, http, tmp_path):
    speech_wav(tmp_path, SENTENCE)
    secret_file = tmp_path / "secret"
    secret_file.write_text(palabra_client[1])
    out = tmp_path / f"spanish-{mode}.wav"
    await eventually(lambda: _client_known(http, palabra_client), timeout=15, what="the facade to know the client")
    # The SDK gives a session 30 s to boot (translator in the room, set_task answered); a cold
    # worker on a loaded 2-core CI machine has taken longer once, so one boot timeout is retried
    # (and printed). Warm worker pools (issue 15) are the real cure.
    for attempt in (1, 2):
        result = subprocess.run(
            [sys.executable, str(RUNNER), "--endpoint", facade, "--client-id", palabra_client[0],
             "--client-secret-file", str(secret_file), "--mode", mode, "--wav", str(tmp_path / "speech.wav"),
             "--out", str(out)],
            capture_output=True, text=True, timeout=180,
        )
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        # The SDK's own log prints its client (secret included) on errors: never into test output.
        stderr = result.stderr.replace(palabra_client[1], "<client secret>")[-3000:]
        assert lines, f"the SDK run printed no report:\n{result.stdout[-3000:]}\n{stderr}"
        report = json.loads(lines[-1])
        if attempt == 1 and not report["ok"] and "while starting tasks" in str(report["exception"]):
            print(f"\npalabra-ai {mode}: the SDK's 30 s boot timed out once; retrying")
            continue
        break
    print(f"\npalabra-ai {mode}: ok={report['ok']} audible={report['audible_seconds']}s "
          f"transcriptions={[(t['language'], t['text']) for t in report['transcriptions']][:6]}")
    assert report["ok"], f"{report['exception']}\n{stderr}"
    english = " ".join(t["text"] for t in report["transcriptions"] if t["language"] == "en").lower()
    spanish = " ".join(t["text"] for t in report["transcriptions"] if t["language"] == "es").lower()
    assert "friend" in english and "amigo" in spanish, report["transcriptions"]
    assert report["audible_seconds"] > 1.0, report

    async def deleted():
        async with http.get("/session-storage/sessions", headers=_auth(palabra_client)) as response:
            sessions = (await response.json())["data"]
        return not [s for s in sessions if s["phase"] not in ("Terminating",)]

    await eventually(deleted, timeout=30, what="the SDK's session to be deleted")


def _auth(client: tuple[str, str]) -> dict[str, str]:
    return {"ClientID": client[0], "ClientSecret": client[1]}


async def _client_known(http, client) -> bool:
    async with http.get("/session-storage/sessions", headers=_auth(client)) as response:
        return response.status == 200
