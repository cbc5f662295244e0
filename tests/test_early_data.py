"""Control messages that LiveKit relays before it has announced their sender
(worker/lingo_worker/early_data.py): held, then run as the one session client that joined, in
order; never run as anyone when who sent them cannot be told."""

from __future__ import annotations

import asyncio

import pytest

from lingo_worker import early_data
from lingo_worker.background import BackgroundTasks
from lingo_worker.early_data import EarlyData


@pytest.fixture
def delivered():
    return []


@pytest.fixture
def early(delivered):
    async def deliver(identity: str, payload: bytes) -> None:
        delivered.append((identity, payload))

    return EarlyData(deliver, BackgroundTasks().spawn)


async def settle():
    await asyncio.sleep(early_data.SETTLE_SECONDS + 0.1)


async def test_held_messages_are_the_one_client_that_joined_and_come_before_its_next(early, delivered):
    early.hold(b"set_task")
    early.hold(b"get_task")
    await asyncio.sleep(0.05)
    assert delivered == []
    early.joined("publisher-0")
    assert early.keep_order("publisher-0", b"input")  # waits behind its own earlier messages
    assert not early.keep_order("subscriber-1", b"other")  # not announced meanwhile: not held up
    await settle()
    assert delivered == [("publisher-0", b"set_task"), ("publisher-0", b"get_task"), ("publisher-0", b"input")]
    assert not early.keep_order("publisher-0", b"later")  # nothing held any more


async def test_two_clients_announced_together_cannot_be_told_apart(early, delivered, caplog):
    early.hold(b"set_task")
    early.joined("publisher-0")
    early.joined("subscriber-0")
    await settle()
    assert delivered == []
    assert "dropped" in caplog.text


async def test_without_an_announcement_held_messages_are_dropped(early, delivered, monkeypatch):
    monkeypatch.setattr(early_data, "HOLD_SECONDS", 0.1)
    early.hold(b"set_task")
    await settle()
    assert delivered == []
    early.joined("publisher-0")  # too late: nothing is attributed after the fact
    await settle()
    assert delivered == []
