"""Ending a process that used the LiveKit SDK's native runtime without it aborting the process.

The Python SDK (`livekit.rtc`) runs a Rust/tokio runtime that calls back into Python. Two ways
to end such a process have aborted it after its work was done and reported ("panic in a
function that cannot unwind"), so that its exit status said it failed:
- leaving the runtime to the SDK's atexit hook: one of its threads may call into an interpreter
  that is already finalizing (the e2e check Job, after "e2e check passed");
- disposing of the runtime while it still has work in flight (a worker whose room connection was
  still being attempted when its engines failed to load).
So a program ends with `exit_process()`: what it wrote is flushed and the process ends without
the interpreter's teardown, the runtime's included. Only the test runner, which must return
normally, disposes of the runtime (`stop_livekit_sdk()`), once nothing is in flight.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from typing import Callable, NoReturn


def stop_livekit_sdk() -> None:
    """Dispose of the SDK's runtime if this process started one (nothing may be in flight)."""
    ffi = sys.modules.get("livekit.rtc._ffi_client")
    if ffi is None:
        return
    client = ffi.FfiClient._instance  # the SDK has no public dispose
    if client is not None:
        client._dispose()


def exit_process(status: int) -> NoReturn:
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


def run_and_exit(main: Callable[[], int | None]) -> NoReturn:
    """`main()`, then exit_process with its status (sys.exit's code, 1 and a traceback if it raised)."""
    try:
        status = main() or 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            status = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            status = 1
    except BaseException:
        traceback.print_exc()
        status = 1
    exit_process(status)
