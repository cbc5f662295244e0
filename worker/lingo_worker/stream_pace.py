"""Whether a client's audio over the WebSocket keeps time with the clock: Palabra's
AUDIO_STREAM_TOO_FAST, AUDIO_STREAM_TOO_SLOW and AUDIO_STREAM_STALLED warnings.

The worker hears speech in real time; a client that sends faster builds a backlog of speech
that is not spoken yet, one that sends slower leaves gaps that end units early, and one that
stops sending leaves a unit open. The pace is the audio received against the time passed since
the stream (re)started; a stall restarts the count, so a client that paused is not told later
that it is behind. Audio more than REFUSE_AHEAD_SECONDS ahead is refused (not heard, not
counted): a client cannot queue minutes of speech, and with it minutes of work and memory.
"""

from __future__ import annotations

import time
from typing import Callable

TOO_FAST, TOO_SLOW, STALLED = "AUDIO_STREAM_TOO_FAST", "AUDIO_STREAM_TOO_SLOW", "AUDIO_STREAM_STALLED"
AHEAD_SECONDS = 2.0  # more audio than time passed by this much: too fast
BEHIND_SECONDS = 2.0  # less, by this much: too slow
STALL_SECONDS = 3.0  # no audio at all for this long: stalled
REFUSE_AHEAD_SECONDS = 10.0  # audio this far ahead of real time is dropped
REPEAT_SECONDS = 10.0  # the same warning at most this often

MESSAGES = {
    TOO_FAST: "audio arrives faster than real time; send it paced (about 320 ms per 320 ms chunk)",
    TOO_SLOW: "audio arrives slower than real time; the translation will have gaps",
    STALLED: f"no audio for {STALL_SECONDS:g} s; send silence to keep the stream going, or end_task",
}
REFUSED = f"audio more than {REFUSE_AHEAD_SECONDS:g} s ahead of real time is dropped; send it paced"


class StreamPace:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._started: float | None = None  # when the current count began
        self._received = 0.0  # seconds of audio since then
        self._last: float | None = None  # when audio last came
        self._stalled = False
        self._warned: dict[str, float] = {}

    def audio(self, seconds: float) -> str | None:
        """`seconds` of audio arrived; the warning to send, if any."""
        now = self._clock()
        if self._started is None or self._stalled:
            self._started, self._received, self._stalled = now, 0.0, False
        self._last = now
        self._received += seconds
        ahead = self._received - (now - self._started)
        if ahead > AHEAD_SECONDS:
            return self._warn(TOO_FAST, now)
        if ahead < -BEHIND_SECONDS:
            return self._warn(TOO_SLOW, now)
        return None

    def refuses(self, seconds: float) -> bool:
        """Whether `seconds` more of audio now would be more than REFUSE_AHEAD_SECONDS ahead."""
        if self._started is None or self._stalled:
            return False
        return self._received + seconds - (self._clock() - self._started) > REFUSE_AHEAD_SECONDS

    def refused_notice(self) -> bool:
        """Whether to tell the client (once per REPEAT_SECONDS) that its audio is being dropped."""
        return self._warn("refused", self._clock()) is not None

    def check_stalled(self) -> str | None:
        """Called every second or so: STALLED once when audio stopped coming."""
        now = self._clock()
        if self._last is None or self._stalled or now - self._last < STALL_SECONDS:
            return None
        self._stalled = True
        return STALLED

    def _warn(self, code: str, now: float) -> str | None:
        if now - self._warned.get(code, -REPEAT_SECONDS) < REPEAT_SECONDS:
            return None
        self._warned[code] = now
        return code
