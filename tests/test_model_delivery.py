"""Model delivery (worker/lingo_worker/model_delivery.py), the GPU worker's init step, against a hub
mirror on loopback (tests/hub_mirror.py): the models are fetched once, verified against the hub's
checksums, and the GPU profile then runs on CPU from what was fetched (Whisper tiny.en, the
CPU profile's packaged model, and the tiny NLLB the tests build). Issue 26."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

from lingo_worker.audio_output import to_asr_samples
from lingo_worker.engines.registry import build_engines
from lingo_worker.engines.whisper_models import tiny_en

from .hub_mirror import HubMirror
from .speech import SENTENCE, speech_wav
from .tiny_models import build_tiny_nllb

TOKEN = "hf_lingo-test-token-never-logged"
WHISPER_REPO, NLLB_REPO = "lingo-test/whisper-tiny-en-ct2", "lingo-test/nllb-tiny-ct2"


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    root = tmp_path_factory.mktemp("repos")
    whisper = root / "whisper"
    shutil.copytree(tiny_en(), whisper)
    return {"whisper": whisper, "nllb": build_tiny_nllb(root / "nllb")}


@pytest.fixture
def mirror(repos):
    with HubMirror() as mirror:
        mirror.add(WHISPER_REPO, repos["whisper"])
        mirror.add(NLLB_REPO, repos["nllb"])
        yield mirror


SOURCES = {"whisper": {"hub": WHISPER_REPO, "revision": "main"}, "nllb": {"hub": NLLB_REPO}}


def deliver(model_dir, endpoint: str, sources=SOURCES, tmp=None) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], "HOME": str(model_dir.parent), "HF_HOME": str(model_dir.parent / "hf"),
           "HF_ENDPOINT": endpoint, "HF_TOKEN": TOKEN, "HF_HUB_DISABLE_TELEMETRY": "1",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1", "PYTHONPATH": os.pathsep.join(sys.path),
           "LINGO_MODEL_DIR": str(model_dir), "LINGO_MODEL_SOURCES": json.dumps(sources)}
    done = subprocess.run([sys.executable, "-m", "lingo_worker.model_delivery"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert TOKEN not in done.stdout + done.stderr
    return done


def test_models_come_from_the_mirror_once_and_the_gpu_profile_runs_on_them(mirror, tmp_path):
    models = tmp_path / "models"
    done = deliver(models, mirror.endpoint)
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout.splitlines()[-1])["delivered"]) == {"whisper", "nllb"}
    assert (models / "whisper" / "model.bin").stat().st_size == (tiny_en() / "model.bin").stat().st_size
    assert any(line.startswith("GET /lingo-test/whisper-tiny-en-ct2/resolve/") for line in mirror.requests)

    # The GPU profile's code path (device and compute type are settings), on what was delivered.
    engines = build_engines("gpu", models, gpu_device="cpu", gpu_compute_type="int8")
    audio = to_asr_samples(*speech_wav(tmp_path, SENTENCE))
    heard = engines.recognizer_for("en").transcribe_words(audio, "en")  # the streaming path's word times too
    assert "today" in " ".join(word.text for word in heard).lower()
    assert isinstance(engines.translator.translate("hello world.", "en", "es"), str)

    # A second pod on the same volume asks which commit main is at, and fetches nothing.
    mirror.requests.clear()
    assert deliver(models, mirror.endpoint).returncode == 0
    assert mirror.requests and not any("/resolve/" in line for line in mirror.requests)


def test_a_new_commit_replaces_the_model(mirror, repos, tmp_path):
    models = tmp_path / "models"
    assert deliver(models, mirror.endpoint).returncode == 0
    changed = tmp_path / "nllb-v2"
    shutil.copytree(repos["nllb"], changed)
    (changed / "README.md").write_text("second revision\n")
    mirror.add(NLLB_REPO, changed)
    assert deliver(models, mirror.endpoint).returncode == 0
    assert (models / "nllb" / "README.md").read_text() == "second revision\n"


def test_a_file_that_does_not_match_the_hubs_checksum_is_refused_and_the_old_model_kept(mirror, tmp_path):
    models = tmp_path / "models"
    assert deliver(models, mirror.endpoint).returncode == 0
    before = (models / "nllb" / "model.bin").read_bytes()
    mirror.add(NLLB_REPO, mirror.repos[NLLB_REPO][1])  # same files
    (models / "nllb" / ".lingo-model.json").write_text("{}")  # as if another commit were there
    mirror.tamper(NLLB_REPO, "model.bin")
    done = deliver(models, mirror.endpoint)
    assert done.returncode == 1
    assert "model nllb: model.bin from lingo-test/nllb-tiny-ct2@main does not match the hub's checksum" in done.stderr
    assert (models / "nllb" / "model.bin").read_bytes() == before


def test_an_unreachable_mirror_keeps_what_is_there_and_names_itself_otherwise(mirror, tmp_path):
    models = tmp_path / "models"
    assert deliver(models, mirror.endpoint).returncode == 0
    closed = "http://127.0.0.1:9"  # discard port: nothing listens
    kept = deliver(models, closed)
    assert kept.returncode == 0, kept.stderr
    assert "using the whisper model already in" in kept.stderr
    empty = deliver(tmp_path / "empty", closed)
    assert empty.returncode == 1 and f"cannot reach {closed}" in empty.stderr


def test_an_unknown_repository_is_named(mirror, tmp_path):
    done = deliver(tmp_path / "models", mirror.endpoint, {"whisper": {"hub": "nobody/nothing"}})
    assert done.returncode == 1 and "model whisper: nobody/nothing@main answered 404" in done.stderr


class TarballServer:
    def __init__(self, data: bytes):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        import threading

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/nllb.tar.gz"


def test_a_tarball_source_is_checked_against_its_sha256(repos, tmp_path):
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as archive:
        archive.add(repos["nllb"], arcname="nllb-tiny")
    data = packed.getvalue()
    server = TarballServer(data)
    try:
        good = {"nllb": {"url": server.url, "sha256": hashlib.sha256(data).hexdigest()}}
        done = deliver(tmp_path / "models", "http://127.0.0.1:9", good)
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "models" / "nllb" / "model.bin").is_file()  # the packed folder's contents
        bad = {"nllb": {"url": server.url, "sha256": "0" * 64}}
        refused = deliver(tmp_path / "other", "http://127.0.0.1:9", bad)
        assert refused.returncode == 1 and "does not match its sha256" in refused.stderr
    finally:
        server.server.shutdown()
        server.server.server_close()


@pytest.mark.parametrize("sources, message", [
    ({"whisper": {"hub": "a/b", "url": "http://x"}}, "give either hub"),
    ({"whisper": {"url": "http://127.0.0.1:9/x.tar"}}, "needs its sha256"),
    ({"asr": {"hub": "a/b"}}, "unknown model 'asr'"),
    ({"nllb": {"hub": "a/b", "branch": "x"}}, "unknown field(s) branch"),
])
def test_a_bad_declaration_is_refused_with_a_message(tmp_path, sources, message):
    done = deliver(tmp_path / "models", "http://127.0.0.1:9", sources)
    assert done.returncode == 1 and message in done.stderr
