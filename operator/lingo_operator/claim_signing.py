"""The operator's claim-signing key (what it signs: lingo_api/claim_grant.py).

One Ed25519 key per installation, in the Secret `lingo-claim-signing-key` of the operator's own
namespace ($POD_NAMESPACE; the release namespace under the chart), where neither the facade nor
the workers have rights. Made by the first replica that starts; every replica reads the same one,
so a leader hand-over leaves the pools' idle workers (which carry the public half) claimable. A
key that changes (the Secret deleted) changes the pools' template, and their idle workers are
replaced.
"""

from __future__ import annotations

import base64
import logging

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, load_pem_private_key
from kubernetes_asyncio.client import CoreV1Api

from lingo_api import resources as r

from .kube import create_or_get

log = logging.getLogger("lingo.operator")

SECRET_NAME = "lingo-claim-signing-key"
SECRET_KEY = "ed25519.pem"


def _manifest(namespace: str, key: Ed25519PrivateKey) -> dict:
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": SECRET_NAME, "namespace": namespace,
                         "labels": {r.LABEL_MANAGED_BY: r.MANAGED_BY}},
            "data": {SECRET_KEY: base64.b64encode(pem).decode()}}


async def load_signing_key(core: CoreV1Api, namespace: str) -> Ed25519PrivateKey:
    secret, made = await create_or_get(lambda ns, b: core.create_namespaced_secret(ns, b),
                                       lambda n, ns: core.read_namespaced_secret(n, ns),
                                       namespace, SECRET_NAME, _manifest(namespace, Ed25519PrivateKey.generate()))
    key = load_pem_private_key(base64.b64decode(secret.data[SECRET_KEY]), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise RuntimeError(f"Secret {namespace}/{SECRET_NAME} holds no Ed25519 key")
    log.info("%s the claim-signing key (Secret %s/%s)", "made" if made else "read", namespace, SECRET_NAME)
    return key
