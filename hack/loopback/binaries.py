"""Build the Go server binaries the loopback stack runs, once, and cache them.

kube-apiserver and kube-controller-manager come from the Kubernetes Go modules pinned in
hack/k8s-binaries/go.mod; livekit-server from its pinned module. Everything goes through the
Go module proxy, and the results land in a versioned folder under the cache, so the second
run finds them at once.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S_MODULE_DIR = REPO_ROOT / "hack" / "k8s-binaries"

KUBERNETES_VERSION = "v1.34.4"
LIVEKIT_SERVER_VERSION = "v1.13.5"


class BinaryBuildError(RuntimeError):
    """A server binary could not be built; the message says which and how to retry."""


def cache_dir() -> Path:
    return Path(os.environ.get("LINGO_CACHE", Path.home() / ".cache" / "lingo-operator"))


def _go() -> str:
    go = shutil.which("go")
    if not go:
        raise BinaryBuildError("the Go toolchain ('go') is not on PATH; it builds kube-apiserver and livekit-server")
    return go


def _run_build(cmd: list[str], cwd: Path, what: str, log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"[loopback] building {what} (first run only; log: {log})", file=sys.stderr, flush=True)
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-trimpath")
    with log.open("w") as out:
        proc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise BinaryBuildError(f"building {what} failed (exit {proc.returncode}); last output:\n{tail}")


class _BuildLock:
    """Serialises builds between processes (pytest workers, the dev stack) on one cache."""

    def __init__(self, name: str):
        self.path = cache_dir() / "locks" / f"{name}.lock"

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = self.path.open("w")
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._fd.close()


def kubernetes_binaries() -> dict[str, Path]:
    """Paths of kube-apiserver and kube-controller-manager, building them if needed."""
    out_dir = cache_dir() / "bin" / f"kubernetes-{KUBERNETES_VERSION}"
    names = ("kube-apiserver", "kube-controller-manager")
    paths = {name: out_dir / name for name in names}
    if all(p.exists() for p in paths.values()):
        return paths
    with _BuildLock("kubernetes"):
        if all(p.exists() for p in paths.values()):
            return paths
        staging = out_dir.with_name(out_dir.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        _run_build(
            [_go(), "build", "-o", str(staging) + "/", *(f"k8s.io/kubernetes/cmd/{n}" for n in names)],
            K8S_MODULE_DIR,
            f"kube-apiserver and kube-controller-manager {KUBERNETES_VERSION}",
            cache_dir() / "logs" / "build-kubernetes.log",
        )
        shutil.rmtree(out_dir, ignore_errors=True)
        staging.rename(out_dir)
    return paths


def livekit_server_binary() -> Path:
    """Path of livekit-server, built with `go install` at the pinned version if needed."""
    out_dir = cache_dir() / "bin" / f"livekit-server-{LIVEKIT_SERVER_VERSION}"
    binary = out_dir / "livekit-server"
    if binary.exists():
        return binary
    with _BuildLock("livekit"):
        if binary.exists():
            return binary
        gobin = out_dir.with_name(out_dir.name + ".partial")
        shutil.rmtree(gobin, ignore_errors=True)
        gobin.mkdir(parents=True)
        env_cmd = ["env", f"GOBIN={gobin}"]
        _run_build(
            [*env_cmd, _go(), "install", f"github.com/livekit/livekit-server/cmd/server@{LIVEKIT_SERVER_VERSION}"],
            REPO_ROOT,
            f"livekit-server {LIVEKIT_SERVER_VERSION}",
            cache_dir() / "logs" / "build-livekit-server.log",
        )
        (gobin / "server").rename(gobin / "livekit-server")
        shutil.rmtree(out_dir, ignore_errors=True)
        gobin.rename(out_dir)
    return binary


def etcd_binary() -> Path:
    """etcd comes from Debian's etcd-server package (installed by hack/setup.sh)."""
    found = shutil.which("etcd") or ("/usr/bin/etcd" if Path("/usr/bin/etcd").exists() else None)
    if not found:
        raise BinaryBuildError("etcd is not installed; run hack/setup.sh (Debian package etcd-server)")
    return Path(found)


def main() -> None:
    """`python -m lingo_loopback.binaries`: build everything ahead of time."""
    for name, path in {**kubernetes_binaries(), "livekit-server": livekit_server_binary(), "etcd": etcd_binary()}.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
