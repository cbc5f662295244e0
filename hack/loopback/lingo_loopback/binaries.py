"""Build the Go binaries the loopback stack and the tests run, once, and cache them.

kube-apiserver, kube-controller-manager and kubectl come from the Kubernetes Go modules pinned
in hack/k8s-binaries/go.mod; livekit-server, helm and kube-network-policies from their pinned
module versions. Everything goes through the
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

REPO_ROOT = Path(__file__).resolve().parents[3]
K8S_MODULE_DIR = REPO_ROOT / "hack" / "k8s-binaries"

KUBERNETES_VERSION = "v1.34.4"
LIVEKIT_SERVER_VERSION = "v1.13.5"
HELM_VERSION = "v3.22.0"
# The NetworkPolicy engine of the real node (lingo_node.policy_engine): kubernetes-sigs' reference.
KUBE_NETWORK_POLICIES_VERSION = "v0.8.0"


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


class BuildLock:
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


# Every Kubernetes binary is stamped like a release build: an unstamped kube-apiserver reports
# v0.0.0-master+$Format:%H$, which fails a chart's `kubeVersion` constraint (helm install refuses).
_VERSION_PACKAGE = "k8s.io/component-base/version"


def _kubernetes_ldflags() -> str:
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    stamps = {
        "gitVersion": KUBERNETES_VERSION,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        # Fixed, so the stamp (and the binary) does not change from build to build.
        "buildDate": "2026-01-01T00:00:00Z",
    }
    return " ".join(f"-X {_VERSION_PACKAGE}.{key}={value}" for key, value in stamps.items())


def _kubernetes_group(group: str, names: tuple[str, ...]) -> dict[str, Path]:
    """Build `names` from k8s.io/kubernetes/cmd into one cached folder per group; returns their paths."""
    out_dir = cache_dir() / "bin" / f"{group}-{KUBERNETES_VERSION}-stamped"
    paths = {name: out_dir / name for name in names}
    if all(p.exists() for p in paths.values()):
        return paths
    with BuildLock("kubernetes"):
        if all(p.exists() for p in paths.values()):
            return paths
        staging = out_dir.with_name(out_dir.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        _run_build(
            [_go(), "build", "-ldflags", _kubernetes_ldflags(), "-o", str(staging) + "/",
             *(f"k8s.io/kubernetes/cmd/{n}" for n in names)],
            K8S_MODULE_DIR,
            f"{', '.join(names)} {KUBERNETES_VERSION}",
            cache_dir() / "logs" / f"build-{group}.log",
        )
        shutil.rmtree(out_dir, ignore_errors=True)
        staging.rename(out_dir)
    return paths


def kubernetes_binaries() -> dict[str, Path]:
    """Paths of kube-apiserver, kube-controller-manager and kubectl (the loopback control plane)."""
    return _kubernetes_group("kubernetes", ("kube-apiserver", "kube-controller-manager", "kubectl"))


def node_binaries() -> dict[str, Path]:
    """Paths of kubelet, kube-scheduler and kube-proxy: what the real node adds (hack/node)."""
    return _kubernetes_group("kubernetes-node", ("kubelet", "kube-scheduler", "kube-proxy"))


def _go_install(name: str, package: str, version: str) -> Path:
    """`go install package@version` into a versioned cache folder; returns the binary's path."""
    out_dir = cache_dir() / "bin" / f"{name}-{version}"
    binary = out_dir / name
    if binary.exists():
        return binary
    with BuildLock(name):
        if binary.exists():
            return binary
        gobin = out_dir.with_name(out_dir.name + ".partial")
        shutil.rmtree(gobin, ignore_errors=True)
        gobin.mkdir(parents=True)
        _run_build(
            ["env", f"GOBIN={gobin}", _go(), "install", f"{package}@{version}"],
            REPO_ROOT,
            f"{name} {version}",
            cache_dir() / "logs" / f"build-{name}.log",
        )
        (gobin / package.rsplit("/", 1)[-1]).rename(gobin / name)
        shutil.rmtree(out_dir, ignore_errors=True)
        gobin.rename(out_dir)
    return binary


def livekit_server_binary() -> Path:
    return _go_install("livekit-server", "github.com/livekit/livekit-server/cmd/server", LIVEKIT_SERVER_VERSION)


def helm_binary() -> Path:
    """helm, for linting and rendering the chart in tests."""
    return _go_install("helm", "helm.sh/helm/v3/cmd/helm", HELM_VERSION)


def network_policy_engine_binary() -> Path:
    """kube-network-policies, which enforces NetworkPolicy on the real node's pod network."""
    return _go_install("kube-network-policies", "sigs.k8s.io/kube-network-policies/cmd",
                       KUBE_NETWORK_POLICIES_VERSION)


def etcd_binary() -> Path:
    """etcd comes from Debian's etcd-server package (installed by hack/setup.sh)."""
    found = shutil.which("etcd") or ("/usr/bin/etcd" if Path("/usr/bin/etcd").exists() else None)
    if not found:
        raise BinaryBuildError("etcd is not installed; run hack/setup.sh (Debian package etcd-server)")
    return Path(found)


def main() -> None:
    """`python -m lingo_loopback.binaries [--node]`: build everything ahead of time (--node: the real
    node's kubelet, kube-scheduler, kube-proxy and NetworkPolicy engine too)."""
    built = {**kubernetes_binaries(), "livekit-server": livekit_server_binary(), "helm": helm_binary(),
             "etcd": etcd_binary()}
    if "--node" in sys.argv[1:]:
        built.update({**node_binaries(), "kube-network-policies": network_policy_engine_binary()})
    for name, path in built.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
