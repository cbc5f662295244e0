"""Named crash points for the fault tests (tests/faults): with LINGO_CRASH_AT=<name> in its
environment a process kills itself (SIGKILL, no cleanup) the first time it reaches that point,
the way a node failure or an OOM kill would. Without the variable a crash point does nothing.
"""

from __future__ import annotations

import os
import signal


def crash_point(name: str) -> None:
    if os.environ.get("LINGO_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
