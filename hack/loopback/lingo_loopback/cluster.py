"""A real Kubernetes control plane and a real livekit-server, bound to 127.0.0.1.

envtest style: etcd + kube-apiserver, plus kube-controller-manager running only the
garbage collector and namespace controllers (so ownerReferences really cascade), and no
kubelet or scheduler: the loopback kubelet in this package stands in for those where a
test or the dev stack needs worker pods to run.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import binaries
from .binaries import REPO_ROOT
from .processes import INSECURE_TLS, ManagedProcess, StartupError, free_port, http_ok, wait_until


CRD_DIR = REPO_ROOT / "crds"


@dataclass
class LiveKitEndpoint:
    url: str  # ws://127.0.0.1:PORT, what clients and the worker dial
    http_url: str  # http://127.0.0.1:PORT, what livekit-api (RoomService) calls
    api_key: str
    api_secret: str = field(repr=False)


class LoopbackCluster:
    """Starts etcd, kube-apiserver, kube-controller-manager and livekit-server; stops them all."""

    # The address kube-apiserver and livekit-server serve on; a real node (lingo_node) uses its
    # bridge address, which pods can reach.
    bind_address = "127.0.0.1"
    service_cidr = "10.96.0.0/24"

    def __init__(self, workdir: Path | None = None, with_livekit: bool = True, crd_dir: Path | None = CRD_DIR):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="lingo-loopback-"))
        self.log_dir = self.workdir / "logs"
        self.pki_dir = self.workdir / "pki"
        self.with_livekit = with_livekit
        self.crd_dir = crd_dir
        self.admin_token = secrets.token_urlsafe(32)
        self.api_port = free_port()
        self.api_url = f"https://{self.bind_address}:{self.api_port}"
        self.kubeconfig = self.workdir / "kubeconfig"
        self.livekit: LiveKitEndpoint | None = None
        self._processes: list[ManagedProcess] = []
        self._etcd_data_dir: Path | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> "LoopbackCluster":
        k8s = binaries.kubernetes_binaries()
        livekit_server = binaries.livekit_server_binary() if self.with_livekit else None
        try:
            self._start_etcd()
            self._start_apiserver(k8s["kube-apiserver"])
            self._write_kubeconfig()
            if self.crd_dir:
                # Before the controller manager: its garbage collector only learns about new
                # resource types at its next discovery resync, tens of seconds later.
                self.install_crds(sorted(self.crd_dir.glob("*.yaml")))
            self._start_controller_manager(k8s["kube-controller-manager"])
            if livekit_server:
                self._start_livekit(livekit_server)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for process in reversed(self._processes):
            process.stop()
        self._processes.clear()
        # etcd's store lives in memory (/dev/shm) and is worthless once etcd is gone.
        if self._etcd_data_dir:
            shutil.rmtree(self._etcd_data_dir, ignore_errors=True)
            self._etcd_data_dir = None

    def __enter__(self) -> "LoopbackCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def process(self, name: str) -> ManagedProcess:
        """One of the servers by name (etcd, kube-apiserver, ...): fault tests stop and restart them."""
        return next(p for p in self._processes if p.name == name)

    def restart(self, name: str, down_seconds: float = 0.0) -> None:
        """Stop a server, wait, start it again with the same arguments, and wait until it serves."""
        process = self.process(name)
        process.stop()
        time.sleep(down_seconds)
        process.start()
        checks = {
            "kube-apiserver": lambda: http_ok(f"{self.api_url}/readyz", self.admin_token),
            "livekit-server": lambda: http_ok(self.livekit.http_url) if self.livekit else True,
        }
        wait_until(checks.get(name, process.alive), process, name, timeout=120)

    def api_request(self, path: str, body: dict | None = None, method: str | None = None) -> dict:
        """One call to the API server as the loopback admin; returns the decoded answer."""
        request = urllib.request.Request(
            f"{self.api_url}{path}", data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.admin_token}", "Content-Type": "application/json"},
            method=method or ("POST" if body is not None else "GET"),
        )
        with urllib.request.urlopen(request, context=INSECURE_TLS, timeout=10) as response:
            return json.load(response)

    def create(self, path: str, body: dict) -> None:
        """POST an object; one that already exists (409) is left as it is."""
        try:
            self.api_request(path, body)
        except urllib.error.HTTPError as exc:
            if exc.code != 409:
                raise RuntimeError(f"creating {path}: {exc.read().decode()[:500]}") from exc

    def install_crds(self, paths: list[Path]) -> None:
        """Create each CRD (an existing one is kept) and wait until it is Established."""
        base = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        for path in paths:
            crd = yaml.safe_load(path.read_text())
            self.create(base, crd)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                status = self.api_request(f"{base}/{crd['metadata']['name']}").get("status") or {}
                if any(c["type"] == "Established" and c["status"] == "True" for c in status.get("conditions") or []):
                    break
                time.sleep(0.1)
            else:
                raise RuntimeError(f"CRD {crd['metadata']['name']} not Established")

    # -- components ------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        process = ManagedProcess(name, argv, self.log_dir)
        process.start()
        self._processes.append(process)
        return process

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        # /dev/shm keeps etcd's fsyncs off the disk: this store lives for one run only.
        shm = Path("/dev/shm")
        data_dir = Path(tempfile.mkdtemp(prefix="lingo-etcd-", dir=shm if shm.is_dir() else None))
        process = self._spawn(
            "etcd",
            [
                str(binaries.etcd_binary()),
                "--name=loopback",
                f"--data-dir={data_dir}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=loopback=http://127.0.0.1:{peer}",
                # kube-apiserver's watch caches only learn etcd's current revision from events or
                # progress notifications (every 10 min by default). A watch of a resource that
                # has had no events (no pods yet) then fails with "Too large resource version"
                # every few seconds; Debian's etcd 3.4 has no on-request progress, so ask often.
                "--experimental-watch-progress-notify-interval=1s",
                "--log-level=warn",
            ],
        )
        self._etcd_data_dir = data_dir
        wait_until(lambda: http_ok(f"{self.etcd_url}/health"), process, "etcd", timeout=30)

    @property
    def service_account_key(self) -> Path:
        return self.pki_dir / "service-account.key"

    def _apiserver_flags(self) -> list[str]:
        """Flags for kube-apiserver; the real node replaces the ones that assume no pods run."""
        return [
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={self.service_account_key}",
            f"--service-account-signing-key-file={self.service_account_key}",
            # No serviceaccount controller runs here, so pods must not wait for a default SA.
            "--disable-admission-plugins=ServiceAccount",
            "--allow-privileged=true",
            "--enable-priority-and-fairness=false",
            "--endpoint-reconciler-type=none",
        ]

    def _start_apiserver(self, binary: Path) -> None:
        self.pki_dir.mkdir(parents=True, exist_ok=True)
        if not self.service_account_key.exists():
            subprocess.run(["openssl", "genrsa", "-out", str(self.service_account_key), "2048"], check=True,
                           capture_output=True)
        tokens = self.pki_dir / "tokens.csv"
        tokens.write_text(f'{self.admin_token},loopback-admin,loopback-admin,"system:masters"\n')
        tokens.chmod(0o600)
        process = self._spawn(
            "kube-apiserver",
            [
                str(binary),
                f"--etcd-servers={self.etcd_url}",
                f"--bind-address={self.bind_address}",
                f"--advertise-address={self.bind_address}",
                f"--secure-port={self.api_port}",
                f"--cert-dir={self.pki_dir}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=RBAC",
                f"--service-cluster-ip-range={self.service_cidr}",
                *self._apiserver_flags(),
            ],
        )
        wait_until(
            lambda: http_ok(f"{self.api_url}/readyz", self.admin_token), process, "kube-apiserver", timeout=120
        )

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            # The serving certificate is self-signed by kube-apiserver for this run; the server is
            # only reachable on loopback, so verification is skipped rather than plumbing its CA.
            "clusters": [{"name": "loopback", "cluster": {"server": self.api_url, "insecure-skip-tls-verify": True}}],
            "users": [{"name": "loopback-admin", "user": {"token": self.admin_token}}],
            "contexts": [{"name": "loopback", "context": {"cluster": "loopback", "user": "loopback-admin"}}],
            "current-context": "loopback",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)

    def _controller_manager_flags(self) -> list[str]:
        """Which controllers run: here only those that matter without a node."""
        return ["--controllers=garbagecollector,namespace"]

    def _start_controller_manager(self, binary: Path) -> None:
        port = free_port()
        process = self._spawn(
            "kube-controller-manager",
            [
                str(binary),
                f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.pki_dir / 'controller-manager'}",
                "--concurrent-gc-syncs=5",
                *self._controller_manager_flags(),
            ],
        )
        wait_until(lambda: http_ok(f"https://127.0.0.1:{port}/healthz"), process, "kube-controller-manager", timeout=60)

    def _livekit_network(self) -> dict:
        """Where livekit-server listens and which ICE candidates it offers: loopback only here."""
        return {
            "bind_addresses": ["127.0.0.1"],
            "rtc": {"use_external_ip": False, "node_ip": "127.0.0.1", "enable_loopback_candidate": True},
        }

    def _start_livekit(self, binary: Path) -> None:
        port, tcp_port = free_port(), free_port()
        udp_start = 50000 + (os.getpid() * 7) % 10000
        api_key = "lingo-" + secrets.token_hex(4)
        api_secret = secrets.token_urlsafe(32)
        network = self._livekit_network()
        config = {
            "port": port,
            "bind_addresses": network["bind_addresses"],
            "rtc": {
                "tcp_port": tcp_port,
                "port_range_start": udp_start,
                "port_range_end": udp_start + 200,
                **network["rtc"],
            },
            "keys": {api_key: api_secret},
            # Rooms exist only when the operator creates them: a token must not bring back the
            # room of a deleted session (every LiveKit config the project ships says so).
            "room": {"auto_create": False},
            "logging": {"level": "info"},
        }
        config_file = self.workdir / "livekit.yaml"
        config_file.write_text(yaml.safe_dump(config))
        config_file.chmod(0o600)
        process = self._spawn("livekit-server", [str(binary), f"--config={config_file}"])
        http_url = f"http://{self.bind_address}:{port}"
        wait_until(lambda: http_ok(http_url), process, "livekit-server", timeout=60)
        self.livekit = LiveKitEndpoint(
            url=f"ws://{self.bind_address}:{port}", http_url=http_url, api_key=api_key, api_secret=api_secret
        )


__all__ = ["LoopbackCluster", "LiveKitEndpoint", "StartupError"]
