"""A real Kubernetes cluster on this machine: the loopback control plane plus one or more nodes.

Beside what `LoopbackCluster` starts (etcd, kube-apiserver, kube-controller-manager,
livekit-server), this starts, per node (lingo_node.node), containerd and runc (Debian) and a
kubelet, and once for the cluster kube-scheduler and kube-proxy (built from the pinned Kubernetes
modules), CNI bridge/host-local/loopback (Debian), cluster DNS (lingo_node.dns) and the
NetworkPolicy engine (lingo_node.policy_engine). Pods run the
project's real images from images/*.Dockerfile, imported into every node's containerd.

Everything pods can reach sits on the run's own bridge (lingo_node.host): kube-apiserver and
livekit-server bind the bridge address, Services live in a range only kube-proxy knows, and the
guard drops anything else. `stop()` deletes workloads, stops each node's kubelet, removes its
containers, stops its containerd and puts the host back as it was, also after a failure.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
from pathlib import Path

from lingo_loopback import binaries
from lingo_loopback.cluster import LoopbackCluster
from lingo_loopback.processes import (ManagedProcess, StartupError, free_port, http_ok, ignore_interrupts,
                                      wait_for_interrupt, wait_until)

from . import host, policy_engine
from .host import BRIDGE, BRIDGE_IP, POD_CIDR, SERVICE_CIDR, HostChanges
from .images import ProjectImages, build_project_images, import_into_containerd
from .node import MAX_NODES, KubeletNode

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class NodeError(RuntimeError):
    pass


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


class RealNodeCluster(LoopbackCluster):
    """`LoopbackCluster` on the bridge address, with `node_count` real nodes that run the project's images."""

    bind_address = BRIDGE_IP
    service_cidr = SERVICE_CIDR

    def __init__(self, workdir: Path | None = None, node_count: int = 1):
        super().__init__(workdir or Path(tempfile.mkdtemp(prefix="lingo-node-")))
        if not 1 <= node_count <= MAX_NODES:
            raise ValueError(f"from 1 to {MAX_NODES} nodes")
        self.node_count = node_count
        self.host = HostChanges(binaries.cache_dir() / "node-host-state.json")
        self.images: ProjectImages | None = None
        self.nodes: list[KubeletNode] = []
        self._node_processes: list[ManagedProcess] = []  # the cluster's own: DNS, scheduler, kube-proxy, policies
        self.teardown_problems: list[str] = []

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> "RealNodeCluster":
        node_binaries = binaries.node_binaries()
        # Host changes are recorded before anything runs, image builds included (podman).
        self.host.apply()
        try:
            self.images = build_project_images()
            super().start()
            ca_cert, _, _ = self._kubelet_client_pki()
            for index in range(self.node_count):
                node = KubeletNode(index, self.workdir, self.log_dir, self.kubeconfig, self.host, ca_cert,
                                   self.images.pause)
                self.nodes.append(node)
                node.start_runtime()
                import_into_containerd(self.images.all(), node.ctr)
            self._start_dns()
            self._start_scheduler(node_binaries["kube-scheduler"])
            for node in self.nodes:
                node.start_kubelet(node_binaries["kubelet"])
            for node in self.nodes:
                self.wait_node_ready(node.name)
            # After the nodes exist: kube-proxy reads its addresses from the Node object.
            self._start_kube_proxy(node_binaries["kube-proxy"])
            self._start_policy_engine(binaries.network_policy_engine_binary())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Workloads, each node (kubelet, containers, containerd), node services, control plane, host state."""
        problems: list[str] = []
        if any(node.processes_alive() for node in self.nodes) and self._processes:
            problems += self._delete_workloads()
        for node in self.nodes:
            problems += node.stop()
        for process in reversed(self._node_processes):
            process.stop()
        self._node_processes.clear()
        problems += self._kube_proxy_cleanup()
        problems += host.unmount_below(self.workdir)
        super().stop()
        problems += self.host.restore()
        self.teardown_problems = problems

    def node(self, name: str) -> KubeletNode:
        return next(node for node in self.nodes if node.name == name)

    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        process = super()._spawn(name, argv)
        self.host.remember_process(process.proc.pid)
        return process

    def _spawn_node(self, name: str, argv: list[str], env: dict | None = None) -> ManagedProcess:
        process = ManagedProcess(name, argv, self.log_dir, env)
        process.start()
        self.host.remember_process(process.proc.pid)
        self._node_processes.append(process)
        return process

    # -- control plane, as a node needs it ---------------------------------------------------

    def _apiserver_flags(self) -> list[str]:
        ca_cert, client_cert, client_key = self._kubelet_client_pki()
        return [
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={self.service_account_key}",
            f"--service-account-signing-key-file={self.service_account_key}",
            "--allow-privileged=true",
            "--enable-priority-and-fairness=false",
            # The `kubernetes` Service's endpoint is this server on the bridge, where pods reach it.
            "--endpoint-reconciler-type=lease",
            f"--kubelet-client-certificate={client_cert}",
            f"--kubelet-client-key={client_key}",
            "--kubelet-preferred-address-types=InternalIP",
        ]

    def _kubelet_client_pki(self) -> tuple[Path, Path, Path]:
        """A CA the kubelet trusts for client certificates, and kube-apiserver's certificate from it."""
        pki = self.pki_dir / "kubelet-client"
        pki.mkdir(parents=True, exist_ok=True)
        ca_key, ca_cert = pki / "ca.key", pki / "ca.crt"
        key, csr, cert = pki / "apiserver.key", pki / "apiserver.csr", pki / "apiserver.crt"
        if not cert.exists():
            _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca_cert),
                     "-days", "2", "-subj", "/CN=lingo-node-kubelet-client-ca")
            _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
                     "-subj", "/O=system:masters/CN=kube-apiserver-kubelet-client")
            _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
                     "-CAcreateserial", "-out", str(cert), "-days", "2")
        return ca_cert, cert, key

    def _controller_manager_flags(self) -> list[str]:
        return [
            # Everything a single node with a static pod range needs (no cloud, no IPAM).
            "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller",
            f"--service-account-private-key-file={self.service_account_key}",
            # kube-apiserver's self-signed serving certificate: what pods verify it with.
            f"--root-ca-file={self.pki_dir / 'apiserver.crt'}",
        ]

    def _livekit_network(self) -> dict:
        # Clients on the host and in pods both reach the bridge address; ICE candidates are
        # offered on the bridge only, never on the machine's other interfaces.
        return {
            "bind_addresses": ["127.0.0.1", BRIDGE_IP],
            "rtc": {
                "use_external_ip": False,
                "node_ip": BRIDGE_IP,
                "enable_loopback_candidate": False,
                "interfaces": {"includes": [BRIDGE]},
                "ips": {"includes": [f"{BRIDGE_IP}/32"]},
            },
        }

    # -- node ------------------------------------------------------------------------------

    def _start_dns(self) -> None:
        process = self._spawn_node("cluster-dns", [sys.executable, "-m", "lingo_node.dns", f"--listen={BRIDGE_IP}",
                                                   "--port=53", f"--kubeconfig={self.kubeconfig}"])
        wait_until(lambda: "serving" in process.log_tail(), process, "cluster DNS", timeout=30)

    def _start_scheduler(self, binary: Path) -> None:
        port = free_port()
        process = self._spawn_node("kube-scheduler", [
            str(binary), f"--kubeconfig={self.kubeconfig}", "--leader-elect=false",
            "--bind-address=127.0.0.1", f"--secure-port={port}",
        ])
        wait_until(lambda: http_ok(f"https://127.0.0.1:{port}/healthz"), process, "kube-scheduler", timeout=60)

    def _start_kube_proxy(self, binary: Path) -> None:
        health, metrics = free_port(), free_port()
        self._kube_proxy_binary = binary
        process = self._spawn_node("kube-proxy", [
            str(binary), f"--kubeconfig={self.kubeconfig}", "--proxy-mode=iptables",
            f"--hostname-override={self.nodes[0].name}", f"--cluster-cidr={POD_CIDR}",
            # Leave the host's conntrack settings alone (0 = do not change).
            "--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0",
            "--conntrack-tcp-timeout-close-wait=0",
            "--iptables-localhost-nodeports=false", f"--nodeport-addresses={BRIDGE_IP}/32",
            f"--healthz-bind-address=127.0.0.1:{health}", f"--metrics-bind-address=127.0.0.1:{metrics}",
        ])
        wait_until(lambda: http_ok(f"http://127.0.0.1:{health}/healthz"), process, "kube-proxy", timeout=60)

    def _start_policy_engine(self, binary: Path) -> None:
        credentials = policy_engine.write_credentials(self.workdir / "policy-engine", self.admin_token,
                                                      self.pki_dir / "apiserver.crt")
        process = self._spawn_node("kube-network-policies", policy_engine.engine_argv(
            binary, credentials, free_port(), self.nodes[0].name),
            env={"KUBERNETES_SERVICE_HOST": BRIDGE_IP, "KUBERNETES_SERVICE_PORT": str(self.api_port)})
        wait_until(policy_engine.queue_bound, process, "kube-network-policies", timeout=60)
        self.host.install_policy_queue(policy_engine.QUEUE)

    def wait_node_ready(self, name: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                node = self.api_request(f"/api/v1/nodes/{name}")
                last = {c["type"]: c.get("message") for c in node["status"].get("conditions", [])
                        if (c["type"] == "Ready") != (c["status"] == "False")}
                if any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"]):
                    return
            except urllib.error.HTTPError as exc:
                last = exc.code
            time.sleep(0.5)
        raise StartupError(f"node {name} not Ready after {timeout:.0f}s: {last}")

    # -- teardown --------------------------------------------------------------------------

    def _delete_workloads(self, timeout: float = 90) -> list[str]:
        """Delete every non-system namespace and every pod; wait until the node runs none."""
        try:
            for namespace in self.api_request("/api/v1/namespaces")["items"]:
                name = namespace["metadata"]["name"]
                if name not in SYSTEM_NAMESPACES and "deletionTimestamp" not in namespace["metadata"]:
                    self.api_request(f"/api/v1/namespaces/{name}", method="DELETE")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                pods = self.api_request("/api/v1/pods")["items"]
                if not pods:
                    return []
                if time.monotonic() > deadline - timeout / 3:  # stuck: force it
                    for pod in pods:
                        meta = pod["metadata"]
                        self.api_request(f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
                                         "?gracePeriodSeconds=0", method="DELETE")
                time.sleep(1)
            return [f"pods still present after {timeout}s: {[p['metadata']['name'] for p in pods]}"]
        except (OSError, urllib.error.URLError, KeyError) as exc:
            return [f"deleting workloads: {exc}"]

    def _kube_proxy_cleanup(self) -> list[str]:
        binary = getattr(self, "_kube_proxy_binary", None)
        if binary is None:
            return []
        result = subprocess.run([str(binary), "--cleanup"], capture_output=True, text=True)
        return [] if result.returncode == 0 else [f"kube-proxy --cleanup: {result.stderr.strip()[-300:]}"]

    # -- use -------------------------------------------------------------------------------

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 600) -> subprocess.CompletedProcess:
        env = {"KUBECONFIG": str(self.kubeconfig), "PATH": "/usr/bin:/bin", "HOME": str(self.workdir)}
        result = subprocess.run([str(binaries.kubernetes_binaries()["kubectl"]), *args], env=env, input=input,
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise NodeError(f"kubectl {' '.join(args)}: {result.stderr.strip()[-1500:]}")
        return result

    def helm(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        env = {"KUBECONFIG": str(self.kubeconfig), "PATH": "/usr/bin:/bin", "HOME": str(self.workdir),
               "HELM_CACHE_HOME": str(self.workdir / "helm"), "HELM_CONFIG_HOME": str(self.workdir / "helm"),
               "HELM_DATA_HOME": str(self.workdir / "helm")}
        result = subprocess.run([str(binaries.helm_binary()), *args], env=env, capture_output=True, text=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise NodeError(f"helm {' '.join(args)}: {result.stderr.strip()[-1500:]}")
        return result


def main() -> None:
    """`python -m lingo_node.cluster [--nodes N]`: start the real cluster, print how to reach it,
    stop on Ctrl-C."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--nodes", type=int, default=1, help=f"how many nodes, 1 to {MAX_NODES}")
    cluster = RealNodeCluster(node_count=parser.parse_args().nodes)
    try:
        cluster.start()
        print(f"real cluster up: KUBECONFIG={cluster.kubeconfig}  livekit {cluster.livekit.url if cluster.livekit else '-'}"
              f"\nnodes: {', '.join(f'{node.name} ({node.ip})' for node in cluster.nodes)}"
              f"\nimages: {', '.join(cluster.images.all() if cluster.images else [])}\nCtrl-C stops it.", flush=True)
        wait_for_interrupt()
    finally:
        ignore_interrupts()
        cluster.stop()
        for problem in cluster.teardown_problems:
            print(f"teardown: {problem}", file=sys.stderr)
        shutil.rmtree(cluster.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
