"""Shared plumbing for the benchmarks: the loopback stack, percentiles, result files."""

from __future__ import annotations

import json
import os
import platform
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
    finally:
        for process in reversed(processes):
            process.stop()
        cluster.cleanup()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return round(ordered[index], 1)


def summary(values: list[float]) -> dict:
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
            "p99": percentile(values, 99), "max": round(max(values), 1) if values else float("nan")}


def machine() -> dict:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def write_results(name: str, results: dict, markdown: str, histogram: dict[str, list[float]], xlabel: str) -> None:
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
