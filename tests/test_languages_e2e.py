"""Beyond English to Spanish, end to end through LiveKit with the real engines: a non-English
source, and a pair served through a pivot language."""

from __future__ import annotations

import aiohttp
import pytest

from lingo_api import resources as r

from .helpers import create_session, eventually, read_tokens, wait_for_phase, worker_ready
from .speech import ControlClient, audible_frames, listen_to_track, publish_speech, speech_wav

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("operator", "kubelet", "facade")]


@pytest.mark.parametrize("source,target,text,voice,expected", [
    # Spanish speech, Catalan out ("tiempo" -> "temps" survives even when "Hola amigo" is misheard)
    ("es", "ca", "Hola amigo, hoy hace muy buen tiempo.", "es", "temps"),
    ("en", "pt", "Hello my friend, the weather is very nice today.", "en-us", "amigo"),  # English -> Spanish -> Portuguese
])
async def test_a_pair_translates_end_to_end(kube, worker_namespace, tmp_path, source, target, text, voice,
                                            expected):
    await create_session(kube, worker_namespace, "pair", subscriberCount=1, sourceLanguage=source,
                         targetLanguages=[target])
    await wait_for_phase(kube, worker_namespace, "pair", r.Phase.READY)

    status = (await eventually(lambda: worker_ready(kube, worker_namespace, "pair"), timeout=90,
                               what="WorkerReady"))["status"]
    tokens = await read_tokens(kube, worker_namespace, "pair")
    samples, rate = speech_wav(tmp_path, text, voice)
    listener, energy = await listen_to_track(status["streamUrl"], tokens["subscriber"][0], f"translation_{target}")
    async with aiohttp.ClientSession() as http, http.ws_connect(
            status["controlUrl"], params={"token": tokens["publisher"][0]}) as ws:
        control = ControlClient(ws)
        await control.next("current_task")
        speaker = await publish_speech(status["streamUrl"], tokens["publisher"][0], samples, rate)
        try:
            heard = (await control.next("validated_transcription", timeout=60))["transcription"]
            assert heard["language"] == source and heard["text"], heard
            # The sentence may come as one unit or a few (simultaneous interpretation closes units
            # at clauses): read translations until the expected word is in.
            translated: list[str] = []
            while expected not in " ".join(translated).lower():
                unit = (await control.next("translated_transcription", timeout=30))["transcription"]
                assert unit["language"] == target, unit
                translated.append(unit["text"])
            await eventually(lambda: _audible(energy), timeout=20, what=f"audible translation_{target}")
        finally:
            await speaker.disconnect()
            await listener.disconnect()


async def _audible(energy: list[float]) -> bool:
    return audible_frames(energy) > 20
