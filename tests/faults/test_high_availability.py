"""Two operators with leader election, two facades sharing one quota: the leader is killed while
sessions are being created, facades are restarted under load, and nothing is lost or doubled."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time

import aiohttp
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import CoordinationV1Api, CoreV1Api
from livekit import api as livekit_api

from lingo_api import resources as r
from lingo_loopback.processes import ManagedProcess, free_port
from lingo_loopback.stack import register_client, start_facade, start_operator

from ..helpers import assert_rooms_stay_gone, create_session, eventually, get_session, gone
from .conftest import private_cluster

LEASE = "lingo-operator"


@pytest.fixture(scope="module")
async def ha():
    """A loopback cluster (no kubelet: worker pods stay Pending, which is all these tests need)."""
    async with private_cluster("ha") as cluster_namespace_api_processes:
        yield cluster_namespace_api_processes


def start_replica(cluster, namespace: str, index: int) -> ManagedProcess:
    return start_operator(cluster, f"http://127.0.0.1:{free_port()}", namespaces=[namespace],
                          name=f"operator-{index}",
                          extra_args=["--leader-elect", f"--leader-elect-namespace={namespace}"])


async def lease_holder(api, namespace: str) -> str | None:
    try:
        lease = await CoordinationV1Api(api).read_namespaced_lease(LEASE, namespace)
    except client.ApiException:
        return None
    return lease.spec.holder_identity


async def test_a_standby_takes_over_when_the_leader_is_killed_mid_create(ha):
    cluster, namespace, api, processes = ha
    replicas = [start_replica(cluster, namespace, i) for i in range(2)]
    processes.extend(replicas)
    holder = await eventually(lambda: lease_holder(api, namespace), what="a leader")
    leader = next(p for p in replicas if holder.endswith(f"/{p.proc.pid}"))
    standby = next(p for p in replicas if p is not leader)

    names = [f"ha-{i}" for i in range(40)]
    killed_at = None
    for i, name in enumerate(names):
        await create_session(api, namespace, name, subscriberCount=1)
        if i == 15:  # the leader dies with sessions half made and more still coming
            os.kill(leader.proc.pid, signal.SIGKILL)
            leader.proc.wait()
            killed_at = time.monotonic()

    async def taken_over():
        return (await lease_holder(api, namespace) or "").endswith(f"/{standby.proc.pid}")

    await eventually(taken_over, timeout=60, interval=0.1, what="the standby holding the Lease")
    took_over = time.monotonic() - killed_at

    async def all_ready():
        sessions = [await get_session(api, namespace, name) for name in names]
        return all((s.get("status") or {}).get("phase") == r.Phase.READY for s in sessions) and sessions

    sessions = await eventually(all_ready, timeout=90, interval=0.5, what="all 40 sessions Ready")
    converged = time.monotonic() - killed_at
    print(f"\ntakeover: Lease taken {took_over:.1f} s after SIGKILL; all 40 sessions Ready {converged:.1f} s after it")

    core = CoreV1Api(api)
    pods = (await core.list_namespaced_pod(namespace, label_selector=r.LABEL_SESSION)).items
    secrets_ = (await core.list_namespaced_secret(namespace, label_selector=r.LABEL_SESSION)).items
    assert sorted(p.metadata.labels[r.LABEL_SESSION] for p in pods) == sorted(names)  # one pod each
    assert sorted(s.metadata.labels[r.LABEL_SESSION] for s in secrets_) == sorted(names)
    lk = cluster.livekit
    async with livekit_api.LiveKitAPI(lk.http_url, lk.api_key, lk.api_secret) as lkapi:
        rooms = [room.name for room in (await lkapi.room.list_rooms(livekit_api.ListRoomsRequest())).rooms]
    assert sorted(rooms) == sorted(r.room_name(s["metadata"]["uid"]) for s in sessions)  # one room each
    # The old leader's Lease term ran out before the standby took it: a 15 s lease, 2 s between tries.
    assert took_over < 15 + 2 + 3


async def test_a_leader_that_stops_cleanly_hands_over_at_once(ha):
    cluster, namespace, api, processes = ha
    holder = await eventually(lambda: lease_holder(api, namespace), what="a leader")
    alive = [p for p in processes if p.alive()]
    if len(alive) < 2:
        alive.append(start_replica(cluster, namespace, len(processes)))
        processes.append(alive[-1])
        await asyncio.sleep(1)
    leader = next(p for p in alive if holder.endswith(f"/{p.proc.pid}"))
    standby = next(p for p in alive if p is not leader)
    stopped_at = time.monotonic()
    leader.stop()

    async def taken_over():
        return (await lease_holder(api, namespace) or "").endswith(f"/{standby.proc.pid}")

    await eventually(taken_over, timeout=30, interval=0.1, what="the standby holding the Lease")
    # Released on SIGTERM: the standby's next try (2 s apart) takes it, no 15 s wait.
    assert time.monotonic() - stopped_at < 6
    await create_session(api, namespace, "after-handover", subscriberCount=1)

    async def ready():
        return (await get_session(api, namespace, "after-handover")).get("status", {}).get("phase") == r.Phase.READY

    await eventually(ready, timeout=30, what="a session made by the new leader")


async def test_a_paused_leader_writes_nothing_once_a_standby_took_over(ha):
    """Fencing (issue 25): the leader is stopped (SIGSTOP: a paused VM, a frozen node) longer than
    its lease. The standby takes over, deletes three sessions, and makes and deletes three more.
    When the old leader runs again, its watches deliver what happened meanwhile and its room watch
    still knows the old sessions; it must not act on any of it: no room of a deleted session
    comes back (before fencing, they did), and it exits to stand by."""
    cluster, namespace, api, processes = ha
    for process in processes:
        if process.name.startswith("operator-") and process.alive():
            process.stop()
    replicas = [start_replica(cluster, namespace, len(processes) + i) for i in range(2)]
    processes.extend(replicas)
    holder = await eventually(lambda: lease_holder(api, namespace), what="a leader")
    leader = next(p for p in replicas if holder.endswith(f"/{p.proc.pid}"))
    standby = next(p for p in replicas if p is not leader)
    custom = client.CustomObjectsApi(api)

    async def ready(names: list[str]) -> dict[str, str]:
        """Create the sessions and wait until each is Ready; their rooms by name."""
        for name in names:
            await create_session(api, namespace, name, subscriberCount=1)

        async def all_ready():
            sessions = [await get_session(api, namespace, name) for name in names]
            return all((s.get("status") or {}).get("phase") == r.Phase.READY for s in sessions) and sessions

        sessions = await eventually(all_ready, timeout=60, interval=0.5, what=f"{names} Ready")
        return {s["metadata"]["name"]: s["status"]["roomName"] for s in sessions}

    async def delete(names) -> None:
        for name in names:
            await custom.delete_namespaced_custom_object(r.GROUP, r.VERSION, namespace, r.SESSION_PLURAL, name)

        async def deleted():
            return all([await gone(lambda n=n: get_session(api, namespace, n)) for n in names])

        await eventually(deleted, timeout=60, interval=0.5, what=f"{names} deleted")

    kept = await ready([f"fence-{i}" for i in range(6)])
    doomed = {name: kept.pop(name) for name in list(kept)[:3]}
    os.kill(leader.proc.pid, signal.SIGSTOP)
    try:
        async def taken_over():
            return (await lease_holder(api, namespace) or "").endswith(f"/{standby.proc.pid}")

        await eventually(taken_over, timeout=60, interval=0.2, what="the standby holding the Lease")
        await delete(doomed)
        while_paused = await ready([f"fence-new-{i}" for i in range(3)])
        await delete(while_paused)
        doomed.update(while_paused)
    finally:
        os.kill(leader.proc.pid, signal.SIGCONT)
    await assert_rooms_stay_gone(cluster.livekit, set(doomed.values()))

    async def stepped_down():
        return not leader.alive()

    await eventually(stepped_down, timeout=30, what="the old leader to step down and exit")
    log = (cluster.log_dir / f"{leader.name}.log").read_text(errors="replace")
    print(f"\nfencing: the old leader refused {log.count('cannot prove it still holds the leader Lease')} "
          "writes after it resumed")
    for name in kept:  # the sessions left are still served by the new leader
        assert (await get_session(api, namespace, name))["status"]["phase"] == r.Phase.READY


def ensure_operator(ha) -> None:
    cluster, namespace, _, processes = ha
    if not any(p.alive() for p in processes if p.name.startswith("operator-")):
        processes.append(start_replica(cluster, namespace, len(processes)))


def start_facades(ha, count: int, extra_env: dict | None = None) -> list[tuple[ManagedProcess, str]]:
    cluster, namespace, _, processes = ha
    facades = []
    for i in range(count):
        port = free_port()
        process = start_facade(cluster, port, namespace, name=f"facade-{i}-{port}", extra_env=extra_env)
        processes.append(process)
        facades.append((process, f"http://127.0.0.1:{port}"))
    return facades


async def test_two_facades_hold_one_quota(ha):
    cluster, namespace, _, processes = ha
    ensure_operator(ha)
    facades = start_facades(ha, 2)
    client_id = f"quota-{secrets.token_hex(2)}"
    secret = register_client(cluster, namespace, client_id, max_sessions=20)
    headers = {"ClientID": client_id, "ClientSecret": secret}
    # From eight loopback addresses: the facade lets one peer log in four at a time.
    peers = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(f"127.0.1.{i + 1}", 0)))
             for i in range(8)]
    try:
        async def create(i: int) -> int:
            url = facades[i % 2][1]
            async with peers[i % 8].post(f"{url}/session-storage/sessions", headers=headers,
                                 json={"data": {"publisher_count": 1, "subscriber_count": 1}}) as response:
                body = await response.json()
                assert body["ok"] == (response.status == 200), body
                if response.status == 429:
                    assert body["error"]["code"] == "quota_exceeded"
                return response.status

        statuses = await asyncio.gather(*(create(i) for i in range(30)))
    finally:
        await asyncio.gather(*(peer.close() for peer in peers))
    assert sorted(statuses) == [200] * 20 + [429] * 10, statuses
    for process, _ in facades:
        process.stop()


async def test_rolling_restart_of_both_facades_under_load(ha):
    """Creates keep coming, sent only to facades whose /readyz answers (what a Service does),
    while each facade in turn is stopped (SIGTERM, 2 s drain) and started again."""
    cluster, namespace, _, processes = ha
    ensure_operator(ha)
    drain = {"LINGO_DRAIN_SECONDS": "2"}
    facades = start_facades(ha, 2, drain)
    client_id = f"rolling-{secrets.token_hex(2)}"
    secret = register_client(cluster, namespace, client_id, max_sessions=50)
    headers = {"ClientID": client_id, "ClientSecret": secret}
    ready: set[str] = {url for _, url in facades}
    outcomes: list[str] = []
    done = asyncio.Event()

    async with aiohttp.ClientSession() as http:
        async def endpoints():  # the Service's view: ready replicas, refreshed every 100 ms
            while not done.is_set():
                for _, url in list(facades):
                    try:
                        async with http.get(f"{url}/readyz", timeout=aiohttp.ClientTimeout(total=1)) as response:
                            ok = response.status == 200
                    except (aiohttp.ClientError, TimeoutError):
                        ok = False
                    (ready.add if ok else ready.discard)(url)
                await asyncio.sleep(0.1)

        async def load():
            n = 0
            while not done.is_set():
                if not ready:
                    await asyncio.sleep(0.05)
                    continue
                url = sorted(ready)[n % len(ready)]
                n += 1
                try:
                    async with http.post(f"{url}/session-storage/sessions", headers=headers,
                                         json={"data": {"publisher_count": 1, "subscriber_count": 1}}) as response:
                        body = await response.json()
                        outcomes.append(str(response.status))
                    if response.status == 200:
                        async with http.delete(f"{url}/session-storage/sessions/{body['data']['session_id']}",
                                               headers=headers):
                            pass
                except aiohttp.ClientError as exc:
                    outcomes.append(type(exc).__name__)
                await asyncio.sleep(0.05)

        tasks = [asyncio.create_task(endpoints()), *(asyncio.create_task(load()) for _ in range(3))]
        await asyncio.sleep(2)
        for i, (process, url) in enumerate(list(facades)):
            await asyncio.to_thread(process.stop, 30)
            port = int(url.rsplit(":", 1)[1])
            restarted = await asyncio.to_thread(start_facade, cluster, port, namespace, name=f"facade-r{i}-{port}",
                                                extra_env=drain)
            processes.append(restarted)
            facades[i] = (restarted, url)
            await asyncio.sleep(2)
        done.set()
        await asyncio.gather(*tasks)
    counts = {outcome: outcomes.count(outcome) for outcome in set(outcomes)}
    print(f"\nrolling restart of 2 facades: {len(outcomes)} creates, outcomes {counts}")
    assert counts.get("200", 0) > 20 and set(counts) == {"200"}, counts
    for process, _ in facades:
        process.stop()
