"""A session's reconcile decisions (operator/lingo_operator/session_plan.py), without servers."""

from __future__ import annotations

from types import SimpleNamespace

import kopf
import pytest

from lingo_api import resources as r
from lingo_operator.session_plan import (announcements, apply_provisioned, backoff, cold_worker_is_news, control_url,
                                         described, events_before_status, expiry_of, needs_reconcile, parse_spec)
from lingo_operator.session_status import get_condition

CONFIG = SimpleNamespace(facade_public_url="https://lingo.example.com/", livekit_public_url="wss://lk.example.com",
                         retry_delay_seconds=0.5)
META = {"name": "demo", "namespace": "lingo", "uid": "u-1", "generation": 2,
        "creationTimestamp": "2026-12-06T10:00:00Z"}
SPEC = {"publisherCount": 1, "subscriberCount": 3, "sourceLanguage": "en", "targetLanguages": ["es"],
        "ttlSeconds": 600}


def body(**status):
    return {"metadata": dict(META), "spec": dict(SPEC), "status": status}


def test_a_session_being_deleted_or_ended_is_left_alone():
    assert needs_reconcile(body())
    assert not needs_reconcile({**body(), "metadata": {**META, "deletionTimestamp": "2026-12-06T10:01:00Z"}})
    for phase in (r.Phase.EXPIRED, r.Phase.TERMINATING, r.Phase.FAILED):
        assert not needs_reconcile(body(phase=phase))


def test_a_name_too_long_for_a_label_fails_for_good():
    with pytest.raises(kopf.PermanentError, match="at most 63"):
        needs_reconcile({**body(), "metadata": {**META, "name": "x" * 64}})


def test_a_spec_the_schema_should_have_refused_fails_for_good():
    with pytest.raises(kopf.PermanentError, match="invalid spec"):
        parse_spec({**SPEC, "publisherCount": -1})


def test_the_status_describes_the_parts_and_the_control_url_is_a_websocket():
    spec = parse_spec(SPEC)
    expires = expiry_of(META, spec)
    assert expires.isoformat() == "2026-12-06T10:10:00+00:00"
    description = described(CONFIG, META, "lingo-u-1", expires)
    assert description == {"roomName": "lingo-u-1", "streamUrl": "wss://lk.example.com",
                           "controlUrl": "wss://lingo.example.com/session-storage/sessions/demo/control",
                           "tokensSecretName": "demo-tokens", "expiresAt": "2026-12-06T10:10:00Z",
                           "observedGeneration": 2}
    assert control_url(SimpleNamespace(facade_public_url="http://f:8000"), "s").startswith("ws://f:8000/")


def test_livekit_trouble_backs_off_exponentially_up_to_a_minute():
    assert [backoff(CONFIG, retry) for retry in (0, 1, 2)] == [0.5, 1.0, 2.0]
    assert backoff(CONFIG, 50) == 60.0


def test_a_session_without_a_room_announces_that_it_needs_none():
    with_room = announcements(parse_spec(SPEC), "lingo-u-1", "demo-tokens")
    without = announcements(parse_spec({**SPEC, "room": False}), "lingo-u-1", "demo-tokens")
    assert with_room[0][:2] == (r.Condition.ROOM_READY, r.Reason.ROOM_CREATED)
    assert without[0][:2] == (r.Condition.ROOM_READY, r.Reason.NO_ROOM)
    assert with_room[1] == (r.Condition.TOKENS_READY, r.Reason.TOKENS_ISSUED,
                            "1 publisher and 3 subscriber tokens in Secret demo-tokens")


def test_events_go_out_only_for_what_is_new_and_for_a_dry_pool():
    announced = announcements(parse_spec(SPEC), "lingo-u-1", "demo-tokens")
    first = events_before_status(announced, {}, dry_pools=["default"], claimed=False)
    assert [reason for reason, _, _ in first] == [r.Reason.ROOM_CREATED, r.Reason.TOKENS_ISSUED, r.Reason.NO_IDLE_WORKER]
    assert first[-1][2] is True  # a dry pool is a warning
    seen = {"conditions": [{"type": r.Condition.ROOM_READY, "status": "True"},
                           {"type": r.Condition.TOKENS_READY, "status": "True"}]}
    assert events_before_status(announced, seen, dry_pools=["default"], claimed=True) == []


def test_a_cold_workers_creation_is_announced_once():
    assert cold_worker_is_news(created=True, status_seen={"conditions": [{"type": r.Condition.WORKER_READY}]})
    assert cold_worker_is_news(created=False, status_seen={})
    assert not cold_worker_is_news(created=False, status_seen={"conditions": [{"type": r.Condition.WORKER_READY}]})


def test_a_claimed_worker_is_ready_in_the_same_write_and_a_cold_one_is_left_to_the_pod_watcher():
    announced = announcements(parse_spec(SPEC), "lingo-u-1", "demo-tokens")
    status: dict = {}
    assert apply_provisioned(status, {"roomName": "lingo-u-1"}, announced, "default", "10.0.0.7:8080", "claimed")
    assert status["workerEndpoint"] == "10.0.0.7:8080" and status["roomName"] == "lingo-u-1"
    assert get_condition(status, r.Condition.WORKER_READY)["reason"] == r.Reason.WORKER_CLAIMED
    assert get_condition(status, r.Condition.ROOM_READY)["status"] == "True"

    cold: dict = {}
    assert not apply_provisioned(cold, {}, announced, "", "", "")
    assert get_condition(cold, r.Condition.WORKER_READY)["reason"] == r.Reason.WORKER_STARTING
    ready = {"conditions": [{"type": r.Condition.WORKER_READY, "status": "True", "reason": r.Reason.WORKER_READY}]}
    apply_provisioned(ready, {}, announced, "", "", "")
    assert get_condition(ready, r.Condition.WORKER_READY)["reason"] == r.Reason.WORKER_READY  # the watcher's word stands
