"""Apertium rule-based translation (Debian packages apertium + apertium-<pair>).

Every installed mode (`/usr/share/apertium/modes/<src>-<tgt>.mode`) is a direct pair; a pair
with no mode of its own is served through a pivot language (es, ca or en) when both legs
exist. Each pair used is kept warm: its mode's pipeline runs once per worker in Apertium's
null-flush mode (`-z`: every program flushes at a NUL byte), so a sentence costs a write and a
read (~10 ms) instead of starting a dozen processes (~150-500 ms). A pipeline that dies or
stalls is started again; a mode whose programs do not all speak `-z` uses one `apertium` call
per sentence.
"""

from __future__ import annotations

import logging
import os
import re
import select
import shutil
import subprocess
import threading
import time
from pathlib import Path

from .base import EngineUnavailable, Translator
from .engine_process import end_engine_process
from .languages import PIVOT_LANGUAGES, base_language, iso639_1

log = logging.getLogger("lingo.worker")

MODES_DIR = Path("/usr/share/apertium/modes")
# Programs of a mode pipeline that flush on NUL with -z.
NULL_FLUSH_PROGRAMS = {"lt-proc", "apertium-tagger", "apertium-pretransfer", "apertium-transfer",
                       "apertium-interchunk", "apertium-postchunk", "cg-proc", "lrx-proc", "lsx-proc"}
# What apertium-destxt would do to plain text: escape the stream format's special characters
# and close the text with a sentence end in an empty superblank (removed again on the way out).
_SPECIAL = re.compile(r"([\\\[\]^$/<>@{}*])")
_UNESCAPE = re.compile(r"\\(.)")
_END = ".[]"
TIMEOUT_SECONDS = 5
PROOF_TIMEOUT_SECONDS = 1.5
# What a warm pipeline must translate exactly as the CLI does before it is trusted.
PROBES = ("12", "345 678", "9")
# Installed modes left out on purpose, with the reason. Debian's apertium-rus-ukr 0.2.1-4:
# apertium-tagger segfaults on its tagger model on some machines and not on others, so the pair
# would come and go with the CPU a worker lands on.
UNRELIABLE_MODES = {"rus-ukr": "apertium-tagger crashes on rus-ukr.prob on some machines"}


def discover_pairs(modes_dir: Path = MODES_DIR) -> dict[tuple[str, str], str]:
    """(source, target) ISO 639-1 codes -> mode name, for every plain installed mode."""
    pairs: dict[tuple[str, str], str] = {}
    for mode in sorted(modes_dir.glob("*.mode")):
        parts = mode.stem.split("-")
        if len(parts) != 2 or "_" in mode.stem:
            continue  # variants (pt-es_BR, eng-cat_valencia, en-eo-bytecode, ...) are not separate pairs
        if mode.stem in UNRELIABLE_MODES:
            continue
        source, target = iso639_1(parts[0]), iso639_1(parts[1])
        if source and target and source != target and _complete(mode):
            pairs.setdefault((source, target), mode.stem)
    return pairs


def _complete(mode_file: Path) -> bool:
    """Every data file the mode names is installed (a pair package can ship a mode of another's)."""
    return all(Path(path).exists() for path in re.findall(r"'(/[^']+)'", mode_file.read_text()))


class WarmPipeline:
    """One mode's pipeline, running, translating one NUL-terminated sentence at a time."""

    def __init__(self, mode: str, command: str):
        self.mode, self.command = mode, command
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        # In the worker's process group, and the worker holds the only write end of its stdin:
        # when the worker ends, however it ends, the pipeline reads EOF and exits too.
        self._process = subprocess.Popen(["bash", "-c", self.command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL)
        return self._process

    def _read_until_nul(self, process: subprocess.Popen, timeout: float) -> bytes:
        out, deadline = b"", time.monotonic() + timeout
        fd = process.stdout.fileno()
        while not out.endswith(b"\0"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError(f"apertium {self.mode} did not answer in {timeout}s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise BrokenPipeError(f"apertium {self.mode} exited")
            out += chunk
        return out[:-1]

    def translate(self, text: str, timeout: float = TIMEOUT_SECONDS, attempts: int = 2) -> str:
        payload = (_SPECIAL.sub(r"\\\1", text.replace("\0", " ")) + _END + "\0").encode()
        with self._lock:
            for attempt in range(1, attempts + 1):  # a pipeline that died is started again, once per sentence
                if self._process is None or self._process.poll() is not None:
                    self.close()
                    self._start()
                process = self._process
                try:
                    process.stdin.write(payload)
                    process.stdin.flush()
                    raw = self._read_until_nul(process, timeout).decode(errors="replace")
                    break
                except (OSError, TimeoutError) as exc:
                    log.warning("apertium %s pipeline failed (%s); restarting it", self.mode, exc)
                    self.close()
                    if attempt == attempts:
                        raise RuntimeError(f"apertium {self.mode} failed: {exc}") from exc
        raw = raw.strip()
        if raw.endswith(_END):
            raw = raw[: -len(_END)]
        return _UNESCAPE.sub(r"\1", raw).strip()

    def close(self) -> None:
        process, self._process = self._process, None
        end_engine_process(process)


def null_flush_command(mode_file: Path, mark_unknown: bool = False) -> str | None:
    """The mode's pipeline with -z on every program, or None if one of them cannot do it."""
    stages = []
    for stage in mode_file.read_text().strip().split("|"):
        words = stage.split()
        if not words or words[0] not in NULL_FLUSH_PROGRAMS:
            return None
        stages.append(" ".join([words[0], "-z", *words[1:]]))
    # $1: the generator's option (-g marks unknown words with '*', -n leaves them bare); $2: tagger options.
    return " | ".join(stages).replace("$1", "-g" if mark_unknown else "-n").replace("$2", "")


class ApertiumTranslator(Translator):
    name = "apertium"

    def __init__(self, modes_dir: Path = MODES_DIR):
        self._binary = shutil.which("apertium")
        if not self._binary:
            raise EngineUnavailable("apertium is not installed (Debian package 'apertium')")
        self._modes_dir = modes_dir
        self.pairs = discover_pairs(modes_dir)
        self._warm: dict[str, WarmPipeline | None] = {}
        self._lock = threading.Lock()

    def route(self, source: str, target: str) -> list[str] | None:
        """The modes a source->target translation goes through: one (direct) or two (pivot)."""
        source, target = base_language(source), base_language(target)
        if (source, target) in self.pairs:
            return [self.pairs[(source, target)]]
        for pivot in PIVOT_LANGUAGES:
            if (source, pivot) in self.pairs and (pivot, target) in self.pairs:
                return [self.pairs[(source, pivot)], self.pairs[(pivot, target)]]
        return None

    def supports(self, source: str, target: str) -> bool:
        return self.route(source, target) is not None

    def warm_up(self, source: str, targets: list[str]) -> None:
        """Start the pipelines a task needs now, rather than at its first sentence."""
        for target in targets:
            for mode in self.route(source, target) or []:
                self._translate_mode(mode, "Hello.")

    def _pipeline(self, mode: str) -> WarmPipeline | None:
        with self._lock:
            if mode not in self._warm:
                command = null_flush_command(self._modes_dir / f"{mode}.mode")
                self._warm[mode] = self._proven(WarmPipeline(mode, command)) if command else None
            return self._warm[mode]

    def _proven(self, pipeline: WarmPipeline) -> WarmPipeline | None:
        """The pipeline if it answers like the CLI, one answer per sentence, in order; else None.
        (Some modes emit more than one NUL per sentence and would fall out of step.)"""
        try:
            for probe in PROBES:
                if pipeline.translate(probe, timeout=PROOF_TIMEOUT_SECONDS, attempts=1) \
                        != self._translate_cli(pipeline.mode, probe):
                    raise RuntimeError(f"answers differ from the CLI for {probe!r}")
        except RuntimeError as exc:
            log.info("apertium %s cannot stay warm (%s); one call per sentence", pipeline.mode, exc)
            pipeline.close()
            return None
        return pipeline

    def _translate_mode(self, mode: str, text: str) -> str:
        pipeline = self._pipeline(mode)
        if pipeline is not None:
            return pipeline.translate(text)
        return self._translate_cli(mode, text)

    def _translate_cli(self, mode: str, text: str) -> str:
        # -u: leave unknown words unmarked instead of prefixing them with '*'.
        result = subprocess.run([self._binary, "-u", mode], input=text.encode(), capture_output=True,
                                timeout=TIMEOUT_SECONDS * 3)
        if result.returncode != 0:
            raise RuntimeError(f"apertium {mode} failed: {result.stderr.decode(errors='replace').strip()[:200]}")
        return result.stdout.decode(errors="replace").strip()

    def translate(self, text: str, source: str, target: str) -> str:
        modes = self.route(source, target)
        if modes is None:
            raise EngineUnavailable(f"no Apertium pair installed for {source}->{target}")
        for mode in modes:
            text = self._translate_mode(mode, text)
        return text

    def close(self) -> None:
        for pipeline in self._warm.values():
            if pipeline:
                pipeline.close()
