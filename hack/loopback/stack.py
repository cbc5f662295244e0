"""The whole local stack on loopback: control plane, livekit-server, CRDs, operator, facade, kubelet.

Used by `make dev` (python -m lingo_loopback.stack) and by the test fixtures, so what the tests
exercise is exactly what a developer runs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import yaml

from .binaries import REPO_ROOT
from .cluster import LoopbackCluster
from .processes import ManagedProcess, free_port, http_ok, wait_until

CRD_DIR = REPO_ROOT / "crds"
BIN_DIR = Path(sys.executable).parent


def kubectl_like_apply_crds(cluster: LoopbackCluster) -> None:
    """Create (or replace) every CRD in crds/ and wait until each is Established."""
    import ssl
    import urllib.request

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    headers = {"Authorization": f"Bearer {cluster.admin_token}", "Content-Type": "application/json"}
    base = f"{cluster.api_url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        name = crd["metadata"]["name"]
        body = json.dumps(crd).encode()
        request = urllib.request.Request(base, data=body, headers=headers, method="POST")
        try:
            urllib.request.urlopen(request, context=context, timeout=10).close()
        except urllib.error.HTTPError as exc:
            if exc.code != 409:
                raise RuntimeError(f"creating CRD {name}: {exc.read().decode()[:500]}") from exc
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            request = urllib.request.Request(f"{base}/{name}", headers=headers)
            with urllib.request.urlopen(request, context=context, timeout=10) as response:
                conditions = json.load(response).get("status", {}).get("conditions", [])
            if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"CRD {name} not Established")


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
