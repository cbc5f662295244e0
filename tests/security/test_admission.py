"""What the operator could not provision is refused at admission, with the reason."""

from __future__ import annotations

import pytest
from kubernetes_asyncio.client import ApiException

from lingo_api import resources as r

from ..helpers import create_session, delete_and_wait, wait_for_phase


@pytest.mark.parametrize("length", [64, 120, 253])
async def test_a_session_name_longer_than_a_label_value_is_refused(kube, namespace, length):
    with pytest.raises(ApiException) as refused:
        await create_session(kube, namespace, "s" * length)
    assert refused.value.status == 422
    assert "at most 63 characters" in refused.value.body


async def test_a_63_character_name_is_provisioned(kube, namespace, operator):
    name = "s" * 63
    await create_session(kube, namespace, name)
    await wait_for_phase(kube, namespace, name, r.Phase.READY)
    await delete_and_wait(kube, namespace, name)
