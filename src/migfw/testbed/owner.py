"""One testbed owner at a time: `/run/migfw/<prefix>.lock`, an flock plus a JSON body.

The owner (a Snakemake run, or a standalone `migfw testbed` command) holds an exclusive flock
on the file for the testbed's lifetime; the body names it: PID, start time, run directory.
The kernel drops the flock when the owner dies, however it dies, so:

- flock busy, owner an ancestor of this process: we are one of its jobs, go on;
- flock busy, anyone else: refuse in one line naming the owner;
- flock free but a body left: the owner died without releasing. Its leftovers (its prober and
  capture by their recorded PIDs, every process in the testbed's namespaces, the namespaces,
  half-written trials) are cleaned first, then the lock is taken over.

A clean release removes the file (while still holding the flock, so a process waiting on
that file finds it unlinked and opens the path again): nothing is left in /run/migfw by a run,
a `testbed down` or a trial that ended normally.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from migfw.errors import MigfwError
from migfw.testbed.base import cfg_get, state_dir
from migfw.trials.contract import move_aside

LOCK_DIR = Path("/run/migfw")


def lock_path(cfg: dict[str, Any]) -> Path:
    prefix = str(cfg_get(cfg, "testbed.local.prefix"))
    return LOCK_DIR / f"{prefix}.lock"


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def is_ancestor(pid: int) -> bool:
    """True if `pid` is this process or one of its ancestors."""
    current: int | None = os.getpid()
    while current and current > 1:
        if current == pid:
            return True
        current = _parent(current)
    return False


def read_owner(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {"pid": None, "body": text[:80]}


def describe(owner: dict[str, Any] | None) -> str:
    if not owner:
        return "an unknown process"
    started = owner.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "?"
    return f"PID {owner.get('pid')} (started {when}, run dir {owner.get('run_dir')})"


class Ownership:
    """The held lock; `release()` removes the file and drops the flock."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd, self.path = fd, path

    def release(self) -> None:
        if self.fd < 0:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, 0)
            if _same_file(self.fd, self.path):
                self.path.unlink()
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = -1


def _same_file(fd: int, path: Path) -> bool:
    """The open lock file is still the one at `path` (not unlinked, not replaced)."""
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except OSError:
        return False


def acquire(cfg: dict[str, Any], what: str = "migfw", quiet: bool = False) -> Ownership | None:
    """Own the testbed of `cfg` (None: an ancestor already owns it); refuse if another does."""
    path = lock_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            owner = read_owner(path)
            if owner and owner.get("pid") and is_ancestor(int(owner["pid"])):
                return None
            raise MigfwError(
                f"testbed {path.stem} is in use by {describe(owner)} ({path}); "
                "a second run would destroy its trials"
            ) from None
        if _same_file(fd, path):
            break
        # The owner released (and removed) it between our open and our flock: again.
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    try:
        old = read_owner(path)
        if old:
            takeover(cfg, old, quiet)
        body = {"pid": os.getpid(), "started": time.time(), "run_dir": os.getcwd(),
                "command": what, "prefix": path.stem}  # fmt: skip
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(body) + "\n").encode(), 0)
    except BaseException:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        raise
    return Ownership(fd, path)


def remove_stale(cfg: dict[str, Any]) -> str | None:
    """For `cleanup`: the lock file of an owner that died (flock free), removed; None if
    there is none, or its owner is alive (never touched)."""
    path = lock_path(cfg)
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    try:
        if _same_file(fd, path):
            path.unlink()
            return str(path)
        return None
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def takeover(cfg: dict[str, Any], old: dict[str, Any], quiet: bool = False) -> list[str]:
    """Clean what a dead owner left: prober and capture, namespaced processes, partial trials."""
    from migfw.testbed.local import kill_pid, pid_alive

    cleaned: list[str] = []
    if not quiet:
        print(f"testbed lock: owner {describe(old)} is gone; cleaning its leftovers", flush=True)
    prober_file = state_dir(cfg) / "prober.json"
    if prober_file.exists():
        with contextlib.suppress(OSError, json.JSONDecodeError, AttributeError):
            for name, pid in json.loads(prober_file.read_text()).get("pids", {}).items():
                if pid_alive(int(pid)):
                    kill_pid(int(pid))
                    cleaned.append(f"{name} pid {pid}")
        prober_file.unlink(missing_ok=True)
    if cfg_get(cfg, "testbed.provider") == "local":
        from migfw.testbed.local import LocalTestbed

        # Every process in the testbed's namespaces goes with them; the next trial
        # brings up a fresh testbed.
        cleaned += LocalTestbed(cfg).down(quiet=True)
    trials_dir = Path(str(cfg_get(cfg, "trials_dir")))
    if not trials_dir.is_absolute() and old.get("run_dir"):
        trials_dir = Path(old["run_dir"]) / trials_dir
    if trials_dir.is_dir():
        for partial in sorted(trials_dir.glob("**/*.partial")):
            if any(p.startswith(".") for p in partial.relative_to(trials_dir).parts):
                continue
            out = partial.with_name(partial.name.removesuffix(".partial"))
            trial_id = out.relative_to(trials_dir).as_posix()
            where = move_aside(partial, out, trial_id,
                               f"owner {describe(old)} died during this trial")  # fmt: skip
            cleaned.append(f"moved {partial} to {where}")
    if not quiet:
        for item in cleaned:
            print(f"  {item}", flush=True)
    return cleaned
