"""Captions on LiveKit's standard transcription text streams, as LiveKit Agents publishes them, so
any LiveKit client UI shows what is said and its translation without this project's control API.

Each caption is a text stream on topic `lk.transcription` whose sender is the participant whose
speech it transcribes: the speaker for their own words, the translator for the translated speech
it plays on `translation_<language>`. Attributes: `lk.segment_id` (our transcription_id: the
interim captions of a unit and its final one share it), `lk.transcription_final`,
`lk.transcribed_track_id`, and `lingo.language`.
"""

from __future__ import annotations

from livekit import rtc

TOPIC = "lk.transcription"
SEGMENT_ID = "lk.segment_id"
FINAL = "lk.transcription_final"
TRACK_ID = "lk.transcribed_track_id"
LANGUAGE = "lingo.language"


async def publish_caption(participant: rtc.LocalParticipant, text: str, *, sender_identity: str, track_sid: str,
                          segment_id: str, final: bool, language: str) -> None:
    attributes = {SEGMENT_ID: segment_id, FINAL: "true" if final else "false", LANGUAGE: language}
    if track_sid:
        attributes[TRACK_ID] = track_sid
    writer = await participant.stream_text(topic=TOPIC, attributes=attributes, sender_identity=sender_identity)
    await writer.write(text)
    await writer.aclose()
