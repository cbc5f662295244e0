"""The chart's NetworkPolicy, enforced: a two-node cluster whose pod network has a real policy
engine (lingo_node.policy_engine, kube-network-policies), the chart with its defaults.

The workers' policy must let only this release's facade and operator reach a worker's control
port, and let a worker reach only LiveKit (`networkPolicy.livekitPeers`/`livekitPorts`) and DNS.
Probe pods and the real pods try TCP connections (`kubectl exec`): a connection the policy denies
times out (the engine drops its first packet), one it allows opens, and the other node's probe
shows the drop is the policy's, not the network's. Everything else the product does on a
policed network (sessions, claims, control sockets, LiveKit media) is what test_real_node.py
and test_failure_domains.py run on the same kind of cluster.

The cluster's LiveKit and DNS listen on the host's bridge address, which the engine does not
police (traffic to the node itself, as upstream); the LiveKit the policy names here is a probe
pod in the `livekit` namespace, the chart's default peer.
"""

from __future__ import annotations

import json

import pytest

from lingo_api import resources as r

from .node_release import (NAMESPACE, RELEASE, SESSIONS, assert_nothing_left_the_pod_network, install_release, pod_ready,
                           pods, real_cluster, wait_for)

pytestmark = [pytest.mark.node, pytest.mark.timeout(1200)]

LIVEKIT_NAMESPACE = "livekit"  # the chart's default networkPolicy.livekitPeers
OTHER_NAMESPACE = "elsewhere"
# A pod that accepts TCP connections on the ports it is given, and nothing else.
LISTENER = """
import socket, sys, threading, time
def serve(port):
    server = socket.create_server(("0.0.0.0", port))
    while True:
        server.accept()[0].close()
for port in sys.argv[1:]:
    threading.Thread(target=serve, args=(int(port),), daemon=True).start()
while True:
    time.sleep(3600)
"""
# One TCP connection: open, refused (the peer said no), or timeout (its packets were dropped).
CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=4).close()
    print("open")
except socket.timeout:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
"""


@pytest.fixture(scope="module")
def cluster():
    yield from real_cluster(node_count=2)


@pytest.fixture(scope="module")
def release(cluster):
    installed = install_release(cluster)
    yield installed
    cluster.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", check=False)


@pytest.fixture(scope="module")
def probes(cluster, release):
    """Listeners: a LiveKit stand-in in `livekit` (7880 allowed, 9999 not), and pods in the sessions
    namespace and another one, each on the node the worker below is not on."""
    worker = idle_worker(cluster)
    other_node = next(n.name for n in cluster.nodes if n.name != worker["spec"]["nodeName"])
    for namespace in (LIVEKIT_NAMESPACE, OTHER_NAMESPACE):
        cluster.kubectl("create", "namespace", namespace)
    made = {
        "livekit": start_pod(cluster, LIVEKIT_NAMESPACE, "livekit-standin", other_node, 7880, 9999),
        "intruder": start_pod(cluster, SESSIONS, "intruder", other_node, 8000),
        "outsider": start_pod(cluster, OTHER_NAMESPACE, "outsider", other_node, 8000),
    }
    yield {"worker": worker, **made}
    for namespace in (LIVEKIT_NAMESPACE, OTHER_NAMESPACE):
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    cluster.kubectl("-n", SESSIONS, "delete", "pod", "intruder", "--wait=false", check=False)


def idle_worker(cluster) -> dict:
    return wait_for(lambda: next((p for p in pods(cluster, "-l", f"{r.LABEL_POOL_STATE}={r.POOL_STATE_IDLE}",
                                                  namespace=SESSIONS) if pod_ready(p)), None),
                    240, "an idle pooled worker")


def start_pod(cluster, namespace: str, name: str, node: str, *ports: int) -> dict:
    manifest = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "nodeName": node,
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 0,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "probe", "image": cluster.images.operator, "imagePullPolicy": "Never",
                "command": ["python3", "-c", LISTENER, *map(str, ports)],
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            }],
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    return wait_for(lambda: next((p for p in pods(cluster, f"--field-selector=metadata.name={name}",
                                                  namespace=namespace) if pod_ready(p)), None),
                    120, f"pod {namespace}/{name}")


def connect(cluster, pod: dict, target: dict | str, port: int, container: str | None = None) -> str:
    """What a TCP connection from `pod` to `target` (a pod or an address) on `port` got."""
    address = target if isinstance(target, str) else target["status"]["podIP"]
    meta = pod["metadata"]
    result = cluster.kubectl("-n", meta["namespace"], "exec", meta["name"], *(["-c", container] if container else []),
                             "--", "python3", "-c", CONNECT, address, str(port), timeout=60)
    return result.stdout.strip()


def release_pod(cluster, component: str) -> dict:
    return next(p for p in pods(cluster, "-l", f"app.kubernetes.io/component={component}") if pod_ready(p))


def test_only_the_releases_facade_and_operator_reach_a_workers_control_port(cluster, probes):
    worker = probes["worker"]
    assert connect(cluster, probes["intruder"], worker, r.WORKER_PORT) == "timeout", \
        "a pod in the sessions namespace reached a worker's control port"
    assert connect(cluster, probes["outsider"], worker, r.WORKER_PORT) == "timeout", \
        "a pod in another namespace reached a worker's control port"
    assert connect(cluster, release_pod(cluster, "facade"), worker, r.WORKER_PORT) == "open"
    assert connect(cluster, release_pod(cluster, "operator"), worker, r.WORKER_PORT) == "open"
    # The intruder's network works: what it was refused was the policy's doing.
    assert connect(cluster, probes["intruder"], probes["outsider"], 8000) == "open"


def test_a_worker_reaches_livekit_on_its_ports_and_nothing_else(cluster, probes):
    worker = probes["worker"]
    assert connect(cluster, worker, probes["livekit"], 7880) == "open"
    assert connect(cluster, worker, probes["livekit"], 9999) == "timeout", "a worker reached LiveKit off its ports"
    assert connect(cluster, worker, probes["intruder"], 8000) == "timeout"
    assert connect(cluster, worker, probes["outsider"], 8000) == "timeout"
    assert connect(cluster, worker, release_pod(cluster, "facade"), 8000) == "timeout"
    # The same listener on the port LiveKit is not allowed, from a pod without the policy: open.
    assert connect(cluster, probes["intruder"], probes["livekit"], 9999) == "open"


def test_nothing_tried_to_leave_the_pod_network(cluster):
    assert_nothing_left_the_pod_network(cluster)
