"""Run Palabra's current Python SDK (palabra-ai 2.2.1, unmodified, from its own environment
`.venv-palabra2`) against a Lingo facade. The only change an app makes is where it connects: one
more entry in the SDK's region table. Prints one JSON line with what the SDK saw.

python tests/palabra2_sdk_run.py --facade URL --api-key-file F --scenario translate|pause|speak|interrupt|pace|wrong-key
                                 [--pcm IN.pcm (s16le, 24 kHz, mono)]
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
from palabra_ai.exc import PalabraError


def point_at(facade: str) -> None:
    """The one line an app changes: a region for the Lingo facade."""
    ws = facade.replace("http://", "ws://").replace("https://", "wss://")
    palabra_ai.client.REGIONS["lingo"] = Region(
        translation=f"{ws}/streaming-api/{{random_hash}}/v1/speech-to-speech/stream")


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


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--facade", required=True)
    parser.add_argument("--api-key-file", required=True, type=Path)
    parser.add_argument("--scenario", required=True, choices=["translate", "pause", "speak", "interrupt", "pace", "wrong-key"])
    parser.add_argument("--pcm", type=Path)
    args = parser.parse_args()
    point_at(args.facade)
    key = args.api_key_file.read_text().strip()
    report: dict = {"ok": True}
    try:
        if args.scenario == "translate":
            report.update(await translate(Palabra(api_key=key, region="lingo"), args.pcm.read_bytes()))
        elif args.scenario == "pause":
            report.update(await pause_and_resume(Palabra(api_key=key, region="lingo")))
        elif args.scenario == "speak":
            report.update(await speak(Palabra(api_key=key, region="lingo")))
        elif args.scenario == "pace":
            report.update(await pace(Palabra(api_key=key, region="lingo"), args.pcm.read_bytes()))
        elif args.scenario == "interrupt":
            report.update(await interrupt(Palabra(api_key=key, region="lingo")))
        else:
            async with Palabra(api_key=key[:-4] + "AAAA", region="lingo").translation("en", "es"):
                pass
    except PalabraError as exc:  # the SDK's own error types
        report = {"ok": False, "error_type": type(exc).__name__, "error": str(exc)[:300].replace(key, "<key>")}
    print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main())
