"""The GPU profile's translation engine (NLLB through CTranslate2) on CPU, with a tiny model the test
builds itself (tests/tiny_models.py): it loads from the model directory, translates without
error, refuses a directory with a missing or mismatched file naming it, and opens no socket.
Whisper's half of the profile runs in tests/test_model_delivery.py, on models fetched from a mirror."""

from __future__ import annotations

import json
import shutil
import socket

import pytest

from lingo_worker.engines.base import EngineUnavailable
from lingo_worker.engines.mt_nllb import NllbTranslator
from lingo_worker.engines.registry import build_engines

from .tiny_models import build_tiny_nllb


@pytest.fixture(scope="module")
def tiny_nllb(tmp_path_factory):
    return build_tiny_nllb(tmp_path_factory.mktemp("models") / "nllb")


@pytest.fixture
def no_network(monkeypatch):
    def refuse(self, address):
        raise AssertionError(f"the GPU profile tried to reach {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def test_nllb_translates_on_cpu_from_the_model_directory(tiny_nllb, no_network):
    translator = NllbTranslator(tiny_nllb, device="cpu", compute_type="default")
    assert translator.supports("en", "es") and translator.supports("ca", "it") and not translator.supports("en", "xx")
    for source, target in (("en", "es"), ("es", "en"), ("ca", "it")):
        text = translator.translate("hello world. the weather is nice.", source, target)
        assert isinstance(text, str)  # random weights: any words, but the whole path ran
        assert not any(code in text for code in ("eng_Latn", "spa_Latn", "</s>"))  # control tokens never leak


def copy_without(model, tmp_path, name: str):
    broken = tmp_path / "nllb"
    shutil.copytree(model, broken)
    (broken / name).unlink()
    return broken


@pytest.mark.parametrize("missing", ["model.bin", "tokenizer.json", "shared_vocabulary.json"])
def test_a_directory_with_a_file_missing_is_refused_naming_it(tiny_nllb, tmp_path, missing):
    with pytest.raises(EngineUnavailable, match=missing.replace(".", r"\.")):
        NllbTranslator(copy_without(tiny_nllb, tmp_path, missing), device="cpu")


def test_a_tokenizer_that_is_not_the_models_is_refused(tiny_nllb, tmp_path):
    from .tiny_models import nllb_tokenizer

    broken = tmp_path / "nllb"
    shutil.copytree(tiny_nllb, broken)
    tokens = json.loads((broken / "shared_vocabulary.json").read_text())
    nllb_tokenizer([*tokens[:5], tokens[6], tokens[5], *tokens[7:]]).save(str(broken / "tokenizer.json"))
    with pytest.raises(EngineUnavailable, match="is not the tokenizer of the model's shared_vocabulary.json"):
        NllbTranslator(broken, device="cpu")
    without_spanish = [t for t in tokens if t != "spa_Latn"]
    (broken / "shared_vocabulary.json").write_text(json.dumps(without_spanish))
    nllb_tokenizer(without_spanish).save(str(broken / "tokenizer.json"))
    with pytest.raises(EngineUnavailable, match="no language token spa_Latn"):
        NllbTranslator(broken, device="cpu")


def test_the_gpu_profile_names_the_model_folder_it_lacks(tiny_nllb, tmp_path):
    with pytest.raises(EngineUnavailable, match="needs its model directory mounted"):
        build_engines("gpu", tmp_path / "absent", gpu_device="cpu")
    (tmp_path / "models").mkdir()
    shutil.copytree(tiny_nllb, tmp_path / "models" / "nllb")
    with pytest.raises(EngineUnavailable, match=r"models/whisper missing"):
        build_engines("gpu", tmp_path / "models", gpu_device="cpu")
