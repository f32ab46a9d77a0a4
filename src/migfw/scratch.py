"""Scratch folders a killed run does not leave behind.

A folder from `tempfile` outlives a SIGKILLed or OOM-killed process: at 100,000 records the
dedupe's link files and DuckDB database are hundreds of MiB, left in $TMPDIR at each crash.
Every scratch folder is therefore named after its owner - host, boot, PID and the process's
start time - and each new one first removes the folders of owners that are gone (the PID not
running, or running as another process since: its start time differs; or a past boot).
Folders of other hosts (a shared temporary directory) and of live owners are never touched.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# A scratch folder's or partial file's owner: host.boot.pid.start (see owner_tag).
_OWNER = r"(?P<host>[A-Za-z0-9]+)\.(?P<boot>[0-9a-f]{8})\.(?P<pid>\d+)\.(?P<start>\d+)"
_NAME = re.compile(rf"^migfw-[a-z]+-{_OWNER}-")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"


def _boot() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:8]
    except OSError:
        return "00000000"


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks after boot, None when it is not running."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        # Field 22; the command name (field 2, in parentheses) may hold spaces.
        return int(stat.rpartition(")")[2].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def owner_tag(pid: int | None = None) -> str:
    """host.boot.pid.start of a running process (default: this one)."""
    pid = os.getpid() if pid is None else pid
    return f"{_host()}.{_boot()}.{pid}.{_start_time(pid) or 0}"


def sweep(parent: str | os.PathLike | None = None) -> list[Path]:
    """Remove the scratch folders in `parent` (default: the temporary directory) whose owner
    on this host is gone; the removed paths."""
    parent = Path(parent or tempfile.gettempdir())
    host, boot, removed = _host(), _boot(), []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _NAME.match(entry.name)
        if not match or match["host"] != host or not entry.is_dir() or entry.is_symlink():
            continue
        if _gone(match, boot):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _gone(match: re.Match, boot: str) -> bool:
    """The owner named by a matched host.boot.pid.start tag no longer runs (on this host)."""
    return match["boot"] != boot or _start_time(int(match["pid"])) != int(match["start"])


def sweep_partials(target: str | os.PathLike) -> list[Path]:
    """Remove the `.part` files that `migfw.io.atomic_write` left beside `target` when its
    writer was killed (SIGKILL runs no cleanup); those of live writers and other hosts stay."""
    target = Path(target)
    name = re.compile(rf"^\.{re.escape(target.name)}\.{_OWNER}-[^/]*\.part$")
    host, boot, removed = _host(), _boot(), []
    try:
        entries = list(target.parent.glob(f".{glob.escape(target.name)}.*.part"))
    except OSError:
        return removed
    for entry in entries:
        match = name.match(entry.name)
        if match and match["host"] == host and not entry.is_symlink() and _gone(match, boot):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def scratch_dir(kind: str, parent: str | os.PathLike | None = None) -> str:
    """A new scratch folder `migfw-<kind>-<owner>-XXXXXXXX` (the caller removes it), after
    removing dead owners' folders from the same parent."""
    sweep(parent)
    return tempfile.mkdtemp(prefix=f"migfw-{kind}-{owner_tag()}-", dir=parent)


@contextmanager
def scratch(kind: str, parent: str | os.PathLike | None = None) -> Iterator[str]:
    """`scratch_dir` removed on leaving the block (on error too)."""
    path = scratch_dir(kind, parent)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
