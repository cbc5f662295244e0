"""Run Palabra's official Python SDK (palabra-ai, unmodified) against a Lingo facade.

A separate process because the SDK installs uvloop as the event loop policy. Prints one JSON
line: ok, the exception if any, the transcriptions its callbacks received, and how many seconds
of the written translation are not silent.

python tests/palabra_sdk_run.py --endpoint URL --client-id ID --client-secret-file F --mode webrtc|ws
                                --wav IN.wav --out OUT.wav
"""

from __future__ import annotations

import argparse
import json
import sys
import wave
from pathlib import Path

import numpy as np
from palabra_ai import EN, ES, Config, FileReader, FileWriter, PalabraAI, SourceLang, TargetLang
from palabra_ai.config import WebrtcMode, WsMode


def audible_seconds(path: Path, threshold: int = 500) -> float:
    if not path.exists():
        return 0.0
    with wave.open(str(path)) as wav:
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        rate, channels = wav.getframerate(), wav.getnchannels()
    window = rate // 50 * channels  # 20 ms
    loud = sum(np.abs(samples[i:i + window]).mean() > threshold for i in range(0, len(samples) - window, window))
    return round(loud * 0.02, 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret-file", required=True, type=Path)
    parser.add_argument("--mode", choices=("webrtc", "ws"), required=True)
    parser.add_argument("--wav", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    heard: list[dict] = []

    def collect(message) -> None:  # the SDK's TranscriptionMessage
        heard.append({"type": message.type_.value, "language": message.language.code, "text": message.text})

    config = Config(
        SourceLang(EN, FileReader(args.wav), on_transcription=collect),
        [TargetLang(ES, FileWriter(args.out), on_transcription=collect)],
        mode=WebrtcMode() if args.mode == "webrtc" else WsMode(),
    )
    client = PalabraAI(client_id=args.client_id, client_secret=args.client_secret_file.read_text().strip(),
                       api_endpoint=args.endpoint)
    result = client.run(config, no_raise=True)
    print(json.dumps({
        "ok": bool(result and result.ok),
        "exception": repr(result.exc) if result and result.exc else None,
        "eos": bool(result and result.eos),
        "transcriptions": heard,
        "audible_seconds": audible_seconds(args.out),
    }))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
