"""Network namespaces: run the current thread inside one, or make a throwaway one.

`in_netns` moves only the calling thread (setns(2) on CLONE_NEWNET is per thread), so any
socket it opens inside - paramiko/fabric, ftplib, raw sockets - lives in that namespace and
keeps living there after the thread moves back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from migfw.errors import MigfwError

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise MigfwError(f"setns(CLONE_NEWNET) failed: {os.strerror(err)} (needs root)")


@contextmanager
def in_netns(name: str | None) -> Iterator[None]:
    """Run the body with this thread in network namespace `name` (None: stay where we are)."""
    if name is None:
        yield
        return
    path = NETNS_DIR / name
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise MigfwError(f"network namespace {name}: cannot open {path} ({exc.strerror})") from None
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(original)
    finally:
        os.close(target)
        os.close(original)


def netns_argv(name: str | None, argv: list[str]) -> list[str]:
    """`argv` prefixed so that it runs inside namespace `name` (unchanged for None)."""
    return list(argv) if name is None else ["ip", "netns", "exec", name, *argv]


def run(argv: list[str], netns: str | None = None, check: bool = True) -> str:
    """Run a command (inside `netns`), return stdout; failure -> one-line MigfwError."""
    full = netns_argv(netns, argv)
    try:
        proc = subprocess.run(full, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise MigfwError(f"{full[0]}: command not found") from None
    except subprocess.TimeoutExpired:
        raise MigfwError(f"{' '.join(full)}: timed out after 30 s") from None
    if check and proc.returncode != 0:
        reason = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise MigfwError(f"{' '.join(full)}: {reason[0] if reason else 'failed'}")
    return proc.stdout


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


@contextmanager
def temporary_netns(prefix: str = "mfwtmp") -> Iterator[str]:
    """A fresh, empty network namespace (loopback up) that is deleted afterwards, always."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    run(["ip", "netns", "add", name])
    try:
        run(["ip", "link", "set", "lo", "up"], netns=name)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
