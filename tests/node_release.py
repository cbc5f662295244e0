"""The chart installed on a real cluster (lingo_node), as the real-node test modules share it:
starting the cluster with the host restored afterwards, `helm install` with the project's images,
an API client for the facade, and small polls over kubectl."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field

import pytest

from lingo_loopback.binaries import REPO_ROOT, BinaryBuildError
from lingo_loopback.processes import StartupError
from lingo_webhook.clients import api_client_manifest, hash_secret

NAMESPACE = "lingo"
SESSIONS = "lingo-sessions"  # the chart's default sessions namespace: sessions, workers, ApiClients
RELEASE = "lingo"
FACADE_NODE_PORT = 30080
CLIENT_ID = "node-e2e"
INSTANCE_LABEL = f"app.kubernetes.io/instance={RELEASE}"
CHART = REPO_ROOT / "charts" / "lingo-operator"


def real_cluster(node_count: int = 1):
    """Generator for a module fixture: a started RealNodeCluster, stopped and the host restored after."""
    if os.geteuid() != 0:
        pytest.skip("the real node needs root (bridge, iptables, mounts)")
    from lingo_node.cluster import RealNodeCluster
    from lingo_node.images import ImageBuildError

    def interrupt(*_):
        raise KeyboardInterrupt  # pytest still runs the teardown below: the host is restored

    previous = signal.signal(signal.SIGTERM, interrupt)
    cluster = RealNodeCluster(node_count=node_count)
    try:
        cluster.start()
    except (BinaryBuildError, ImageBuildError, StartupError) as exc:
        pytest.fail(f"cannot start the real node: {exc}", pytrace=False)
    yield cluster
    cluster.stop()
    signal.signal(signal.SIGTERM, previous)
    if os.environ.get("LINGO_KEEP_LOGS"):
        print(f"\nreal-node logs kept in {cluster.log_dir}", file=sys.stderr)
    else:
        shutil.rmtree(cluster.workdir, ignore_errors=True)
    assert not cluster.teardown_problems, f"teardown left the host changed: {cluster.teardown_problems}"


@dataclass
class Release:
    facade_url: str
    client_secret: str = field(repr=False)  # a failing test prints its fixtures; never a secret
    values: list[str]

    @property
    def headers(self) -> dict[str, str]:
        return {"ClientID": CLIENT_ID, "ClientSecret": self.client_secret}


def image_parts(ref: str) -> tuple[str, str]:
    repository, tag = ref.rsplit(":", 1)
    return repository, tag


def install_release(node, *extra_values: str, quota: int = 5) -> Release:
    """The chart with its defaults, the project's images and the cluster's LiveKit; an ApiClient."""
    assert node.images and node.livekit
    node.kubectl("create", "namespace", NAMESPACE)
    node.kubectl("-n", NAMESPACE, "create", "secret", "generic", "livekit-credentials",
                 f"--from-literal=apiKey={node.livekit.api_key}", f"--from-literal=apiSecret={node.livekit.api_secret}")
    operator_repo, operator_tag = image_parts(node.images.operator)
    worker_repo, worker_tag = image_parts(node.images.worker)
    facade_url = f"http://{node.bind_address}:{FACADE_NODE_PORT}"
    values = [
        f"image.repository={operator_repo}", f"image.tag={operator_tag}", "image.pullPolicy=Never",
        f"worker.image.repository={worker_repo}", f"worker.image.tag={worker_tag}", "worker.image.pullPolicy=Never",
        f"livekit.url={node.livekit.url}", f"livekit.publicUrl={node.livekit.url}",
        f"facade.publicUrl={facade_url}", "facade.service.type=NodePort",
        f"facade.service.nodePort={FACADE_NODE_PORT}",
        # Two cores: smaller worker requests let a few sessions share the node.
        "worker.cpu.resources.requests.cpu=250m",
        *extra_values,
    ]
    started = time.monotonic()
    node.helm("install", RELEASE, str(CHART), "-n", NAMESPACE, "--wait", "--timeout", "5m",
              *[arg for value in values for arg in ("--set", value)])
    print(f"\nhelm install --wait took {time.monotonic() - started:.1f}s", file=sys.stderr)
    client_secret = secrets.token_urlsafe(24)
    manifest = api_client_manifest(CLIENT_ID, hash_secret(client_secret), quota, SESSIONS)
    node.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    return Release(facade_url, client_secret, values)


def pods(node, *selector: str, namespace: str = NAMESPACE) -> list[dict]:
    return json.loads(node.kubectl("-n", namespace, "get", "pods", *selector, "-o", "json").stdout)["items"]


def pod_ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def wait_for(probe, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}"[:2000])


def assert_nothing_left_the_pod_network(cluster) -> None:
    """The host's guard (lingo_node.host) dropped nothing but link-local noise during the module."""
    report = cluster.host.guard_report()
    print(f"\nguard: dropped link-local noise {report.noise or 'none'}", file=sys.stderr)
    assert not report.unexpected, f"packets from pods to addresses outside the run's networks: {report.unexpected}"
