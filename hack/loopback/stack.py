"""The whole local stack on loopback: control plane, livekit-server, CRDs, operator, facade, kubelet.

Used by `make dev` (python -m lingo_loopback.stack) and by the test fixtures, so what the tests
exercise is exactly what a developer runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .cluster import LoopbackCluster
from .processes import ManagedProcess, free_port, http_ok, wait_until

BIN_DIR = Path(sys.executable).parent


def component_env(cluster: LoopbackCluster, facade_url: str) -> dict[str, str]:
    assert cluster.livekit is not None
    return {
        "KUBECONFIG": str(cluster.kubeconfig),
        "LIVEKIT_URL": cluster.livekit.url,
        "LIVEKIT_API_KEY": cluster.livekit.api_key,
        "LIVEKIT_API_SECRET": cluster.livekit.api_secret,
        "LINGO_FACADE_PUBLIC_URL": facade_url,
        "LINGO_RETRY_DELAY_SECONDS": "1",
        "PYTHONUNBUFFERED": "1",
        "PATH": f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def start_operator(
    cluster: LoopbackCluster, facade_url: str, namespaces: list[str] | None = None, name: str = "operator",
    extra_env: dict[str, str] | None = None,
) -> ManagedProcess:
    port = free_port()
    argv = [sys.executable, "-m", "lingo_operator", f"--liveness=http://127.0.0.1:{port}/healthz"]
    for pattern in namespaces or []:
        argv.append(f"--namespace={pattern}")
    process = ManagedProcess(name, argv, cluster.log_dir, {**component_env(cluster, facade_url), **(extra_env or {})})
    process.start()
    wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), process, name, timeout=60)
    return process


def start_facade(
    cluster: LoopbackCluster, port: int, namespace: str, ready_timeout: float = 15.0, name: str = "facade"
) -> ManagedProcess:
    env = {
        **component_env(cluster, f"http://127.0.0.1:{port}"),
        "LINGO_SESSIONS_NAMESPACE": namespace,
        "LINGO_READY_TIMEOUT_SECONDS": str(ready_timeout),
    }
    argv = [sys.executable, "-m", "lingo_webhook", "--host=127.0.0.1", f"--port={port}"]
    process = ManagedProcess(name, argv, cluster.log_dir, env)
    process.start()
    wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), process, name, timeout=60)
    return process


def start_kubelet(cluster: LoopbackCluster, namespaces: list[str] | None = None, gpus: int = 0) -> ManagedProcess:
    argv = [sys.executable, "-m", "lingo_loopback.kubelet", f"--kubeconfig={cluster.kubeconfig}",
            f"--log-dir={cluster.log_dir}", f"--gpus={gpus}"]
    argv += [f"--namespace={pattern}" for pattern in namespaces or []]
    process = ManagedProcess("kubelet", argv, cluster.log_dir, {"PATH": component_env(cluster, "")["PATH"]})
    process.start()
    return process
