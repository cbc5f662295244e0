"""worker/lingo_worker/stream_pace.py on a clock the test moves."""

from __future__ import annotations

from lingo_worker.stream_pace import REFUSE_AHEAD_SECONDS, STALLED, TOO_FAST, TOO_SLOW, StreamPace


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_real_time_audio_gets_no_warning():
    clock = Clock()
    pace = StreamPace(clock)
    for _ in range(100):  # 32 s in 320 ms chunks, each as long as the time between them
        assert pace.audio(0.32) is None
        clock.now += 0.32
        assert pace.check_stalled() is None


def test_audio_sent_all_at_once_is_too_fast_and_said_once_per_ten_seconds():
    clock = Clock()
    pace = StreamPace(clock)
    warnings = [pace.audio(0.32) for _ in range(40)]  # 12.8 s of audio in no time
    assert warnings.count(TOO_FAST) == 1 and warnings.index(TOO_FAST) == 6  # 2.24 s: past 2 s ahead
    clock.now += 10
    assert pace.audio(8.0) == TOO_FAST


def test_audio_at_half_speed_is_too_slow():
    clock = Clock()
    pace = StreamPace(clock)
    warnings = []
    for _ in range(20):
        warnings.append(pace.audio(0.32))
        clock.now += 0.64
    assert TOO_SLOW in warnings


def test_a_stall_is_said_once_and_restarts_the_count():
    clock = Clock()
    pace = StreamPace(clock)
    pace.audio(0.32)
    clock.now += 2.0
    assert pace.check_stalled() is None
    clock.now += 1.5
    assert pace.check_stalled() == STALLED
    assert pace.check_stalled() is None  # once
    clock.now += 30  # a long pause: the client is not behind when it comes back
    assert pace.audio(0.32) is None


def test_audio_far_ahead_is_refused_and_not_counted():
    clock = Clock()
    pace = StreamPace(clock)
    heard = 0.0
    notices = 0
    for _ in range(1000):  # 320 s of audio offered in no time (the flood of issue 24)
        if pace.refuses(0.32):
            notices += pace.refused_notice()
            continue
        pace.audio(0.32)
        heard += 0.32
    assert REFUSE_AHEAD_SECONDS - 0.32 < heard <= REFUSE_AHEAD_SECONDS and notices == 1
    clock.now += 5  # real time catches up: 5 s more may come
    assert not pace.refuses(4.5) and pace.refuses(5.5)
