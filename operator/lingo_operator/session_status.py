"""StreamingSession status: conditions and phase, written with optimistic concurrency.

Four parts of the operator write a session's status: the reconciler (session_handlers.py), the
worker-pod watcher (worker_readiness.py), the room watch (room_watch.py) and expiry
(session_lifetime.py). All of them go through update_status, which reads the object, changes it
and replaces the status at that resourceVersion, retrying on conflict instead of clobbering
another writer's conditions. Condition and event reasons are lingo_api.resources.Reason.
"""

from __future__ import annotations

from typing import Callable

from kubernetes_asyncio.client import ApiException, CustomObjectsApi

from lingo_api import resources as r
from lingo_api.kube_time import now_time, seconds_since

from . import metrics

TERMINAL_PHASES = (r.Phase.EXPIRED, r.Phase.TERMINATING, r.Phase.FAILED)


def get_condition(status: dict, ctype: str) -> dict | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == ctype), None)


def condition_true(status: dict, ctype: str) -> bool:
    condition = get_condition(status, ctype)
    return bool(condition and condition.get("status") == "True")


def set_condition(status: dict, ctype: str, state: bool | None, reason: str, message: str = "") -> bool:
    """Set one condition; returns True when its status flipped (an event-worthy transition)."""
    value = "Unknown" if state is None else ("True" if state else "False")
    conditions = status.setdefault("conditions", [])
    current = get_condition(status, ctype)
    if current is None:
        conditions.append(
            {"type": ctype, "status": value, "reason": reason, "message": message, "lastTransitionTime": now_time()}
        )
        return True
    flipped = current.get("status") != value
    if flipped:
        current["lastTransitionTime"] = now_time()
    current.update(status=value, reason=reason, message=message)
    return flipped


def derive_phase(status: dict) -> str:
    """Ready once the room and the tokens exist; the worker's readiness is its own condition."""
    phase = status.get("phase")
    if phase in TERMINAL_PHASES:
        return phase
    if condition_true(status, r.Condition.ROOM_READY) and condition_true(status, r.Condition.TOKENS_READY):
        return r.Phase.READY
    return r.Phase.PROVISIONING if status.get("conditions") else r.Phase.PENDING


def summarize(status: dict, generation: int | None) -> bool:
    """The summary Ready condition, and the generation every condition describes; returns
    whether the session became Ready."""
    phase = status.get("phase")
    waiting = [c for c in (r.Condition.ROOM_READY, r.Condition.TOKENS_READY, r.Condition.WORKER_READY)
               if not condition_true(status, c)]
    became_ready = False
    if phase in TERMINAL_PHASES:
        set_condition(status, r.Condition.READY, False, phase, f"the session is {phase.lower()}")
    elif r.task_ended(status):
        set_condition(status, r.Condition.READY, False, r.Reason.TASK_ENDED, "the translation task ended")
    elif waiting:
        set_condition(status, r.Condition.READY, False, r.Reason.WAITING, f"waiting for {', '.join(waiting)}")
    else:
        became_ready = set_condition(status, r.Condition.READY, True, r.Reason.SESSION_READY,
                                     "room, tokens and worker are ready")
    for condition in status["conditions"]:
        condition["observedGeneration"] = generation
    return became_ready


class SessionGone(Exception):
    pass


async def update_status(
    api: CustomObjectsApi, namespace: str, name: str, mutate: Callable[[dict, dict], object], attempts: int = 8
):
    """Apply `mutate(status, session)` and write it back; returns whatever `mutate` returned.

    Phase and the summary Ready condition are re-derived after each mutation (unless `mutate` set
    a terminal phase itself).
    """
    for _ in range(attempts):
        try:
            session = await api.get_namespaced_custom_object(r.GROUP, r.VERSION, namespace, r.SESSION_PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                raise SessionGone(name) from exc
            raise
        status = dict(session.get("status") or {})
        before = repr(status)
        result = mutate(status, session)
        status["phase"] = derive_phase(status)
        became_ready = summarize(status, session["metadata"].get("generation"))
        if repr(status) == before:
            return result
        session["status"] = status
        try:
            await api.replace_namespaced_custom_object_status(
                r.GROUP, r.VERSION, namespace, r.SESSION_PLURAL, name, session
            )
            if became_ready:
                metrics.SESSION_READY_SECONDS.observe(seconds_since(session["metadata"]["creationTimestamp"]))
            return result
        except ApiException as exc:
            if exc.status == 409:
                continue
            if exc.status == 404:
                raise SessionGone(name) from exc
            raise
    raise RuntimeError(f"status of {namespace}/{name} kept changing underneath; giving up for now")
