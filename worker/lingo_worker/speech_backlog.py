"""How much translated speech may wait to be heard, per target track, and how fast it is spoken.

Palabra's way (`translation_queue_configs`): up to the desired queue level speech plays at the
voice's own pace; above it the next unit is synthesized faster, from `min_tempo` rising linearly
to `max_tempo` at the maximum level; speech that would push the queue past the maximum makes room
by dropping the oldest units still waiting (a `warning` names them; their text was sent already).
A listener is never more than the maximum level behind the speaker's translated words.

And a unit is never spoken slower than its speaker said it (within `max_tempo`): translations run
longer than their source (Spanish speech from espeak-ng about a quarter longer than the English
it translates), and a backlog that only grows before it is fought keeps the listener at the
desired level, seconds behind, for the rest of a talk.
"""

from __future__ import annotations

from dataclasses import dataclass

# A unit is spoken in at most this share of the time its source took: the listener catches up a
# little on every unit rather than only once the queue has grown.
SOURCE_TIME_SHARE = 0.9


@dataclass(frozen=True)
class BacklogSettings:
    desired_ms: int
    max_ms: int
    auto_tempo: bool
    min_tempo: float
    max_tempo: float

    def tempo(self, queued_ms: float, source_ms: float = 0.0, natural_ms: float = 0.0) -> float:
        """The pace for a unit that will start after `queued_ms` of queued speech, whose source
        took `source_ms` to say and whose translation takes about `natural_ms` at the voice's pace."""
        if not self.auto_tempo:
            return 1.0
        tempo = 1.0
        if queued_ms > self.desired_ms:
            fraction = min(1.0, (queued_ms - self.desired_ms) / max(1, self.max_ms - self.desired_ms))
            tempo = self.min_tempo + (self.max_tempo - self.min_tempo) * fraction
        if source_ms > 0 and natural_ms > 0:
            tempo = max(tempo, natural_ms / (source_ms * SOURCE_TIME_SHARE))
        return round(min(self.max_tempo, tempo), 3)

    def excess_ms(self, queued_ms: float, new_ms: float) -> float:
        """How much queued speech must go for `new_ms` more to fit under the maximum."""
        return max(0.0, queued_ms + new_ms - self.max_ms)
