"""Failures are logged with their reason and without credentials (api/lingo_api/failure_text.py)."""

from lingo_api.failure_text import describe_failure

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ3b3JrZXIifQ.c2lnbmF0dXJl"


def test_the_reason_is_kept_and_credentials_are_not():
    text = describe_failure(ConnectionError(f"failed to connect to ws://lk:7880/rtc?access_token={JWT}&auto_subscribe=1"))
    assert text.startswith("ConnectionError: failed to connect to ws://lk:7880/rtc?access_token=<redacted>")
    assert JWT not in text and "auto_subscribe=1" in text
    assert "<token>" in describe_failure(RuntimeError(f"rejected {JWT}"))
    assert describe_failure(ValueError("Authorization: Bearer lingo_abc_def")) == \
        "ValueError: Authorization: Bearer <redacted>"


def test_a_failure_without_a_message_is_its_class_and_a_long_one_is_cut():
    assert describe_failure(TimeoutError()) == "TimeoutError"
    assert len(describe_failure(RuntimeError("x" * 5000))) < 400
