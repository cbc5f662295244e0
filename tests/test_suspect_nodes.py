"""Suspect nodes (operator/lingo_operator/suspect_nodes.py): how long a node stays suspect, and the
preference that keeps new workers off it without making a one-node cluster unschedulable."""

from __future__ import annotations

from datetime import datetime, timezone

from lingo_operator.suspect_nodes import HOSTNAME_LABEL, SUSPECT_SECONDS, SuspectNodes, pod_node, prefer_other_nodes


def test_a_node_is_suspect_for_a_while_and_marking_it_again_extends_it():
    now = [100.0]
    nodes = SuspectNodes(clock=lambda: now[0])
    assert nodes.mark("node-a") is True
    assert nodes.mark("node-a") is False  # already suspect: nothing new to tell the pools
    assert not nodes.mark(None) and not nodes.mark("")  # a pod not scheduled yet names no node
    now[0] += SUSPECT_SECONDS - 1
    nodes.mark("node-b")
    assert nodes.current() == ["node-a", "node-b"]
    now[0] += 1
    assert nodes.current() == ["node-b"]
    now[0] += SUSPECT_SECONDS
    assert nodes.current() == []


def test_new_workers_prefer_other_nodes_and_keep_their_own_affinity():
    spec = {"containers": [], "affinity": {"podAntiAffinity": {"x": 1}, "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []},
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 5, "preference": {}}]}}}
    assert prefer_other_nodes(spec, []) is spec
    changed = prefer_other_nodes(spec, ["node-b", "node-a"])
    node_affinity = changed["affinity"]["nodeAffinity"]
    assert changed["affinity"]["podAntiAffinity"] == {"x": 1}
    assert "requiredDuringSchedulingIgnoredDuringExecution" in node_affinity  # still required: only a preference added
    assert node_affinity["preferredDuringSchedulingIgnoredDuringExecution"] == [
        {"weight": 5, "preference": {}},
        {"weight": 100, "preference": {"matchExpressions": [
            {"key": HOSTNAME_LABEL, "operator": "NotIn", "values": ["node-a", "node-b"]}]}}]
    assert len(spec["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]) == 1  # not mutated
    assert pod_node({"spec": {"nodeName": "node-a"}}) == "node-a" and pod_node({}) is None


def test_only_workers_that_were_on_a_node_before_it_became_suspect_are_stale():
    """On a one-node cluster new workers can only go to the suspect node: those started after the
    mark count again, or a pool would start new ones for as long as the node is suspect."""
    now, wall = [100.0], [1_800_000_000.0]
    nodes = SuspectNodes(clock=lambda: now[0], wall_clock=lambda: wall[0])

    def pod(node: str, created: float) -> dict:
        stamp = datetime.fromtimestamp(created, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"metadata": {"creationTimestamp": stamp}, "spec": {"nodeName": node}}

    nodes.mark("node-a")
    assert nodes.stale(pod("node-a", wall[0] - 5))
    assert not nodes.stale(pod("node-a", wall[0] + 5))  # started there knowingly, after the mark
    assert not nodes.stale(pod("node-b", wall[0] - 5))
    marked = wall[0]
    wall[0] += 30
    nodes.mark("node-a")  # again while suspect: workers started there since the first mark still count
    assert not nodes.stale(pod("node-a", marked + 5))
    now[0] += SUSPECT_SECONDS
    assert not nodes.stale(pod("node-a", wall[0] - 5))  # no longer suspect
