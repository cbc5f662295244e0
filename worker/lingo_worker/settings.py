"""The worker's settings, read from its pod's environment once (names: lingo_api.worker_env, which
the operator writes). A session's worker gets its room and tokens there; a pooled worker (`pool`
set) starts with neither and gets them from its claim (worker/lingo_worker/claim.py)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from lingo_api import worker_env

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass
class WorkerSettings:
    room: str
    livekit_url: str
    worker_token: str = field(repr=False)
    client_tokens: list[str] = field(repr=False)
    source_language: str
    target_languages: list[str]
    profile: str = "cpu"
    model_dir: Path | None = None
    gpu_device: str = "cuda"  # the GPU profile's engines run here ("cpu" works, slowly)
    gpu_compute_type: str = "float16"
    host: str = "0.0.0.0"
    port: int = 8080
    pool: str = ""
    claim_public_key: str = ""  # a pooled worker's: verifies the operator's claim grants
    pod_uid: str = ""  # a pooled worker's: the pod a claim grant must name
    join_room: bool = True  # false: a session without a LiveKit room (audio over the control WebSocket)
    log_level: str = "INFO"

    @classmethod
    def from_env(cls) -> "WorkerSettings":
        env = os.environ
        pooled = bool(env.get(worker_env.POOL))
        required = (worker_env.LIVEKIT_URL, worker_env.CLAIM_PUBLIC_KEY, worker_env.POD_UID) if pooled else \
            (worker_env.ROOM, worker_env.LIVEKIT_URL, worker_env.WORKER_TOKEN)
        missing = [k for k in required if not env.get(k)]
        if missing:
            raise SystemExit(f"lingo-worker: missing environment: {', '.join(missing)}")
        level = env.get(worker_env.LOG_LEVEL, "INFO").upper()
        if level not in LOG_LEVELS:
            raise SystemExit(f"lingo-worker: {worker_env.LOG_LEVEL} must be one of {', '.join(LOG_LEVELS)}, "
                             f"not {level[:20]!r}")
        tokens = [*json.loads(env.get(worker_env.PUBLISHER_TOKENS, "[]")),
                  *json.loads(env.get(worker_env.SUBSCRIBER_TOKENS, "[]"))]
        return cls(
            room=env.get(worker_env.ROOM, ""),
            livekit_url=env[worker_env.LIVEKIT_URL],
            worker_token=env.get(worker_env.WORKER_TOKEN, ""),
            client_tokens=tokens,
            pool=env.get(worker_env.POOL, ""),
            claim_public_key=env.get(worker_env.CLAIM_PUBLIC_KEY, ""),
            pod_uid=env.get(worker_env.POD_UID, ""),
            join_room=env.get(worker_env.JOIN_ROOM, "true") != "false",
            source_language=env.get(worker_env.SOURCE_LANGUAGE, "en"),
            target_languages=[t for t in env.get(worker_env.TARGET_LANGUAGES, "").split(",") if t],
            profile=env.get(worker_env.PROFILE, "cpu"),
            model_dir=Path(env[worker_env.MODEL_DIR]) if env.get(worker_env.MODEL_DIR) else None,
            gpu_device=env.get(worker_env.GPU_DEVICE, "cuda"),
            gpu_compute_type=env.get(worker_env.GPU_COMPUTE_TYPE, "float16"),
            host=env.get(worker_env.POD_IP) or env.get(worker_env.HOST, "0.0.0.0"),
            port=int(env.get(worker_env.PORT, "8080")),
            log_level=level,
        )
