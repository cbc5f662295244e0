"""`make dev` (python -m lingo_loopback.stack) stops on Ctrl-C without leaving anything behind, also
when Ctrl-C is pressed again while it is stopping: every process it started ends and its working
and etcd directories are removed."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.common import process_table, process_tree
from lingo_loopback.processes import free_port

REPO = Path(__file__).resolve().parents[1]
READY = "Ctrl-C stops everything."


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _still_running(pid: int, command_line: str) -> bool:
    """The same process (not a reused PID), and not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and _command_line(pid) == command_line


@pytest.mark.slow
def test_ctrl_c_pressed_again_while_make_dev_stops_leaves_nothing_behind(tmp_path):
    output = tmp_path / "stack.out"
    with output.open("w") as out:
        # As from a terminal: a test run started in the background of a shell without job control
        # (CI's may be) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt.
        stack = subprocess.Popen([sys.executable, "-m", "lingo_loopback.stack", "--port", str(free_port())],
                                 cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    started: dict[int, str] = {}
    workdir = etcd_data = None
    try:
        deadline = time.monotonic() + 180
        while READY not in output.read_text():
            assert stack.poll() is None, output.read_text()[-3000:]
            assert time.monotonic() < deadline, output.read_text()[-3000:]
            time.sleep(0.5)
        started = {pid: _command_line(pid) for pid in process_tree(stack.pid, process_table())[1:]}
        workdir = Path(next(line.split()[-1] for line in output.read_text().splitlines()
                            if line.strip().startswith("kubeconfig"))).parent
        etcd = next(command for command in started.values() if "etcd" in command.split()[0])
        etcd_data = Path(next(arg.split("=", 1)[1] for arg in etcd.split() if arg.startswith("--data-dir=")))
        assert workdir.is_dir() and etcd_data.is_dir()

        # Ctrl-C, and again and again while the stack stops its processes one by one.
        stack.send_signal(signal.SIGINT)
        for _ in range(10):
            time.sleep(0.3)
            if stack.poll() is not None:
                break
            stack.send_signal(signal.SIGINT)
        assert stack.wait(timeout=120) == 0, output.read_text()[-3000:]

        left = {pid: command for pid, command in started.items() if _still_running(pid, command)}
        assert not left, f"still running after the stack stopped: {left}"
        assert not workdir.exists() and not etcd_data.exists()
    finally:
        if stack.poll() is None:
            stack.kill()
            stack.wait()
        for pid, command in started.items():  # only what this stack started
            if _still_running(pid, command):
                os.kill(pid, signal.SIGKILL)
        for directory in (workdir, etcd_data):
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
