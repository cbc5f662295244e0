"""NetworkPolicy on the real cluster, enforced by kube-network-policies (kubernetes-sigs' reference
engine, built from its module by lingo_loopback.binaries).

The engine watches NetworkPolicies, namespaces and pods, and gives the verdict on the first
packet of each new connection to or from a pod, read from an nfqueue; later packets of an
accepted connection pass in the kernel (conntrack). It evaluates policies for every pod in the
cluster, not only its own node's: the nodes here share the host's network namespace and bridge,
so one engine, run once for the cluster like kube-proxy, serves all of them. The rules that feed
its queue are installed by lingo_node.host (`install_policy_queue`, which says why they are
iptables rules) once the engine listens, and nothing passes while it does not (no fail-open).

The engine only knows in-cluster configuration (a service account token and CA under
/var/run/secrets). It runs in a mount namespace of its own, where a private /run holds the
cluster's CA and admin token, so the host's /run is never touched.
"""

from __future__ import annotations

import shlex
from pathlib import Path

QUEUE = 100
SECRETS = "/run/secrets/kubernetes.io/serviceaccount"  # /var/run is /run


def engine_argv(binary: Path, credentials: Path, metrics_port: int, node_name: str) -> list[str]:
    """The engine's command line: in a private mount namespace, with `credentials` (a folder with
    `token` and `ca.crt`) where in-cluster configuration looks for them. `node_name` only names
    the engine's node (it evaluates every pod's policies here, `install_policy_queue` queues all)."""
    flags = [
        f"-nfqueue-id={QUEUE}",
        "-disable-nri",  # pod addresses come from the API server, not from a runtime socket
        "-netfilter-bug-1766-fix=false",  # fixed in kernels from 6.12 on
        f"-metrics-bind-address=127.0.0.1:{metrics_port}",
        f"-hostname-override={node_name}",
    ]
    script = (f"mount -t tmpfs -o mode=0755 lingo-run /run && mkdir -p {SECRETS} && "
              f"cp {shlex.quote(str(credentials))}/token {shlex.quote(str(credentials))}/ca.crt {SECRETS}/ && "
              f"exec {shlex.quote(str(binary))} {' '.join(flags)}")
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script]


def write_credentials(folder: Path, token: str, ca_cert: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "token").write_text(token)
    (folder / "token").chmod(0o600)
    (folder / "ca.crt").write_bytes(ca_cert.read_bytes())
    return folder


def queue_bound(queue: int = QUEUE) -> bool:
    """Whether a process listens on nfqueue `queue` (the engine has started)."""
    try:
        lines = Path("/proc/net/netfilter/nfnetlink_queue").read_text().splitlines()
    except OSError:
        return False
    return any(line.split() and line.split()[0] == str(queue) for line in lines)
