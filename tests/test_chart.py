"""The Helm chart: lint, render, server-side dry-run on the real API server, and RBAC that suffices."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest
import yaml
from kubernetes_asyncio.client import CoreV1Api, RbacAuthorizationV1Api

from lingo_api import resources as r
from lingo_loopback.binaries import REPO_ROOT, helm_binary
from lingo_loopback.stack import start_operator

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
        [str(helm_binary()), "template", "x", str(CHART), "--kube-version", KUBE_VERSION, "--set", "operator.replicas=3"],
        capture_output=True, text=True,
    )
    assert result.returncode != 0 and "replicas" in result.stderr


def test_rendered_manifests_pass_server_side_dry_run(cluster, tmp_path: Path):
    kubectl(cluster, "create", "namespace", "lingo")
    docs = render("facade.ingress.enabled=true", "operator.watchNamespaces={team-a,team-b-*}")
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "Deployment", "Deployment", "Ingress", "Role",
                     "RoleBinding", "Service", "ServiceAccount", "ServiceAccount", "WorkerPool"]
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    result = kubectl(cluster, "apply", "--server-side", "--dry-run=server", "-f", str(manifest))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(docs)


def test_operator_deployment_carries_livekit_secret_by_reference_only():
    operator = next(d for d in render() if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-operator"))
    env = {e["name"]: e for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["LIVEKIT_API_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "livekit-credentials"
    assert "value" not in env["LIVEKIT_API_SECRET"]


@pytest.mark.usefixtures("operator")
async def test_operator_runs_with_only_the_charts_rbac(cluster, kube, facade_url, tmp_path: Path):
    """Bind the chart's ClusterRole to a fresh ServiceAccount and run an operator as it."""
    role = next(d for d in render() if d["kind"] == "ClusterRole")
    suffix = secrets.token_hex(3)
    role["metadata"]["name"] = f"lingo-rbac-test-{suffix}"
    namespace = f"rbac-{suffix}"
    core, rbac = CoreV1Api(kube), RbacAuthorizationV1Api(kube)
    await core.create_namespace({"metadata": {"name": namespace}})
    await core.create_namespaced_service_account(namespace, {"metadata": {"name": "operator"}})
    await rbac.create_cluster_role(role)
    await rbac.create_cluster_role_binding({
        "metadata": {"name": role["metadata"]["name"]},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role["metadata"]["name"]},
        "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": namespace}],
    })
    token = (await core.create_namespaced_service_account_token(
        "operator", namespace, {"spec": {"expirationSeconds": 3600}})).status.token
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["users"][0]["user"] = {"token": token}
    kubeconfig = tmp_path / "operator-sa.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    process = start_operator(cluster, facade_url, namespaces=[namespace], name="operator-rbac",
                             extra_env={"KUBECONFIG": str(kubeconfig)})
    try:
        await create_session(kube, namespace, "rbac-check")
        await wait_for_phase(kube, namespace, "rbac-check", r.Phase.READY, timeout=30)
        await delete_and_wait(kube, namespace, "rbac-check")  # the finalizer path runs under the role too
        log = (cluster.log_dir / "operator-rbac.log").read_text()
        assert "403" not in log and "Forbidden" not in log, log[-2000:]
    finally:
        process.stop()
        await core.delete_namespace(namespace)




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
