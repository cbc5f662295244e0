"""Input from the network, parsed without letting a hostile value crash the parser's caller.

One home for the rules the facade and the worker both apply: JSON of any shape (deep nesting,
huge integers, bad UTF-8) becomes one error type; names and header values are checked against
their patterns before they reach Kubernetes, scrypt or a log line.
"""

from __future__ import annotations

import json
import logging
import re

from aiohttp.http_exceptions import HttpProcessingError

# A Kubernetes object name usable as a label value (DNS-1123 label): what session ids are.
SESSION_ID_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
CLIENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
# Printable ASCII without spaces: what `secrets.token_urlsafe` and hand-picked secrets look like.
SECRET_PATTERN = re.compile(r"^[\x21-\x7e]{1,256}$")
MAX_TOKEN_CHARS = 4096


class UntrustedInputError(ValueError):
    """The input is malformed; the message is safe to show to the client (it quotes nothing)."""


def parse_json(raw: str | bytes) -> object:
    """json.loads that turns every way of failing into UntrustedInputError."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise UntrustedInputError("JSON is nested too deeply") from None
    except (ValueError, TypeError, UnicodeDecodeError):
        # ValueError covers JSONDecodeError and integers past Python's digit limit.
        raise UntrustedInputError("not valid JSON") from None


def describe_validation_error(exc) -> str:
    """A pydantic ValidationError in one line for a control `error`: "field: problem; ..."."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'task'}: {e['msg']}" for e in exc.errors())


def parse_control_message(raw: str | bytes) -> tuple[str, dict] | None:
    """(message_type, data) of a control message `{"message_type": ..., "data": {...}}` (data may
    be a JSON string of its own, as Palabra allows); None for anything else."""
    try:
        message = parse_json(raw)
    except UntrustedInputError:
        return None
    if not isinstance(message, dict) or not isinstance(message.get("message_type"), str):
        return None
    data = message.get("data", {})
    if isinstance(data, str):
        try:
            data = parse_json(data)
        except UntrustedInputError:
            return None
    return (message["message_type"], data) if isinstance(data, dict) else None


def is_session_id(value: str) -> bool:
    return bool(SESSION_ID_PATTERN.fullmatch(value))


class _MalformedRequestFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg, record.args = "refused a malformed HTTP request (%s)", (type(exc).__name__,)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def redact_malformed_requests() -> None:
    """aiohttp logs a request it cannot parse with the offending bytes, and those may be a
    ClientSecret header or a token; keep only the fact that one was refused."""
    logging.getLogger("aiohttp.server").addFilter(_MalformedRequestFilter())


_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class PrintableFormatter(logging.Formatter):
    """Control characters in a log message are written as \\xNN: a request path with %0a or
    %00 in it cannot forge a log line or put NUL bytes in the log (tracebacks keep their lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = _CONTROL_CHARACTERS.sub(lambda m: f"\\x{ord(m.group()):02x}", record.message)
        return super().formatMessage(record)


def log_to_stderr(level: str | int) -> None:
    """The facade's and the worker's logging: one line per message, printable, requests that
    could not be parsed redacted."""
    handler = logging.StreamHandler()
    handler.setFormatter(PrintableFormatter(LOG_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
    redact_malformed_requests()
