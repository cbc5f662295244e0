"""The GPU profile's models, fetched from a declared source into the model directory.

Run as the GPU worker pod's init step (`python -m lingo_worker.model_delivery`, the operator adds it:
operator/lingo_operator/worker_pod.py) before the worker starts. Each model in LINGO_MODEL_SOURCES
(JSON: {"whisper": {...}, "nllb": {...}}) comes from one of:
- {"hub": "<repo id>", "revision": "main"}: a Hugging Face hub repository in CTranslate2 format,
  through huggingface_hub; HF_ENDPOINT points it at a mirror (Artifactory, Nexus, a proxy of your
  own), HF_TOKEN (from a Secret) authenticates. Every file is checked against the hub's own
  checksums (SHA-256 of LFS files, the git blob hash of the others).
- {"url": "https://.../model.tar.gz", "sha256": "<hex>"}: a tarball of the model directory,
  checked against the SHA-256 given.
A model is fetched into <dir>/<name> once per directory (a PVC shared by many workers): a marker
records what is there (the hub commit or the tarball's hash), a lock keeps two pods from fetching
at once, and a fetch lands in a side folder and replaces the old model only once it is verified.
When the source cannot be reached, a model already there from the same source is used as it is.
Errors name the model and what was wrong, and exit 1 (the pod's termination message carries them).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from lingo_api import worker_env

log = logging.getLogger("lingo.models")

MARKER = ".lingo-model.json"
LOCK = ".lingo-fetch.lock"
INCOMING = ".incoming"
CHUNK = 1 << 20
MODEL_NAMES = ("whisper", "nllb")


class DeliveryError(Exception):
    """A model cannot be delivered; the message says which and why."""


@dataclass(frozen=True)
class Source:
    name: str  # the model's folder: whisper or nllb
    hub: str = ""
    revision: str = "main"
    url: str = ""
    sha256: str = ""

    @classmethod
    def parse(cls, name: str, declared: dict) -> "Source":
        if name not in MODEL_NAMES:
            raise DeliveryError(f"unknown model {name!r}: the GPU profile takes {', '.join(MODEL_NAMES)}")
        unknown = set(declared) - {"hub", "revision", "url", "sha256"}
        if unknown:
            raise DeliveryError(f"model {name}: unknown field(s) {', '.join(sorted(unknown))}")
        source = cls(name, **declared)
        if bool(source.hub) == bool(source.url):
            raise DeliveryError(f"model {name}: give either hub (a repository id) or url (a tarball)")
        if source.url and len(source.sha256) != 64:
            raise DeliveryError(f"model {name}: a url source needs its sha256 (64 hex digits)")
        return source

    def describe(self) -> str:
        return f"{self.hub}@{self.revision}" if self.hub else self.url


def parse_sources(text: str) -> list[Source]:
    try:
        declared = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise DeliveryError(f"{worker_env.MODEL_SOURCES} is not JSON: {exc}") from None
    if not isinstance(declared, dict) or not all(isinstance(v, dict) for v in declared.values()):
        raise DeliveryError(f"{worker_env.MODEL_SOURCES} must map model names to sources")
    return [Source.parse(name, value) for name, value in declared.items()]


def deliver(sources: list[Source], model_dir: Path) -> dict[str, str]:
    """Every source's model in model_dir/<name>; what each one is (commit or hash)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    with open(model_dir / LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another pod on the same volume fetches first; then we find it there
        return {source.name: _deliver_one(source, model_dir) for source in sources}


def _deliver_one(source: Source, model_dir: Path) -> str:
    target = model_dir / source.name
    present = _marker(target)
    try:
        version = _hub_commit(source) if source.hub else source.sha256.lower()
    except DeliveryError as exc:
        if present.get("source") == source.describe():
            log.warning("%s; using the %s model already in %s (%s)", exc, source.name, target, present["version"])
            return present["version"]
        raise
    if present == {"source": source.describe(), "version": version}:
        log.info("model %s: %s already in %s", source.name, source.describe(), target)
        return version
    incoming = model_dir / INCOMING / source.name
    shutil.rmtree(incoming, ignore_errors=True)
    incoming.mkdir(parents=True)
    log.info("model %s: fetching %s", source.name, source.describe())
    if source.hub:
        _fetch_hub(source, version, incoming)
    else:
        _fetch_tarball(source, incoming)
    (incoming / MARKER).write_text(json.dumps({"source": source.describe(), "version": version}))
    if target.exists():
        old = model_dir / INCOMING / f"{source.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)  # workers still reading the old files keep them open until they exit
        shutil.rmtree(old, ignore_errors=True)
    incoming.rename(target)
    log.info("model %s: %s verified and in place", source.name, source.describe())
    return version


def _marker(target: Path) -> dict:
    try:
        return json.loads((target / MARKER).read_text())
    except (OSError, ValueError):
        return {}


def _hub_commit(source: Source) -> str:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    try:
        info = HfApi().model_info(source.hub, revision=source.revision)
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise DeliveryError(f"model {source.name}: {source.describe()} answered {status} at {_endpoint()}") from None
    except Exception as exc:  # the endpoint unreachable: httpx raises its own errors
        raise DeliveryError(f"model {source.name}: cannot reach {_endpoint()} ({type(exc).__name__})") from None
    if not info.sha:
        raise DeliveryError(f"model {source.name}: {_endpoint()} gave no commit for {source.describe()}")
    return info.sha


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _fetch_hub(source: Source, commit: str, folder: Path) -> None:
    from huggingface_hub import HfApi, snapshot_download

    try:
        snapshot_download(source.hub, revision=commit, local_dir=folder, max_workers=4)
        files = [entry for entry in HfApi().list_repo_tree(source.hub, revision=commit, recursive=True)
                 if hasattr(entry, "blob_id")]
    except Exception as exc:
        raise DeliveryError(f"model {source.name}: fetching {source.describe()} failed: {exc}") from None
    for entry in files:
        path = folder / entry.path
        if entry.lfs is not None:
            expected, actual = entry.lfs.sha256, _sha256(path)
        else:
            expected, actual = entry.blob_id, _git_blob_sha1(path)
        if actual != expected:
            raise DeliveryError(f"model {source.name}: {entry.path} from {source.describe()} does not match the hub's "
                                f"checksum (got {actual[:12]}, expected {expected[:12]})")
    shutil.rmtree(folder / ".cache", ignore_errors=True)  # huggingface_hub's bookkeeping


def _fetch_tarball(source: Source, folder: Path) -> None:
    with tempfile.TemporaryFile(dir=folder.parent) as tarball:
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(source.url, timeout=60) as response:
                while chunk := response.read(CHUNK):
                    digest.update(chunk)
                    tarball.write(chunk)
        except OSError as exc:
            raise DeliveryError(f"model {source.name}: fetching {source.url} failed: {exc}") from None
        if digest.hexdigest() != source.sha256.lower():
            raise DeliveryError(f"model {source.name}: {source.url} does not match its sha256 "
                                f"(got {digest.hexdigest()[:12]}, expected {source.sha256[:12]})")
        tarball.seek(0)
        try:
            with tarfile.open(fileobj=tarball) as archive:
                archive.extractall(folder, filter="data")
        except tarfile.TarError as exc:
            raise DeliveryError(f"model {source.name}: {source.url} is not a tarball: {exc}") from None
    entries = [entry for entry in folder.iterdir()]
    if len(entries) == 1 and entries[0].is_dir():  # the model's folder itself was packed: its contents
        inner = entries[0]
        for item in inner.iterdir():
            item.rename(folder / item.name)
        inner.rmdir()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _git_blob_sha1(path: Path) -> str:
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    model_dir = Path(os.environ.get(worker_env.MODEL_DIR, "/models"))
    try:
        delivered = deliver(parse_sources(os.environ.get(worker_env.MODEL_SOURCES, "")), model_dir)
    except DeliveryError as exc:
        print(f"model delivery failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"delivered": delivered}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
