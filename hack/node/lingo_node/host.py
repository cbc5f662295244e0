"""What a real-node run changes on the host, and how all of it is put back.

The node's pods live on one bridge this run creates, with addresses no real network here uses:
pods in POD_CIDR (the bridge holds BRIDGE_IP), Services in SERVICE_CIDR. Nothing leaves it: the
CNI bridge does not masquerade, the pod network has no route out, and a guard in iptables drops
every packet that arrives from the bridge for any other address, counting what it drops so a run
can fail when something tried.

`HostChanges` records every sysctl before anything touches it (the kubelet, kube-proxy and the
CNI bridge plugin change several), and `restore()` undoes everything in the right order, also
after a failure. It is safe to call twice.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

BRIDGE = "lingo-br0"
POD_CIDR = "198.18.0.0/24"
BRIDGE_IP = "198.18.0.1"
SERVICE_CIDR = "198.19.0.0/16"
# The kubelet, kube-proxy and the CNI bridge plugin change these; each is restored to what it was.
WATCHED_SYSCTLS = (
    "net.ipv4.ip_forward",
    "vm.overcommit_memory",
    "kernel.panic",
    "kernel.panic_on_oops",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
)
# Paths the kubelet, containerd, CNI and podman use whatever they are told; removed at the end
# when this run created them.
HARDCODED_PATHS = (
    "/var/lib/kubelet",
    "/var/lib/cni",
    "/run/containerd",
    "/usr/libexec/kubernetes",
    "/run/libpod",
    "/var/lib/containers",
    "/etc/cni",
    "/var/log/containers",  # the kubelet's links to container logs (not configurable)
)
GUARD_CHAIN = "LINGO-GUARD"
GUARD_NOISE_CHAIN = "LINGO-GUARD-NOISE"
POLICY_CHAIN = "LINGO-NETPOL"  # feeds the NetworkPolicy engine (lingo_node.policy_engine)
# Chains the kubelet creates itself and kube-proxy --cleanup leaves behind.
KUBELET_CHAINS = ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT", "KUBE-PROXY-CANARY")


class HostError(RuntimeError):
    pass


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise HostError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()[:500]}")
    return result


def read_sysctl(name: str) -> str | None:
    path = Path("/proc/sys") / name.replace(".", "/")
    try:
        return path.read_text().strip()
    except OSError:
        return None


def write_sysctl(name: str, value: str) -> None:
    (Path("/proc/sys") / name.replace(".", "/")).write_text(value + "\n")


@dataclass
class GuardReport:
    """Packets the guard dropped: `unexpected` ones fail a run; link-local noise does not."""

    unexpected: dict[str, int] = field(default_factory=dict)
    noise: dict[str, int] = field(default_factory=dict)


class HostChanges:
    """Creates the bridge and the guard, and restores the host exactly as it was found."""

    def __init__(self, state_file: Path):
        # The record survives a crash of the test process, so a later run can still restore.
        self.state_file = state_file

    # -- setup -------------------------------------------------------------------------------

    def apply(self) -> None:
        if os.geteuid() != 0:
            raise HostError("a real node needs root (bridges, iptables, mounts)")
        if self.state_file.exists():
            # A previous run died before restoring: finish its job first.
            self.restore()
        record = {
            "sysctls": {name: value for name in WATCHED_SYSCTLS if (value := read_sysctl(name)) is not None},
            "created_paths": [path for path in HARDCODED_PATHS if not Path(path).exists()],
            "processes": [],
        }
        self._write(record)
        self._create_bridge()
        self._install_guard()

    def _write(self, record: dict) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(record, indent=1))

    def remember_process(self, pid: int) -> None:
        """Note a server this run started, so a run that dies unannounced can still end it."""
        record = json.loads(self.state_file.read_text())
        record["processes"].append({"pid": pid, "cmdline": _cmdline(pid)})
        self._write(record)

    def _create_bridge(self) -> None:
        if not Path(f"/sys/class/net/{BRIDGE}").exists():
            run("ip", "link", "add", BRIDGE, "type", "bridge")
        # No IPv6 on the bridge: pods get IPv4 only, and router solicitations have nowhere to go.
        write_sysctl(f"net.ipv6.conf.{BRIDGE}.disable_ipv6", "1")
        run("ip", "addr", "replace", f"{BRIDGE_IP}/{POD_CIDR.split('/')[1]}", "dev", BRIDGE)
        run("ip", "link", "set", BRIDGE, "up")
        # Service addresses are virtual (kube-proxy DNATs them). The route keeps a packet for one
        # that has no endpoint yet on the bridge instead of the machine's default route.
        run("ip", "route", "replace", SERVICE_CIDR, "dev", BRIDGE)

    def _install_guard(self) -> None:
        for tool in ("iptables", "ip6tables"):
            self._remove_guard(tool)
        # raw PREROUTING sees every packet from the pods before NAT: Service and pod addresses
        # pass, link-local multicast/broadcast is dropped quietly, anything else is dropped and
        # counted.
        raw = ("iptables", "-w", "-t", "raw")
        run(*raw, "-N", GUARD_CHAIN)
        run(*raw, "-N", GUARD_NOISE_CHAIN)
        run(*raw, "-A", GUARD_CHAIN, "-d", SERVICE_CIDR, "-j", "RETURN")
        run(*raw, "-A", GUARD_CHAIN, "-d", POD_CIDR, "-j", "RETURN")
        run(*raw, "-A", GUARD_CHAIN, "-m", "addrtype", "--dst-type", "BROADCAST,MULTICAST", "-j", GUARD_NOISE_CHAIN)
        run(*raw, "-A", GUARD_CHAIN, "-j", "DROP")
        run(*raw, "-A", GUARD_NOISE_CHAIN, "-j", "DROP")
        run(*raw, "-I", "PREROUTING", "1", "-i", BRIDGE, "-j", GUARD_CHAIN)
        raw6 = ("ip6tables", "-w", "-t", "raw")
        run(*raw6, "-N", GUARD_CHAIN)
        run(*raw6, "-N", GUARD_NOISE_CHAIN)
        run(*raw6, "-A", GUARD_CHAIN, "-d", "ff00::/8", "-j", GUARD_NOISE_CHAIN)
        run(*raw6, "-A", GUARD_CHAIN, "-s", "::/128", "-j", GUARD_NOISE_CHAIN)  # DAD probes
        run(*raw6, "-A", GUARD_CHAIN, "-j", "DROP")
        run(*raw6, "-A", GUARD_NOISE_CHAIN, "-j", "DROP")
        run(*raw6, "-I", "PREROUTING", "1", "-i", BRIDGE, "-j", GUARD_CHAIN)
        # And nothing is forwarded between the bridge and any other interface, either way.
        for tool in ("iptables", "ip6tables"):
            run(tool, "-w", "-N", GUARD_CHAIN)
            run(tool, "-w", "-A", GUARD_CHAIN, "-i", BRIDGE, "!", "-o", BRIDGE, "-j", "DROP")
            run(tool, "-w", "-A", GUARD_CHAIN, "-o", BRIDGE, "!", "-i", BRIDGE, "-j", "DROP")
            run(tool, "-w", "-I", "FORWARD", "1", "-j", GUARD_CHAIN)

    def install_policy_queue(self, queue: int) -> None:
        """Send the first packet of every new connection to or from a pod to nfqueue `queue`,
        where the NetworkPolicy engine gives the verdict; nothing passes while none listens.

        The rules are kube-network-policies' own, in iptables: it installs them with nftables'
        `queue` statement, which this kernel lacks (no CONFIG_NFT_QUEUE), while iptables' NFQUEUE
        target feeds the same queue. Like upstream they sit on POSTROUTING before SNAT (mangle),
        skip what the host's root sends (the kubelet's probes) and connections already accepted,
        and see pod-to-pod packets on the bridge (bridge-nf-call-iptables). Packets from a pod to
        the host itself (INPUT) are not evaluated, as upstream."""
        self.remove_policy_queue()
        mangle = ("iptables", "-w", "-t", "mangle")
        run(*mangle, "-N", POLICY_CHAIN)
        run(*mangle, "-A", POLICY_CHAIN, "-m", "owner", "--uid-owner", "0", "-j", "RETURN")
        run(*mangle, "-A", POLICY_CHAIN, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN")
        run(*mangle, "-A", POLICY_CHAIN, "-s", POD_CIDR, "-j", "NFQUEUE", "--queue-num", str(queue))
        run(*mangle, "-A", POLICY_CHAIN, "-d", POD_CIDR, "-j", "NFQUEUE", "--queue-num", str(queue))
        run(*mangle, "-I", "POSTROUTING", "1", "-j", POLICY_CHAIN)

    @staticmethod
    def remove_policy_queue() -> None:
        while run("iptables", "-w", "-t", "mangle", "-D", "POSTROUTING", "-j", POLICY_CHAIN, check=False).returncode == 0:
            pass
        run("iptables", "-w", "-t", "mangle", "-F", POLICY_CHAIN, check=False)
        run("iptables", "-w", "-t", "mangle", "-X", POLICY_CHAIN, check=False)

    def guard_report(self) -> GuardReport:
        """Dropped packet counts so far, by rule."""
        report = GuardReport()
        for tool in ("iptables", "ip6tables"):
            for table, chain in (("raw", GUARD_CHAIN), ("raw", GUARD_NOISE_CHAIN), ("filter", GUARD_CHAIN)):
                listing = run(tool, "-w", "-t", table, "-L", chain, "-v", "-x", "-n", check=False).stdout
                for line in listing.splitlines()[2:]:
                    fields = line.split()
                    if len(fields) < 3 or fields[2] != "DROP" or fields[0] == "0":
                        continue
                    key = f"{tool} {table} {chain}: {' '.join(fields[3:])}"
                    (report.noise if chain == GUARD_NOISE_CHAIN else report.unexpected)[key] = int(fields[0])
        return report

    # -- teardown ----------------------------------------------------------------------------

    def restore(self) -> list[str]:
        """Put everything back; returns what could not be restored (empty when all went well)."""
        problems: list[str] = []
        try:
            record = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            record = {}
        for process in record.get("processes", []):
            # Only a process that is still the one this run started (same command line).
            if process["cmdline"] and _cmdline(process["pid"]) == process["cmdline"]:
                try:
                    os.killpg(process["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.remove_policy_queue()
        for tool in ("iptables", "ip6tables"):
            self._remove_guard(tool)
            self._remove_kube_chains(tool)
        if Path(f"/sys/class/net/{BRIDGE}").exists():
            run("ip", "link", "del", BRIDGE, check=False)
        run("ip", "route", "del", SERVICE_CIDR, check=False)
        for name, value in record.get("sysctls", {}).items():
            try:
                if read_sysctl(name) != value:
                    write_sysctl(name, value)
            except OSError as exc:
                problems.append(f"sysctl {name}: {exc}")
        for path in record.get("created_paths", []):
            problems += unmount_below(Path(path))
            shutil.rmtree(path, ignore_errors=True)
            if Path(path).exists():
                problems.append(f"could not remove {path}")
        self.state_file.unlink(missing_ok=True)
        return problems

    @staticmethod
    def _remove_guard(tool: str) -> None:
        for table, parent in (("raw", "PREROUTING"), ("filter", "FORWARD")):
            while run(tool, "-w", "-t", table, "-D", parent, "-i", BRIDGE, "-j", GUARD_CHAIN, check=False).returncode == 0:
                pass
            while run(tool, "-w", "-t", table, "-D", parent, "-j", GUARD_CHAIN, check=False).returncode == 0:
                pass
            for chain in (GUARD_CHAIN, GUARD_NOISE_CHAIN):
                run(tool, "-w", "-t", table, "-F", chain, check=False)
                run(tool, "-w", "-t", table, "-X", chain, check=False)

    @staticmethod
    def _remove_kube_chains(tool: str) -> None:
        """Every KUBE-* rule and chain in every table (kube-proxy's and the kubelet's own)."""
        for table in ("filter", "nat", "mangle", "raw"):
            listing = run(tool, "-w", "-t", table, "-S", check=False).stdout.splitlines()
            # Rules that jump into KUBE-* chains from built-in chains go first, then the chains.
            for rule in listing:
                if rule.startswith("-A ") and "KUBE-" in rule and not rule.split()[1].startswith("KUBE-"):
                    run(tool, "-w", "-t", table, "-D", *shlex.split(rule)[1:], check=False)
            chains = [line.split()[1] for line in listing if line.startswith("-N KUBE-")]
            for chain in chains:
                run(tool, "-w", "-t", table, "-F", chain, check=False)
            for chain in chains:
                run(tool, "-w", "-t", table, "-X", chain, check=False)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def unmount_below(root: Path) -> list[str]:
    """Unmount everything mounted at or under `root`, deepest first; returns failures."""
    problems = []
    prefix = str(root).rstrip("/")
    mounts = []
    for line in Path("/proc/mounts").read_text().splitlines():
        target = line.split()[1].replace("\\040", " ")
        if target == prefix or target.startswith(prefix + "/"):
            mounts.append(target)
    for target in sorted(set(mounts), key=len, reverse=True):
        result = run("umount", target, check=False)
        if result.returncode != 0:
            result = run("umount", "-l", target, check=False)
            if result.returncode != 0:
                problems.append(f"umount {target}: {result.stderr.strip()}")
    return problems
