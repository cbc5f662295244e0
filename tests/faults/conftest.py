"""A private loopback stack per fault module: these tests stop LiveKit or the API server, and
kill the operator, which must not disturb the rest of the suite."""

from __future__ import annotations

import secrets
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from kubernetes_asyncio import client, config

from lingo_loopback.cluster import LoopbackCluster
from lingo_loopback.processes import ManagedProcess, free_port
from lingo_loopback.stack import create_namespace, register_client, start_facade, start_kubelet, start_operator


@dataclass
class Stack:
    cluster: LoopbackCluster
    operator: ManagedProcess
    facade: ManagedProcess
    facade_url: str
    namespace: str
    client: tuple[str, str]
    kube: client.ApiClient

    def start_operator(self, name: str = "operator", extra_env: dict | None = None) -> ManagedProcess:
        self.operator = start_operator(self.cluster, self.facade_url, name=name, extra_env=extra_env)
        return self.operator


async def kube_api(cluster: LoopbackCluster) -> client.ApiClient:
    """An API client for the loopback cluster's admin kubeconfig (the caller closes it)."""
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=configuration)
    return client.ApiClient(configuration)


@asynccontextmanager
async def private_cluster(prefix: str):
    """A loopback cluster of a module's own, a namespace in it and an admin API client; processes
    put in the yielded list are stopped (last first) before the cluster goes."""
    cluster = LoopbackCluster().start()
    processes: list[ManagedProcess] = []
    api = None
    try:
        namespace = f"{prefix}-{secrets.token_hex(2)}"
        create_namespace(cluster, namespace)
        api = await kube_api(cluster)
        yield cluster, namespace, api, processes
    finally:
        if api:
            await api.close()
        for process in reversed(processes):
            process.stop()
        cluster.cleanup()


@pytest.fixture(scope="module")
async def stack():
    async with private_cluster("faults") as (cluster, namespace, api, processes):
        port = free_port()
        facade_url = f"http://127.0.0.1:{port}"
        processes.append(start_kubelet(cluster))
        operator = start_operator(cluster, facade_url)
        processes.append(operator)
        facade = start_facade(cluster, port, namespace)
        processes.append(facade)
        client_id = f"faults-{secrets.token_hex(2)}"
        secret = register_client(cluster, namespace, client_id, max_sessions=20)
        stack = Stack(cluster, operator, facade, facade_url, namespace, (client_id, secret), api)
        yield stack
        processes.append(stack.operator)
