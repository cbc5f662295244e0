"""Stopping the LiveKit SDK's native runtime before the interpreter shuts down.

The Python SDK (`livekit.rtc`) runs a Rust/tokio runtime that calls back into Python. Left to
its own atexit hook, one of its threads may call into an interpreter that is already
finalizing; Rust then aborts the process ("panic in a function that cannot unwind") after all
the work is done and reported, and the exit status says the program failed. Every program of
ours that used `livekit.rtc` calls `stop_livekit_sdk()` once its event loop has finished.
"""

from __future__ import annotations

import sys


def stop_livekit_sdk() -> None:
    """Dispose of the SDK's runtime if this process started one; harmless if it did not."""
    ffi = sys.modules.get("livekit.rtc._ffi_client")
    if ffi is None:
        return
    client = ffi.FfiClient._instance  # the SDK has no public dispose
    if client is not None:
        client._dispose()
