"""The environment a worker pod is given: the operator writes it (operator/lingo_operator/worker_pod.py,
worker_pool.py), the worker reads it (worker/lingo_worker/settings.py). One name each, defined here."""

SESSION_NAME = "LINGO_SESSION_NAME"
ROOM = "LINGO_ROOM"
JOIN_ROOM = "LINGO_JOIN_ROOM"  # "false": a session without a LiveKit room
SOURCE_LANGUAGE = "LINGO_SOURCE_LANGUAGE"
TARGET_LANGUAGES = "LINGO_TARGET_LANGUAGES"  # comma-separated
WORKER_TOKEN = "LINGO_WORKER_TOKEN"
PUBLISHER_TOKENS = "LINGO_PUBLISHER_TOKENS"  # JSON lists
SUBSCRIBER_TOKENS = "LINGO_SUBSCRIBER_TOKENS"
POOL = "LINGO_POOL"  # set on a pooled worker: it waits for a claim
CLAIM_PUBLIC_KEY = "LINGO_CLAIM_PUBLIC_KEY"  # verifies the operator's claim grants (lingo_api/claim_grant.py)
POD_UID = "POD_UID"  # a claim grant names the pod it is for
LIVEKIT_URL = "LIVEKIT_URL"
PROFILE = "LINGO_WORKER_PROFILE"
PORT = "LINGO_WORKER_PORT"
POD_IP = "POD_IP"  # the address it binds
HOST = "LINGO_WORKER_HOST"  # the address it binds where no pod IP is given (tests)
MODEL_DIR = "LINGO_MODEL_DIR"  # GPU profile
MODEL_SOURCES = "LINGO_MODEL_SOURCES"  # GPU profile: where its models come from (JSON; worker/lingo_worker/model_delivery.py)
GPU_DEVICE = "LINGO_GPU_DEVICE"  # GPU profile: CTranslate2's device ("cuda"; "cpu" runs it without a GPU)
GPU_COMPUTE_TYPE = "LINGO_GPU_COMPUTE_TYPE"  # GPU profile: "float16", "int8_float16", "int8", ...
LOG_LEVEL = "LINGO_LOG_LEVEL"
