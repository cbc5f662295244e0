"""Kubernetes timestamps (RFC 3339, whole seconds, 'Z'), as written in status and read from metadata."""

from __future__ import annotations

import datetime as dt


def format_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def now_time() -> str:
    return format_time(dt.datetime.now(dt.timezone.utc))


def seconds_since(timestamp: str) -> float:
    return (dt.datetime.now(dt.timezone.utc) - parse_time(timestamp)).total_seconds()


def now_micro_time() -> str:
    """A MicroTime (Lease renewTime and acquireTime): RFC 3339 with microseconds."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
