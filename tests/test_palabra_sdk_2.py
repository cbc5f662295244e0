"""Palabra's current Python SDK (palabra-ai 2.2.1 from PyPI, unmodified, in its own environment
`.venv-palabra2`) against the loopback stack with a warm pool present, as the chart installs one:
an API key in `?token=`, the speech-to-speech stream at Palabra's path, the session made behind
the scenes and deleted when the stream ends; the speech-to-text and text-to-speech streams likewise."""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from kubernetes_asyncio.client import CustomObjectsApi

from lingo_api import resources as r
from lingo_webhook.api_keys import new_key
from lingo_worker.audio_output import resample

from .helpers import auth, create_pool, eventually, facade_knows, register_client, wait_for_ready_workers
from .speech import SENTENCE, speech_wav

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("operator", "kubelet", "facade")]

REPO = Path(__file__).resolve().parents[1]
PYTHON = REPO / ".venv-palabra2" / "bin" / "python"  # made by hack/setup.sh
RUNNER = Path(__file__).with_name("palabra2_sdk_run.py")


@pytest.fixture(scope="module")
async def keyed_client(kube, facade_ns, facade):
    """A client with one API key, known to the facade."""
    client = (f"palabra2-{secrets.token_hex(3)}", secrets.token_urlsafe(24))
    await register_client(kube, facade_ns, client, max_sessions=2)
    key = new_key()
    name = client[0]
    await CustomObjectsApi(kube).patch_namespaced_custom_object(
        r.GROUP, r.VERSION, facade_ns, r.API_CLIENT_PLURAL, name,
        [{"op": "add", "path": "/spec/apiKeys", "value": [key.entry("tests")]}])
    await facade_knows(facade, client)
    async with aiohttp.ClientSession(base_url=facade) as http:
        async def key_known() -> bool:
            async with http.get("/session-storage/sessions",
                                headers={"Authorization": f"Bearer {key.key}"}) as response:
                return response.status == 200

        await eventually(key_known, timeout=20, what="the facade to know the API key")
    return client, key


@pytest.fixture(scope="module")
async def warm_pool(kube, facade_ns):
    await create_pool(kube, facade_ns, name="palabra2-warm", minReady=1)
    await wait_for_ready_workers(kube, facade_ns, 1, name="palabra2-warm")
    yield
    await CustomObjectsApi(kube).delete_namespaced_custom_object(r.GROUP, r.VERSION, facade_ns, r.POOL_PLURAL,
                                                                 "palabra2-warm")


def run_sdk(facade: str, key: str, tmp_path: Path, scenario: str, pcm: Path | None = None) -> dict:
    if not PYTHON.exists():
        pytest.fail("palabra-ai 2.2.1's environment .venv-palabra2 is missing: run make setup", pytrace=False)
    key_file = tmp_path / "api-key"
    key_file.write_text(key)
    command = [str(PYTHON), str(RUNNER), "--facade", facade, "--api-key-file", str(key_file), "--scenario", scenario]
    if pcm is not None:
        command += ["--pcm", str(pcm)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    stderr = result.stderr.replace(key, "<api key>")[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, f"the SDK run printed no report:\n{result.stdout[-2000:]}\n{stderr}"
    return json.loads(lines[-1])


async def no_sessions_left(facade: str, client: tuple[str, str]) -> None:
    async with aiohttp.ClientSession(base_url=facade) as http:
        async def deleted():
            async with http.get("/session-storage/sessions", headers=auth(client)) as response:
                sessions = (await response.json())["data"]
            return not [s for s in sessions if s["phase"] != "Terminating"]

        await eventually(deleted, timeout=30, what="the stream's session to be deleted")


# One long phrase, no pause in it: a speaker interrupted in the middle of it.
LONG_PHRASE = "We are walking along the river and talking about the long journey that is still ahead of us"


def speech_pcm(tmp_path: Path, rate: int = 24000, text: str = SENTENCE) -> Path:
    """`text` spoken as the SDK's input: pcm_s16le, mono, a second of silence after (24 kHz is
    the translation stream's default, 16 kHz the speech-to-text stream's)."""
    samples, source_rate = speech_wav(tmp_path, text)
    pcm_samples = np.clip(resample(samples.astype(np.float32), source_rate, rate), -32768, 32767).astype("<i2")
    pcm = tmp_path / f"speech-{rate // 1000}k.pcm"
    pcm.write_bytes(np.concatenate([pcm_samples, np.zeros(rate, dtype="<i2")]).tobytes())
    return pcm


async def test_a_stream_translates_speech_and_ends_with_end_of_stream(keyed_client, warm_pool, facade, tmp_path):
    client, key = keyed_client
    report = run_sdk(facade, key.key, tmp_path, "translate", speech_pcm(tmp_path))
    print(f"\npalabra-ai 2.2.1 stream: {json.dumps(report)[:600]}")
    assert report["ok"], report
    assert report["statuses"][0] == ["set_task", "started", "running"], report["statuses"]
    kinds = {kind for kind, _, _ in report["transcripts"]}
    english = " ".join(text for kind, lang, text in report["transcripts"]
                       if kind == "validated_transcription" and lang == "en").lower()
    spanish = " ".join(text for kind, lang, text in report["transcripts"]
                       if kind == "translated_transcription" and lang == "es").lower()
    assert "friend" in english and "amigo" in spanish, report["transcripts"]
    assert "partial_translated_transcription" in kinds, kinds  # translate_partials=True asked for them
    assert report["audio_bytes"].get("es", 0) > 0 and report["audible_seconds"] > 1.0, report  # zlib output, inflated
    assert report["end_of_stream"] and not report["errors"], report
    await no_sessions_left(facade, client)


async def test_pause_and_resume_are_acknowledged(keyed_client, warm_pool, facade, tmp_path):
    client, key = keyed_client
    report = run_sdk(facade, key.key, tmp_path, "pause")
    assert report["ok"], report
    assert report["statuses"] == [["set_task", "started", "running"], ["pause_task", "paused", "paused"],
                                  ["set_task", "resumed", "running"]], report
    await no_sessions_left(facade, client)


async def test_speak_says_text_as_is_and_translated(keyed_client, warm_pool, facade, tmp_path):
    client, key = keyed_client
    report = run_sdk(facade, key.key, tmp_path, "speak")
    assert report["ok"], report
    ids = [transcription_id for event, transcription_id in report["queued"]]
    assert [event for event, _ in report["queued"]] == ["queued", "queued"] and len(set(ids)) == 2, report
    assert sorted(report["last_chunk"]) == sorted(ids), report  # each was spoken to its end
    assert all(report["audio_bytes"][i] > 24000 for i in ids), report  # more than half a second each
    as_is, translated = (report["transcripts"][i] for i in ids)
    assert as_is == ["translated_transcription", "es", "Buenos días a todos."], as_is
    assert translated[:2] == ["translated_transcription", "es"] and "gracias" in translated[2].lower(), translated
    await no_sessions_left(facade, client)


async def test_interrupt_stops_the_speech_on_the_air(keyed_client, warm_pool, facade, tmp_path):
    client, key = keyed_client
    report = run_sdk(facade, key.key, tmp_path, "interrupt")
    assert report["ok"], report
    assert report["before"] >= 48000 and report["after"] == 0 and not report["last_chunk"], report
    await no_sessions_left(facade, client)


async def test_interrupt_drops_the_phrase_being_said(keyed_client, warm_pool, facade, tmp_path):
    client, key = keyed_client
    report = run_sdk(facade, key.key, tmp_path, "interrupt-phrase", speech_pcm(tmp_path, text=LONG_PHRASE))
    assert report["ok"], report
    assert report["before"] == [], report  # the interrupted phrase was never finalized
    assert any("river" in text.lower() for text in report["after"]), report  # the stream goes on
    await no_sessions_left(facade, client)


async def test_audio_sent_too_fast_then_not_at_all_is_warned_about(keyed_client, warm_pool, facade, tmp_path):
    client, key = keyed_client
    report = run_sdk(facade, key.key, tmp_path, "pace", speech_pcm(tmp_path))
    assert report["ok"], report
    assert report["warnings"] == ["AUDIO_STREAM_TOO_FAST", "AUDIO_STREAM_STALLED"], report
    await no_sessions_left(facade, client)


async def test_a_wrong_key_is_refused_with_the_sdks_error(keyed_client, facade, tmp_path):
    _, key = keyed_client
    report = run_sdk(facade, key.key, tmp_path, "wrong-key")
    assert not report["ok"] and report["error_type"] == "SessionError" and "401" in report["error"], report


async def test_the_speech_to_text_stream_transcribes_and_translates(keyed_client, warm_pool, facade, tmp_path):
    client, key = keyed_client
    report = run_sdk(facade, key.key, tmp_path, "stt", speech_pcm(tmp_path, 16000))
    print(f"\npalabra-ai 2.2.1 stt: {json.dumps(report)[:600]}")
    assert report["ok"], report
    finals = {(kind, language): text for kind, language, text, eos, _ in report["transcripts"] if eos}
    assert "friend" in finals[("transcription", "en")].lower(), report
    assert "amigo" in finals[("translated_transcription", "es")].lower(), report
    partials = [text for kind, _, text, eos, _ in report["transcripts"] if kind == "transcription" and not eos]
    assert partials, report  # words while they were said, before the final transcript
    assert "error" not in report["others"], report
    await no_sessions_left(facade, client)


async def test_the_text_to_speech_stream_speaks_and_cancels(keyed_client, warm_pool, facade, tmp_path):
    client, key = keyed_client
    report = run_sdk(facade, key.key, tmp_path, "tts")
    assert report["ok"], report
    # Each sentence came back whole (more than half a second of audible speech), and the cancelled
    # text in between did not end up in the second one's audio: it is about as long as the first.
    assert report["first_seconds"] > 0.5 and report["second_seconds"] > 0.5, report
    assert report["second_bytes"] < 2 * report["first_bytes"], report
    await no_sessions_left(facade, client)


async def test_text_to_speech_in_a_language_without_a_voice_is_a_clear_error(keyed_client, facade, tmp_path):
    client, key = keyed_client
    report = run_sdk(facade, key.key, tmp_path, "tts-no-voice")
    assert report["ok"], report
    code, desc = report["task_error"]
    assert code == "VALIDATION_ERROR" and "no voice for 'de'" in desc, report
    await no_sessions_left(facade, client)
