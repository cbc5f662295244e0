"""API keys (webhook/lingo_webhook/api_keys.py): made and revoked with the command line against
the real API server, accepted by the facade as `Authorization: Bearer` and refused once revoked."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import aiohttp
import pytest

from lingo_webhook.api_keys import key_id_of

from .helpers import eventually, facade_knows, register_client

pytestmark = pytest.mark.usefixtures("facade")


def api_keys(cluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lingo_webhook.api_keys", *args], capture_output=True, text=True,
                          timeout=60, check=True, env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)})


async def test_a_key_works_until_it_is_revoked(cluster, kube, facade_ns, facade):
    client = (f"keys-{secrets.token_hex(3)}", secrets.token_urlsafe(24))
    await register_client(kube, facade_ns, client, max_sessions=1)
    await facade_knows(facade, client)
    made = api_keys(cluster, "create", client[0], "--name", "ci", "--namespace", facade_ns)
    key = made.stdout.strip()
    key_id = key_id_of(key)
    assert key_id and key not in made.stderr, "the key is printed once, on stdout"

    async with aiohttp.ClientSession(base_url=facade) as http:
        async def answers(key: str, status: int) -> bool:
            async with http.get("/session-storage/sessions", headers={"Authorization": f"Bearer {key}"}) as response:
                return response.status == status

        await eventually(lambda: answers(key, 200), timeout=20, what="the new key to be accepted")
        async with http.get("/session-storage/sessions", headers={"Authorization": f"Bearer {key[:-2]}xx"}) as response:
            body = await response.json()
            assert response.status == 401 and body["error"]["code"] == "unauthorized", body

        api_keys(cluster, "revoke", client[0], key_id, "--namespace", facade_ns)
        await eventually(lambda: answers(key, 401), timeout=20, what="the revoked key to be refused")

    listed = [json.loads(line) for line in api_keys(cluster, "list", client[0], "--namespace", facade_ns)
              .stdout.splitlines()]
    assert listed == [{"id": key_id, "name": "ci", "revoked": True}], listed  # never the hash
