"""Tiny models in the GPU profile's formats, made here from nothing (no download, no torch): random
weights through CTranslate2's model-spec API and a word-level tokenizer built with `tokenizers`.
They translate nonsense, which is all the GPU profile's code paths need to run on CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lingo_worker.engines.languages import NLLB_CODES

SPECIAL = ["<s>", "<pad>", "</s>", "<unk>"]
WORDS = ["▁hello", "▁world", "▁hola", "▁mundo", "▁the", "▁weather", "▁is", "▁nice", "."]


def nllb_tokenizer(tokens: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({token: i for i, token in enumerate(tokens)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.add_special_tokens([t for t in tokens if not t.startswith("▁") and t != "."])
    return tokenizer


def _set(spec, name: str, value: np.ndarray) -> None:
    """Set a spec variable by its path ("decoder/layer_0/ffn/linear_0/weight")."""
    node, parts = spec, name.split("/")
    for part in parts[:-1]:
        base, _, index = part.rpartition("_")
        if index.isdigit() and isinstance(getattr(node, base, None), list):
            node = getattr(node, base)[int(index)]
        else:
            node = getattr(node, part)
    setattr(node, parts[-1], value)


def build_tiny_nllb(directory: Path, width: int = 16, seed: int = 0) -> Path:
    """A one-layer Transformer with NLLB's special and language tokens, saved as CTranslate2 writes
    a converted NLLB (model.bin, config.json, shared_vocabulary.json) plus its tokenizer.json."""
    from ctranslate2.specs import transformer_spec

    tokens = [*SPECIAL, *sorted(set(NLLB_CODES.values())), *WORDS]
    vocab, ffn = len(tokens), 2 * width
    spec = transformer_spec.TransformerSpec.from_config(1, 2)
    rng = np.random.default_rng(seed)

    def shape(name: str) -> tuple[int, ...]:
        if "embeddings" in name or name.endswith("projection/weight"):
            return vocab, width
        if name.endswith(("gamma", "beta")):
            return (width,)
        if "self_attention/linear_0" in name:
            return 3 * width, width  # fused query, key, value
        if "/attention/linear_1" in name:
            return 2 * width, width  # cross-attention: fused key, value
        if "ffn/linear_0" in name:
            return ffn, width
        if "ffn/linear_1" in name:
            return width, ffn
        return width, width

    for name, value in spec.variables(ordered=True):
        if value is None:
            size = shape(name)
            weights = np.ones(size) if name.endswith("gamma") else np.zeros(size) if name.endswith("beta") \
                else rng.normal(0, 0.1, size)
            _set(spec, name, weights.astype(np.float32))
    spec.register_source_vocabulary(tokens)
    spec.register_target_vocabulary(tokens)
    spec.validate()
    spec.optimize(quantization=None)
    directory.mkdir(parents=True, exist_ok=True)
    spec.save(str(directory))
    nllb_tokenizer(tokens).save(str(directory / "tokenizer.json"))
    return directory
