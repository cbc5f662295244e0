"""The language matrix: computed from the installed engines, served by the facade, enforced at
create and at set_task."""

from __future__ import annotations

import json

import pytest

from lingo_api.languages import MATRIX_FILE, pair_problem
from lingo_worker.engines.registry import build_engines
from lingo_worker.language_matrix import compute

from .helpers import ACME, auth

SESSIONS = "/session-storage/sessions"


def test_the_committed_matrix_is_what_the_installed_engines_serve():
    engines = build_engines("cpu", None)
    try:
        computed = compute(engines)
    finally:
        engines.translator.close()
        engines.synthesizer.close()
    committed = json.loads(MATRIX_FILE.read_text())
    assert computed == committed, "api/lingo_api/languages.json is stale: python -m lingo_worker.language_matrix --write"


def test_the_matrix_is_as_wide_as_promised():
    pairs = json.loads(MATRIX_FILE.read_text())["pairs"]
    assert len({p["source"] for p in pairs}) >= 10 and len(pairs) >= 30
    assert any(p["pivot"] for p in pairs) and {"source": "en", "target": "es", "route": ["eng-spa"],
                                               "pivot": False} in pairs


@pytest.mark.parametrize("source,target,stage", [
    ("en", "xx", "translation"), ("ja", "es", "translation"), ("es", "gl", "speech synthesis"),
    ("en", "en", "is the source"),
])
def test_an_unserved_pair_names_the_missing_stage(source, target, stage):
    assert stage in pair_problem(source, target)


def test_palabra_codes_are_accepted_where_they_differ():
    assert pair_problem("en-US", "es-MX") is None and pair_problem("no", "nn") == pair_problem("nb", "nn")


async def test_the_facade_serves_the_matrix_and_refuses_what_it_lacks(http):
    async with http.get("/session-storage/languages") as response:
        served = (await response.json())["data"]
    assert served == json.loads(MATRIX_FILE.read_text())
    async with http.post(SESSIONS, headers=auth(ACME), json={"data": {"publisher_count": 1,
                                                                      "target_languages": ["xx"]}}) as response:
        answer = await response.json()
    assert response.status == 422, answer
    assert "translation (apertium) has no route from 'en' to 'xx'" in json.dumps(answer["error"]["details"])
