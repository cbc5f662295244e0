"""NLLB-200 through CTranslate2, for the GPU profile; loads only from the mounted model directory.

Expected layout: <model_dir>/nllb/{model.bin, tokenizer.json, shared_vocabulary.json, ...} as
produced by `ct2-transformers-converter --model facebook/nllb-200-distilled-600M --copy_files
tokenizer.json`. A directory with a file missing, or a tokenizer that is not the model's (its
tokens numbered differently, a language token missing), is refused with the file named, before
anything is translated wrongly. Device and compute type are the worker's settings, so the same
code runs on CPU (tests/test_gpu_profile.py, with a tiny model it builds itself).
"""

from __future__ import annotations

import json
from pathlib import Path

from .base import EngineUnavailable, Translator
from .languages import NLLB_CODES, base_language

VOCABULARY_FILES = ("shared_vocabulary.json", "target_vocabulary.json")  # what CTranslate2 wrote


def check_model_dir(model_dir: Path):
    """The directory's tokenizer, once model.bin and tokenizer.json are there and agree with the
    model's vocabulary; EngineUnavailable naming what is wrong otherwise."""
    from tokenizers import Tokenizer

    for name in ("model.bin", "tokenizer.json"):
        if not (model_dir / name).is_file():
            raise EngineUnavailable(f"no CTranslate2 NLLB model at {model_dir}: {name} is missing")
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    vocabulary_file = next((model_dir / n for n in VOCABULARY_FILES if (model_dir / n).is_file()), None)
    if vocabulary_file is None:
        raise EngineUnavailable(f"no CTranslate2 NLLB model at {model_dir}: {' or '.join(VOCABULARY_FILES)} is missing")
    vocabulary = json.loads(vocabulary_file.read_text(encoding="utf-8"))
    for index, token in enumerate(vocabulary):
        if tokenizer.token_to_id(token) != index:
            raise EngineUnavailable(
                f"{model_dir / 'tokenizer.json'} is not the tokenizer of the model's {vocabulary_file.name}: "
                f"token {token[:40]!r} is number {index} in the model and {tokenizer.token_to_id(token)} in the tokenizer")
    missing = sorted(code for code in NLLB_CODES.values() if tokenizer.token_to_id(code) is None)
    if missing:
        raise EngineUnavailable(f"{model_dir / 'tokenizer.json'} has no language token {', '.join(missing[:5])}")
    return tokenizer


class NllbTranslator(Translator):
    name = "nllb"

    def __init__(self, model_dir: Path, device: str = "cuda", compute_type: str = "default"):
        self._tokenizer = check_model_dir(model_dir)
        import ctranslate2

        self._translator = ctranslate2.Translator(str(model_dir), device=device, compute_type=compute_type)

    def supports(self, source: str, target: str) -> bool:
        return base_language(source) in NLLB_CODES and base_language(target) in NLLB_CODES

    def translate(self, text: str, source: str, target: str) -> str:
        src, tgt = NLLB_CODES[base_language(source)], NLLB_CODES[base_language(target)]
        pieces = self._tokenizer.encode(text, add_special_tokens=False).tokens
        # A unit is a sentence or a clause: its translation is never four times as long.
        limit = 4 * len(pieces) + 10
        result = self._translator.translate_batch([[src, *pieces, "</s>"]], target_prefix=[[tgt]], beam_size=2,
                                                  max_decoding_length=limit)
        output = [t for t in result[0].hypotheses[0] if t not in (tgt, "</s>")]
        ids = [self._tokenizer.token_to_id(t) for t in output]
        return self._tokenizer.decode([i for i in ids if i is not None]).strip()
