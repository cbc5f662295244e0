"""Suspect nodes (operator/lingo_operator/suspect_nodes.py): how long a node stays suspect, and the
preference that keeps new workers off it without making a one-node cluster unschedulable."""

from __future__ import annotations

from lingo_operator.suspect_nodes import HOSTNAME_LABEL, SUSPECT_SECONDS, SuspectNodes, pod_node, prefer_other_nodes


def test_a_node_is_suspect_for_a_while_and_marking_it_again_extends_it():
    now = [100.0]
    nodes = SuspectNodes(clock=lambda: now[0])
    assert nodes.mark("node-a") is True
    assert nodes.mark("node-a") is False  # already suspect: nothing new to tell the pools
    assert not nodes.mark(None) and not nodes.mark("")  # a pod not scheduled yet names no node
    now[0] += SUSPECT_SECONDS - 1
    nodes.mark("node-b")
    assert nodes.current() == ["node-a", "node-b"] and "node-a" in nodes
    now[0] += 1
    assert nodes.current() == ["node-b"] and "node-a" not in nodes
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
