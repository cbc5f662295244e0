"""What marks an object as a session's (or a pool's) own: the controller owner reference and
common labels."""

from __future__ import annotations

from lingo_api import resources as r


def owner_reference(owner: dict, kind: str = r.SESSION_KIND) -> dict:
    meta = owner["metadata"]
    return {
        "apiVersion": r.API_VERSION,
        "kind": kind,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def session_labels(session: dict, component: str) -> dict[str, str]:
    labels = {
        r.LABEL_SESSION: session["metadata"]["name"],
        r.LABEL_MANAGED_BY: r.MANAGED_BY,
        r.LABEL_COMPONENT: component,
    }
    client = session["metadata"].get("labels", {}).get(r.LABEL_CLIENT)
    if client:
        labels[r.LABEL_CLIENT] = client
    return labels
