"""The project's images, built from images/*.Dockerfile with no registry and no network.

- Base images: a Debian root filesystem made by `debootstrap` from the mirror apt already uses,
  with the Debian packages an image needs, imported into podman under a local name; the
  Dockerfiles take it as the BASE_IMAGE build argument.
- Python packages: a wheelhouse built on the host with `pip wheel`, mounted into the build and
  installed with `--no-index` (PIP_INSTALL_ARGS), so `podman build --network=none` works.
- The pause image: a small static C program packed FROM scratch.

Every image is tagged with a hash of everything that goes into it, so an unchanged tree rebuilds
nothing: podman's store and containerd's image store both live under the cache folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lingo_loopback.binaries import REPO_ROOT, BuildLock, cache_dir, livekit_server_binary

SUITE = "bookworm"
PYTHON_PACKAGES = ("python3", "python3-venv", "ca-certificates")

PAUSE_SOURCE = r"""
/* The pod sandbox's process: holds the pod's namespaces, reaps orphans, exits on INT/TERM. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void reap(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }
static void quit(int sig) { (void)sig; _exit(0); }
int main(void) {
    signal(SIGINT, quit); signal(SIGTERM, quit); signal(SIGCHLD, reap);
    for (;;) pause();
}
"""


class ImageBuildError(RuntimeError):
    pass


def images_dir() -> Path:
    return cache_dir() / "images"


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def _run(argv: list[str], what: str, log: Path, env: dict | None = None, **kwargs) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"[node] {what} (log: {log})", file=sys.stderr, flush=True)
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(argv)}\n")
        out.flush()
        result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env, **kwargs)
    if result.returncode != 0:
        raise ImageBuildError(f"{what} failed ({result.returncode}); last output:\n{log.read_text()[-3000:]}")


# Bumped when the run folder moves: podman records its first tmp_dir in its database (static/)
# and keeps using it whatever containers.conf says later, so a moved folder needs a new database.
RUN_LAYOUT = "1: images/podman/run"


class Podman:
    """podman with a private configuration, store and run folder under the cache (nothing in
    /etc, /var or /tmp, so nothing is left behind there)."""

    def __init__(self):
        root = images_dir() / "podman"
        self.log = cache_dir() / "logs" / "images.log"
        run_dir = root / "run"
        layout = run_dir / ".layout"
        if not layout.exists() or layout.read_text() != RUN_LAYOUT:
            # No container outlives a build: the database holds nothing the images need.
            (root / "static" / "bolt_state.db").unlink(missing_ok=True)
            run_dir.mkdir(parents=True, exist_ok=True)
            layout.write_text(RUN_LAYOUT)
        storage = root / "storage.conf"
        containers = root / "containers.conf"
        root.mkdir(parents=True, exist_ok=True)
        storage.write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{root / "storage"}"\nrunroot = "{run_dir / "runroot"}"\n'
        )
        # The sandbox's RLIMIT_NOFILE hard limit is 20000: podman's default ulimits exceed it and
        # runc then fails with "error setting rlimit type 7".
        containers.write_text(
            '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
            '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
            f'events_logfile_path = "{run_dir / "events.log"}"\n'
            f'tmp_dir = "{run_dir / "tmp"}"\nstatic_dir = "{root / "static"}"\n'
            f'volume_path = "{root / "volumes"}"\n'
        )
        self.env = {**os.environ, "CONTAINERS_CONF": str(containers), "CONTAINERS_STORAGE_CONF": str(storage),
                    "TMPDIR": str(run_dir)}

    def __call__(self, *args: str, what: str, **kwargs) -> None:
        _run(["podman", *args], what, self.log, env=self.env, **kwargs)

    def has(self, ref: str) -> bool:
        return subprocess.run(["podman", "image", "exists", ref], env=self.env).returncode == 0

    def image_id(self, ref: str) -> str:
        return subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}}", ref], env=self.env,
                              capture_output=True, text=True, check=True).stdout.strip()


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 or one-line sources)."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        match = re.search(r"^URIs:\s*(\S+)", sources.read_text(), re.M)
        if match:
            return match.group(1)
    listing = Path("/etc/apt/sources.list")
    if listing.exists():
        match = re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+" + SUITE, listing.read_text(), re.M)
        if match:
            return match.group(1)
    raise ImageBuildError("cannot find the Debian mirror in /etc/apt/sources.list(.d)")


def base_image(podman: Podman, name: str, packages: tuple[str, ...]) -> str:
    """A debootstrap'ed Debian with `packages`, imported as localhost/lingo-base-<name>:<hash>."""
    ref = f"localhost/lingo-base-{name}:{_digest(SUITE, *packages)}"
    if podman.has(ref):
        return ref
    with BuildLock(f"base-{name}"), tempfile.TemporaryDirectory(dir=images_dir()) as tmp:
        if podman.has(ref):
            return ref
        rootfs = Path(tmp) / "rootfs"
        debs = images_dir() / "debootstrap-cache"
        debs.mkdir(parents=True, exist_ok=True)
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", f"--cache-dir={debs}",
              SUITE, str(rootfs), debian_mirror()],
             f"debootstrap {SUITE} base '{name}' ({len(packages)} extra packages)", podman.log)
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (rootfs / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        tarball = Path(tmp) / "rootfs.tar"
        _run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tarball), "."], "pack base rootfs", podman.log)
        podman("import", str(tarball), ref, what=f"import {ref}")
    return ref


def wheelhouse() -> Path:
    """Wheels of the project's dependencies (worker extra included) plus the build backend."""
    pyproject = (REPO_ROOT / "pyproject.toml").read_bytes()
    target = images_dir() / f"wheelhouse-{_digest(pyproject, sys.version)}"
    if (target / ".complete").exists():
        return target
    with BuildLock("wheelhouse"):
        if (target / ".complete").exists():
            return target
        target.mkdir(parents=True, exist_ok=True)
        _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(target),
              f"{REPO_ROOT}[worker]", "setuptools>=68", "wheel"],
             "pip wheel (the images' Python packages)", cache_dir() / "logs" / "images.log")
        # The project's own wheel is rebuilt inside each image from its sources.
        for own in target.glob("lingo_operator-*.whl"):
            own.unlink()
        (target / ".complete").touch()
    return target


def pause_image(podman: Podman) -> str:
    ref = f"localhost/lingo-pause:{_digest(PAUSE_SOURCE)}"
    if podman.has(ref):
        return ref
    with tempfile.TemporaryDirectory(dir=images_dir()) as tmp:
        (Path(tmp) / "pause.c").write_text(PAUSE_SOURCE)
        _run(["gcc", "-static", "-Os", "-o", f"{tmp}/pause", f"{tmp}/pause.c"], "compile pause", podman.log)
        (Path(tmp) / "Containerfile").write_text('FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n')
        podman("build", "--network=none", "-t", ref, tmp, what=f"build {ref}")
    return ref


def dockerfile_debian_packages(dockerfile: Path) -> tuple[str, ...]:
    """The Debian packages a Dockerfile installs when its base lacks them (its DEBIAN_PACKAGES)."""
    match = re.search(r'^ARG DEBIAN_PACKAGES="([^"]*)"', dockerfile.read_text(), re.M)
    return tuple(match.group(1).split()) if match else ()


def _source_digest(dockerfile: Path) -> str:
    """Hash of every file the Dockerfile's COPY lines take from the build context."""
    h = hashlib.sha256()
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if not words or words[0] != "COPY" or any(w.startswith("--from") for w in words):
            continue
        for entry in words[1:-1]:
            path = REPO_ROOT / entry
            files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
            for file in files:
                if "__pycache__" in file.parts or file.suffix == ".pyc":
                    continue
                h.update(str(file.relative_to(REPO_ROOT)).encode() + b"\0" + file.read_bytes() + b"\0")
    return h.hexdigest()


@dataclass
class ProjectImages:
    operator: str  # lingo-operator: operator and facade
    worker: str  # translation-worker, CPU profile
    livekit: str  # livekit-server and Debian's redis-server, for the chart's livekit.deploy
    pause: str

    def all(self) -> list[str]:
        return [self.operator, self.worker, self.livekit, self.pause]


def livekit_image(podman: Podman) -> str:
    """images/livekit.Dockerfile with the livekit-server binary the loopback stack runs."""
    dockerfile = REPO_ROOT / "images" / "livekit.Dockerfile"
    binary = livekit_server_binary()
    base = base_image(podman, "livekit", dockerfile_debian_packages(dockerfile))
    ref = "localhost/lingo-livekit:" + _digest(dockerfile.read_text(), podman.image_id(base), binary.read_bytes())
    if podman.has(ref):
        return ref
    with BuildLock("image-livekit"), tempfile.TemporaryDirectory(dir=images_dir()) as context:
        if podman.has(ref):
            return ref
        shutil.copy2(binary, Path(context) / "livekit-server")
        podman("build", "--network=none", "-f", str(dockerfile), "-t", ref, "--build-arg", f"BASE_IMAGE={base}",
               context, what=f"build {ref} from images/livekit.Dockerfile")
    return ref


def build_project_images() -> ProjectImages:
    """Build (or find) every image the real node runs; returns their references."""
    podman = Podman()
    wheels = wheelhouse()
    built = {}
    for name, dockerfile in (("lingo-operator", "images/operator.Dockerfile"),
                             ("translation-worker", "images/worker.Dockerfile")):
        # The base carries the image's Debian packages, so the Dockerfile's apt step is a no-op.
        base = base_image(podman, name, PYTHON_PACKAGES + dockerfile_debian_packages(REPO_ROOT / dockerfile))
        dockerfile_text = (REPO_ROOT / dockerfile).read_text()
        ref = f"localhost/{name}:" + _digest(dockerfile_text, podman.image_id(base), wheels.name,
                                              _source_digest(REPO_ROOT / dockerfile))
        if not podman.has(ref):
            with BuildLock(f"image-{name}"):
                if not podman.has(ref):
                    podman("build", "--network=none", "-f", dockerfile, "-t", ref,
                           "--build-arg", f"BASE_IMAGE={base}",
                           "--build-arg", "PIP_INSTALL_ARGS=--no-index --find-links=/wheels",
                           "-v", f"{wheels}:/wheels:ro", str(REPO_ROOT),
                           what=f"build {ref} from {dockerfile}")
        built[name] = ref
    images = ProjectImages(operator=built["lingo-operator"], worker=built["translation-worker"],
                           livekit=livekit_image(podman), pause=pause_image(podman))
    _prune(podman, images.all())
    return images


def _others(listed: list[str], keep: list[str]) -> list[str]:
    """References in `listed` of the same repositories as `keep` but with other tags (stale builds)."""
    repositories = {ref.rsplit(":", 1)[0] for ref in keep}
    return [ref for ref in listed if ref.rsplit(":", 1)[0] in repositories and ref not in keep]


def _prune(podman: Podman, keep: list[str]) -> None:
    """Drop earlier builds of these images, so the cache holds one of each, not one per change."""
    listed = subprocess.run(["podman", "images", "--format", "{{.Repository}}:{{.Tag}}"], env=podman.env,
                            capture_output=True, text=True).stdout.split()
    stale = _others(listed, keep)
    if stale:
        subprocess.run(["podman", "rmi", "--force", *stale], env=podman.env, capture_output=True)


def import_into_containerd(refs: list[str], ctr: list[str]) -> None:
    """Copy images from podman into containerd's k8s.io namespace, skipping ones it has."""
    listed = subprocess.run([*ctr, "-n", "k8s.io", "images", "ls", "-q"], capture_output=True, text=True, check=True)
    present = set(listed.stdout.split())
    stale = _others(sorted(present), refs)
    if stale:  # earlier builds: the snapshots they pin are removed by containerd's garbage collector
        subprocess.run([*ctr, "-n", "k8s.io", "images", "rm", *stale], capture_output=True)
    podman = Podman()
    for ref in refs:
        if ref in present:
            continue
        with tempfile.TemporaryDirectory(dir=images_dir()) as tmp:
            archive = Path(tmp) / "image.tar"
            podman("save", "--format", "docker-archive", "-o", str(archive), ref, what=f"save {ref}")
            _run([*ctr, "-n", "k8s.io", "images", "import", str(archive)],
                 f"import {ref} into containerd", podman.log)


def main() -> None:
    """`python -m lingo_node.images`: build the images ahead of time and print their names."""
    images = build_project_images()
    for ref in images.all():
        print(ref)
    shutil.rmtree(images_dir() / "tmp", ignore_errors=True)


if __name__ == "__main__":
    main()
