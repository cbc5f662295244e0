"""Apertium kept warm (worker/lingo_worker/engines/mt_apertium.py): direct and pivot routes, and a pipeline
that dies mid-session is started again without losing the sentence."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from lingo_worker.engines.mt_apertium import ApertiumTranslator


@pytest.fixture
def translator():
    instance = ApertiumTranslator()
    yield instance
    instance.close()


def _pipeline_pids(translator, mode: str) -> list[int]:
    bash = translator._warm[mode]._process.pid
    children = subprocess.run(["pgrep", "-P", str(bash)], capture_output=True, text=True).stdout.split()
    return [bash, *map(int, children)]


def test_a_direct_pair_and_a_pivot_pair(translator):
    assert translator.route("en", "es") == ["eng-spa"]
    assert "amigo" in translator.translate("Hello my friend.", "en", "es").lower()
    route = translator.route("en", "pt")
    assert len(route) == 2, route  # no English-Portuguese pair: through Spanish
    assert "amigo" in translator.translate("Hello my friend.", "en", "pt").lower()


def test_special_characters_survive_the_stream_format(translator):
    assert translator.translate("I paid $5 [cash] for 2/3 of it.", "en", "es").count("$5") == 1


@pytest.mark.parametrize("victim", [0, -1])  # the shell, or the last program of the pipeline
def test_a_pipeline_killed_mid_session_is_started_again(translator, victim):
    translator.translate("Good morning.", "en", "es")
    os.kill(_pipeline_pids(translator, "eng-spa")[victim], signal.SIGKILL)
    assert "amigo" in translator.translate("Hello my friend.", "en", "es").lower()
