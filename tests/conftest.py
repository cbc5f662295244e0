"""Session-wide fixtures: a real control plane, livekit-server and operator on loopback."""

from __future__ import annotations

import os
import secrets
import sys

import aiohttp
import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client import CoreV1Api
from lingo_api.livekit_sdk import stop_livekit_sdk

from lingo_loopback.binaries import BinaryBuildError
from lingo_loopback.cluster import LoopbackCluster
from lingo_loopback.stack import start_facade, start_kubelet, start_operator

from .helpers import ACME, OTHER, register_client

# The operator under test watches namespaces matching this glob; tests that run their own
# operator (e.g. with LiveKit down) use namespaces outside it.
TEST_NAMESPACE_PREFIX = "lingo-t-"
# Worker pods really run (loopback kubelet) only in these namespaces.
WORKER_NAMESPACE_PREFIX = f"{TEST_NAMESPACE_PREFIX}w-"

# What the session started on loopback (the cluster, then operator, kubelet and facade), so that
# it can all be stopped before the real-node tests (see pytest_runtest_teardown).
_loopback: list = []
_loopback_stopped = False


def stop_loopback() -> None:
    global _loopback_stopped
    _loopback_stopped = True
    for started in reversed(_loopback):
        started.stop()  # each stop() is safe to call twice


@pytest.fixture(scope="session")
def cluster():
    instance = LoopbackCluster()
    _loopback.append(instance)
    try:
        instance.start()
    except BinaryBuildError as exc:
        pytest.fail(f"cannot build the loopback servers: {exc}", pytrace=False)
    yield instance
    stop_loopback()
    if os.environ.get("LINGO_KEEP_LOGS"):
        print(f"\nloopback logs kept in {instance.log_dir}", file=sys.stderr)
    else:
        instance.cleanup()


@pytest.fixture(scope="session")
def facade_url() -> str:
    """Where the facade will listen; chosen up front because the operator bakes it into control_url."""
    from lingo_loopback.processes import free_port

    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="session")
def operator(cluster, facade_url):
    process = start_operator(cluster, facade_url, namespaces=[f"{TEST_NAMESPACE_PREFIX}*"])
    _loopback.append(process)
    yield process
    process.stop()


@pytest.fixture(scope="session")
async def kube(cluster):
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=configuration)
    api = client.ApiClient(configuration)
    yield api
    await api.close()


@pytest.fixture
async def namespace(kube):
    name = f"{TEST_NAMESPACE_PREFIX}{secrets.token_hex(3)}"
    core = client.CoreV1Api(kube)
    await core.create_namespace({"metadata": {"name": name}})
    yield name
    await core.delete_namespace(name)


@pytest.fixture
async def worker_namespace(kube):
    """A fresh namespace whose sessions get real workers (the loopback kubelet runs them)."""
    name = f"{WORKER_NAMESPACE_PREFIX}{secrets.token_hex(3)}"
    await CoreV1Api(kube).create_namespace({"metadata": {"name": name}})
    yield name
    await CoreV1Api(kube).delete_namespace(name)


@pytest.fixture(scope="session")
def kubelet(cluster):
    process = start_kubelet(cluster, namespaces=[f"{WORKER_NAMESPACE_PREFIX}*"])
    _loopback.append(process)
    yield process
    process.stop()


@pytest.fixture(scope="session")
def livekit(cluster):
    return cluster.livekit


@pytest.fixture(scope="session")
async def facade_ns(kube):
    # Under the kubelet's glob: sessions made through the facade get a running worker.
    name = f"{WORKER_NAMESPACE_PREFIX}facade-{secrets.token_hex(2)}"
    await CoreV1Api(kube).create_namespace({"metadata": {"name": name}})
    await register_client(kube, name, ACME, max_sessions=6)
    await register_client(kube, name, OTHER, max_sessions=1)
    yield name
    if not _loopback_stopped:
        await CoreV1Api(kube).delete_namespace(name)


@pytest.fixture(scope="session")
def facade_process(cluster, operator, kubelet, facade_url, facade_ns):
    port = int(facade_url.rsplit(":", 1)[1])
    process = start_facade(cluster, port, facade_ns, control_namespaces=[f"{WORKER_NAMESPACE_PREFIX}*"])
    _loopback.append(process)
    yield process
    process.stop()


@pytest.fixture(scope="session")
def facade(facade_process, facade_url):
    return facade_url


@pytest.fixture
async def http(facade):
    async with aiohttp.ClientSession(base_url=facade) as session:
        yield session


def pytest_collection_modifyitems(config, items):
    """Speech tests late and the real node last: slowest last, so a failure elsewhere shows sooner."""
    items.sort(key=lambda item: 2 if item.get_closest_marker("node") else 1 if item.get_closest_marker("slow") else 0)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    """The loopback servers stop before the first real-node test: left running (with their pooled
    workers), they took a share of the CPUs from the real nodes' timing-sensitive tests."""
    if nextitem is not None and nextitem.get_closest_marker("node") and not item.get_closest_marker("node"):
        stop_loopback()


# Where every test must run (.ci/run sets it), a test that skips itself (the real node without
# root, say) fails the run: a green CI never means "some of it did not run".
REQUIRE_ALL = "LINGO_REQUIRE_ALL_TESTS"
_skipped: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped:
        _skipped.append(f"{report.nodeid}: {report.longrepr[2] if isinstance(report.longrepr, tuple) else ''}")


def pytest_terminal_summary(terminalreporter):
    if os.environ.get(REQUIRE_ALL) and _skipped:
        terminalreporter.write_line(f"{len(_skipped)} test(s) skipped where every test must run ({REQUIRE_ALL}):",
                                    red=True)
        for line in _skipped:
            terminalreporter.write_line(f"  {line}", red=True)


def pytest_sessionfinish(session, exitstatus):
    """Fail a run that skipped tests where all must run; then stop the LiveKit SDK's runtime while
    the interpreter is whole (lingo_api.livekit_sdk says why)."""
    if os.environ.get(REQUIRE_ALL) and _skipped and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    stop_livekit_sdk()
