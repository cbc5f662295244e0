"""The operator's start and stop: settings, API clients and background tasks shared by the
handlers through kopf's memo."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import kopf
from kubernetes_asyncio.client import CoreV1Api, CustomObjectsApi

from lingo_api import resources as r
from lingo_api.kube_client import new_api_client

from . import metrics
from .claim_signing import load_signing_key
from .config import load_config
from .fencing import Fence, always, fence_kubernetes
from .livekit_rooms import RoomService
from .memo import OperatorMemo
from .pool_handlers import stop_pools
from .room_watch import RoomWatch
from .suspect_nodes import SuspectNodes
from .watched import SESSIONS

log = logging.getLogger("lingo.operator")


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: OperatorMemo, **_):
    settings.persistence.finalizer = r.FINALIZER
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.networking.request_timeout = 30
    # Retry waits after API errors: kopf's default climbs to 21 s, longer than the facade waits
    # for a new session, so a create right after an API server restart would time out.
    settings.networking.error_backoffs = [0.5, 1, 1, 2, 2, 3]
    # kopf waits this long for an object's events to settle before handling them (default
    # 0.1 s, paid on each of the create's round trips); sessions are created by one writer.
    settings.batching.batch_window = 0.01
    config = load_config()
    memo.config = config
    memo.fence = Fence(memo.election.may_write if memo.election else always)
    memo.rooms = RoomService(
        config.livekit_api_url, config.livekit_api_key, config.livekit_api_secret.get_secret_value(),
        fence=memo.fence,
    )
    memo.k8s = await new_api_client()
    fence_kubernetes(memo.k8s, memo.fence)
    memo.core = CoreV1Api(memo.k8s)
    memo.custom = CustomObjectsApi(memo.k8s)
    memo.http = aiohttp.ClientSession()
    memo.claim_key = await load_signing_key(memo.core, config.operator_namespace)
    memo.pools, memo.pool_tasks, memo.pool_wakeups = {}, {}, {}
    memo.readiness_followers = {}
    memo.suspect_nodes = SuspectNodes()
    memo.session_phases = metrics.SessionPhases()
    memo.room_watch = RoomWatch(memo.rooms, memo.custom, memo.core, memo.watch_namespaces,
                                interval=config.room_watch_interval_seconds,
                                orphan_grace=config.orphan_room_grace_seconds)
    memo.room_watch_task = asyncio.create_task(memo.room_watch.run(), name="room-watch")
    log.info("operator ready; LiveKit at %s", config.livekit_api_url)


@kopf.on.cleanup()
async def cleanup(memo: OperatorMemo, **_):
    memo.room_watch_task.cancel()
    await asyncio.gather(memo.room_watch_task, return_exceptions=True)
    await stop_pools(memo)
    for task in list(memo.readiness_followers.values()):
        task.cancel()
    await asyncio.gather(*memo.readiness_followers.values(), return_exceptions=True)
    await memo.rooms.close()
    await memo.http.close()
    await memo.k8s.close()
    if election := memo.election:
        # Handlers are done: hand the Lease over now rather than after kopf's last few seconds
        # of winding down.
        await election.release()


@kopf.on.event(**SESSIONS)
def session_seen(event, body, memo: OperatorMemo, **_):
    """Keeps the room watcher's view of the sessions current (no reads of its own), and the
    sessions-by-phase gauge."""
    memo.room_watch.observe(event.get("type"), body)
    memo.session_phases.observe(event.get("type"), body)
