"""A stand-in kubelet (and scheduler) that runs translation-worker pods as local processes.

The loopback control plane has no container runtime. This registers a Node, binds the
operator's worker pods to it, runs each container's command with the pod's env resolved
(values, Secret keys, pod fields), gives every pod its own 127.x address (from a block no other
running kubelet uses) as its pod IP, probes readiness over HTTP like a kubelet, restarts crashed
containers with back-off (restartPolicy Always; with Never the pod ends Succeeded or Failed), and
finalizes deletions. Pod status is written through the real API, so the operator sees exactly what
it would on a cluster.

Not emulated: images (the command runs from this machine's PATH), resource limits,
securityContext, volumes other than emptyDir.

Run: python -m lingo_loopback.kubelet --kubeconfig PATH [--log-dir DIR] [--pods-dir DIR] [--gpus N] [--namespace GLOB]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import fcntl
import fnmatch
import itertools
import logging
import os
import shutil
import signal
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import aiohttp
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client import ApiException

from lingo_api import resources as r
from lingo_api.kube_time import now_time

from .binaries import cache_dir

log = logging.getLogger("lingo.loopback.kubelet")
NODE_NAME = "loopback-node"
POD_SELECTOR = f"{r.LABEL_MANAGED_BY}={r.MANAGED_BY},{r.LABEL_COMPONENT}={r.WORKER_COMPONENT}"


@dataclass
class RunningPod:
    namespace: str
    name: str
    uid: str
    ip: str
    spec: dict
    process: asyncio.subprocess.Process | None = None
    ready: bool = False
    restarts: int = 0
    stopping: bool = False
    tasks: list[asyncio.Task] = field(default_factory=list)
    workdir: Path | None = None


# Each kubelet gives out pod addresses from a /16 of its own, 127.<block>.0.0, held with a lock
# file for as long as the process lives: stacks running side by side never hand out the same
# address (one stack's worker answered another's claim when they all counted from 127.0.100.1).
ADDRESS_BLOCKS = range(100, 200)


def claim_address_block() -> tuple[int, IO]:
    """A free block and the open lock file that holds it (released when closed or at exit)."""
    folder = cache_dir() / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    for block in ADDRESS_BLOCKS:
        lock = (folder / f"loopback-addresses-{block}.lock").open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return block, lock
        except BlockingIOError:
            lock.close()
    raise RuntimeError(f"every loopback address block ({ADDRESS_BLOCKS.start}-{ADDRESS_BLOCKS.stop - 1}) is in use")


class LoopbackKubelet:
    def __init__(self, api: client.ApiClient, log_dir: Path, gpus: int = 0, namespaces: list[str] | None = None,
                 pods_dir: Path | None = None):
        self.api = api
        # Each pod's folder (its HOME and TMPDIR) is made here; the stack puts it inside its own
        # work folder, so whatever a pod leaves goes with the stack, even one it could not stop.
        self.pods_dir = pods_dir
        self.core = client.CoreV1Api(api)
        self.namespaces = namespaces or ["*"]
        self.log_dir = log_dir
        self.gpus = gpus
        self.pods: dict[str, RunningPod] = {}
        block, self._address_lock = claim_address_block()
        self._addresses = (f"127.{block}.{i // 250}.{1 + i % 250}" for i in itertools.count())

    async def register_node(self) -> None:
        capacity = {"cpu": str(os.cpu_count() or 2), "memory": "16Gi", "pods": "110"}
        if self.gpus:
            capacity["nvidia.com/gpu"] = str(self.gpus)
        node = {"metadata": {"name": NODE_NAME, "labels": {"kubernetes.io/hostname": NODE_NAME}},
                "status": {"capacity": capacity, "allocatable": capacity}}
        try:
            await self.core.create_node(node)
        except ApiException as exc:
            if exc.status != 409:
                raise

    async def run(self) -> None:
        await self.register_node()
        while True:
            stream = watch.Watch()
            try:
                async with stream.stream(self.core.list_pod_for_all_namespaces, label_selector=POD_SELECTOR,
                                         timeout_seconds=300) as events:
                    async for event in events:
                        await self._on_event(event["type"], event["object"])
            except (ApiException, aiohttp.ClientError, asyncio.TimeoutError) as exc:
                detail = f"{exc.status} {exc.reason}" if isinstance(exc, ApiException) else type(exc).__name__
                log.warning("pod watch interrupted (%s); resuming", detail)
                await asyncio.sleep(1)
            finally:
                stream.stop()

    async def _on_event(self, kind: str, pod: client.V1Pod) -> None:
        if not any(fnmatch.fnmatch(pod.metadata.namespace, pattern) for pattern in self.namespaces):
            return
        key = f"{pod.metadata.namespace}/{pod.metadata.name}"
        running = self.pods.get(key)
        if running and running.uid != pod.metadata.uid:
            await self._stop(running)
            running = None
        if kind == "DELETED" or pod.metadata.deletion_timestamp:
            if running:
                await self._stop(running)
            if kind != "DELETED" and pod.spec.node_name == NODE_NAME:
                await self._finalize_deletion(pod)
            return
        if running is None and pod.spec.node_name in (None, NODE_NAME):
            await self._admit(pod, key)

    async def _admit(self, pod: client.V1Pod, key: str) -> None:
        raw = self.api.sanitize_for_serialization(pod)
        wanted_gpus = sum(int(((c.get("resources") or {}).get("limits") or {}).get("nvidia.com/gpu", 0))
                          for c in raw["spec"]["containers"])
        if wanted_gpus > self.gpus:
            await self._patch_status(pod.metadata.namespace, pod.metadata.name, {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                "message": f"0/1 nodes available: insufficient nvidia.com/gpu ({self.gpus} on "
                                           f"{NODE_NAME}, {wanted_gpus} requested)", "lastTransitionTime": now_time()}],
            })
            return
        if not pod.spec.node_name:
            try:
                await self.core.create_namespaced_pod_binding(
                    pod.metadata.name, pod.metadata.namespace,
                    {"metadata": {"name": pod.metadata.name},
                     "target": {"apiVersion": "v1", "kind": "Node", "name": NODE_NAME}},
                    _preload_content=False,
                )
            except ApiException as exc:
                if exc.status != 409:
                    raise
        running = RunningPod(pod.metadata.namespace, pod.metadata.name, pod.metadata.uid, next(self._addresses),
                             raw["spec"], workdir=Path(tempfile.mkdtemp(prefix="lingo-pod-", dir=self.pods_dir)))
        self.pods[key] = running
        running.tasks.append(asyncio.create_task(self._supervise(running)))
        running.tasks.append(asyncio.create_task(self._probe(running)))

    async def _env(self, running: RunningPod, container: dict) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(running.workdir),
               "TMPDIR": str(running.workdir), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        fields = {"status.podIP": running.ip, "metadata.name": running.name, "metadata.namespace": running.namespace,
                  "metadata.uid": running.uid,
                  "spec.nodeName": NODE_NAME}
        secrets: dict[str, dict] = {}  # each Secret read once, however many keys the env takes from it
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = item["value"]
                continue
            source = item.get("valueFrom") or {}
            if "fieldRef" in source:
                env[item["name"]] = fields.get(source["fieldRef"]["fieldPath"], "")
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                if ref["name"] not in secrets:
                    secrets[ref["name"]] = (await self.core.read_namespaced_secret(ref["name"], running.namespace)).data
                env[item["name"]] = base64.b64decode(secrets[ref["name"]][ref["key"]]).decode()
        return env

    async def _supervise(self, running: RunningPod) -> None:
        container = running.spec["containers"][0]
        backoff = 1.0
        while not running.stopping:
            try:
                env = await self._env(running, container)
            except ApiException as exc:
                await self._container_waiting(running, "CreateContainerConfigError", f"env: {exc.reason}")
                await asyncio.sleep(2)
                continue
            argv = [shutil.which(container["command"][0]) or container["command"][0],
                    *container["command"][1:], *(container.get("args") or [])]
            log_path = self.log_dir / f"pod-{running.namespace}-{running.name}.log"
            with log_path.open("ab") as out:
                running.process = await asyncio.create_subprocess_exec(
                    *argv, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT, cwd=running.workdir,
                    start_new_session=True)
            await self._patch_status(running.namespace, running.name, self._status(running, started=True))
            code = await running.process.wait()
            running.ready = False
            if running.stopping:
                return
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            policy = running.spec.get("restartPolicy", "Always")
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                status = self._status(running, started=False)
                status["phase"] = "Succeeded" if code == 0 else "Failed"
                status["containerStatuses"][0]["state"] = {"terminated": {
                    "exitCode": code, "reason": "Completed" if code == 0 else "Error",
                    "message": " | ".join(tail)[-400:]}}
                await self._patch_status(running.namespace, running.name, status)
                return
            running.restarts += 1
            await self._container_waiting(running, "CrashLoopBackOff",
                                          f"exit code {code}: " + " | ".join(tail)[-400:])
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30)

    async def _container_waiting(self, running: RunningPod, reason: str, message: str) -> None:
        status = self._status(running, started=False)
        status["containerStatuses"][0]["state"] = {"waiting": {"reason": reason, "message": message}}
        await self._patch_status(running.namespace, running.name, status)

    async def _probe(self, running: RunningPod) -> None:
        probe = running.spec["containers"][0].get("readinessProbe", {}).get("httpGet")
        port = next((p["containerPort"] for p in running.spec["containers"][0].get("ports", [])), 8080)
        path = probe["path"] if probe else "/"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while not running.stopping:
                ready = False
                if running.process and running.process.returncode is None:
                    try:
                        async with http.get(f"http://{running.ip}:{port}{path}") as response:
                            ready = response.status == 200
                    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                        ready = False
                if ready != running.ready:
                    running.ready = ready
                    await self._patch_status(running.namespace, running.name, self._status(running, started=True))
                await asyncio.sleep(0.5)

    def _status(self, running: RunningPod, started: bool) -> dict:
        ready = "True" if running.ready else "False"
        now = now_time()
        state = {"running": {"startedAt": now}} if started else {"waiting": {"reason": "ContainerCreating"}}
        return {
            "phase": "Running" if started else "Pending",
            "podIP": running.ip,
            "podIPs": [{"ip": running.ip}],
            "hostIP": "127.0.0.1",
            "startTime": now,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": ready, "lastTransitionTime": now},
                {"type": "Ready", "status": ready, "lastTransitionTime": now},
            ],
            "containerStatuses": [{
                "name": running.spec["containers"][0]["name"], "image": running.spec["containers"][0]["image"],
                "imageID": "", "ready": running.ready, "restartCount": running.restarts, "started": started,
                "state": state,
            }],
        }

    async def _patch_status(self, namespace: str, name: str, status: dict) -> None:
        try:
            await self.core.patch_namespaced_pod_status(name, namespace, {"status": status})
        except ApiException as exc:
            if exc.status != 404:
                log.warning("status update of %s/%s failed: %s", namespace, name, exc.reason)

    async def _stop(self, running: RunningPod) -> None:
        running.stopping = True
        self.pods.pop(f"{running.namespace}/{running.name}", None)
        for task in running.tasks:
            task.cancel()
        process = running.process
        if process and process.returncode is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                await asyncio.wait_for(process.wait(), 5)
            except (ProcessLookupError, asyncio.TimeoutError):
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if running.workdir:
            shutil.rmtree(running.workdir, ignore_errors=True)

    async def _finalize_deletion(self, pod: client.V1Pod) -> None:
        try:
            await self.core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def shutdown(self) -> None:
        # All at once: one at a time, a few slow-to-stop workers outlast this process's own grace
        # period, and what is left when it is killed keeps running as orphans.
        await asyncio.gather(*(self._stop(running) for running in list(self.pods.values())))


async def amain(kubeconfig: str, log_dir: Path, gpus: int, namespaces: list[str], pods_dir: Path | None) -> None:
    configuration = client.Configuration()
    await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    async with client.ApiClient(configuration) as api:
        kubelet = LoopbackKubelet(api, log_dir, gpus, namespaces, pods_dir)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        runner = asyncio.create_task(kubelet.run())
        await stop.wait()
        runner.cancel()
        await kubelet.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m lingo_loopback.kubelet", description=__doc__.split("\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--log-dir", default=tempfile.gettempdir())
    parser.add_argument("--pods-dir", type=Path, default=None, help="where pods' folders are made (default: TMPDIR)")
    parser.add_argument("--gpus", type=int, default=0)
    parser.add_argument("--namespace", action="append", default=[], help="namespace glob to run pods of (repeatable)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.pods_dir:
        args.pods_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(amain(args.kubeconfig, Path(args.log_dir), args.gpus, args.namespace, args.pods_dir))


if __name__ == "__main__":
    main()
