"""What the operator's handlers share through kopf's memo, with a type for each field.

kopf hands every handler a `memo` (a per-resource shallow copy of the operator's); it is this
class, made in __main__.py and filled by the startup handler (startup.py), so a reader finds every
shared field here rather than by searching for assignments.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import kopf

if TYPE_CHECKING:
    import aiohttp
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from kubernetes_asyncio.client import ApiClient, CoreV1Api, CustomObjectsApi

    from .config import OperatorConfig
    from .fencing import Fence
    from .leadership import LeaderElection
    from .livekit_rooms import RoomService
    from .metrics import SessionPhases
    from .room_watch import RoomWatch
    from .suspect_nodes import SuspectNodes

PoolKey = tuple[str, str]  # (namespace, pool name)


class OperatorMemo(kopf.Memo):
    # Given at start (__main__.py).
    watch_namespaces: list[str]  # empty: the whole cluster
    election: LeaderElection | None  # with --leader-elect; its Lease is released at cleanup
    # Made by the startup handler (startup.py).
    config: OperatorConfig
    fence: Fence  # every write asks it (fencing.py)
    rooms: RoomService
    k8s: ApiClient
    core: CoreV1Api
    custom: CustomObjectsApi
    http: aiohttp.ClientSession  # to pooled workers' claim endpoint
    claim_key: Ed25519PrivateKey  # signs claims (claim_signing.py); pooled workers hold its public half
    # WorkerPools (pool_handlers.py): latest spec, keeper task and wake-up event per pool.
    pools: dict[PoolKey, dict]
    pool_tasks: dict[PoolKey, asyncio.Task]
    pool_wakeups: dict[PoolKey, asyncio.Event]
    suspect_nodes: SuspectNodes  # where a worker just stopped answering (suspect_nodes.py)
    readiness_followers: dict[str, asyncio.Task]  # pod uid -> task waiting on a starting worker's /readyz
    session_phases: SessionPhases
    room_watch: RoomWatch
    room_watch_task: asyncio.Task
