"""Run Palabra's current Python SDK (palabra-ai 2.2.1, unmodified, from its own environment
`.venv-palabra2`) against a Lingo facade. The only change an app makes is where it connects: one
more entry in the SDK's region table. Prints one JSON line with what the SDK saw.

python tests/palabra2_sdk_run.py --facade URL --api-key-file F
        --scenario translate|pause|speak|interrupt|interrupt-phrase|pace|wrong-key|stt|tts|tts-no-voice
        [--pcm IN.pcm (s16le, mono: 24 kHz, or 16 kHz for stt)]
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import time
from pathlib import Path

import palabra_ai.client
from palabra_ai import Palabra
from palabra_ai.client import Region
from palabra_ai.events import Audio, ServerError, ServerWarning, StreamEnd, TaskStatus, Transcript
from palabra_ai.exc import PalabraError, TaskError
from palabra_ai.stt import SttTranscript


def point_at(facade: str) -> None:
    """The one line an app changes: a region for the Lingo facade."""
    ws = facade.replace("http://", "ws://").replace("https://", "wss://")
    palabra_ai.client.REGIONS["lingo"] = Region(
        translation=f"{ws}/streaming-api/{{random_hash}}/v1/speech-to-speech/stream",
        stt=f"{ws}/asr/v1/speech-to-text/stream", tts=f"{ws}/tts-api/v1/text-to-speech/stream")


def audible_seconds(pcm: bytes, rate: int = 24000, threshold: int = 500) -> float:
    samples = array.array("h", pcm[: len(pcm) // 2 * 2])
    window = rate // 50
    loud = sum(1 for i in range(0, len(samples) - window, window)
               if max(abs(s) for s in samples[i:i + window]) > threshold)
    return loud / 50


async def translate(palabra: Palabra, pcm: bytes) -> dict:
    seen: dict = {"transcripts": [], "audio_bytes": {}, "statuses": [], "errors": [], "end_of_stream": False}
    audio = bytearray()
    async with palabra.translation("en", "es", translate_partials=True, output_format="zlib_pcm_s16le") as stream:
        feeder = asyncio.create_task(stream.send_pcm(pcm, end=True))
        async for event in stream:
            if isinstance(event, Transcript):
                seen["transcripts"].append([event.type, event.language, event.text])
            elif isinstance(event, Audio):
                audio.extend(event.pcm)
                seen["audio_bytes"][event.language] = seen["audio_bytes"].get(event.language, 0) + len(event.pcm)
            elif isinstance(event, TaskStatus):
                seen["statuses"].append([event.command, event.event, event.status])
            elif isinstance(event, ServerError):
                seen["errors"].append([event.code, event.desc])
            elif isinstance(event, StreamEnd):
                seen["end_of_stream"] = True
        await feeder
    seen["audible_seconds"] = audible_seconds(bytes(audio))
    return seen


async def pause_and_resume(palabra: Palabra) -> dict:
    statuses = []
    async with palabra.translation("en", "es") as stream:
        await stream.pause()
        await stream.resume()
        while len(statuses) < 3:  # set_task's own acknowledgement first
            event = await stream.receive(timeout=20)
            if isinstance(event, TaskStatus):
                statuses.append([event.command, event.event, event.status])
    return {"statuses": statuses}


async def speak(palabra: Palabra) -> dict:
    """speak() as is on a target's track, and translated from the source language."""
    seen: dict = {"queued": [], "transcripts": {}, "audio_bytes": {}, "last_chunk": []}
    async with palabra.translation("en", "es") as stream:
        await stream.speak("Buenos días a todos.", "es")
        await stream.speak("Thank you for coming.", "en", translate=True)
        deadline = time.monotonic() + 60
        while len(seen["last_chunk"]) < 2 and time.monotonic() < deadline:
            event = await stream.receive(timeout=60)
            if isinstance(event, TaskStatus) and event.command == "tts_task":
                seen["queued"].append([event.event, event.transcription_id])
            elif isinstance(event, Transcript) and event.id.startswith("tts-"):
                seen["transcripts"][event.id] = [event.type, event.language, event.text]
            elif isinstance(event, Audio) and event.id:
                seen["audio_bytes"][event.id] = seen["audio_bytes"].get(event.id, 0) + len(event.pcm)
                if event.last_chunk:
                    seen["last_chunk"].append(event.id)
    return seen


async def interrupt(palabra: Palabra) -> dict:
    """A long speak(), interrupted once its speech is playing: its audio stops."""
    text = ("Esta es una frase larga para comprobar que la interrupción corta la voz. " * 4).strip()
    seen: dict = {"before": 0, "after": 0, "last_chunk": False}
    async with palabra.translation("en", "es") as stream:
        await stream.speak(text, "es")
        interrupted_at = None
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            try:
                event = await stream.receive(timeout=1)
            except asyncio.TimeoutError:
                if interrupted_at is not None and time.monotonic() - interrupted_at > 3:
                    break
                continue
            if not isinstance(event, Audio):
                continue
            seen["last_chunk"] |= event.last_chunk
            if interrupted_at is None:
                seen["before"] += len(event.pcm)
                if seen["before"] >= 24000 * 2:  # a second of it heard
                    await stream.interrupt(["es"])
                    interrupted_at = time.monotonic()
            elif time.monotonic() - interrupted_at > 0.5:  # what was on its way when it was asked
                seen["after"] += len(event.pcm)
    return seen


async def interrupt_phrase(palabra: Palabra, pcm: bytes) -> dict:
    """interrupt() two seconds into a long phrase drops it: that part never comes back transcribed
    or translated; the phrase said again afterwards does. Consecutive mode (Palabra's
    only_confirm_by_silence), so nothing of the phrase was final before the interrupt."""
    seen: dict = {"before": [], "after": []}
    two_seconds = 24000 * 2 * 2
    async with palabra.translation("en", "es", transcription={"only_confirm_by_silence": True}) as stream:
        async def collect(into: list, seconds: float, until: str | None = None) -> None:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                try:
                    event = await stream.receive(timeout=0.5)
                except asyncio.TimeoutError:
                    continue
                if isinstance(event, Transcript) and event.type == "validated_transcription":
                    into.append(event.text)
                    if until and until in event.text.lower():
                        return

        await stream.send_pcm(pcm[:two_seconds])
        await stream.interrupt()
        await stream.send_pcm(bytes(24000 * 2))  # a second of silence: the utterance ends
        await collect(seen["before"], 6)
        sender = asyncio.create_task(stream.send_pcm(pcm))
        await collect(seen["after"], 60, until="river")
        await sender
    return seen


async def pace(palabra: Palabra, pcm: bytes) -> dict:
    """Audio sent all at once, then none: the stream's pace warnings."""
    codes: list[str] = []
    async with palabra.translation("en", "es") as stream:
        await stream.send_pcm(pcm, realtime=False)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "AUDIO_STREAM_STALLED" not in codes:
            try:
                event = await stream.receive(timeout=1)
            except asyncio.TimeoutError:
                continue
            if isinstance(event, ServerWarning):
                codes.append(event.code)
    return {"warnings": codes}


async def speech_to_text(palabra: Palabra, pcm: bytes) -> dict:
    """The speech-to-text stream: English in (16 kHz), its transcript and Spanish translation out."""
    seen: dict = {"transcripts": [], "others": []}
    async with palabra.stt("en", translate_languages=["es"]) as stream:
        await stream.send_pcm(pcm)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                event = await stream.receive(timeout=1)
            except asyncio.TimeoutError:
                continue
            if event is None:
                break
            if isinstance(event, SttTranscript):
                seen["transcripts"].append([event.type, event.language, event.text, event.is_eos, event.delta])
                finals = {(kind, language) for kind, language, _, eos, _ in seen["transcripts"] if eos}
                if {("transcription", "en"), ("translated_transcription", "es")} <= finals:
                    break
            else:
                seen["others"].append(event.type)
    return seen


async def text_to_speech(palabra: Palabra) -> dict:
    """The text-to-speech stream: two sentences, the second after a cancel of a first try."""
    async with palabra.tts("es") as stream:
        first = await stream.synthesize("Buenos días a todos.")
        await stream.send_text("Esto no se dirá nunca porque se cancela antes.")
        await stream.cancel()
        second = await stream.synthesize("Gracias por venir.", speed=1.2)
    return {"first_seconds": audible_seconds(first), "second_seconds": audible_seconds(second),
            "first_bytes": len(first), "second_bytes": len(second)}


async def text_to_speech_without_a_voice(palabra: Palabra) -> dict:
    async with palabra.tts("de") as stream:  # no German voice in the engines
        try:
            await stream.synthesize("Guten Morgen.", timeout=30)
        except TaskError as exc:
            return {"task_error": [exc.code, exc.desc]}
        except Exception:  # the server may have closed before the text went out: its error came first
            while (event := await stream.receive(timeout=10)) is not None:
                if isinstance(event, ServerError):
                    return {"task_error": [event.code, event.desc]}
    return {"task_error": None}


# Each scenario: (the SDK pointed at the facade, the --pcm audio or b"") -> what it saw.
SCENARIOS = {
    "translate": translate,
    "pause": lambda palabra, _pcm: pause_and_resume(palabra),
    "speak": lambda palabra, _pcm: speak(palabra),
    "interrupt": lambda palabra, _pcm: interrupt(palabra),
    "interrupt-phrase": interrupt_phrase,
    "pace": pace,
    "stt": speech_to_text,
    "tts": lambda palabra, _pcm: text_to_speech(palabra),
    "tts-no-voice": lambda palabra, _pcm: text_to_speech_without_a_voice(palabra),
}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--facade", required=True)
    parser.add_argument("--api-key-file", required=True, type=Path)
    parser.add_argument("--scenario", required=True, choices=[*SCENARIOS, "wrong-key"])
    parser.add_argument("--pcm", type=Path)
    args = parser.parse_args()
    point_at(args.facade)
    key = args.api_key_file.read_text().strip()
    report: dict = {"ok": True}
    try:
        if args.scenario == "wrong-key":
            async with Palabra(api_key=key[:-4] + "AAAA", region="lingo").translation("en", "es"):
                pass
        else:
            pcm = args.pcm.read_bytes() if args.pcm else b""
            report.update(await SCENARIOS[args.scenario](Palabra(api_key=key, region="lingo"), pcm))
    except PalabraError as exc:  # the SDK's own error types
        report = {"ok": False, "error_type": type(exc).__name__, "error": str(exc)[:300].replace(key, "<key>")}
    print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main())
