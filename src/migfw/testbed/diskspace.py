"""Disk space for trials: a check before each trial, and a full disk during one.

Before a trial (`require_space`): the free space of the filesystem that will hold the trial
folder must exceed what the trial is expected to write - the largest finished trial of the
same experiment folder, else a model from the probe and attack rates (`trial_bytes_model`) -
plus a margin; otherwise the run stops in one line, before anything is written.

During a trial (`disk_full`, `record_space_failure`): when the folder's filesystem fills up
(ENOSPC in tcpdump, the prober or our own writes), the trial's half-written files are removed,
which frees the space a small `trial.json` needs, and the trial is written as `failed` with the
reason - so a finished trial never holds a truncated capture. `probe.pcap` is then an empty
capture (header only, no packets), there only because every trial folder has one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import struct
from pathlib import Path
from typing import Any

from migfw.config import default
from migfw.errors import MigfwError
from migfw.io import write_json

MIB = 2**20
MARGIN_BYTES = 16 * MIB  # trial.json, logs, console, the analysis's own small files
# Bytes per record, from real trials: a captured echo request or reply (pcap record header
# + Ethernet/IPv4/ICMP + payload) plus its send-log line; an attacker's SYN with its answer
# and send-log line; a flow request line; a job-statistics row.
PROBE_BYTES = 2 * (16 + 98) + 45
ATTACK_BYTES = 2 * (16 + 74) + 60
FLOW_BYTES = 70
JOBSTATS_ROW_BYTES = 200
MIGRATION_S = 30.0  # assumed for the model; the watchdog stops a stalled migration sooner
SIBLING_FACTOR = 1.5  # headroom over the largest finished trial beside it


def trial_bytes_model(
    interval_s: float,
    lead_in_s: float,
    settle_s: float,
    attack_rate_hz: float = 0.0,
    allowed_rate_hz: float = 0.0,
    flows_rate_hz: float = 0.0,
) -> int:
    """What a trial writes, from its rates and a generous migration time (bytes)."""
    seconds = lead_in_s + settle_s + MIGRATION_S
    per_s = (PROBE_BYTES / interval_s + ATTACK_BYTES * (attack_rate_hz + allowed_rate_hz)
             + FLOW_BYTES * 2 * flows_rate_hz + JOBSTATS_ROW_BYTES * 40)  # fmt: skip
    return int(seconds * per_s)


def folder_bytes(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):
            if path.is_file():
                total += path.stat().st_size
    return total


def expected_trial_bytes(out: Path, model_bytes: int) -> int:
    """The model, or more if a finished trial beside `out` (same experiment) was larger."""
    largest = 0
    if out.parent.is_dir():
        for sibling in out.parent.iterdir():
            if sibling != out and (sibling / "trial.json").is_file():
                largest = max(largest, folder_bytes(sibling))
    return max(model_bytes, int(SIBLING_FACTOR * largest))


def free_bytes(path: Path) -> tuple[int, Path]:
    """Bytes available to us on the filesystem that holds (or will hold) `path`."""
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    stat = os.statvfs(probe)
    return stat.f_bavail * stat.f_frsize, probe


def require_space(out: Path, need: int, trial_id: str) -> dict[str, Any]:
    """Stop in one line, before anything is written, if the trial would not fit."""
    free, where = free_bytes(out)
    if free < need + MARGIN_BYTES:
        raise MigfwError(
            f"trial {trial_id}: {free / MIB:.1f} MiB free on the filesystem of {where}, the "
            f"trial needs about {need / MIB:.1f} MiB (+{MARGIN_BYTES // MIB} MiB margin); "
            "stopping: free space or point trials_dir elsewhere"
        )
    return {"free_mib": round(free / MIB, 1), "expected_mib": round(need / MIB, 1)}


def _enospc(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        text = str(exc)
        if "No space left on device" in text or f"[Errno {errno.ENOSPC}]" in text:
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def disk_full(folder: Path, exc: BaseException | None) -> bool:
    """True when `exc` (or what caused it) is ENOSPC, or the folder's filesystem is full."""
    if _enospc(exc):
        return True
    try:
        free, _ = free_bytes(folder)
    except OSError:
        return False
    return free < MIB


EMPTY_PCAP = struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1)  # ns, Ethernet
# Small files that are complete once written: kept in a trial that failed for lack of space.
KEEP = ("events.jsonl", "rule_checks.json", "ruleset_before.nft", "host_rules.nft",
        "nwfilter.xml")  # fmt: skip


def _migration_times(partial: Path) -> tuple[float | None, float | None]:
    start = end = None
    with contextlib.suppress(OSError):
        for line in (partial / "events.jsonl").read_text().splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if event.get("step") == "migrate_start":
                    start = event.get("t")
                elif event.get("step") in ("migrate_end", "migrate_failed"):
                    end = event.get("t")
    return start, end


def record_space_failure(
    partial: Path, out: Path, base: dict[str, Any], error: str
) -> dict[str, Any] | None:
    """Write the trial as failed for lack of space: its half-written files removed (the
    small complete ones kept), an empty probe.pcap, trial.json; the folder renamed into place.
    None when even that does not fit (the caller moves the folder aside instead)."""
    from migfw.trials.contract import validate_trial

    free_before, where = free_bytes(out.parent)
    removed = []
    for path in sorted(partial.iterdir()):
        if path.name in KEEP:
            continue
        with contextlib.suppress(OSError):
            removed.append((path.name, path.stat().st_size if path.is_file() else 0))
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    start, end = _migration_times(partial)
    meta = {
        **base,
        "status": "failed",
        "failure": (
            f"no space left on device ({where}) while the trial was written: {error}; its "
            f"incomplete files were removed ({', '.join(n for n, _ in removed) or 'none'})"
        ),
        "migration": {**base.get("migration", {}), "start": start, "end": end},
        "flags": ["disk_full"],
        "disk": {
            "free_bytes_at_failure": free_before,
            "removed": [{"file": n, "bytes": b} for n, b in removed],
        },  # fmt: skip
    }
    try:
        validate_trial(meta)
        (partial / "probe.pcap").write_bytes(EMPTY_PCAP)
        write_json(partial / "trial.json", meta)
        if out.exists():
            out.rmdir()
        partial.rename(out)
    except (OSError, MigfwError):
        return None
    return meta


def check_trial_space(
    out: Path,
    trial_id: str,
    interval_s: float,
    lead_in_s: float,
    settle_s: float,
    enforcement: dict[str, Any] | None,
    flows: dict[str, Any] | None,
) -> dict[str, Any]:
    """`require_space` for one trial, its size from its settings and its siblings."""
    rate = float((enforcement or {}).get("rate_hz") or 0)
    allowed = float((enforcement or {}).get("allowed_rate_hz") or min(rate, 100.0))
    flows_hz = float(flows.get("rate_hz", default("trials.flows.rate_hz")) if flows else 0.0)
    model = trial_bytes_model(interval_s, lead_in_s, settle_s, rate, allowed, flows_hz)
    return require_space(out, expected_trial_bytes(out, model), trial_id)


def after_failure(
    exc: BaseException, partial: Path, out: Path, base: dict[str, Any]
) -> dict[str, Any] | None:
    """The trial's trial.json when `exc` came from a full disk and the trial could be
    recorded as failed (see record_space_failure); None otherwise."""
    if isinstance(exc, KeyboardInterrupt) or not partial.exists():
        return None
    if not disk_full(partial, exc) or base.get("target") is None:
        return None
    return record_space_failure(partial, out, base, str(exc).splitlines()[0] if str(exc) else "")
