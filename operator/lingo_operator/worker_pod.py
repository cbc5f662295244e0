"""The translation worker Pod: a session's own (owned by its StreamingSession), or the shape
every worker pod shares, which a WorkerPool's idle workers start from (operator/lingo_operator/worker_pool.py)."""

from __future__ import annotations

import json

from lingo_api import resources as r
from lingo_api import worker_env
from lingo_api.session_spec import SessionSpec, WorkerProfile

from .config import OperatorConfig
from .ownership import owner_reference, session_labels

MODELS_MOUNT_PATH = "/models"
METRICS_ANNOTATIONS = {"prometheus.io/scrape": "true", "prometheus.io/port": str(r.WORKER_PORT),
                       "prometheus.io/path": "/metrics"}
# The cluster autoscaler leaves a node alone while a pod on it says "false": a live session's
# worker must not be evicted to shrink the cluster (an idle pooled worker may be).
SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict"


def secret_env(name: str, secret: str, key: str) -> dict:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def worker_pod_manifest(session: dict, spec: SessionSpec, config: OperatorConfig, room: str) -> dict:
    name = session["metadata"]["name"]
    secret = r.tokens_secret_name(name)
    env = [
        {"name": worker_env.SESSION_NAME, "value": name},
        {"name": worker_env.ROOM, "value": room},
        {"name": worker_env.JOIN_ROOM, "value": "true" if spec.room else "false"},
        {"name": worker_env.SOURCE_LANGUAGE, "value": spec.source_language},
        {"name": worker_env.TARGET_LANGUAGES, "value": ",".join(spec.target_languages)},
        secret_env(worker_env.WORKER_TOKEN, secret, r.SECRET_WORKER_TOKEN),
        secret_env(worker_env.PUBLISHER_TOKENS, secret, r.SECRET_PUBLISHER_TOKENS),
        secret_env(worker_env.SUBSCRIBER_TOKENS, secret, r.SECRET_SUBSCRIBER_TOKENS),
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": r.worker_pod_name(name),
            "namespace": session["metadata"]["namespace"],
            "labels": session_labels(session, r.WORKER_COMPONENT),
            "annotations": {**METRICS_ANNOTATIONS, SAFE_TO_EVICT: "false"},
            "ownerReferences": [owner_reference(session)],
        },
        "spec": worker_pod_spec(spec.worker_profile, config, env),
    }


# How long a worker stays bound to a node that stopped answering (after the node controller's
# grace, about 40 s): Kubernetes' default is 300 s, five minutes without translation for its
# session. Evicted sooner, the pod's deletion makes the operator start or claim a replacement.
NODE_LOSS_TOLERATION_SECONDS = 10
NODE_LOSS_TAINTS = ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")


def with_node_loss_tolerations(given: list[dict]) -> list[dict]:
    """`given` plus short NoExecute tolerations of a lost node, unless `given` says otherwise."""
    keys = {t.get("key") for t in given}
    return [*given, *({"key": key, "operator": "Exists", "effect": "NoExecute",
                       "tolerationSeconds": NODE_LOSS_TOLERATION_SECONDS} for key in NODE_LOSS_TAINTS if key not in keys)]


WORKER_CONTAINER = "worker"
MODEL_DELIVERY_CONTAINER = "fetch-models"


def container_security() -> dict:
    """Every worker pod container's: a new dict each time, so no manifest shares one with another."""
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]}}


def model_delivery_container(config: OperatorConfig) -> dict:
    """The init step that fetches the GPU models into /models (worker/lingo_worker/model_delivery.py)
    before the worker starts: once per PVC, or per pod where there is none."""
    env = [
        {"name": worker_env.MODEL_DIR, "value": MODELS_MOUNT_PATH},
        {"name": worker_env.MODEL_SOURCES, "value": json.dumps(config.worker_gpu_model_sources, sort_keys=True)},
        {"name": "HF_HUB_OFFLINE", "value": "0"},  # the GPU image runs offline; this step is the one that fetches
        {"name": "HF_HOME", "value": "/tmp/huggingface"},
        {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"},
        {"name": "HF_HUB_DISABLE_PROGRESS_BARS", "value": "1"},
    ]
    if config.worker_gpu_model_endpoint:
        env.append({"name": "HF_ENDPOINT", "value": config.worker_gpu_model_endpoint})
    if config.worker_gpu_model_token_secret:
        env.append(secret_env("HF_TOKEN", config.worker_gpu_model_token_secret, "token"))
    return {
        "name": MODEL_DELIVERY_CONTAINER,
        "image": config.worker_image_gpu,
        "imagePullPolicy": config.worker_image_pull_policy,
        "command": ["python", "-m", "lingo_worker.model_delivery"],
        "env": env,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "models", "mountPath": MODELS_MOUNT_PATH}],
        # Its error (which model, what was wrong) becomes the session's WorkerReady message.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": container_security(),
    }


def models_being_fetched(pod: dict) -> str | None:
    """What a GPU worker pod's init step is fetching, while it runs; None otherwise."""
    for container in pod.get("spec", {}).get("initContainers") or []:
        if container.get("name") == MODEL_DELIVERY_CONTAINER:
            env = {item["name"]: item.get("value", "") for item in container.get("env") or []}
            sources = json.loads(env.get(worker_env.MODEL_SOURCES) or "{}")
            return ", ".join(f"{name} from {s.get('hub') or s.get('url')}" + (f"@{s['revision']}" if s.get("revision") else "")
                             for name, s in sorted(sources.items()))
    return None


def worker_pod_spec(profile: str, config: OperatorConfig, env: list[dict]) -> dict:
    """The pod spec of a worker of `profile`, with `env` added to what every worker gets."""
    gpu = profile == WorkerProfile.GPU.value
    env = [
        *env,
        {"name": worker_env.LIVEKIT_URL, "value": config.livekit_worker_url},
        {"name": worker_env.PROFILE, "value": profile},
        {"name": worker_env.PORT, "value": str(r.WORKER_PORT)},
        # The worker binds its own pod IP: on a real node that is the pod network, on the
        # loopback kubelet it is a distinct 127.x address per pod.
        {"name": worker_env.POD_IP, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]
    volumes = [{"name": "tmp", "emptyDir": {}}]
    mounts = [{"name": "tmp", "mountPath": "/tmp"}]
    init_containers = []
    if gpu:
        env.append({"name": worker_env.MODEL_DIR, "value": MODELS_MOUNT_PATH})
        delivered = bool(config.worker_gpu_model_sources)
        if config.worker_gpu_models_pvc:
            volumes.append({"name": "models", "persistentVolumeClaim": {"claimName": config.worker_gpu_models_pvc,
                                                                        "readOnly": not delivered}})
        elif delivered:  # no PVC to keep them in: each pod fetches its own
            volumes.append({"name": "models", "emptyDir": {}})
        if config.worker_gpu_models_pvc or delivered:
            mounts.append({"name": "models", "mountPath": MODELS_MOUNT_PATH, "readOnly": True})
        if delivered:
            init_containers.append(model_delivery_container(config))
    probe = lambda path, period, failures: {  # noqa: E731 - two probes, same shape
        "httpGet": {"path": path, "port": "control"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }
    container = {
        "name": WORKER_CONTAINER,
        "image": config.worker_image_gpu if gpu else config.worker_image,
        "imagePullPolicy": config.worker_image_pull_policy,
        "command": list(config.worker_command),
        "env": env,
        "ports": [{"name": "control", "containerPort": r.WORKER_PORT, "protocol": "TCP"}],
        "resources": config.worker_gpu_resources if gpu else config.worker_cpu_resources,
        # Readiness follows the worker's room connection within about two seconds (WorkerReady).
        "readinessProbe": probe("/readyz", 1, 2),
        "livenessProbe": {**probe("/healthz", 10, 3), "initialDelaySeconds": 30},
        "volumeMounts": mounts,
        "securityContext": container_security(),
    }
    pod_spec = {
        "containers": [container],
        "volumes": volumes,
        # A worker that exits 0 is done (its task ended): the pod completes and frees the node's
        # CPU or GPU at once. Any other exit is a crash and restarts it in place.
        "restartPolicy": "OnFailure",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 10,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
        "nodeSelector": dict(config.worker_gpu_node_selector if gpu else config.worker_node_selector),
        "tolerations": with_node_loss_tolerations(config.worker_gpu_tolerations if gpu else config.worker_tolerations),
    }
    if init_containers:
        pod_spec["initContainers"] = init_containers
        pod_spec["securityContext"]["fsGroup"] = pod_spec["securityContext"]["runAsUser"]  # a PVC it may write
    if gpu and config.worker_gpu_runtime_class:
        pod_spec["runtimeClassName"] = config.worker_gpu_runtime_class
    if config.worker_service_account:
        pod_spec["serviceAccountName"] = config.worker_service_account
    if config.worker_priority_class:
        pod_spec["priorityClassName"] = config.worker_priority_class
    return pod_spec
