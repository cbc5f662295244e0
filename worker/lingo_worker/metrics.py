"""Prometheus metrics of the worker, served at /metrics beside the control API."""

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.25, 0.5, 0.75, 1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 7.5, 10)

SEGMENTS = Counter("lingo_worker_segments_total", "Translation units recognized")
END_TO_AUDIO = Histogram(
    "lingo_worker_end_of_speech_to_audio_seconds", "A unit's last word spoken to its first translated frame sent",
    ["language"], buckets=LATENCY_BUCKETS,
)
FIRST_WORD_TO_AUDIO = Histogram(
    "lingo_worker_first_word_to_audio_seconds", "A unit's first word spoken to its first translated frame sent",
    ["language"], buckets=LATENCY_BUCKETS,
)
STAGE_SECONDS = Histogram(
    "lingo_worker_stage_seconds", "Time per pipeline stage", ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
TEMPO = Histogram("lingo_worker_speech_tempo", "Tempo translated speech was synthesized at", ["language"],
                  buckets=(1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 2.0))
SPEECH_DROPPED = Counter("lingo_worker_speech_dropped_seconds_total",
                         "Translated speech dropped from a full backlog", ["language"])
RECOGNITION_LOOPS = Counter("lingo_worker_recognition_loops_total", "Decodes cut by the loop guard")
CONTROL_CLIENTS = Gauge("lingo_worker_control_clients", "Authenticated control API connections")
