"""Ending a long-running engine program (an Apertium pipeline, Festival) that reads requests on
its stdin: closing stdin is its cue to finish (each program of a pipeline in turn); one that does
not within a second is killed."""

from __future__ import annotations

import subprocess


def end_engine_process(process: subprocess.Popen | None) -> None:
    if process is None:
        return
    process.stdin.close()
    try:
        process.wait(timeout=1)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    process.stdout.close()
