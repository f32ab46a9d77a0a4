"""The `service` workload's requests as trials.csv columns (service.csv, migfw.testbed.service).

Per trial:
  service_requests  requests sent (every service)
  service_ok        requests whose service answered (outcome ok)
  service_failed    the others (refused, timeout, reset, closed, unreachable, error)
  service_gap_ms    the longest interval without a successful completion around the
                    migration: the ok completion times, bounded by the load's first send and
                    its last outcome, cut the load into intervals; the longest of those that
                    overlap the migration window [migration.start, migration.end] (empty if
                    the load does not overlap it)
  service_p50_ms, service_p99_ms
                    latency (completion - send) of the ok requests, numpy's linear percentile
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from migfw.trials.contract import read_service

SERVICE_COLUMNS = [
    "service_requests",
    "service_ok",
    "service_failed",
    "service_gap_ms",
    "service_p50_ms",
    "service_p99_ms",
]


def longest_gap_ns(log: dict[str, np.ndarray], window: tuple[int, int] | None) -> int | None:
    """The longest stretch without an ok completion that overlaps `window` (epoch ns)."""
    if window is None or len(log["send"]) == 0:
        return None
    ok = log["outcome"] == "ok"
    first = int(log["send"].min())
    last = int(np.maximum(log["done"], log["send"]).max())
    points = np.unique(np.concatenate([[first], log["done"][ok], [last]]))
    lo, hi = points[:-1], points[1:]
    overlap = (lo < window[1]) & (hi > window[0])
    return int((hi - lo)[overlap].max()) if overlap.any() else None


def service_metrics(trial_dir: str | Path, meta: dict[str, Any]) -> dict[str, Any]:
    """The service columns of one trial; empty dict if it has no service.csv."""
    path = Path(trial_dir) / "service.csv"
    if not path.exists():
        return {}
    log = read_service(path)
    ok = log["outcome"] == "ok"
    latency_ms = (log["done"][ok] - log["send"][ok]) / 1e6
    migration = meta.get("migration") or {}
    start, end = migration.get("start"), migration.get("end")
    window = (round(start * 1e9), round(end * 1e9)) if start is not None and end else None
    gap = longest_gap_ns(log, window)
    return {
        "service_requests": int(len(ok)),
        "service_ok": int(ok.sum()),
        "service_failed": int((~ok).sum()),
        "service_gap_ms": None if gap is None else gap / 1e6,
        "service_p50_ms": float(np.percentile(latency_ms, 50)) if ok.any() else None,
        "service_p99_ms": float(np.percentile(latency_ms, 99)) if ok.any() else None,
    }
