"""Worker pod manifests (operator/lingo_operator/worker_pod.py, worker_pool.py), without servers:
what a pooled worker is given to verify claims, how long any worker stays on a lost node, and how a
GPU worker gets its models."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lingo_api import claim_grant, worker_env
from lingo_api import resources as r
from lingo_operator.config import OperatorConfig
from lingo_operator.worker_pod import NODE_LOSS_TAINTS, NODE_LOSS_TOLERATION_SECONDS, worker_pod_spec
from lingo_operator.worker_pool import pooled_worker_manifest
from lingo_operator.worker_readiness import worker_condition

CONFIG = OperatorConfig(livekit_api_url="ws://lk", livekit_public_url="ws://lk", livekit_worker_url="ws://lk",
                        livekit_api_key="k", livekit_api_secret="s")


def pool(**spec) -> dict:
    return {"apiVersion": r.API_VERSION, "kind": r.POOL_KIND,
            "metadata": {"name": "warm", "namespace": "lingo-sessions", "uid": "u1"}, "spec": spec}


def node_loss(tolerations: list[dict]) -> dict[str, int]:
    return {t["key"]: t.get("tolerationSeconds") for t in tolerations if t["key"] in NODE_LOSS_TAINTS}


def test_a_worker_leaves_a_lost_node_in_seconds_not_five_minutes():
    spec = worker_pod_spec("cpu", CONFIG, [])
    assert node_loss(spec["tolerations"]) == {key: NODE_LOSS_TOLERATION_SECONDS for key in NODE_LOSS_TAINTS}
    mine = {"key": NODE_LOSS_TAINTS[0], "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}
    given = worker_pod_spec("cpu", CONFIG.model_copy(update={"worker_tolerations": [mine]}), [])
    assert node_loss(given["tolerations"]) == {NODE_LOSS_TAINTS[0]: 60, NODE_LOSS_TAINTS[1]: NODE_LOSS_TOLERATION_SECONDS}
    templated = pooled_worker_manifest(pool(template={"spec": {"tolerations": [mine]}}), CONFIG, "key")
    assert node_loss(templated["spec"]["tolerations"]) == node_loss(given["tolerations"])


def test_a_pooled_worker_holds_only_the_public_half_of_the_claim_key():
    key = Ed25519PrivateKey.generate()
    public = claim_grant.public_key_text(key)
    manifest = pooled_worker_manifest(pool(), CONFIG, public)
    env = {e["name"]: e for e in manifest["spec"]["containers"][0]["env"]}
    assert env[worker_env.CLAIM_PUBLIC_KEY]["value"] == public
    assert env[worker_env.POD_UID]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.uid"
    assert not [e for e in env.values() if "secretKeyRef" in (e.get("valueFrom") or {})]
    # A new key is a new template: idle workers made with the old one are replaced.
    other = pooled_worker_manifest(pool(), CONFIG, claim_grant.public_key_text(Ed25519PrivateKey.generate()))
    assert other["metadata"]["labels"][r.LABEL_POOL_TEMPLATE] != manifest["metadata"]["labels"][r.LABEL_POOL_TEMPLATE]


def test_a_grant_lets_through_only_its_own_pod_and_body():
    key = Ed25519PrivateKey.generate()
    public = claim_grant.load_public_key(claim_grant.public_key_text(key))
    grant = claim_grant.sign(key, "pod-a", b"{}")
    claim_grant.verify(public, grant, "pod-a", b"{}")
    refusals = {
        "the claim's grant is for another worker": lambda: claim_grant.verify(public, grant, "pod-b", b"{}"),
        "the claim's body is not the one its grant was signed for":
            lambda: claim_grant.verify(public, grant, "pod-a", b"{ }"),
        "the claim's grant has expired": lambda: claim_grant.verify(
            public, claim_grant.sign(key, "pod-a", b"{}", now=0), "pod-a", b"{}"),
        "the claim is not signed by this pool's operator": lambda: claim_grant.verify(
            public, claim_grant.sign(Ed25519PrivateKey.generate(), "pod-a", b"{}"), "pod-a", b"{}"),
    }
    for message, attempt in refusals.items():
        try:
            attempt()
        except claim_grant.ClaimRefused as exc:
            assert str(exc) == message
        else:
            raise AssertionError(f"accepted: {message}")


GPU_SOURCES = {"whisper": {"hub": "Systran/faster-whisper-large-v3", "revision": "main"},
               "nllb": {"hub": "example/nllb-200-distilled-600M-ct2"}}


def test_a_gpu_worker_fetches_its_models_before_it_starts_and_says_so():
    config = CONFIG.model_copy(update={"worker_gpu_model_sources": GPU_SOURCES, "worker_gpu_models_pvc": "models",
                                       "worker_gpu_model_endpoint": "https://hub.example.internal",
                                       "worker_gpu_model_token_secret": "hub-token", "worker_gpu_runtime_class": "nvidia"})
    spec = worker_pod_spec("gpu", config, [])
    (init,) = spec["initContainers"]
    env = {e["name"]: e for e in init["env"]}
    assert env["HF_ENDPOINT"]["value"] == "https://hub.example.internal"
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hub-token", "key": "token"}
    assert env["HF_HUB_OFFLINE"]["value"] == "0"
    assert {"name": "models", "mountPath": "/models"} in init["volumeMounts"]  # it writes the PVC
    assert {"name": "models", "persistentVolumeClaim": {"claimName": "models", "readOnly": False}} in spec["volumes"]
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in spec["containers"][0]["volumeMounts"]
    assert spec["securityContext"]["fsGroup"] == 10001 and spec["runtimeClassName"] == "nvidia"

    pod = {"spec": spec, "status": {"phase": "Pending", "initContainerStatuses": [
        {"name": "fetch-models", "state": {"running": {}}}]}}
    assert worker_condition(pod) == (False, r.Reason.FETCHING_MODELS, "waiting for its models: nllb from "
                                     "example/nllb-200-distilled-600M-ct2, whisper from Systran/faster-whisper-large-v3@main")
    pod["status"]["initContainerStatuses"] = [{"name": "fetch-models", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                                               "lastState": {"terminated": {"exitCode": 1, "message":
                                                             "model delivery failed: model nllb: ... answered 404\n"}}}]
    assert worker_condition(pod)[1:] == (r.Reason.MODEL_DELIVERY_FAILED, "model delivery failed: model nllb: ... answered 404")

    # Without a PVC each pod fetches into its own emptyDir; without sources nothing is fetched.
    assert {"name": "models", "emptyDir": {}} in worker_pod_spec("gpu", config.model_copy(
        update={"worker_gpu_models_pvc": ""}), [])["volumes"]
    plain = worker_pod_spec("gpu", CONFIG.model_copy(update={"worker_gpu_models_pvc": "models"}), [])
    assert "initContainers" not in plain and "fsGroup" not in plain["securityContext"]
    assert {"name": "models", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}} in plain["volumes"]
    chart_defaults = OperatorConfig.model_validate({**CONFIG.model_dump(), "worker_gpu_model_sources": {"whisper": {}, "nllb": {}}})
    assert "initContainers" not in worker_pod_spec("gpu", chart_defaults, [])


def test_a_worker_that_exits_0_because_its_pod_is_deleted_did_not_end_its_task():
    """A drain or an eviction sends SIGTERM and the worker exits 0: that is not the task's end (after
    which the session would get no new worker; tests/test_failure_domains.py drains a live one)."""
    pod = {"metadata": {"name": "w"}, "status": {"phase": "Succeeded"}}
    assert worker_condition(pod)[1] == r.Reason.TASK_ENDED
    pod["metadata"]["deletionTimestamp"] = "2026-12-07T03:46:00Z"
    assert worker_condition(pod)[:2] == (False, r.Reason.WORKER_DELETED)
