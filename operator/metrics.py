"""Prometheus metrics of the operator, served on --metrics-port (default 8082) at /metrics."""

from prometheus_client import Counter, Histogram

SESSIONS_PROVISIONED = Counter("lingo_sessions_provisioned_total", "Sessions whose room, tokens and pod were made")
SESSIONS_EXPIRED = Counter("lingo_sessions_expired_total", "Sessions torn down at the end of their TTL")
SESSIONS_DELETED = Counter("lingo_sessions_deleted_total", "Sessions whose LiveKit room was removed on delete")
LIVEKIT_ERRORS = Counter("lingo_livekit_errors_total", "LiveKit calls that failed", ["operation"])
RECONCILE_STEP_SECONDS = Histogram(
    "lingo_reconcile_step_seconds", "Time per reconcile step", ["step"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
DRIFT_REPAIRS = Counter("lingo_drift_repairs_total", "Rooms or worker pods recreated after disappearing", ["what"])
