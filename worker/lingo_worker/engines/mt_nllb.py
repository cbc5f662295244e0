"""NLLB-200 through CTranslate2, for the GPU profile; loads only from the mounted model directory.

Expected layout: <model_dir>/nllb/{model.bin, tokenizer.json, ...} as produced by
`ct2-transformers-converter --model facebook/nllb-200-distilled-600M --copy_files tokenizer.json`.
"""

from __future__ import annotations

from pathlib import Path

from .base import EngineUnavailable, Translator
from .languages import NLLB_CODES, base_language


class NllbTranslator(Translator):
    name = "nllb"

    def __init__(self, model_dir: Path, device: str = "cuda"):
        if not (model_dir / "model.bin").is_file() or not (model_dir / "tokenizer.json").is_file():
            raise EngineUnavailable(f"no CTranslate2 NLLB model at {model_dir} (need model.bin and tokenizer.json)")
        import ctranslate2
        from tokenizers import Tokenizer

        self._translator = ctranslate2.Translator(str(model_dir), device=device)
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))

    def supports(self, source: str, target: str) -> bool:
        return base_language(source) in NLLB_CODES and base_language(target) in NLLB_CODES

    def translate(self, text: str, source: str, target: str) -> str:
        src, tgt = NLLB_CODES[base_language(source)], NLLB_CODES[base_language(target)]
        pieces = self._tokenizer.encode(text, add_special_tokens=False).tokens
        result = self._translator.translate_batch([[src, *pieces, "</s>"]], target_prefix=[[tgt]], beam_size=2)
        output = [t for t in result[0].hypotheses[0] if t not in (tgt, "</s>")]
        ids = [self._tokenizer.token_to_id(t) for t in output]
        return self._tokenizer.decode([i for i in ids if i is not None]).strip()
