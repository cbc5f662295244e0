"""Shared plumbing for the benchmarks: the loopback stack, percentiles, result files."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from lingo_loopback.cluster import LoopbackCluster
from lingo_loopback.processes import ManagedProcess, free_port
from lingo_loopback.stack import create_namespace, start_facade, start_kubelet, start_operator

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@contextmanager
def loopback_stack(facade_namespace: str, with_kubelet: bool):
    """Yields (cluster, facade_url); everything is stopped and removed afterwards."""
    cluster = LoopbackCluster().start()
    port = free_port()
    facade_url = f"http://127.0.0.1:{port}"
    processes: list[ManagedProcess] = []
    try:
        if with_kubelet:
            processes.append(start_kubelet(cluster))
        processes.append(start_operator(cluster, facade_url))
        create_namespace(cluster, facade_namespace)
        processes.append(start_facade(cluster, port, facade_namespace))
        yield cluster, facade_url
    except BaseException:
        # The stack's logs (workers' included) go with the cluster: kept for the post-mortem.
        kept = Path(tempfile.mkdtemp(prefix="lingo-bench-logs-"))
        shutil.copytree(cluster.log_dir, kept, dirs_exist_ok=True)
        print(f"the run failed; the stack's logs are in {kept}", flush=True)
        raise
    finally:
        for process in reversed(processes):
            process.stop()
        cluster.cleanup()


def process_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds used so far), from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit():
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                table[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
        except OSError:
            continue
    return table


def worker_pids(env_marker: bytes) -> list[int]:
    """The loopback kubelet's worker processes whose environment holds `env_marker`
    (b"LINGO_POOL=": idle pooled workers; b"LINGO_ROOM=": sessions' own workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and env_marker in (entry / "environ").read_bytes() \
                    and b"lingo-worker" in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def process_tree(pid: int, table: dict) -> list[int]:
    """A worker and its engine processes (Apertium, Festival)."""
    children = [p for p, (parent, _) in table.items() if parent == pid]
    return [pid, *(q for child in children for q in process_tree(child, table))]


def tree_cpu_seconds(pid: int, table: dict) -> float:
    return sum(table[p][1] for p in process_tree(pid, table))


def rss_mb(pid: int) -> float:
    """One process's resident memory, from /proc (OSError or StopIteration if it is gone)."""
    return next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("VmRSS:")) / 1024


def tree_rss_mb(pid: int) -> float:
    total = 0.0
    for p in process_tree(pid, process_table()):
        try:
            total += rss_mb(p)
        except (OSError, StopIteration):
            continue
    return total


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return round(ordered[index], 1)


def summary(values: list[float]) -> dict:
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
            "p99": percentile(values, 99), "max": round(max(values), 1) if values else float("nan")}


# Vector extensions CTranslate2's int8 kernels use where present: the same 2 cores decode Whisper
# markedly slower without AVX-512 (an AMD EPYC with AVX2 only took a third more CPU per talk).
CPU_FEATURES = ("avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "avx2")


def machine() -> dict:
    cpu = {"model": "unknown", "features": []}
    try:
        info = Path("/proc/cpuinfo").read_text()
        cpu["model"] = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                            "unknown")
        flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
        cpu["features"] = [feature for feature in CPU_FEATURES if feature in flags]
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "platform": platform.platform()}


def provenance() -> dict:
    """When, where and from which code a result was measured: every result file says it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=RESULTS_DIR.parent, capture_output=True, text=True).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += " with uncommitted changes"
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(), "commit": commit}


def provenance_line(results: dict) -> str:
    machine_ = results["machine"]
    cpu = machine_.get("cpu")  # not recorded before 2026-12-07
    model = f"{cpu['model']}, {'/'.join(cpu['features']) or 'no AVX2'}; " if cpu else ""
    return (f"Measured {results['date']} on {machine_['cpus']} CPUs ({model}{machine_['platform']}), "
            f"commit {results.get('commit', 'not recorded')}.")


def write_results(name: str, results: dict, markdown: str, histogram: dict[str, list[float]], xlabel: str) -> None:
    results = {**results, **provenance()}
    markdown = markdown.rstrip("\n") + "\n\n" + provenance_line(results) + "\n"
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS_DIR / f"{name}.md").write_text(markdown)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5))
    for label, values in histogram.items():
        if values:
            axis.hist(values, bins=min(40, max(5, len(values) // 4)), alpha=0.6, label=label)
    axis.set_xlabel(xlabel)
    axis.set_ylabel("count")
    axis.set_title(name.replace("_", " "))
    axis.legend()
    figure.tight_layout()
    figure.savefig(RESULTS_DIR / f"{name}.png", dpi=110)
    print(markdown)
    print(f"results in {RESULTS_DIR}/{name}.{{json,md,png}}")
