"""One real node of the test cluster: a kubelet and its own containerd, with their own state.

Several nodes share the machine's network namespace and the run's bridge (lingo_node.host), and
keep apart everything a kubelet or containerd would otherwise share: each has its own address on
the bridge (the kubelet listens there and reports it as the node's InternalIP), its own slice of
the pod range (CNI host-local), its own containerd root, state, socket and runc root, and its own
cgroup root, so one kubelet never sees another's pods as orphans to clean up. The bridge's own
address belongs to no node: the control plane, LiveKit, cluster DNS and NodePorts listen there,
like a control plane and a load balancer off the nodes. So any node can be lost (`kill`: its
kubelet, runtime and containers stop at once and its address and its pods' links go silent) and
come back (`revive`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import yaml

from lingo_loopback import binaries
from lingo_loopback.processes import ManagedProcess, free_port, http_ok, wait_until

from .host import BRIDGE, BRIDGE_IP, POD_CIDR, SERVICE_CIDR, HostChanges, run

CLUSTER_DOMAIN = "cluster.local"
CNI_BIN_DIR = "/usr/lib/cni"
MAX_NODES = 3
# Pod addresses per node: the pod range's hosts from .10 on, in equal slices.
POD_SLICE = 80
CGROUP_ROOT = Path("/sys/fs/cgroup")


def node_name(index: int) -> str:
    return f"lingo-node-{index + 1}"


def node_ip(index: int) -> str:
    return str(ipaddress.ip_address(BRIDGE_IP) + 1 + index)


def pod_range(index: int) -> tuple[str, str]:
    network = ipaddress.ip_network(POD_CIDR)
    first = network.network_address + 10 + index * POD_SLICE
    return str(first), str(first + POD_SLICE - 1)


class KubeletNode:
    """A node's kubelet and containerd; `start`, `kill`, `revive`, `stop`."""

    def __init__(self, index: int, workdir: Path, log_dir: Path, kubeconfig: Path, host: HostChanges,
                 kubelet_client_ca: Path, pause_image: str):
        if not 0 <= index < MAX_NODES:
            raise ValueError(f"a node index from 0 to {MAX_NODES - 1}")
        self.index, self.name, self.ip = index, node_name(index), node_ip(index)
        self.base = workdir / self.name
        self.log_dir, self.kubeconfig, self.host = log_dir, kubeconfig, host
        self.kubelet_client_ca, self.pause_image = kubelet_client_ca, pause_image
        self.containerd_socket = self.base / "containerd" / "containerd.sock"
        # Images and their unpacked layers persist in the cache (an unchanged image is not
        # imported again); containers and state live in this run's folder.
        suffix = "" if index == 0 else f"-{index + 1}"
        self.containerd_root = binaries.cache_dir() / f"containerd-root{suffix}"
        self.cgroup_name = self.name  # the kubelet's cgroupRoot, below every hierarchy's root
        self.lost = False
        self._processes: dict[str, ManagedProcess] = {}

    @property
    def ctr(self) -> list[str]:
        return ["ctr", "--address", str(self.containerd_socket)]

    # -- lifecycle -------------------------------------------------------------------------

    def start_runtime(self) -> None:
        """containerd, before images are imported into it."""
        run("ip", "addr", "replace", f"{self.ip}/{POD_CIDR.split('/')[1]}", "dev", BRIDGE)
        self._start_containerd()

    def start_kubelet(self, binary: Path) -> None:
        self._make_cgroup_root()
        self._kubelet_binary = binary
        self._start_kubelet(binary)

    def kill(self) -> None:
        """The node is lost: kubelet, containerd, shims and every container die at once, and its
        address and its pods' links go down, so whatever talked to them hears nothing (not a
        refused connection)."""
        self.lost = True
        for process in self._processes.values():
            if process.alive() and process.proc is not None:
                os.killpg(process.proc.pid, signal.SIGKILL)
        for pid in self._shim_pids() + self._container_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for process in self._processes.values():
            if process.proc is not None:
                process.proc.wait(timeout=10)
        for link in self._pod_links():
            run("ip", "link", "set", link, "down", check=False)
        run("ip", "addr", "del", f"{self.ip}/{POD_CIDR.split('/')[1]}", "dev", BRIDGE, check=False)

    def revive(self) -> None:
        """The node comes back after `kill`, with what containerd and the kubelet had on disk: the
        kubelet then removes the pods the cluster deleted meanwhile."""
        self.lost = False
        self.start_runtime()
        self._start_kubelet(self._kubelet_binary)

    def stop(self) -> list[str]:
        """Kubelet first (it would restart containers), then every container, then containerd."""
        problems: list[str] = []
        kubelet = self._processes.get("kubelet")
        if kubelet:
            kubelet.stop(grace=20)
        if self.containerd_socket.parent.exists():
            containerd = self._processes.get("containerd")
            if containerd is None or not containerd.alive():  # lost and not revived: clean up through it
                self._start_containerd()
            problems += self._remove_containers()
        for process in self._processes.values():
            process.stop()
        self._processes.clear()
        run("ip", "addr", "del", f"{self.ip}/{POD_CIDR.split('/')[1]}", "dev", BRIDGE, check=False)
        return problems + self._remove_cgroup_root()

    def freeze_pod(self, uid: str, frozen: bool) -> None:
        """Pause every process of a pod at once (the v1 freezer, as a stopped VM would) or let them run."""
        found = list((CGROUP_ROOT / "freezer" / self.cgroup_name).rglob(f"pod{uid}"))
        if not found:
            raise ValueError(f"no pod {uid} on {self.name}")
        (found[0] / "freezer.state").write_text("FROZEN" if frozen else "THAWED")

    def pod_uids_running(self) -> set[str]:
        """The pods this node's containerd runs a container of now (from the CRI's labels)."""
        ctr = [*self.ctr, "-n", "k8s.io"]
        tasks = subprocess.run([*ctr, "tasks", "ls"], capture_output=True, text=True).stdout.splitlines()[1:]
        uids = set()
        for line in tasks:
            fields = line.split()
            if len(fields) >= 3 and fields[2] == "RUNNING":
                info = subprocess.run([*ctr, "containers", "info", fields[0]], capture_output=True, text=True)
                if info.returncode == 0:
                    uid = (json.loads(info.stdout).get("Labels") or {}).get("io.kubernetes.pod.uid")
                    if uid:
                        uids.add(uid)
        return uids

    def processes_alive(self) -> bool:
        return any(p.alive() for p in self._processes.values())

    # -- parts -----------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        process = ManagedProcess(f"{self.name}-{name}", argv, self.log_dir)
        process.start()
        assert process.proc is not None
        self.host.remember_process(process.proc.pid)
        self._processes[name] = process
        return process

    def _start_containerd(self) -> None:
        base = self.base / "containerd"
        cni_conf = base / "net.d"
        cni_conf.mkdir(parents=True, exist_ok=True)
        first, last = pod_range(self.index)
        (cni_conf / "10-lingo.conflist").write_text(json.dumps({
            "cniVersion": "0.4.0",
            "name": "lingo",
            "plugins": [
                {
                    "type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": True,
                    "ipam": {"type": "host-local", "dataDir": str(base / "ipam"),
                             "ranges": [[{"subnet": POD_CIDR, "rangeStart": first, "rangeEnd": last,
                                          "gateway": BRIDGE_IP}]],
                             "routes": [{"dst": POD_CIDR}, {"dst": SERVICE_CIDR}]},
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }, indent=1))
        config = base / "config.toml"
        config.write_text(f"""version = 2
root = "{self.containerd_root}"
state = "{base / 'state'}"
[grpc]
  address = "{self.containerd_socket}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{base / 'opt'}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{self.pause_image}"
  # The sandbox has no CAP_SYS_RESOURCE; containerd must not lower oom_score_adj below its own.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        # Each node's own runc state (the default, /run/containerd/runc, is shared).
        Root = "{base / 'runc'}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{cni_conf}"
""")
        process = self._spawn("containerd", ["containerd", f"--config={config}"])
        wait_until(lambda: subprocess.run([*self.ctr, "version"], capture_output=True).returncode == 0,
                   process, f"{self.name} containerd", timeout=60)

    def _start_kubelet(self, binary: Path) -> None:
        base = self.base / "kubelet"
        base.mkdir(parents=True, exist_ok=True)
        health = free_port()
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": self.ip,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": health,
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            # This sandbox: cgroup v1 without systemd, no swap accounting, no CAP_SYS_RESOURCE.
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{self.cgroup_name}",
            "failCgroupV1": False,
            "failSwapOn": False,
            "oomScoreAdj": 0,
            # Pods must not inherit the host's resolver: they get cluster DNS and nothing else.
            "resolvConf": "",
            "clusterDNS": [BRIDGE_IP],
            "clusterDomain": CLUSTER_DOMAIN,
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(self.kubelet_client_ca)}},
            "authorization": {"mode": "Webhook"},
            "evictionHard": {"memory.available": "200Mi", "nodefs.available": "5%", "imagefs.available": "5%",
                             "nodefs.inodesFree": "1%"},
            "imageGCHighThresholdPercent": 100,
            "volumePluginDir": str(base / "volume-plugins"),
            # Pod logs with the run (kept with LINGO_KEEP_LOGS), not in /var/log/pods.
            "podLogsDir": str(base / "pod-logs"),
            "serializeImagePulls": False,
            "maxPods": 40,
        }
        config_file = base / "config.yaml"
        config_file.write_text(yaml.safe_dump(config))
        process = self._spawn("kubelet", [
            str(binary), f"--config={config_file}", f"--kubeconfig={self.kubeconfig}",
            f"--node-ip={self.ip}", f"--hostname-override={self.name}", f"--root-dir={base / 'root'}",
            f"--cert-dir={base / 'pki'}", "--v=1",
        ])
        wait_until(lambda: http_ok(f"http://127.0.0.1:{health}/healthz"), process, f"{self.name} kubelet",
                   timeout=90)

    def _hierarchies(self) -> list[Path]:
        return [h for h in CGROUP_ROOT.iterdir() if h.is_dir() and not h.is_symlink()] if CGROUP_ROOT.is_dir() else []

    def _make_cgroup_root(self) -> None:
        """The kubelet wants its cgroupRoot to exist in every hierarchy; a new cpuset cgroup
        starts with no CPUs or memory nodes, so it gets its parent's."""
        for hierarchy in self._hierarchies():
            path = hierarchy / self.cgroup_name
            path.mkdir(exist_ok=True)
            for setting in ("cpuset.cpus", "cpuset.mems"):
                if (hierarchy / setting).exists() and not (path / setting).read_text().strip():
                    (path / setting).write_text((hierarchy / setting).read_text())

    def _remove_cgroup_root(self) -> list[str]:
        """rmdir the node's cgroup subtree in every hierarchy (leaves first)."""
        problems = []
        for hierarchy in self._hierarchies():
            top = hierarchy / self.cgroup_name
            if not top.is_dir():
                continue
            for path in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                try:
                    path.rmdir()
                except OSError:
                    pass
            try:
                top.rmdir()
            except OSError as exc:
                problems.append(f"cgroup {top}: {exc}")
        return problems

    def _container_pids(self) -> list[int]:
        pids: set[int] = set()
        for hierarchy in self._hierarchies():
            top = hierarchy / self.cgroup_name
            for procs in top.rglob("cgroup.procs") if top.is_dir() else []:
                try:
                    pids.update(int(line) for line in procs.read_text().split())
                except OSError:
                    pass
        return sorted(pids)

    def _shim_pids(self) -> list[int]:
        socket = str(self.containerd_socket).encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    cmdline = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                if b"containerd-shim" in cmdline and socket in cmdline:
                    pids.append(int(entry.name))
        return pids

    def _pod_links(self) -> list[str]:
        """The bridge-side ends of this node's pods' links, found from each pod's own eth0."""
        netns_dir = self.base / "containerd" / "state" / "io.containerd.grpc.v1.cri" / "netns"
        links = []
        for netns in netns_dir.iterdir() if netns_dir.is_dir() else []:
            shown = run("nsenter", f"--net={netns}", "ip", "-o", "link", "show", "eth0", check=False).stdout
            # "3: eth0@if42: ..." names the peer's interface index on the host.
            peer = shown.split(":", 2)[1].strip().partition("@if")[2] if shown.count(":") >= 2 else ""
            if peer.isdigit():
                for line in run("ip", "-o", "link", "show").stdout.splitlines():
                    if line.split(":", 1)[0].strip() == peer:
                        links.append(line.split(":", 2)[1].strip().split("@", 1)[0])
        return links

    def _remove_containers(self) -> list[str]:
        """Kill and delete every container containerd still has (the kubelet does not on exit)."""
        problems = []
        ctr = [*self.ctr, "-n", "k8s.io"]
        listing = subprocess.run([*ctr, "containers", "ls", "-q"], capture_output=True, text=True)
        for container in listing.stdout.split():
            subprocess.run([*ctr, "tasks", "kill", "-s", "SIGKILL", container], capture_output=True)
            for _ in range(20):
                if subprocess.run([*ctr, "tasks", "delete", container], capture_output=True).returncode == 0 or \
                        container not in subprocess.run([*ctr, "tasks", "ls", "-q"], capture_output=True,
                                                        text=True).stdout.split():
                    break
                time.sleep(0.25)
            result = subprocess.run([*ctr, "containers", "rm", container], capture_output=True, text=True)
            if result.returncode != 0:
                problems.append(f"{self.name} container {container}: {result.stderr.strip()[:200]}")
        return problems
