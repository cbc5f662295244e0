"""One pass over a WorkerPool (operator/lingo_operator/worker_pool.py plan_pool), without servers."""

from __future__ import annotations

from pathlib import Path

import yaml

from lingo_api import resources as r
from lingo_operator.worker_pool import abandoned_claims, plan_pool

TEMPLATE = "t-now"
ROOT = Path(__file__).resolve().parent.parent


def spec(**fields):
    return r.pool_spec({"spec": fields})


def pod(name, state=r.POOL_STATE_IDLE, ready=True, template=TEMPLATE, phase="Running", created="2026-12-06T10:00:00Z",
        owned=True, deleting=False):
    meta = {"name": name, "creationTimestamp": created,
            "labels": {r.LABEL_POOL: "default", r.LABEL_POOL_STATE: state, r.LABEL_POOL_TEMPLATE: template},
            "ownerReferences": [{"kind": r.POOL_KIND, "name": "default"}] if owned else []}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-06T10:05:00Z"
    return {"metadata": meta, "status": {"phase": phase,
                                         "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def names(pods):
    return sorted(p["metadata"]["name"] for p in pods)


def test_an_empty_pool_starts_min_ready_workers():
    plan = plan_pool([], spec(minReady=2, maxReady=5), TEMPLATE, [])
    assert plan.doomed == [] and plan.deficit == 2
    assert (plan.counts.ready, plan.counts.starting, plan.counts.claimed) == (0, 2, 0)


def test_ended_workers_and_workers_of_an_older_template_are_replaced():
    pods = [pod("ok"), pod("old", template="t-before"), pod("ended", phase="Failed"), pod("gone", deleting=True)]
    plan = plan_pool(pods, spec(minReady=3), TEMPLATE, [])
    assert names(plan.doomed) == ["ended", "old"]
    assert plan.deficit == 2 and plan.counts.ready == 1


def test_beyond_max_ready_starting_workers_go_first_then_the_youngest():
    pods = [pod("a", created="2026-12-06T10:00:00Z"), pod("b", created="2026-12-06T10:01:00Z"),
            pod("c", created="2026-12-06T10:02:00Z"), pod("s", ready=False)]
    plan = plan_pool(pods, spec(minReady=1, maxReady=2), TEMPLATE, [])
    assert names(plan.doomed) == ["c", "s"] and plan.deficit == 0
    assert (plan.counts.ready, plan.counts.starting) == (2, 0)


def test_a_worker_being_handed_over_holds_its_place_until_it_is_the_sessions():
    pods = [pod("idle"), pod("handing", state=r.POOL_STATE_CLAIMED)]
    plan = plan_pool(pods, spec(minReady=2), TEMPLATE, [])
    assert plan.deficit == 0 and plan.counts.claimed == 1
    handed = [pod("idle"), pod("served", state=r.POOL_STATE_CLAIMED, owned=False)]  # its session owns it now
    assert plan_pool(handed, spec(minReady=2), TEMPLATE, []).deficit == 1


def test_a_claim_whose_session_is_gone_is_deleted_and_replaced():
    stranded = pod("stranded", state=r.POOL_STATE_CLAIMED)
    pods = [pod("idle"), stranded, pod("served", state=r.POOL_STATE_CLAIMED, owned=False)]
    assert names(abandoned_claims(pods)) == ["stranded"]
    plan = plan_pool(pods, spec(minReady=2), TEMPLATE, [stranded])
    assert names(plan.doomed) == ["stranded"] and plan.deficit == 1


def test_the_operators_pool_defaults_are_the_crds():
    crd = yaml.safe_load((ROOT / "crds" / "workerpool.yaml").read_text())
    fields = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert {name: field["default"] for name, field in fields.items() if "default" in field} == r.POOL_DEFAULTS
