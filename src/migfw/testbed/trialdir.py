"""A trial's folder while it is written: built in `<out>.partial/`, renamed into place when
complete; a finished trial (trial.json present) is immutable; a `.partial` left by a killed
run is moved aside (never deleted, never trusted); events.jsonl logs every step as it
happens; a testbed that could not be repaired stops every later trial in one line.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from migfw.errors import MigfwError
from migfw.trials.contract import move_aside


class EventLog:
    """events.jsonl: one timestamped line per step, flushed as it happens."""

    def __init__(self, path: Path, echo: bool = False) -> None:
        import threading

        self.path = path
        self.handle = open(path, "a")  # noqa: SIM115 - closed in close()
        self.lock = threading.Lock()  # steps run in threads log whole lines

    def __call__(self, step: str, **fields: Any) -> None:
        with self.lock:
            record = {"t": time.time(), "step": step, **fields}
            self.handle.write(json.dumps(record, default=str) + "\n")
            self.handle.flush()

    def close(self) -> None:
        self.handle.close()


# Factor levels of issue 22's contract (migfw.trials.attack_contract) the testbed applies so
# far; a trial asking for another level is refused rather than run without it.
IMPLEMENTED_LEVELS: dict[str, tuple[Any, ...]] = {
    "trigger": ("pre", "incoming", "resume", None),
    "port_default": ("open", "closed", None),
    "nf_conntrack_tcp_loose": (None, 0, 1),
}
# Written when a testbed could not be repaired after a failed trial: every later trial refuses
# in one line until `migfw testbed cleanup`/`down` (the failed trial itself is kept: its
# command exits 0 so Snakemake never deletes its capture).
UNREPAIRED = "unrepaired.json"


def refuse_unrepaired(cfg: dict[str, Any]) -> None:
    from migfw.testbed.base import state_dir

    marker = state_dir(cfg) / UNREPAIRED
    if marker.exists():
        try:
            body = json.loads(marker.read_text())
        except (OSError, json.JSONDecodeError):
            body = {}
        raise MigfwError(
            f"testbed could not be repaired after trial {body.get('trial_id', '?')} "
            f"({body.get('error', 'see ' + str(marker))}); stopping: run `migfw testbed cleanup` "
            "to start a fresh testbed"
        )


def refuse_finished(out: Path) -> None:
    """One line and no change if `out` already holds a trial: finished trials are immutable."""
    if (out / "trial.json").exists():
        raise MigfwError(f"{out}: finished trial (trial.json present); trials are never rerun")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MigfwError(f"{out}: trial folder already exists; a capture is never overwritten")


def check_out_dir(out: Path, trial_id: str | None = None) -> Path:
    """The partial dir to build in; refuses if `out` already holds a trial."""
    refuse_finished(out)
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        # Left by a killed run: never a finished trial, never deleted either.
        where = move_aside(partial, out, trial_id or out.name,
                           "left behind by an earlier run that did not finish this trial "
                           f"(found at {time.strftime('%Y-%m-%d %H:%M:%S')} UTC)")  # fmt: skip
        print(f"{partial}: an earlier run's half-written trial, moved to {where}", flush=True)
    partial.mkdir(parents=True)
    return partial


def finish_out_dir(partial: Path, out: Path) -> None:
    if out.exists():
        out.rmdir()  # an empty dir (Snakemake creates output dirs before the job runs)
    partial.rename(out)


def refuse_unapplied(trial_id: str, factors: dict[str, Any]) -> None:
    """One line before anything starts: a placement the registry does not know, or a factor
    level the testbed does not apply (IMPLEMENTED_LEVELS)."""
    from migfw.testbed.placements import get

    try:
        get(factors.get("placement", "vm"))
    except MigfwError as exc:  # names the registered placements
        raise MigfwError(f"trial {trial_id}: {exc}") from None
    for name, levels in IMPLEMENTED_LEVELS.items():
        if factors.get(name) not in levels:
            raise MigfwError(
                f"trial {trial_id}: factor {name}={factors[name]!r} is not applied by the "
                "testbed yet (docs/attack_window.md: a later stage of issue 22)"
            )
