"""Operator settings, read from the environment (the Helm chart sets these on the Deployment)."""

from __future__ import annotations

import json
import os
from functools import lru_cache

from pydantic import BaseModel, Field, SecretStr, field_validator


class OperatorConfig(BaseModel):
    # LiveKit: the URL the operator calls (RoomService), the one clients dial, and the one
    # worker pods dial (in-cluster service DNS, usually).
    livekit_api_url: str
    livekit_public_url: str
    livekit_worker_url: str
    livekit_api_key: str
    livekit_api_secret: SecretStr

    # Public base URL of the REST facade; control_url = <base>/session-storage/sessions/<name>/control
    facade_public_url: str = "http://127.0.0.1:8000"

    worker_image: str = "ghcr.io/lingo-operator/translation-worker:0.1.0"
    worker_image_gpu: str = "ghcr.io/lingo-operator/translation-worker:0.1.0-cuda"
    worker_image_pull_policy: str = "IfNotPresent"
    worker_command: list[str] = Field(default_factory=lambda: ["lingo-worker"])
    worker_cpu_resources: dict = Field(
        default_factory=lambda: {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    )
    worker_gpu_resources: dict = Field(
        default_factory=lambda: {
            "requests": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"},
            "limits": {"memory": "8Gi", "nvidia.com/gpu": "1"},
        }
    )
    worker_node_selector: dict[str, str] = Field(default_factory=dict)
    worker_gpu_node_selector: dict[str, str] = Field(default_factory=dict)
    worker_tolerations: list[dict] = Field(default_factory=list)
    worker_gpu_tolerations: list[dict] = Field(
        default_factory=lambda: [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    )
    # A PVC holding GPU model weights, mounted at /models in gpu-profile workers (read-only unless
    # the models are delivered into it).
    worker_gpu_models_pvc: str = ""
    # Where the GPU models come from ({"whisper": {"hub": ..., "revision": ...}, "nllb": {...}}:
    # worker/lingo_worker/model_delivery.py); empty: they are in the PVC already.
    worker_gpu_model_sources: dict = Field(default_factory=dict)
    worker_gpu_model_endpoint: str = ""  # HF_ENDPOINT for hub sources: the platform's mirror
    worker_gpu_model_token_secret: str = ""  # a Secret in the sessions namespace with the hub token under `token`
    worker_gpu_runtime_class: str = ""  # e.g. "nvidia" where the GPU runtime is not the node's default
    worker_service_account: str = ""
    worker_priority_class: str = ""  # a PriorityClass for worker pods (e.g. above batch work)

    # How long an expired session stays visible before the operator deletes it (0: keep).
    expired_retention_seconds: int = 3600
    # A session the facade created and never handed to its client is deleted this long after its
    # creation (session_lifetime.undelivered_session): well past the facade's ready timeout (30 s).
    undelivered_grace_seconds: float = 120.0
    # First retry delay after a LiveKit error, seconds; doubles per retry up to a minute.
    retry_delay_seconds: float = 5.0
    # How often the room watch compares LiveKit's rooms with the sessions (lingo_operator.room_watch),
    # and how long a room without a session may exist before it is deleted.
    room_watch_interval_seconds: float = 2.0
    orphan_room_grace_seconds: float = 30.0
    # The operator's own namespace: its leader Lease and claim-signing key (claim_signing.py).
    operator_namespace: str = "default"

    @field_validator("worker_gpu_model_sources")
    @classmethod
    def _declared_sources(cls, sources: dict) -> dict:
        return {name: source for name, source in sources.items() if source}  # the chart's `whisper: {}`: none


def _env_json(name: str):
    raw = os.environ.get(name)
    return json.loads(raw) if raw else None


@lru_cache(maxsize=1)
def load_config() -> OperatorConfig:
    """Build the config from LINGO_* variables. Missing LiveKit settings fail fast at startup."""
    env = os.environ
    values: dict = {
        "livekit_api_url": env.get("LINGO_LIVEKIT_API_URL", env.get("LIVEKIT_URL", "")),
        "livekit_public_url": env.get("LINGO_LIVEKIT_PUBLIC_URL", env.get("LIVEKIT_URL", "")),
        "livekit_worker_url": env.get("LINGO_LIVEKIT_WORKER_URL", env.get("LIVEKIT_URL", "")),
        "livekit_api_key": env.get("LIVEKIT_API_KEY", ""),
        "livekit_api_secret": env.get("LIVEKIT_API_SECRET", ""),
    }
    missing = [k for k in ("livekit_api_url", "livekit_api_key", "livekit_api_secret") if not values[k]]
    if missing:
        raise RuntimeError(
            "LiveKit is not configured: set LIVEKIT_URL (or LINGO_LIVEKIT_API_URL), LIVEKIT_API_KEY and "
            "LIVEKIT_API_SECRET"
        )
    simple = {
        "facade_public_url": "LINGO_FACADE_PUBLIC_URL",
        "worker_image": "LINGO_WORKER_IMAGE",
        "worker_image_gpu": "LINGO_WORKER_IMAGE_GPU",
        "worker_image_pull_policy": "LINGO_WORKER_IMAGE_PULL_POLICY",
        "worker_gpu_models_pvc": "LINGO_WORKER_GPU_MODELS_PVC",
        "worker_gpu_model_endpoint": "LINGO_WORKER_GPU_MODEL_ENDPOINT",
        "worker_gpu_model_token_secret": "LINGO_WORKER_GPU_MODEL_TOKEN_SECRET",
        "worker_gpu_runtime_class": "LINGO_WORKER_GPU_RUNTIME_CLASS",
        "worker_service_account": "LINGO_WORKER_SERVICE_ACCOUNT",
        "worker_priority_class": "LINGO_WORKER_PRIORITY_CLASS",
        "expired_retention_seconds": "LINGO_EXPIRED_RETENTION_SECONDS",
        "undelivered_grace_seconds": "LINGO_UNDELIVERED_GRACE_SECONDS",
        "retry_delay_seconds": "LINGO_RETRY_DELAY_SECONDS",
        "room_watch_interval_seconds": "LINGO_ROOM_WATCH_INTERVAL_SECONDS",
        "orphan_room_grace_seconds": "LINGO_ORPHAN_ROOM_GRACE_SECONDS",
        "operator_namespace": "POD_NAMESPACE",
    }
    for field, var in simple.items():
        if env.get(var):
            values[field] = env[var]
    structured = {
        "worker_command": "LINGO_WORKER_COMMAND",
        "worker_cpu_resources": "LINGO_WORKER_CPU_RESOURCES",
        "worker_gpu_resources": "LINGO_WORKER_GPU_RESOURCES",
        "worker_node_selector": "LINGO_WORKER_NODE_SELECTOR",
        "worker_gpu_node_selector": "LINGO_WORKER_GPU_NODE_SELECTOR",
        "worker_tolerations": "LINGO_WORKER_TOLERATIONS",
        "worker_gpu_tolerations": "LINGO_WORKER_GPU_TOLERATIONS",
        "worker_gpu_model_sources": "LINGO_WORKER_GPU_MODEL_SOURCES",
    }
    for field, var in structured.items():
        parsed = _env_json(var)
        if parsed is not None:
            values[field] = parsed
    return OperatorConfig(**values)
