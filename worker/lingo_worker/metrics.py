"""Prometheus metrics of the worker, served at /metrics beside the control API."""

from prometheus_client import Counter, Gauge, Histogram

SEGMENTS = Counter("lingo_worker_segments_total", "Speech segments recognized")
END_TO_AUDIO = Histogram(
    "lingo_worker_end_of_speech_to_audio_seconds", "End of speech to first translated frame sent", ["language"],
    buckets=(0.25, 0.5, 0.75, 1, 1.25, 1.5, 2, 3, 5, 10),
)
STAGE_SECONDS = Histogram(
    "lingo_worker_stage_seconds", "Time per pipeline stage", ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
CONTROL_CLIENTS = Gauge("lingo_worker_control_clients", "Authenticated control API connections")
