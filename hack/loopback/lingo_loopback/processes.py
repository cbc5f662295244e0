"""Child-process plumbing for the loopback stack: free ports, logged processes, readiness waits."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ManagedProcess:
    """One server process with its output in a log file; stopped as a whole process group."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None):
        self.name = name
        self.argv = argv
        self.log_path = log_dir / f"{name}.log"
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.endpoints: dict[str, str] = {}  # named URLs the process serves (metrics, ...)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(self.env or {})},
            start_new_session=True,
        )
        log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 2500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def stop(self, grace: float = 10.0) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        except ProcessLookupError:
            pass


def wait_for_interrupt() -> None:
    """Block until Ctrl-C or SIGTERM (what `make dev` and `make node` stop on)."""
    import threading

    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass


def ignore_interrupts() -> None:
    """From now on Ctrl-C and SIGTERM are ignored (main thread only): the program is stopping, and
    a second Ctrl-C would end its cleanup half way and leave etcd and its data directory behind."""
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)


class StartupError(RuntimeError):
    pass


def wait_until(check: Callable[[], bool], process: ManagedProcess, what: str, timeout: float = 60.0) -> None:
    """Poll `check` until it holds; fail early, with the process log, if the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise StartupError(f"{what} exited during startup; log tail:\n{process.log_tail()}")
        try:
            if check():
                return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.2)
    raise StartupError(f"{what} was not ready after {timeout:.0f}s; log tail:\n{process.log_tail()}")


# Loopback-only servers with throwaway self-signed certificates.
INSECURE_TLS = ssl.create_default_context()
INSECURE_TLS.check_hostname = False
INSECURE_TLS.verify_mode = ssl.CERT_NONE


def http_ok(url: str, token: str | None = None) -> bool:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    context = INSECURE_TLS if url.startswith("https") else None
    with urllib.request.urlopen(request, timeout=2, context=context) as response:
        return response.status == 200
