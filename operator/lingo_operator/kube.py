"""Create-or-adopt helpers for the objects a session owns."""

from __future__ import annotations

from kubernetes_asyncio.client import ApiException


async def create_or_get(create, read, namespace: str, name: str, body: dict):
    """Create the object, or read the existing one: a retried reconcile must not fail on 409."""
    try:
        return await create(namespace, body), True
    except ApiException as exc:
        if exc.status != 409:
            raise
    return await read(name, namespace), False


async def delete_ignoring_missing(delete, name: str, namespace: str) -> None:
    try:
        await delete(name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
