"""The Helm chart: lint, render, server-side dry-run on the real API server, and RBAC that suffices."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
from pathlib import Path

import pytest
import yaml
from kubernetes_asyncio.client import CoreV1Api, RbacAuthorizationV1Api

from lingo_api import resources as r
from lingo_api import worker_env
from lingo_loopback.binaries import REPO_ROOT, helm_binary
from lingo_loopback.stack import start_operator
from lingo_operator import claim_signing
from lingo_operator.config import load_config
from lingo_operator.worker_pod import worker_pod_spec

from .helpers import create_session, delete_and_wait, kubectl, wait_for_phase

CHART = REPO_ROOT / "charts" / "lingo-operator"
KUBE_VERSION = "1.34.4"


def helm(*args: str) -> str:
    result = subprocess.run([str(helm_binary()), *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def render(*sets: str, namespace: str = "lingo") -> list[dict]:
    args = ["template", "lingo", str(CHART), "-n", namespace, "--kube-version", KUBE_VERSION]
    for value in sets:
        args += ["--set", value]
    return [doc for doc in yaml.safe_load_all(helm(*args)) if doc]


def test_helm_lint_passes():
    assert "0 chart(s) failed" in helm("lint", str(CHART), "--kube-version", KUBE_VERSION)


def test_chart_crds_match_the_crds_folder():
    for crd in (REPO_ROOT / "crds").glob("*.yaml"):
        assert (CHART / "crds" / crd.name).read_text() == crd.read_text(), f"charts/…/crds/{crd.name} is stale"


def test_values_schema_rejects_nonsense():
    result = subprocess.run(
        [str(helm_binary()), "template", "x", str(CHART), "--kube-version", KUBE_VERSION, "--set", "operator.replicas=-1"],
        capture_output=True, text=True,
    )
    assert result.returncode != 0 and "replicas" in result.stderr


def test_rendered_manifests_pass_server_side_dry_run(cluster, tmp_path: Path):
    for namespace in ("lingo", "lingo-sessions"):  # a dry run cannot fill a namespace it makes
        kubectl(cluster, "create", "namespace", namespace)
    docs = render("facade.ingress.enabled=true", "operator.watchNamespaces={team-a,team-b-*}")
    kinds = sorted(doc["kind"] for doc in docs)
    # a glob in watchNamespaces: the ClusterRole over every namespace, beside the cluster-wide reads
    assert kinds == ["ClusterRole", "ClusterRole", "ClusterRoleBinding", "ClusterRoleBinding", "Deployment",
                     "Deployment", "Ingress", "Namespace", "NetworkPolicy",
                     "PodDisruptionBudget", "PodDisruptionBudget", "PodDisruptionBudget", "Role", "Role", "RoleBinding", "RoleBinding",
                     "Service", "ServiceAccount", "ServiceAccount", "WorkerPool"]
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    result = kubectl(cluster, "apply", "--server-side", "--dry-run=server", "-f", str(manifest))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(docs)


def test_the_chart_installs_highly_available_by_default():
    docs = render()
    deployments = {d["metadata"]["name"].rsplit("-", 1)[1]: d for d in docs if d["kind"] == "Deployment"}
    for component, deployment in deployments.items():
        spec = deployment["spec"]["template"]["spec"]
        assert deployment["spec"]["replicas"] == 2, component
        term = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
        assert term["podAffinityTerm"]["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == component
    operator = deployments["operator"]["spec"]["template"]["spec"]["containers"][0]
    assert "--leader-elect" in operator["command"]
    assert {e["name"] for e in operator["env"]} >= {"POD_ID", "POD_NAMESPACE"}
    facade = deployments["facade"]["spec"]["template"]["spec"]
    assert {e["name"] for e in facade["containers"][0]["env"]} >= {"POD_NAME", "LINGO_DRAIN_SECONDS"}
    assert facade["terminationGracePeriodSeconds"] > 35
    budgets = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "PodDisruptionBudget"}
    assert {name: spec.get("minAvailable") for name, spec in budgets.items() if name != "lingo-live-workers"} == {
        "lingo-operator": 1, "lingo-facade": 1}
    roles = [d for d in docs if d["kind"] == "Role"]
    assert all(any("leases" in rule["resources"] for rule in role["rules"]) for role in roles)
    # One replica: no budget that would block every drain.
    assert [d["metadata"]["name"] for d in render("operator.replicas=1", "facade.replicas=1")
            if d["kind"] == "PodDisruptionBudget"] == ["lingo-live-workers"]


def test_live_sessions_workers_are_never_evicted_and_idle_pooled_ones_are():
    """The live workers' budget (tests/test_failure_domains.py drains a node with one) selects a
    session's own worker and a claimed pooled one, not an idle pooled one."""
    budget = next(d for d in render() if d["kind"] == "PodDisruptionBudget" and d["metadata"]["name"] == "lingo-live-workers")
    spec = budget["spec"]
    assert budget["metadata"]["namespace"] == "lingo-sessions"
    assert spec["maxUnavailable"] == 0 and spec["unhealthyPodEvictionPolicy"] == "IfHealthyBudget"

    def selected(labels: dict) -> bool:
        selector = spec["selector"]
        return all(labels.get(k) == v for k, v in selector["matchLabels"].items()) and all(
            labels.get(e["key"]) not in e["values"] for e in selector["matchExpressions"] if e["operator"] == "NotIn")

    worker = {"app.kubernetes.io/managed-by": "lingo-operator", "app.kubernetes.io/component": r.WORKER_COMPONENT}
    assert selected(worker)  # a session's own (cold) worker
    assert selected({**worker, r.LABEL_POOL_STATE: r.POOL_STATE_CLAIMED})
    assert not selected({**worker, r.LABEL_POOL_STATE: r.POOL_STATE_IDLE})
    assert not [d for d in render("worker.protectLiveSessions=false") if d["metadata"]["name"] == "lingo-live-workers"]


def test_workers_network_policy_admits_only_facade_operator_and_livekit():
    policy = next(d for d in render() if d["kind"] == "NetworkPolicy")
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == r.WORKER_COMPONENT
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    [ingress] = spec["ingress"]
    components = ingress["from"][0]["podSelector"]["matchExpressions"][1]["values"]
    assert components == ["facade", "operator"] and ingress["ports"] == [{"protocol": "TCP", "port": r.WORKER_PORT}]
    livekit, dns = spec["egress"]
    assert livekit["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "livekit"}}}]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert not [d for d in render("networkPolicy.enabled=false") if d["kind"] == "NetworkPolicy"]


def test_monitoring_extras_render_a_service_monitor_and_a_grafana_dashboard():
    docs = render("metrics.serviceMonitor.enabled=true", "metrics.grafanaDashboard.enabled=true")
    monitor = next(d for d in docs if d["kind"] == "ServiceMonitor")
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    services = [d for d in docs if d["kind"] == "Service"]
    public = next(d for d in services if d["metadata"]["name"] == "lingo-facade")
    assert [p["name"] for p in public["spec"]["ports"]] == ["http"], "the facade's /metrics is not public (issue 24)"
    for service in services:  # both Services carry the component label the monitor selects
        assert service["metadata"]["labels"]["app.kubernetes.io/component"] in ("operator", "facade")
    dashboard = json.loads(next(d for d in docs if d["kind"] == "ConfigMap")["data"]["lingo-operator.json"])
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for metric in ("lingo_sessions", "lingo_session_ready_seconds_bucket", "lingo_session_worker_ready_seconds_bucket",
                   "lingo_pool_workers", "lingo_operator_leader", "lingo_facade_request_seconds_bucket"):
        assert metric in exprs


def test_livekit_deployed_by_the_chart_passes_server_side_dry_run(cluster, tmp_path: Path):
    """livekit.deploy with two servers: they share Redis, the operator and workers dial the chart's
    LiveKit Service, the workers' NetworkPolicy admits it, and Redis admits only LiveKit."""
    for namespace in ("lingo-lk", "lingo-lk-sessions"):  # a dry run cannot fill a namespace it makes
        kubectl(cluster, "create", "namespace", namespace)
    docs = render("livekit.deploy=true", "livekit.replicas=2", namespace="lingo-lk")
    config = yaml.safe_load(next(d for d in docs if d["kind"] == "ConfigMap")["data"]["livekit.yaml"])
    assert config["room"]["auto_create"] is False
    assert config["redis"]["address"] == "lingo-livekit-redis.lingo-lk.svc.cluster.local:6379"
    operator = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "lingo-operator")
    env = {e["name"]: e.get("value") for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["LIVEKIT_URL"] == "ws://lingo-livekit.lingo-lk.svc.cluster.local:7880"
    livekit = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "lingo-livekit")
    assert livekit["spec"]["replicas"] == 2
    policies = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "NetworkPolicy"}
    assert policies["lingo-workers"]["egress"][0]["to"][0]["podSelector"]["matchLabels"][
        "app.kubernetes.io/component"] == "livekit"
    assert policies["lingo-livekit-redis"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"][
        "app.kubernetes.io/component"] == "livekit"
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    result = kubectl(cluster, "apply", "--server-side", "--dry-run=server", "-f", str(manifest))
    assert result.returncode == 0, result.stderr
    assert not [d for d in render("livekit.deploy=true") if "redis" in d["metadata"]["name"]]  # one server


def test_operator_deployment_carries_livekit_secret_by_reference_only():
    operator = next(d for d in render() if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-operator"))
    env = {e["name"]: e for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["LIVEKIT_API_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "livekit-credentials"
    assert "value" not in env["LIVEKIT_API_SECRET"]


def test_gpu_model_sources_reach_the_gpu_workers_init_step(monkeypatch):
    def gpu_worker(*sets: str) -> dict:
        operator = next(d for d in render(*sets) if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-operator"))
        for item in operator["spec"]["template"]["spec"]["containers"][0]["env"]:
            monkeypatch.setenv(item["name"], item.get("value") or "from-a-secret")
        load_config.cache_clear()
        try:
            return worker_pod_spec("gpu", load_config(), [])
        finally:
            load_config.cache_clear()

    assert "initContainers" not in gpu_worker()  # by default the models are in the PVC already
    spec = gpu_worker("worker.gpu.models.whisper.hub=Systran/faster-whisper-large-v3",
                      "worker.gpu.models.endpoint=https://hub.example.internal", "worker.gpu.models.tokenSecret=hub",
                      "worker.gpu.modelsPvc=models", "worker.gpu.runtimeClassName=nvidia")
    env = {e["name"]: e for e in spec["initContainers"][0]["env"]}
    assert json.loads(env[worker_env.MODEL_SOURCES]["value"]) == {"whisper": {"hub": "Systran/faster-whisper-large-v3"}}
    assert env["HF_ENDPOINT"]["value"] == "https://hub.example.internal"
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hub", "key": "token"}
    assert spec["runtimeClassName"] == "nvidia"
    # Workers may reach no model source unless it is named; then only it, on 443.
    def policy_egress(*sets: str) -> list[dict]:
        return next(d for d in render(*sets) if d["kind"] == "NetworkPolicy"
                    and d["metadata"]["name"].endswith("-workers"))["spec"]["egress"]

    assert not any("ipBlock" in peer for rule in policy_egress() for peer in rule["to"])
    rule = policy_egress("networkPolicy.modelSourcePeers[0].ipBlock.cidr=10.20.30.40/32")[-1]
    assert rule == {"to": [{"ipBlock": {"cidr": "10.20.30.40/32"}}], "ports": [{"protocol": "TCP", "port": 443}]}


async def _apply_rbac(kube, docs: list[dict]) -> None:
    rbac = RbacAuthorizationV1Api(kube)
    for doc in docs:
        create = {"Role": rbac.create_namespaced_role, "RoleBinding": rbac.create_namespaced_role_binding}.get(doc["kind"])
        if create:
            await create(doc["metadata"]["namespace"], doc)
        else:
            await (rbac.create_cluster_role if doc["kind"] == "ClusterRole" else rbac.create_cluster_role_binding)(doc)


async def _delete_cluster_rbac(kube, docs: list[dict]) -> None:
    rbac = RbacAuthorizationV1Api(kube)
    for doc in docs:
        if doc["kind"] == "ClusterRole":
            await rbac.delete_cluster_role(doc["metadata"]["name"])
        elif doc["kind"] == "ClusterRoleBinding":
            await rbac.delete_cluster_role_binding(doc["metadata"]["name"])


def _rbac_docs(docs: list[dict], component: str) -> list[dict]:
    return [d for d in docs if d["kind"] in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
            and f"-{component}" in d["metadata"]["name"]]


def _can_i(cluster, account: str, verb: str, what: str, namespace: str) -> bool:
    answer = kubectl(cluster, "auth", "can-i", verb, what, "-n", namespace, "--as", account).stdout.strip()
    assert answer in ("yes", "no"), answer
    return answer == "yes"


async def test_the_facade_reaches_only_the_sessions_namespace(cluster, kube):
    """Issue 24, finding 2: the internet-facing facade may read the sessions' tokens Secrets, and
    nothing of the release namespace: not the LiveKit secret, not the operator's claim-signing
    key, not the leader Lease. The chart's RBAC as rendered, asked with `kubectl auth can-i`."""
    suffix = secrets.token_hex(3)
    release, sessions = f"fac-{suffix}", f"fac-{suffix}-sessions"
    core = CoreV1Api(kube)
    for namespace in (release, sessions):
        await core.create_namespace({"metadata": {"name": namespace}})
    docs = render(f"fullnameOverride=fac-{suffix}", namespace=release)
    rbac_docs = _rbac_docs(docs, "facade") + _rbac_docs(docs, "operator")
    try:
        await _apply_rbac(kube, rbac_docs)
        facade = f"system:serviceaccount:{release}:fac-{suffix}-facade"
        operator = f"system:serviceaccount:{release}:fac-{suffix}-operator"
        assert not _can_i(cluster, facade, "get", "secrets/livekit-credentials", release)
        assert not _can_i(cluster, facade, "get", "secrets/lingo-claim-signing-key", release)
        assert not _can_i(cluster, facade, "update", "leases/lingo-operator", release)
        assert not _can_i(cluster, facade, "list", "secrets", sessions)  # by name only: a session's
        assert _can_i(cluster, facade, "get", "secrets/s1-tokens", sessions)
        assert _can_i(cluster, facade, "create", "streamingsessions.translation.lingo.dev", sessions)
        assert _can_i(cluster, operator, "get", "secrets/lingo-claim-signing-key", release)
    finally:
        for namespace in (release, sessions):
            await core.delete_namespace(namespace)
        await _delete_cluster_rbac(kube, rbac_docs)


@pytest.mark.usefixtures("operator")
@pytest.mark.parametrize("scope", ["all namespaces", "named namespaces"])
async def test_operator_runs_with_only_the_charts_rbac(scope, cluster, kube, facade_url, tmp_path: Path):
    """Apply the chart's RBAC as rendered (release namespace and ServiceAccount renamed) and run an
    operator as its ServiceAccount, with leader election on (as the chart runs it), on sessions in
    the chart's sessions namespace. With named `operator.watchNamespaces` it gets Roles there and
    nothing namespaced elsewhere (issue 24); its claim-signing key it makes in its own namespace."""
    suffix = secrets.token_hex(3)
    namespace, sessions = f"rbac-{suffix}", f"rbac-{suffix}-sessions"
    made = [namespace, sessions]
    sets = [f"fullnameOverride=rbac-{suffix}"]
    if scope == "named namespaces":
        sets.append(f"operator.watchNamespaces={{team-{suffix}}}")  # the sessions namespace is added
        made.append(f"team-{suffix}")
    core = CoreV1Api(kube)
    for name in made:
        await core.create_namespace({"metadata": {"name": name}})
    await core.create_namespaced_service_account(namespace, {"metadata": {"name": f"rbac-{suffix}-operator"}})
    rendered = render(*sets, namespace=namespace)
    rbac_docs = _rbac_docs(rendered, "operator")
    await _apply_rbac(kube, rbac_docs)
    operator_command = next(d for d in rendered if d["kind"] == "Deployment"
                            and d["metadata"]["name"].endswith("-operator"))["spec"]["template"]["spec"]["containers"][0]["command"]
    if scope == "named namespaces":
        assert f"--namespace={sessions}" in operator_command
    account = f"system:serviceaccount:{namespace}:rbac-{suffix}-operator"
    assert _can_i(cluster, account, "create", "pods", "kube-system") == (scope == "all namespaces")
    token = (await core.create_namespaced_service_account_token(
        f"rbac-{suffix}-operator", namespace, {"spec": {"expirationSeconds": 3600}})).status.token
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["users"][0]["user"] = {"token": token}
    kubeconfig = tmp_path / "operator-sa.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    process = start_operator(cluster, facade_url, namespaces=[sessions], name=f"operator-rbac-{suffix}",
                             extra_env={"KUBECONFIG": str(kubeconfig), "POD_NAMESPACE": namespace},
                             extra_args=["--leader-elect"])
    try:
        await create_session(kube, sessions, "rbac-check")
        await wait_for_phase(kube, sessions, "rbac-check", r.Phase.READY, timeout=30)
        await delete_and_wait(kube, sessions, "rbac-check")  # the finalizer path runs under the role too
        assert await core.read_namespaced_secret(claim_signing.SECRET_NAME, namespace)
        log = (cluster.log_dir / f"operator-rbac-{suffix}.log").read_text()
        # An API refusal logs "Forbidden" or a 403 status; a bare "403" would also match a timestamp's
        # milliseconds ("10:32:37,403", which failed a .ci/run once).
        refusals = [line for line in log.splitlines() if "Forbidden" in line or re.search(r"\b403\b(?!\])", line)]
        assert not refusals, refusals[:5]
    finally:
        process.stop()
        for name in made:
            await core.delete_namespace(name)
        await _delete_cluster_rbac(kube, rbac_docs)




def test_kind_e2e_manifests_pass_server_side_dry_run(cluster):
    """hack/kind-e2e.sh cannot run here (no Docker); its manifests are still checked for real."""
    for namespace in ("livekit", "lingo"):
        kubectl(cluster, "create", "namespace", namespace)
    for manifest in ("livekit.yaml", "e2e-check-job.yaml"):
        result = kubectl(cluster, "apply", "--server-side", "--dry-run=server", "-f",
                         str(REPO_ROOT / "hack" / "kind" / manifest))
        assert result.returncode == 0, result.stderr
    result = subprocess.run(["bash", "-n", str(REPO_ROOT / "hack" / "kind-e2e.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("example", sorted(p.name for p in (REPO_ROOT / "examples").glob("*.yaml")))
def test_examples_are_accepted_by_the_api_server(cluster, example):
    result = kubectl(cluster, "apply", "-n", "default", "--dry-run=server", "-f", str(REPO_ROOT / "examples" / example))
    assert result.returncode == 0, result.stderr
