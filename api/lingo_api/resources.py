"""Names of the custom resources, labels, status vocabulary and the tokens Secret layout: the
contract between components."""

import base64
import json

GROUP = "translation.lingo.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

SESSION_KIND = "StreamingSession"
SESSION_PLURAL = "streamingsessions"

API_CLIENT_KIND = "ApiClient"
API_CLIENT_PLURAL = "apiclients"

POOL_KIND = "WorkerPool"
POOL_PLURAL = "workerpools"

# Labels put on StreamingSessions and everything made for them.
LABEL_CLIENT = f"{GROUP}/client"
LABEL_SESSION = f"{GROUP}/session"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "lingo-operator"
WORKER_COMPONENT = "translation-worker"
# On pooled worker pods: their pool, whether they wait (idle) or serve (claimed), and for whom
# (the session's uid: a name could be reused by a later session).
LABEL_POOL = f"{GROUP}/pool"
LABEL_POOL_STATE = f"{GROUP}/pool-state"
LABEL_CLAIMED_BY = f"{GROUP}/claimed-by"
# A hash of what an idle pooled worker was made from (pool spec and operator settings): idle
# workers made from an older version are replaced.
LABEL_POOL_TEMPLATE = f"{GROUP}/pool-template"
POOL_STATE_IDLE = "idle"
POOL_STATE_CLAIMED = "claimed"

FINALIZER = f"{GROUP}/livekit-room"
# The patch type custom resources take (they have no strategic merge).
MERGE_PATCH = "application/merge-patch+json"

# On sessions the facade creates: "pending" until the client has been handed its tokens, then
# "delivered". A session nobody received (its facade died mid-create) would hold a quota slot
# until its TTL; the operator deletes it once it has been pending for a while
# (OperatorConfig.undelivered_grace_seconds).
ANNOTATION_DELIVERY = f"{GROUP}/delivery"
DELIVERY_PENDING, DELIVERY_DELIVERED = "pending", "delivered"


class Phase:
    PENDING = "Pending"
    PROVISIONING = "Provisioning"
    READY = "Ready"
    FAILED = "Failed"
    EXPIRED = "Expired"
    TERMINATING = "Terminating"


class Condition:
    ROOM_READY = "RoomReady"
    TOKENS_READY = "TokensReady"
    WORKER_READY = "WorkerReady"
    # The summary: a session's room, tokens and worker all ready (what `kubectl wait
    # --for=condition=Ready` waits for); a WorkerPool's minReady idle workers ready.
    READY = "Ready"


class Reason:
    """The reasons the operator writes on conditions and events: one vocabulary, one home."""

    # RoomReady
    ROOM_CREATED = "RoomCreated"
    NO_ROOM = "NoRoom"  # spec.room is false: the session needs none
    LIVEKIT_UNAVAILABLE = "LiveKitUnavailable"
    # TokensReady
    TOKENS_ISSUED = "TokensIssued"
    # WorkerReady (a waiting container's own reason, such as ErrImagePull, is passed on as it is)
    WORKER_READY = "WorkerReady"
    WORKER_CLAIMED = "WorkerClaimed"  # an idle pooled worker took the session
    WORKER_STARTING = "WorkerStarting"
    WORKER_FAILED = "WorkerFailed"
    WORKER_UNSCHEDULABLE = "WorkerUnschedulable"
    WORKER_DELETED = "WorkerDeleted"
    FETCHING_MODELS = "FetchingModels"  # the GPU worker's init step (worker/lingo_worker/model_delivery.py)
    MODEL_DELIVERY_FAILED = "ModelDeliveryFailed"
    TASK_ENDED = "TaskEnded"  # end_task: the worker exited for good and the session gets no other
    # Ready
    SESSION_READY = "SessionReady"
    WAITING = "Waiting"  # for the conditions it names
    # Events only
    WORKER_CREATED = "WorkerCreated"
    WORKER_REPLACED = "WorkerReplaced"
    WORKER_UNRESPONSIVE = "WorkerUnresponsive"  # no answer to health checks: deleted, to be replaced
    CLAIM_FAILED = "ClaimFailed"
    NO_IDLE_WORKER = "NoIdleWorker"
    SESSION_EXPIRED = "SessionExpired"
    UNDELIVERED = "Undelivered"  # created by a facade that never handed it to its client: deleted
    EXPIRED = "Expired"  # every condition, once the TTL elapsed
    FAILED = "Failed"
    DRIFT = "Drift"  # something the operator made was changed or removed, and is made again
    # A WorkerPool's Ready condition and events
    MIN_READY_MET = "MinReadyMet"
    FILLING = "Filling"
    POOL_READY = "PoolReady"
    POOL_DRAINED = "PoolDrained"


# A WorkerPool's spec where it leaves a field out: the defaults of crds/workerpool.yaml, which the
# API server applies (tests/test_pool_plan.py checks the two agree); here for objects read before that.
POOL_DEFAULTS = {"profile": "cpu", "sourceLanguage": "en", "targetLanguages": ["es"], "minReady": 1, "maxReady": 500}


def task_ended(status: dict) -> bool:
    """Whether the session's worker finished its task (WorkerReady's reason is TaskEnded)."""
    return any(c.get("type") == Condition.WORKER_READY and c.get("reason") == Reason.TASK_ENDED
               for c in status.get("conditions") or [])


def pool_spec(pool: dict) -> dict:
    """A WorkerPool's spec with the CRD's defaults filled in."""
    return {**POOL_DEFAULTS, **(pool.get("spec") or {})}


# Keys of the per-session tokens Secret. Values are JSON lists (client tokens) or one JWT.
SECRET_PUBLISHER_TOKENS = "publisher-tokens"
SECRET_SUBSCRIBER_TOKENS = "subscriber-tokens"
SECRET_WORKER_TOKEN = "worker-token"

def client_tokens_from_secret(data: dict[str, str]) -> dict[str, list[str]]:
    """The publisher and subscriber tokens from a tokens Secret's (base64) data."""
    decoded = {key: base64.b64decode(value).decode() for key, value in data.items()}
    return {
        "publisher": json.loads(decoded[SECRET_PUBLISHER_TOKENS]),
        "subscriber": json.loads(decoded[SECRET_SUBSCRIBER_TOKENS]),
    }


WORKER_PORT = 8080
WORKER_CONTROL_PATH = "/control"
# The largest control message, in both relays and the worker: 320 ms of 48 kHz stereo pcm_s16le
# (Palabra's largest input chunk) is 61 KB, 82 KB as base64 in input_audio_data.
CONTROL_MESSAGE_MAX_BYTES = 256 * 1024


def tokens_secret_name(session_name: str) -> str:
    return f"{session_name}-tokens"


def worker_pod_name(session_name: str) -> str:
    """The pod of a session's own (cold-started) worker; a claimed pooled worker keeps its name."""
    return f"{session_name}-worker"


ROOM_PREFIX = "lingo-"


def room_name(session_uid: str) -> str:
    """The LiveKit room of a session: a function of the CR's uid, so retries land on the same room."""
    return f"{ROOM_PREFIX}{session_uid}"
