"""The product on a real node: the project's images in containerd, the chart installed with helm,
sessions served by worker pods in real containers (lingo_node).

In order: the chart comes up (operator and facade pods healthy under the chart's securityContext),
the shared e2e check passes as a Job inside the cluster, speech is translated through real
containers, `helm upgrade` rolls the operator, `helm uninstall` leaves nothing, and no packet
tried to leave the pod network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import sys
import time

import aiohttp
import pytest
import yaml

from lingo_api import resources as r
from lingo_loopback.binaries import REPO_ROOT
from lingo_node.host import SERVICE_CIDR

from .node_release import (CHART, CLIENT_ID, INSTANCE_LABEL, NAMESPACE, RELEASE, SESSIONS,
                           assert_nothing_left_the_pod_network, image_parts, install_release, pod_ready, pods,
                           real_cluster, wait_for)
from .speech import SENTENCE, ControlClient, audible_frames, listen_to_track, publish_speech, speech_wav

pytestmark = [pytest.mark.node, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def node():
    yield from real_cluster()


@pytest.fixture(scope="module")
def release(node):
    installed = install_release(node)
    yield installed
    node.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", check=False)


async def speak_and_hear_spanish(http, data: dict, samples, rate: int, publisher_url: str, subscriber_url: str) -> None:
    """A subscriber listens on translation_es (and reads the control API) while the publisher says
    the English sentence: the Spanish text arrives and the track is audible."""
    listener, spanish = await listen_to_track(subscriber_url, data["subscriber"][0], "translation_es")
    speaker = None
    try:
        async with http.ws_connect(data["control_url"], params={"token": data["subscriber"][1]}) as ws:
            control = ControlClient(ws)
            await control.next("current_task")
            speaker = await publish_speech(publisher_url, data["publisher"][0], samples, rate)
            translated: list[str] = []  # the sentences may come as one unit or several
            while "amigo" not in " ".join(translated).lower():
                unit = (await control.next("translated_transcription", timeout=90))["transcription"]
                assert unit["language"] == "es", unit
                translated.append(unit["text"])
            deadline = time.monotonic() + 30
            while audible_frames(spanish) <= 20:
                assert time.monotonic() < deadline, f"translation_es stayed silent ({len(spanish)} frames)"
                await asyncio.sleep(0.2)
    finally:
        if speaker:
            await speaker.disconnect()
        await listener.disconnect()


def test_chart_runs_operator_and_facade_under_its_security_context(node, release):
    for component in ("operator", "facade"):
        replicas = pods(node, "-l", f"app.kubernetes.io/component={component}")
        assert len(replicas) == 2, [p["metadata"]["name"] for p in replicas]  # HA by default
        for pod in replicas:
            assert pod_ready(pod), pod["status"]
            status = pod["status"]["containerStatuses"][0]
            assert status["restartCount"] == 0, status  # the operator once crash-looped here (uid 10001)
            assert pod["spec"]["securityContext"]["runAsUser"] == 10001
            log = node.kubectl("-n", NAMESPACE, "logs", pod["metadata"]["name"]).stdout
            assert "Traceback" not in log, log[-3000:]
    # One operator reconciles: the holder of the leader Lease; the other stands by.
    lease = json.loads(node.kubectl("-n", NAMESPACE, "get", "lease", "lingo-operator", "-o", "json").stdout)
    operators = {p["metadata"]["name"] for p in pods(node, "-l", "app.kubernetes.io/component=operator")}
    assert lease["spec"]["holderIdentity"] in operators, lease["spec"]
    # The web console comes with the facade, its policy naming the chart's public LiveKit URL.
    import urllib.request
    with urllib.request.urlopen(f"{release.facade_url}/console/", timeout=10) as response:
        assert response.status == 200 and b"console.js" in response.read()
        assert f"connect-src 'self' {node.livekit.url}" in response.headers["Content-Security-Policy"]
    version = json.loads(node.kubectl("version", "-o", "json").stdout)["serverVersion"]
    assert version["gitVersion"] == "v1.34.4"  # stamped: the chart's kubeVersion check passed


def test_e2e_check_job_passes_inside_the_cluster(node, release):
    node.kubectl("-n", NAMESPACE, "create", "secret", "generic", "lingo-e2e-client",
                 f"--from-literal=secret={release.client_secret}")
    job = yaml.safe_load((REPO_ROOT / "hack" / "kind" / "e2e-check-job.yaml").read_text())
    container = job["spec"]["template"]["spec"]["containers"][0]
    container["image"] = node.images.operator
    command = container["command"]
    command[command.index("--client-id") + 1] = CLIENT_ID
    node.kubectl("apply", "-f", "-", input=json.dumps(job))
    finished = node.kubectl("-n", NAMESPACE, "wait", "--for=condition=complete", "job/lingo-e2e-check",
                            "--timeout=300s", check=False)
    log = node.kubectl("-n", NAMESPACE, "logs", "job/lingo-e2e-check", check=False).stdout
    assert finished.returncode == 0, f"{finished.stderr}\n{log[-3000:]}"
    assert "e2e check passed" in log, log
    report = json.loads(log.split("e2e check passed: ", 1)[1])
    print(f"\nin-cluster e2e check: {report}", file=sys.stderr)
    assert report["publisher_joined"] and report["deleted"] and report["control_api"] == "running"


async def test_speech_is_translated_by_a_worker_in_a_real_container(node, release, tmp_path):
    headers = release.headers
    samples, rate = speech_wav(tmp_path, SENTENCE)
    async with aiohttp.ClientSession(base_url=release.facade_url) as http:
        async with http.post("/session-storage/sessions", headers=headers,
                             json={"data": {"publisher_count": 1, "subscriber_count": 2}}) as response:
            body = await response.json()
        assert response.status == 200, body
        data = body["data"]
        session_id = data["session_id"]
        # The chart's default WorkerPool: the session claims an idle pooled worker, or starts its own.

        # WorkerReady is the worker's own word (a claim answered, or its /readyz?wait= for a cold
        # worker), not the kubelet's: when the session says ready, the worker in its pod answers
        # /readyz with 200 at that moment; the pod's Ready condition follows at the next probe.
        deadline = time.monotonic() + 180
        while True:
            async with http.get(f"/session-storage/sessions/{session_id}", headers=headers) as response:
                session = (await response.json())["data"]
            if session["worker_ready"]:
                break
            assert time.monotonic() < deadline, f"worker not ready: {session['conditions']}"
            await asyncio.sleep(0.3)
        worker_pod = node.kubectl("-n", SESSIONS, "get", "streamingsession", session_id, "-o",
                                  "jsonpath={.status.workerPodName}").stdout.strip()
        pod_ip = node.kubectl("-n", SESSIONS, "get", "pod", worker_pod, "-o", "jsonpath={.status.podIP}").stdout.strip()
        readyz = node.kubectl("-n", SESSIONS, "exec", worker_pod, "--", "python3", "-c",
                              "import urllib.request; print(urllib.request.urlopen("
                              f"'http://{pod_ip}:{r.WORKER_PORT}/readyz', timeout=5).status)").stdout.strip()
        assert readyz == "200", readyz
        while not pod_ready(json.loads(node.kubectl("-n", SESSIONS, "get", "pod", worker_pod, "-o", "json").stdout)):
            assert time.monotonic() < deadline, f"pod {worker_pod} never passed its readiness probe"
            await asyncio.sleep(0.3)
        how = [c.get("reason") for c in session["conditions"] if c.get("type") == r.Condition.WORKER_READY]
        print(f"\nworker {worker_pod}: {how}", file=sys.stderr)

        # The chart's securityContext is in effect inside the worker container, and cluster DNS
        # answers for the cluster only (no upstream).
        inside = node.kubectl("-n", SESSIONS, "exec", worker_pod, "--", "sh", "-c",
                              "id -u; grep -E '^Cap(Prm|Eff|Bnd):' /proc/self/status; grep NoNewPrivs /proc/self/status;"
                              " touch /probe 2>/dev/null && echo rw || echo ro;"
                              " getent hosts kubernetes.default.svc | cut -d' ' -f1;"
                              " getent hosts deb.debian.org || echo unresolved").stdout.split("\n")
        assert inside[0] == "10001", inside
        caps = {line.split(":")[0]: line.split()[1] for line in inside[1:4]}
        assert set(caps.values()) == {"0000000000000000"}, caps
        assert "NoNewPrivs:\t1" in inside[4] and inside[5] == "ro", inside
        kubernetes_service_ip = str(ipaddress.ip_network(SERVICE_CIDR)[1])
        assert inside[6] == kubernetes_service_ip and inside[7] == "unresolved", inside

        await speak_and_hear_spanish(http, data, samples, rate, data["stream_url"], data["stream_url"])

        async with http.delete(f"/session-storage/sessions/{session_id}", headers=headers) as response:
            assert response.status == 200
    started = time.monotonic()

    def collected():
        left = node.kubectl("-n", SESSIONS, "get", "pod,secret", "-l", f"{r.LABEL_SESSION}={session_id}",
                            "-o", "name").stdout.split()
        return not left or None

    wait_for(collected, 90, f"session {session_id}'s pod and Secret to be garbage-collected")
    print(f"\nworker pod and tokens Secret gone {time.monotonic() - started:.1f}s after DELETE", file=sys.stderr)


def test_helm_upgrade_with_a_changed_value_rolls_the_operator(node, release):
    old = {p["metadata"]["name"] for p in pods(node, "-l", "app.kubernetes.io/component=operator")}
    node.helm("upgrade", RELEASE, str(CHART), "-n", NAMESPACE, "--reuse-values",
              "--set", "operator.logLevel=DEBUG", "--wait", "--timeout", "5m")

    def rolled():
        current = [p for p in pods(node, "-l", "app.kubernetes.io/component=operator")
                   if "deletionTimestamp" not in p["metadata"]]
        names = {p["metadata"]["name"] for p in current}
        return current if len(current) == 2 and not names & old and all(map(pod_ready, current)) else None

    for after in wait_for(rolled, 240, "the upgraded operator pods"):
        assert "--log-level=DEBUG" in after["spec"]["containers"][0]["command"]


async def test_two_livekit_servers_of_the_chart_share_a_session_through_redis(node, release, tmp_path):
    """`livekit.deploy` with two servers and Redis (LiveKit's distributed mode): the publisher joins
    through one server, the subscriber through the other, and the subscriber hears the translation.
    The operator, the facade and the pool's idle workers move to the chart's LiveKit by themselves."""
    livekit_repo, livekit_tag = image_parts(node.images.livekit)
    node.helm("upgrade", RELEASE, str(CHART), "-n", NAMESPACE, "--reuse-values",
              "--set", "livekit.deploy=true", "--set", "livekit.replicas=2",
              "--set", f"livekit.image.repository={livekit_repo}", "--set", f"livekit.image.tag={livekit_tag}",
              "--set", "livekit.image.pullPolicy=Never",
              "--set", f"livekit.redis.image.repository={livekit_repo}", "--set", f"livekit.redis.image.tag={livekit_tag}",
              "--set", "livekit.redis.image.pullPolicy=Never", "--wait", "--timeout", "5m")
    servers = wait_for(lambda: [p for p in pods(node, "-l", "app.kubernetes.io/component=livekit")
                                if pod_ready(p) and "deletionTimestamp" not in p["metadata"]] or None,
                       120, "two LiveKit servers")
    assert len(servers) == 2
    urls = [f"ws://{p['status']['podIP']}:7880" for p in servers]

    headers = release.headers
    samples, rate = speech_wav(tmp_path, SENTENCE)
    async with aiohttp.ClientSession(base_url=release.facade_url) as http:
        async def created():
            async with http.post("/session-storage/sessions", headers=headers,
                                 json={"data": {"publisher_count": 1, "subscriber_count": 2}}) as response:
                return (await response.json())["data"] if response.status == 200 else None

        data = await asyncio.wait_for(created(), 60)
        assert data, "the facade did not create a session on the chart's LiveKit"
        session_id = data["session_id"]
        deadline = time.monotonic() + 180
        while True:
            async with http.get(f"/session-storage/sessions/{session_id}", headers=headers) as response:
                session = (await response.json())["data"]
            if session["worker_ready"]:
                break
            assert time.monotonic() < deadline, f"worker not ready: {session['conditions']}"
            await asyncio.sleep(0.3)

        await speak_and_hear_spanish(http, data, samples, rate, publisher_url=urls[0], subscriber_url=urls[1])
        print(f"\npublisher via {urls[0]}, subscriber via {urls[1]}: translation heard", file=sys.stderr)
        async with http.delete(f"/session-storage/sessions/{session_id}", headers=headers) as response:
            assert response.status == 200


def test_helm_uninstall_leaves_nothing_behind(node, release):
    node.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "3m")
    kinds = ("deployments,replicasets,pods,services,serviceaccounts,roles,rolebindings,configmaps,networkpolicies,"
             "poddisruptionbudgets")

    def nothing_left():
        left = node.kubectl("get", kinds, "-A", "-l", INSTANCE_LABEL, "-o", "name").stdout.split()
        left += node.kubectl("get", "clusterroles,clusterrolebindings", "-l", INSTANCE_LABEL, "-o", "name").stdout.split()
        return not left or None

    wait_for(nothing_left, 120, "every resource of the release to go")
    # Helm never deletes the CRDs it installed from crds/ (it would delete every session with them),
    # and keeps the sessions namespace for the same reason.
    crds = node.kubectl("get", "crds", "-o", "name").stdout
    assert "streamingsessions.translation.lingo.dev" in crds
    assert node.kubectl("get", "namespace", SESSIONS, "-o", "name").stdout.strip() == f"namespace/{SESSIONS}"


def test_nothing_tried_to_leave_the_pod_network(node):
    assert_nothing_left_the_pod_network(node)
