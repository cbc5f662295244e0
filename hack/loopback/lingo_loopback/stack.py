"""The whole local stack on loopback: control plane and livekit-server, operator, facade, kubelet.

Used by `make dev` (python -m lingo_loopback.stack) and by the test fixtures, so what the tests
exercise is exactly what a developer runs.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import yaml

from lingo_api import resources as r
from lingo_api.livekit_sdk import stop_livekit_sdk
from lingo_webhook.clients import api_client_manifest, hash_secret

from .binaries import REPO_ROOT
from .cluster import LoopbackCluster
from .processes import ManagedProcess, free_port, http_ok, ignore_interrupts, wait_for_interrupt, wait_until

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
        # A room without a session goes after 5 s here (30 s by default), so tests see it happen.
        "LINGO_ORPHAN_ROOM_GRACE_SECONDS": "5",
        "PYTHONUNBUFFERED": "1",
        "PATH": f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def start_operator(
    cluster: LoopbackCluster, facade_url: str, namespaces: list[str] | None = None, name: str = "operator",
    extra_env: dict[str, str] | None = None, extra_args: list[str] | None = None,
) -> ManagedProcess:
    port, metrics_port = free_port(), free_port()
    argv = [sys.executable, "-m", "lingo_operator", f"--liveness=http://127.0.0.1:{port}/healthz",
            f"--metrics-port={metrics_port}", "--metrics-host=127.0.0.1", *(extra_args or [])]
    for pattern in namespaces or []:
        argv.append(f"--namespace={pattern}")
    process = ManagedProcess(name, argv, cluster.log_dir, {**component_env(cluster, facade_url), **(extra_env or {})})
    process.endpoints["metrics"] = f"http://127.0.0.1:{metrics_port}/metrics"
    process.start()
    wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), process, name, timeout=60)
    return process


def start_facade(
    cluster: LoopbackCluster, port: int, namespace: str, ready_timeout: float | None = None, name: str = "facade",
    control_namespaces: list[str] | None = None, extra_env: dict[str, str] | None = None,
) -> ManagedProcess:
    env = {
        **component_env(cluster, f"http://127.0.0.1:{port}"),
        "LINGO_SESSIONS_NAMESPACE": namespace,
        "LINGO_CONTROL_NAMESPACES": ",".join(control_namespaces or []),
        # No Service routes to it here: no need to keep serving while unready before stopping.
        "LINGO_DRAIN_SECONDS": "0",
        **(extra_env or {}),
    }
    if ready_timeout is not None:  # else the facade's own default, as the chart's
        env["LINGO_READY_TIMEOUT_SECONDS"] = str(ready_timeout)
    metrics_port = free_port()
    argv = [sys.executable, "-m", "lingo_webhook", "--host=127.0.0.1", f"--port={port}", f"--metrics-port={metrics_port}"]
    process = ManagedProcess(name, argv, cluster.log_dir, env)
    process.endpoints["metrics"] = f"http://127.0.0.1:{metrics_port}/metrics"
    process.start()
    wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), process, name, timeout=60)
    return process


def start_kubelet(cluster: LoopbackCluster, namespaces: list[str] | None = None, gpus: int = 0) -> ManagedProcess:
    argv = [sys.executable, "-m", "lingo_loopback.kubelet", f"--kubeconfig={cluster.kubeconfig}",
            f"--log-dir={cluster.log_dir}", f"--pods-dir={cluster.workdir / 'pods'}", f"--gpus={gpus}"]
    argv += [f"--namespace={pattern}" for pattern in namespaces or []]
    process = ManagedProcess("kubelet", argv, cluster.log_dir, {"PATH": component_env(cluster, "")["PATH"]})
    process.start()
    return process


def register_client(cluster: LoopbackCluster, namespace: str, client_id: str, max_sessions: int) -> str:
    """Create an ApiClient with a fresh random secret; returns the secret."""
    secret = secrets.token_urlsafe(24)
    manifest = api_client_manifest(client_id, hash_secret(secret), max_sessions, namespace)
    cluster.create(f"/apis/{r.API_VERSION}/namespaces/{namespace}/{r.API_CLIENT_PLURAL}", manifest)
    return secret


CHART_VALUES = REPO_ROOT / "charts" / "lingo-operator" / "values.yaml"
# `make dev` names its namespaces as `helm install lingo ... -n lingo` would.
DEV_RELEASE_NAMESPACE = "lingo"
DEV_SESSIONS_NAMESPACE = "lingo-sessions"


def create_chart_pool(cluster: LoopbackCluster, namespace: str) -> str | None:
    """The WorkerPool `helm install` makes with the chart's defaults (values.yaml `workerPool`),
    so the dev stack runs what the chart installs; its name, or None when the chart disables it."""
    values = yaml.safe_load(CHART_VALUES.read_text())["workerPool"]
    if not values.get("enabled"):
        return None
    spec = {key: values[key] for key in ("profile", "minReady", "maxReady", "sourceLanguage", "targetLanguages")}
    if values.get("template"):
        spec["template"] = values["template"]
    cluster.create(f"/apis/{r.API_VERSION}/namespaces/{namespace}/{r.POOL_PLURAL}",
                   {"apiVersion": r.API_VERSION, "kind": r.POOL_KIND, "metadata": {"name": values["name"]},
                    "spec": spec})
    return values["name"]


def create_namespace(cluster: LoopbackCluster, name: str) -> None:
    cluster.create("/api/v1/namespaces", {"metadata": {"name": name}})


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m lingo_loopback.stack",
                                     description="Run the whole Lingo Operator stack on loopback.")
    parser.add_argument("--port", type=int, default=8000, help="facade port (default 8000, or a free one)")
    parser.add_argument("--namespace", default=DEV_SESSIONS_NAMESPACE,
                        help=f"namespace the facade creates sessions in (default {DEV_SESSIONS_NAMESPACE})")
    parser.add_argument("--check", action="store_true", help="run the end-to-end check once, then exit")
    args = parser.parse_args()

    port = args.port
    try:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))
    except OSError:
        port = free_port()
    facade_url = f"http://127.0.0.1:{port}"

    cluster = LoopbackCluster()
    processes: list[ManagedProcess] = []
    try:
        print("starting etcd, kube-apiserver, kube-controller-manager and livekit-server ...", flush=True)
        cluster.start()
        # As the chart lays them out: the operator's own namespace (its leader Lease and
        # claim-signing key) apart from the sessions'.
        for namespace in {DEV_RELEASE_NAMESPACE, args.namespace}:
            create_namespace(cluster, namespace)
        processes.append(start_kubelet(cluster))
        processes.append(start_operator(cluster, facade_url, extra_env={"POD_NAMESPACE": DEV_RELEASE_NAMESPACE}))
        # On the dev stack, sessions made with kubectl in any namespace are reachable too.
        processes.append(start_facade(cluster, port, args.namespace, control_namespaces=["*"]))
        # The dev client's secret goes to a 0600 file, not to the terminal or a log.
        client_id, secret_file = "dev", cluster.workdir / "dev-client-secret"
        secret_file.write_text(register_client(cluster, args.namespace, client_id, max_sessions=20))
        secret_file.chmod(0o600)
        pool = create_chart_pool(cluster, args.namespace)
        assert cluster.livekit is not None
        print(f"""
Lingo Operator dev stack is up.
  Web console   {facade_url}/console/   (ClientID {client_id}, ClientSecret in {secret_file})
  REST facade   {facade_url}   (OpenAPI: {facade_url}/session-storage/openapi.json)
  LiveKit       {cluster.livekit.url}
  kubeconfig    {cluster.kubeconfig}
  logs          {cluster.log_dir}
  worker pool   {f"{pool} in namespace {args.namespace} (the chart's default)" if pool else "none (disabled in the chart)"}

Create a session:
  curl -s -X POST {facade_url}/session-storage/sessions \\
    -H 'ClientID: {client_id}' -H "ClientSecret: $(cat {secret_file})" \\
    -H 'Content-Type: application/json' -d '{{"data": {{"publisher_count": 1, "subscriber_count": 3}}}}'
""", flush=True)
        if args.check:
            import asyncio

            from .e2e_check import run_check

            try:
                report = asyncio.run(run_check(facade_url, client_id, secret_file.read_text()))
            finally:
                stop_livekit_sdk()
            print(f"e2e check passed: {report}")
            return
        print("Ctrl-C stops everything.", flush=True)
        wait_for_interrupt()
    finally:
        ignore_interrupts()
        for process in reversed(processes):
            process.stop()
        cluster.cleanup()


if __name__ == "__main__":
    main()
