"""Failure domains on a real two-node cluster (lingo_node: two kubelets, each with its own
containerd, on the run's bridge), the chart installed with its defaults (two operators, two
facades, a warm pool).

- A drain of the node holding the operator's leader, with a live talking session on it: the live
  worker's PodDisruptionBudget holds the drain back, everything else moves, and creates keep being
  answered; a drain that deletes instead of evicting (`--disable-eviction`) moves the live worker
  too, and the session goes on with a new worker on the other node.
- The leader's pod is frozen until the standby has taken over and deleted sessions: once thawed,
  it writes nothing (no room comes back) and steps down.
- The node holding the leader and two live talking sessions' workers is lost at once (its kubelet,
  containerd and containers killed, its links down): each session hears translated audio again
  from a worker on the other node, no session is lost, creates are answered again, and when the
  node comes back nothing of the deleted pods is left running on it.

Times are printed as `failure-domain figure:` lines; the bounds asserted are loose (a 2-core
machine runs the whole cluster, both nodes and the talkers). With LINGO_RECORD_FIGURES=1 they are
also written to bench/results/failure-domains.{json,md,png}, which README quotes.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field

import aiohttp
import numpy as np
import pytest
from livekit import rtc

from lingo_api import resources as r

from .helpers import assert_rooms_stay_gone
from .node_release import (NAMESPACE, RELEASE, SESSIONS, assert_nothing_left_the_pod_network, install_release, pod_ready,
                           pods, real_cluster, wait_for)
from .speech import speech_wav

pytestmark = [pytest.mark.node, pytest.mark.timeout(1500)]

TALK = ("Good morning and welcome to the meeting. Today we talk about the new station. "
        "The trains will stop here every ten minutes. Please read the plan before you leave.")
IDLE = f"{r.LABEL_POOL_STATE}={r.POOL_STATE_IDLE}"
AUDIBLE = 200  # mean level of a frame with speech in it
# Idle workers kept by the pool: the two lost sessions and the create probe each find one on the
# surviving node (the chart's default is 1; with it all but one lost session start cold).
POOL_SIZE = 3


@pytest.fixture(scope="module")
def cluster():
    yield from real_cluster(node_count=2)


@pytest.fixture(scope="module")
def release(cluster):
    installed = install_release(cluster, f"workerPool.minReady={POOL_SIZE}")
    yield installed
    cluster.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", check=False)


FIGURES: dict[str, list] = {"lines": [], "resumed_after_node_loss_workers_s": [], "resumed_after_node_loss_leader_s": [],
                             "resumed_after_deleting_drain_s": [], "create_answered_after_node_loss_s": [],
                             "creates_during_evicting_drain": []}


def figure(text: str, **values) -> None:
    print(f"\nfailure-domain figure: {text}", file=sys.stderr)
    FIGURES["lines"].append(text)
    for key, value in values.items():
        FIGURES[key].append(value)


@pytest.fixture(scope="module", autouse=True)
def recorded_figures():
    yield
    if os.environ.get("LINGO_RECORD_FIGURES") and FIGURES["lines"]:
        from bench.common import write_results

        markdown = "# Failure domains on a real two-node cluster\n\n" + "\n".join(
            f"- {line}" for line in FIGURES["lines"]) + (
            f"\n\nThe chart's defaults but `workerPool.minReady={POOL_SIZE}`; both nodes, the control plane and the "
            "talkers share this machine. Source: tests/test_failure_domains.py.")
        write_results("failure-domains", {key: value for key, value in FIGURES.items()}, markdown,
                      {"node lost": FIGURES["resumed_after_node_loss_workers_s"],
                       "node lost with the leader": FIGURES["resumed_after_node_loss_leader_s"],
                       "deleting drain": FIGURES["resumed_after_deleting_drain_s"]},
                      "seconds until translated speech is heard again")


NOISE = ("aiohttp.access", "succeeded.", "Initial authentication", "kube-probe")


@pytest.fixture(autouse=True)
def logs_on_failure(request, cluster):
    """After a failed test: the sessions' events, the facades' and operators' logs (the one before
    a restart too, without routine lines; the leader's last) and where the worker pods are. Pod
    logs go with their pods, so they are read before the next test moves anything. CI shows only
    the end of the output, so what tells most comes last."""
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed == failed:
        return
    events = cluster.kubectl("-n", SESSIONS, "get", "events", "--sort-by=.lastTimestamp", check=False).stdout
    print(f"\n----- events in {SESSIONS}\n{events[-6000:]}", file=sys.stderr)
    holder = lease_holder(cluster)
    replicas = [p for component in ("facade", "operator")
                for p in pods(cluster, "-l", f"app.kubernetes.io/component={component}")]
    for pod in sorted(replicas, key=lambda p: p["metadata"]["name"] == holder):
        name = pod["metadata"]["name"]
        restarted = any(s.get("restartCount") for s in pod["status"].get("containerStatuses", []))
        for previous in ([True] if restarted else []) + [False]:
            log = cluster.kubectl("-n", NAMESPACE, "logs", name, "--tail=400", *(["--previous"] if previous else []),
                                  check=False).stdout
            lines = [line for line in log.splitlines() if not any(n in line for n in NOISE)][-80:]
            print(f"\n----- {name} on {pod['spec'].get('nodeName')}{' (before its restart)' if previous else ''}"
                  f"{' (leader)' if name == holder else ''}\n" + "\n".join(lines), file=sys.stderr)
    print(f"\n----- worker pods in {SESSIONS}", file=sys.stderr)
    for pod in pods(cluster, namespace=SESSIONS):
        labels = pod["metadata"].get("labels", {})
        print(f"{pod['metadata']['name']} on {pod['spec'].get('nodeName')}: {pod['status'].get('phase')}, "
              f"ready={pod_ready(pod)}, {labels.get(r.LABEL_POOL_STATE, 'session')}"
              f"{', deleting' if 'deletionTimestamp' in pod['metadata'] else ''}", file=sys.stderr)


def spread_over_nodes(cluster, component: str, keep: str | None = None) -> None:
    """One replica of `component` per node again (a drain left both on one): one other than `keep`
    is deleted, and its replacement goes to the other node (the chart's pod anti-affinity)."""
    selector = f"app.kubernetes.io/component={component}"

    def live():
        return [p for p in pods(cluster, "-l", selector) if "deletionTimestamp" not in p["metadata"]]

    if len({p["spec"].get("nodeName") for p in live()}) > 1:
        return
    victim = next(p for p in live() if p["metadata"]["name"] != keep)
    cluster.kubectl("-n", NAMESPACE, "delete", "pod", victim["metadata"]["name"], "--wait=true")
    wait_for(lambda: (len(replicas := live()) == 2 and all(map(pod_ready, replicas))
                      and len({p["spec"]["nodeName"] for p in replicas}) == 2), 180, f"{component} on both nodes")


def lease_holder(cluster) -> str:
    lease = json.loads(cluster.kubectl("-n", NAMESPACE, "get", "lease", "lingo-operator", "-o", "json").stdout)
    return lease["spec"].get("holderIdentity") or ""


def room_of(cluster, session_id: str) -> str:
    return cluster.kubectl("-n", SESSIONS, "get", "streamingsession", session_id, "-o",
                           "jsonpath={.status.roomName}").stdout.strip()


def leader_pod(cluster) -> dict:
    holder = lease_holder(cluster)
    return next(p for p in pods(cluster, "-l", "app.kubernetes.io/component=operator") if p["metadata"]["name"] == holder)


def session_worker(cluster, session_id: str) -> dict:
    name = cluster.kubectl("-n", SESSIONS, "get", "streamingsession", session_id, "-o",
                           "jsonpath={.status.workerPodName}").stdout.strip()
    return json.loads(cluster.kubectl("-n", SESSIONS, "get", "pod", name, "-o", "json").stdout)


def idle_workers_on(cluster, node: str) -> list[dict]:
    return [p for p in pods(cluster, "-l", IDLE, namespace=SESSIONS)
            if p["spec"].get("nodeName") == node and pod_ready(p) and "deletionTimestamp" not in p["metadata"]]


def place_pool_on(cluster, node: str, away_from: str, uncordon: bool = True) -> None:
    """Move the pool's idle workers to `node`: `away_from` is cordoned while its idle ones go."""
    cluster.kubectl("cordon", away_from)
    try:
        cluster.kubectl("-n", SESSIONS, "delete", "pod", "-l", IDLE, "--field-selector", f"spec.nodeName={away_from}",
                        "--wait=true")
        wait_for(lambda: len(idle_workers_on(cluster, node)) >= POOL_SIZE, 240, f"{POOL_SIZE} idle workers on {node}")
    finally:
        if uncordon:
            cluster.kubectl("uncordon", away_from)


@dataclass
class Talk:
    """A session with a publisher talking without end, a subscriber recording translation_es, and
    a control socket through the facade recording what it is told."""

    session_id: str
    heard: list[tuple[float, str, float]] = field(default_factory=list)  # (monotonic time, track sid, level)
    told: list[dict] = field(default_factory=list)  # control messages
    rooms: list[rtc.Room] = field(default_factory=list)
    tasks: list[asyncio.Task] = field(default_factory=list)
    control: aiohttp.ClientSession | None = None

    def audible_after(self, moment: float, new_tracks_only: set[str] | None = None) -> float | None:
        """Seconds from `moment` to the first audible frame after it (of a track not in `new_tracks_only`)."""
        for at, sid, level in self.heard:
            if at > moment and level > AUDIBLE and (new_tracks_only is None or sid not in new_tracks_only):
                return at - moment
        return None

    def tracks_until(self, moment: float) -> set[str]:
        return {sid for at, sid, _ in self.heard if at <= moment}

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for room in self.rooms:
            await room.disconnect()
        if self.control:
            await self.control.close()

    def warnings(self) -> list[str]:
        return [m["data"].get("code") for m in self.told if m.get("message_type") in ("warning", "error")]

    def task_told_after(self, moment: float) -> bool:
        """Whether a worker sent the session's task (as it does on every connect) after `moment`."""
        return any(m["message_type"] == "current_task" and m["at"] > moment for m in self.told)


async def create_session(http: aiohttp.ClientSession, release) -> dict:
    async with http.post("/session-storage/sessions", headers=release.headers,
                         json={"data": {"publisher_count": 1, "subscriber_count": 2}}) as response:
        body = await response.json()
    assert response.status == 200, body
    return body["data"]


# As a client of a Service does: a try that reaches a facade on a lost node (the Service keeps it
# until the node controller notices, 40-50 s) is given up after 2 s and made again.
RETRIED = (aiohttp.ClientConnectionError, TimeoutError)
TRY_TIMEOUT = aiohttp.ClientTimeout(total=15, sock_connect=2)


async def wait_worker_ready(http, release, session_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    session: dict = {}
    while True:
        try:
            async with http.get(f"/session-storage/sessions/{session_id}", headers=release.headers,
                                timeout=TRY_TIMEOUT) as response:
                session = (await response.json())["data"]
            if session["worker_ready"]:
                return session
        except RETRIED:
            pass
        assert time.monotonic() < deadline, f"worker not ready: {session.get('conditions')}"
        await asyncio.sleep(0.5)


async def delete_session(http, release, session_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with http.delete(f"/session-storage/sessions/{session_id}", headers=release.headers,
                                   timeout=TRY_TIMEOUT) as response:
                assert response.status in (200, 404), await response.text()
                return
        except RETRIED:
            assert time.monotonic() < deadline, f"could not delete {session_id}"
            await asyncio.sleep(0.5)


async def start_talk(data: dict, samples: np.ndarray, rate: int) -> Talk:
    talk = Talk(data["session_id"])
    listener = rtc.Room()

    async def listen(track: rtc.Track, sid: str):
        async for event in rtc.AudioStream(track, sample_rate=16000, num_channels=1):
            level = float(np.abs(np.frombuffer(event.frame.data, dtype=np.int16)).mean())
            talk.heard.append((time.monotonic(), sid, level))

    @listener.on("track_subscribed")
    def _on_track(track, publication, participant):
        if publication.name == "translation_es":
            talk.tasks.append(asyncio.ensure_future(listen(track, publication.sid)))

    await listener.connect(data["stream_url"], data["subscriber"][0])
    talk.rooms.append(listener)
    speaker = rtc.Room()
    await speaker.connect(data["stream_url"], data["publisher"][0])
    talk.rooms.append(speaker)
    source = rtc.AudioSource(rate, 1)
    track = rtc.LocalAudioTrack.create_audio_track("microphone", source)
    await speaker.local_participant.publish_track(track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
    # Sentences with a breath between them, again and again (capture_frame paces in real time).
    looped = np.concatenate([samples, np.zeros(rate * 3 // 10, dtype=np.int16)])
    frame = rate // 100

    async def speak():
        while True:
            for start in range(0, len(looped) - frame, frame):
                await source.capture_frame(rtc.AudioFrame(looped[start:start + frame].tobytes(), rate, 1, frame))

    talk.tasks.append(asyncio.ensure_future(speak()))
    talk.control = aiohttp.ClientSession()

    async def read_control():
        """As a client would: a heartbeat notices a dead connection, and a closed socket is opened
        again, each try given 5 s (a Service may still send it to a facade on the lost node)."""
        while True:
            try:
                async with await asyncio.wait_for(talk.control.ws_connect(
                        data["control_url"], params={"token": data["subscriber"][1]}, heartbeat=5), 5) as ws:
                    async for message in ws:
                        if message.type != aiohttp.WSMsgType.TEXT:
                            break  # the heartbeat's verdict on a dead connection comes as an ERROR message
                        talk.told.append({**json.loads(message.data), "at": time.monotonic()})
                talk.told.append({"message_type": "closed", "data": {"code": ws.close_code}, "at": time.monotonic()})
            except (aiohttp.ClientError, TimeoutError) as exc:
                talk.told.append({"message_type": "closed", "data": {"code": type(exc).__name__}, "at": time.monotonic()})
            await asyncio.sleep(1)

    talk.tasks.append(asyncio.ensure_future(read_control()))
    return talk


async def creates_answered_again(http, release, since: float, timeout: float = 180) -> tuple[float, list[str]]:
    """Seconds from `since` until a create is answered 200 (each try given 10 s), and what came before."""
    failures: list[str] = []
    while time.monotonic() - since < timeout:
        try:
            async with http.post("/session-storage/sessions", headers=release.headers,
                                 json={"data": {"publisher_count": 1, "subscriber_count": 1}},
                                 timeout=aiohttp.ClientTimeout(total=10, sock_connect=2)) as response:
                body = await response.json()
            if response.status == 200:
                took = time.monotonic() - since
                await delete_session(http, release, body["data"]["session_id"])
                return took, failures
            failures.append(f"{response.status} {body.get('error', {}).get('code')}")
        except RETRIED as exc:
            failures.append(type(exc).__name__)
        await asyncio.sleep(0.5)
    raise AssertionError(f"no create answered 200 within {timeout}s: {failures[-10:]}")


async def test_a_drain_waits_for_live_sessions_and_the_leader_moves(cluster, release, tmp_path):
    leader = leader_pod(cluster)
    drained = leader["spec"]["nodeName"]
    other = next(n.name for n in cluster.nodes if n.name != drained)
    place_pool_on(cluster, drained, away_from=other)
    samples, rate = speech_wav(tmp_path, TALK)
    async with aiohttp.ClientSession(base_url=release.facade_url) as http:
        data = await create_session(http, release)
        await wait_worker_ready(http, release, data["session_id"])
        worker = session_worker(cluster, data["session_id"])
        assert worker["spec"]["nodeName"] == drained, "the session's worker should be on the drained node"
        talk = await start_talk(data, samples, rate)
        try:
            started = time.monotonic()
            assert await asyncio.to_thread(wait_for, lambda: talk.audible_after(started), 90, "translated speech")

            # An evicting drain: everything but the live worker goes; creates go on meanwhile.
            drain = asyncio.create_task(asyncio.to_thread(
                cluster.kubectl, "drain", drained, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=60s",
                check=False, timeout=120))
            answered, refused = 0, []
            while not drain.done():
                async with http.post("/session-storage/sessions", headers=release.headers,
                                     json={"data": {"publisher_count": 1, "subscriber_count": 1}}) as response:
                    body = await response.json()
                if response.status == 200:
                    answered += 1
                    async with http.delete(f"/session-storage/sessions/{body['data']['session_id']}",
                                           headers=release.headers):
                        pass
                else:
                    refused.append(f"{response.status} {body.get('error', {}).get('code')}")
                await asyncio.sleep(1)
            result = drain.result()
            assert result.returncode != 0 and worker["metadata"]["name"] in result.stderr + result.stdout, result
            assert "disruption budget" in result.stderr + result.stdout, result.stderr[-2000:]
            figure(f"evicting drain of {drained} (leader's node): held back by the live worker's PDB after 60 s; "
                   f"{answered} creates answered 200 during it, {len(refused)} refused {refused[:5]}",
                   creates_during_evicting_drain={"answered": answered, "refused": refused})
            assert not refused, refused
            left = [p["metadata"]["name"] for p in pods(cluster, "-A", "--field-selector", f"spec.nodeName={drained}")
                    if "deletionTimestamp" not in p["metadata"]]
            assert left == [worker["metadata"]["name"]], left
            assert leader_pod(cluster)["spec"]["nodeName"] == other
            now = time.monotonic()
            await asyncio.to_thread(wait_for, lambda: talk.audible_after(now - 5), 30, "translation after the drain")

            # A drain that deletes: the live worker goes too, and the session gets another one.
            moved = time.monotonic()
            before = talk.tracks_until(moved)
            result = await asyncio.to_thread(cluster.kubectl, "drain", drained, "--ignore-daemonsets",
                                             "--delete-emptydir-data", "--disable-eviction", "--timeout=90s",
                                             check=False, timeout=150)
            assert result.returncode == 0, result.stderr[-2000:]
            resumed = await asyncio.to_thread(wait_for, lambda: talk.audible_after(moved, before), 120,
                                              "translated speech from the new worker")
            replacement = session_worker(cluster, data["session_id"])
            assert replacement["spec"]["nodeName"] == other
            figure(f"deleting drain: translated speech again {resumed:.1f} s after the drain began "
                   f"(worker {replacement['metadata']['name']} on {other})", resumed_after_deleting_drain_s=resumed)
        finally:
            await talk.stop()
            cluster.kubectl("uncordon", drained)
            async with http.delete(f"/session-storage/sessions/{data['session_id']}", headers=release.headers):
                pass


async def test_a_paused_leader_pod_writes_nothing_once_the_standby_took_over(cluster, release):
    """Fencing in real containers: the leader's pod is frozen (the freezer cgroup: every thread
    stops at once, as in a paused VM) until the standby holds the Lease and has deleted two
    sessions and made and deleted another; once thawed, no room of those sessions comes back and
    the old leader's container exits to stand by (the kubelet restarts it)."""
    spread_over_nodes(cluster, "operator", keep=leader_pod(cluster)["metadata"]["name"])
    async with aiohttp.ClientSession(base_url=release.facade_url) as http:
        made = [(await create_session(http, release))["session_id"] for _ in range(2)]
        doomed = {session_id: room_of(cluster, session_id) for session_id in made}
        leader = leader_pod(cluster)
        node = cluster.node(leader["spec"]["nodeName"])
        restarts = leader["status"]["containerStatuses"][0]["restartCount"]
        node.freeze_pod(leader["metadata"]["uid"], True)
        paused = time.monotonic()
        try:
            wait_for(lambda: lease_holder(cluster) not in ("", leader["metadata"]["name"]), 60,
                     "the standby to hold the Lease")
            taken_over = time.monotonic() - paused
            for session_id in doomed:
                async with http.delete(f"/session-storage/sessions/{session_id}", headers=release.headers) as response:
                    assert response.status == 200
            data = await create_session(http, release)
            doomed[data["session_id"]] = room_of(cluster, data["session_id"])
            async with http.delete(f"/session-storage/sessions/{data['session_id']}", headers=release.headers):
                pass
            wait_for(lambda: not cluster.kubectl("-n", SESSIONS, "get", "streamingsession", "-o", "name").stdout.strip()
                     or None, 60, "the sessions to be deleted")
        finally:
            node.freeze_pod(leader["metadata"]["uid"], False)
        await assert_rooms_stay_gone(cluster.livekit, set(doomed.values()))

        def stood_down():
            pod = json.loads(cluster.kubectl("-n", NAMESPACE, "get", "pod", leader["metadata"]["name"], "-o",
                                             "json").stdout)
            return pod["status"]["containerStatuses"][0]["restartCount"] > restarts
        wait_for(stood_down, 60, "the old leader to exit and stand by")
        figure(f"leader pod frozen on {node.name}: the standby held the Lease {taken_over:.1f} s later; "
               f"after the thaw no room of the {len(doomed)} sessions deleted meanwhile came back in 12 s, "
               "and the old leader exited to stand by")


async def lose_a_node(cluster, release, http, lost_name: str, talkers: int, samples, rate, what: str) -> None:
    """`talkers` live talking sessions with their workers on `lost_name` and the pool's idle workers
    on the other node; the node is lost, and each session must hear translated speech again from a
    worker on the other node, its control client must reach that worker (told on its open socket,
    or by reconnecting when its facade was on the lost node), and no session is lost. The node
    then comes back and must not run the pods deleted while it was away."""
    lost = cluster.node(lost_name)
    survivor = next(n.name for n in cluster.nodes if n.name != lost_name)
    talks: list[Talk] = []
    try:
        place_pool_on(cluster, lost_name, away_from=survivor, uncordon=False)
        try:
            for _ in range(talkers):
                data = await create_session(http, release)
                await wait_worker_ready(http, release, data["session_id"])
                assert session_worker(cluster, data["session_id"])["spec"]["nodeName"] == lost_name
                talks.append(await start_talk(data, samples, rate))
        finally:
            cluster.kubectl("uncordon", survivor)
        place_pool_on(cluster, survivor, away_from=lost_name)
        started = time.monotonic()
        for talk in talks:
            assert await asyncio.to_thread(wait_for, lambda: talk.audible_after(started), 90, "translated speech")

        killed = time.monotonic()
        await asyncio.to_thread(lost.kill)
        before = [talk.tracks_until(killed) for talk in talks]
        if what == "leader":
            created, failures = await creates_answered_again(http, release, killed)
            figure(f"node {lost_name} lost with the operator's leader and a facade on it: a create answered 200 "
                   f"{created:.1f} s after the kill ({len(failures)} tries failed before: {failures[:6]})",
                   create_answered_after_node_loss_s=created)
        for talk, old_tracks in zip(talks, before):
            resumed = await asyncio.to_thread(wait_for, lambda: talk.audible_after(killed, old_tracks), 180,
                                              f"translated speech again in {talk.session_id}")
            worker = session_worker(cluster, talk.session_id)
            how = [c.get("reason") for c in (await wait_worker_ready(http, release, talk.session_id))["conditions"]
                   if c.get("type") == r.Condition.WORKER_READY]
            figure(f"node {lost_name} lost ({what}): session {talk.session_id} heard translated speech again "
                   f"{resumed:.1f} s after the kill (worker {worker['metadata']['name']} on "
                   f"{worker['spec']['nodeName']}, {how})", **{f"resumed_after_node_loss_{what}_s": resumed})
            assert worker["spec"]["nodeName"] == survivor
            await asyncio.to_thread(wait_for, lambda: talk.task_told_after(killed), 90,
                                    f"{talk.session_id}'s control client to reach the new worker")
            told = "was told WORKER_REPLACED on its open socket" if "WORKER_REPLACED" in talk.warnings() else \
                "reconnected (its facade was on the lost node)"
            figure(f"session {talk.session_id}'s control client {told}, "
                   f"{next(m['at'] for m in talk.told if m['message_type'] == 'current_task' and m['at'] > killed) - killed:.1f}"
                   " s after the kill")
        events = cluster.kubectl("-n", SESSIONS, "get", "events", "-o", "json").stdout
        assert r.Reason.WORKER_REPLACED in events or r.Reason.WORKER_CLAIMED in events

        # The node comes back: the pods deleted while it was away are not left running on it.
        await asyncio.to_thread(lost.revive)
        await asyncio.to_thread(cluster.wait_node_ready, lost_name, 180)

        def cleaned_up():
            bound = {p["metadata"]["uid"] for p in pods(cluster, "-A", "--field-selector", f"spec.nodeName={lost_name}")}
            return lost.pod_uids_running() <= bound or None

        wait_for(cleaned_up, 120, f"{lost_name} to stop the pods deleted while it was lost")
    finally:
        for talk in talks:
            await talk.stop()
            await delete_session(http, release, talk.session_id)
        cluster.kubectl("uncordon", survivor, check=False)
        if lost.lost:  # a failure above: the next test still gets both nodes
            await asyncio.to_thread(lost.revive)
            await asyncio.to_thread(cluster.wait_node_ready, lost_name, 180)


async def test_two_talking_sessions_survive_losing_their_node(cluster, release, tmp_path):
    """The node holds the sessions' workers, one facade and the standby operator (the leader lives)."""
    spread_over_nodes(cluster, "operator", keep=leader_pod(cluster)["metadata"]["name"])
    spread_over_nodes(cluster, "facade")
    lost_name = next(n.name for n in cluster.nodes if n.name != leader_pod(cluster)["spec"]["nodeName"])
    samples, rate = speech_wav(tmp_path, TALK)
    async with aiohttp.ClientSession(base_url=release.facade_url) as http:
        await lose_a_node(cluster, release, http, lost_name, 2, samples, rate, "workers")
    wait_for(lambda: all(pod_ready(p) for p in pods(cluster)) or None, 180, "operators and facades Ready again")


async def test_creates_and_a_session_survive_losing_the_leaders_node(cluster, release, tmp_path):
    """The node holds the leader, one facade and a talking session's worker: the standby takes the
    Lease (15 s), and only then is the session's worker replaced."""
    spread_over_nodes(cluster, "operator", keep=leader_pod(cluster)["metadata"]["name"])
    spread_over_nodes(cluster, "facade")
    lost_name = leader_pod(cluster)["spec"]["nodeName"]
    samples, rate = speech_wav(tmp_path, TALK)
    async with aiohttp.ClientSession(base_url=release.facade_url) as http:
        await lose_a_node(cluster, release, http, lost_name, 1, samples, rate, "leader")
    assert leader_pod(cluster)["spec"]["nodeName"] != lost_name


def test_nothing_tried_to_leave_the_pod_network(cluster):
    assert_nothing_left_the_pod_network(cluster)
