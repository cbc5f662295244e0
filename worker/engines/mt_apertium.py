"""Apertium rule-based translation (Debian packages apertium + apertium-<pair>)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .base import EngineUnavailable, Translator
from .languages import APERTIUM_CODES, base_language

MODES_DIR = Path("/usr/share/apertium/modes")


class ApertiumTranslator(Translator):
    name = "apertium"

    def __init__(self, modes_dir: Path = MODES_DIR):
        self._binary = shutil.which("apertium")
        if not self._binary:
            raise EngineUnavailable("apertium is not installed (Debian package 'apertium')")
        self._modes_dir = modes_dir

    def _pair(self, source: str, target: str) -> str | None:
        src, tgt = APERTIUM_CODES.get(base_language(source)), APERTIUM_CODES.get(base_language(target))
        if not src or not tgt:
            return None
        pair = f"{src}-{tgt}"
        return pair if (self._modes_dir / f"{pair}.mode").exists() else None

    def supports(self, source: str, target: str) -> bool:
        return self._pair(source, target) is not None

    def translate(self, text: str, source: str, target: str) -> str:
        pair = self._pair(source, target)
        if pair is None:
            raise EngineUnavailable(f"no Apertium pair installed for {source}->{target}")
        # -u: leave unknown words unmarked instead of prefixing them with '*'.
        result = subprocess.run([self._binary, "-u", pair], input=text, capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise RuntimeError(f"apertium {pair} failed: {result.stderr.strip()[:200]}")
        return result.stdout.strip()
