"""A failure as one log line: its class and its message, with anything that looks like a credential
taken out (exception messages may quote a URL with `?access_token=` or a request with a JWT), and
cut to a length a log line can hold."""

from __future__ import annotations

import re

MAX_CHARACTERS = 300
_JWT = re.compile(r"\beyJ[\w-]+\.[\w-]+\.[\w-]*")
_CREDENTIAL_PARAMETER = re.compile(r"((?:access_)?token|secret|key|password)=[^&\s'\"]+", re.IGNORECASE)
_BEARER = re.compile(r"(Bearer\s+)\S+", re.IGNORECASE)


def describe_failure(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = _JWT.sub("<token>", text)
    text = _CREDENTIAL_PARAMETER.sub(r"\1=<redacted>", text)
    text = _BEARER.sub(r"\1<redacted>", text)
    if len(text) > MAX_CHARACTERS:
        text = text[:MAX_CHARACTERS] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
