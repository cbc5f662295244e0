"""Prometheus metrics of the operator, served on --metrics-port (default 8082) at /metrics."""

from prometheus_client import Counter, Gauge, Histogram

from lingo_api import resources as r

SESSIONS_PROVISIONED = Counter("lingo_sessions_provisioned_total", "Sessions whose room, tokens and pod were made")
SESSIONS_EXPIRED = Counter("lingo_sessions_expired_total", "Sessions torn down at the end of their TTL")
SESSIONS_UNDELIVERED = Counter("lingo_sessions_undelivered_total",
                                "Sessions deleted because their facade never handed them to a client")
SESSIONS_DELETED = Counter("lingo_sessions_deleted_total", "Sessions whose LiveKit room was removed on delete")
LIVEKIT_ERRORS = Counter("lingo_livekit_errors_total", "LiveKit calls that failed", ["operation"])
RECONCILE_STEP_SECONDS = Histogram(
    "lingo_reconcile_step_seconds", "Time per reconcile step", ["step"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
DRIFT_REPAIRS = Counter("lingo_drift_repairs_total", "Rooms or worker pods recreated after disappearing, or "
                        "workers replaced after they stopped answering (unresponsive_worker)", ["what"])
WORKERS_CLAIMED = Counter("lingo_session_workers_total", "How sessions got their worker: claimed from a pool, "
                          "cold (no idle pooled worker), or handover_failed (then the next idle one, or cold)",
                          ["how"])
WORKER_READY_SECONDS = Histogram(
    "lingo_session_worker_ready_seconds", "Session creation to WorkerReady", ["how"],
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 30, 60, 120),
)
POOL_WORKERS = Gauge("lingo_pool_workers", "Workers of a WorkerPool by state", ["namespace", "pool", "state"])
LEADER = Gauge("lingo_operator_leader", "1 while this replica reconciles (holds the leader Lease), else 0")
SESSION_READY_SECONDS = Histogram(
    "lingo_session_ready_seconds", "Session creation to Ready (room, tokens and worker ready), from the "
    "whole-second creationTimestamp", buckets=(0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300),
)
SESSIONS = Gauge("lingo_sessions", "StreamingSessions the operator watches, by phase", ["phase"])


class SessionPhases:
    """Keeps the `lingo_sessions{phase}` gauge from the session events the operator sees."""

    def __init__(self):
        self._phases: dict[str, str] = {}  # uid -> phase

    def observe(self, event_type: str | None, body: dict) -> None:
        uid = body["metadata"]["uid"]
        if event_type == "DELETED":
            self._phases.pop(uid, None)
        else:
            self._phases[uid] = (body.get("status") or {}).get("phase") or r.Phase.PENDING
        for phase in (r.Phase.PENDING, r.Phase.PROVISIONING, r.Phase.READY, r.Phase.EXPIRED, r.Phase.TERMINATING,
                      r.Phase.FAILED):
            SESSIONS.labels(phase).set(sum(1 for p in self._phases.values() if p == phase))
