"""The end-to-end check that hack/kind-e2e.sh runs on a kind cluster, here on the loopback stack."""

import pytest

from lingo_loopback.e2e_check import run_check

from .helpers import ACME


@pytest.mark.slow
@pytest.mark.usefixtures("operator", "kubelet")
async def test_e2e_check_passes_on_loopback(facade):
    report = await run_check(facade, *ACME, worker_timeout=90)
    assert report["publisher_joined"] and report["control_api"] == "running" and report["deleted"]
