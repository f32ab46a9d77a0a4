"""Processes and commands of the embedded testbed: run one (one line on failure), is a
PID alive (and which program), end one by its PID. Shared by migfw.testbed.local and the
OVN daemons (migfw.testbed.ovn) without one importing the other."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from migfw.errors import MigfwError


def sh(cmd: list[str], check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run a command; a failure is one line naming the command and its last stderr line."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as exc:
        raise MigfwError(f"command not found: {cmd[0]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise MigfwError(f"`{' '.join(cmd)}` timed out after {timeout} s") from exc
    if check and proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()
        raise MigfwError(f"`{' '.join(cmd)}` failed: {last[-1] if last else proc.returncode}")
    return proc


def pid_alive(pid: int | None, needle: str | None = None) -> bool:
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[1].split()[0] == "Z":
        return False
    return needle is None or needle in cmdline


def kill_pid(pid: int, grace: float = 3.0) -> None:
    """SIGTERM, wait, then SIGKILL one process by id."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and pid_alive(pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
