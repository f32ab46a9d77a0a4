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


@contextmanager
def linked_pair(
    guest_addr: str = "10.231.9.1",
    remote_addr: str = "10.231.9.2",
    prefix_len: int = 24,
    extra_remote_addrs: tuple[str, ...] = (),
    prefix: str = "mfwt",
) -> Iterator[tuple[str, str]]:
    """Two fresh namespaces ("guest", "remote") joined by a veth pair; yields their names.

    The remote end is `r0`, the guest end `g0`; both are deleted afterwards, always.
    `extra_remote_addrs` are added to r0 too (e.g. the ruleset's `other` address).
    """
    tag = uuid.uuid4().hex[:6]
    guest, remote = f"{prefix}-{tag}-g", f"{prefix}-{tag}-r"
    made: list[str] = []
    try:
        for name in (guest, remote):
            run(["ip", "netns", "add", name])
            made.append(name)
            run(["ip", "link", "set", "lo", "up"], netns=name)
        # Create the veth inside the remote namespace so nothing touches the host's links.
        run(["ip", "link", "add", "r0", "type", "veth", "peer", "name", "g0", "netns", guest],
            netns=remote)  # fmt: skip
        run(["ip", "addr", "add", f"{guest_addr}/{prefix_len}", "dev", "g0"], netns=guest)
        run(["ip", "addr", "add", f"{remote_addr}/{prefix_len}", "dev", "r0"], netns=remote)
        for extra in extra_remote_addrs:
            run(["ip", "addr", "add", f"{extra}/{prefix_len}", "dev", "r0"], netns=remote)
        run(["ip", "link", "set", "g0", "up"], netns=guest)
        run(["ip", "link", "set", "r0", "up"], netns=remote)
        yield guest, remote
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
