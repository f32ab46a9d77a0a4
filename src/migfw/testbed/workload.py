"""What the guest does during a trial (the `workload` factor).

- `idle`: nothing beyond its services (the default; what every trial did before).
- `dirty`: `migfw-dirty` (resources/guest/dirty.c, compiled into the guest image) writes a
  working set of `dirty_mib` MiB at `dirty_rate_mibps` MiB/s from before the lead-in until
  after the settle time; its own report (what it achieved) goes into trial.json `workload`.
- `service`: the guest's allowed services under steady request load from the prober side:
  `service_rate_hz` new connections per second to each of them (migfw.testbed.service,
  started by the trial runner where the prober runs; `service.csv`). Nothing runs in the guest
  beyond its own services.

Started and stopped over SSH (fabric, through migfw.testbed.deploy.GuestShell).
"""

from __future__ import annotations

import shlex
from typing import Any

from migfw.errors import MigfwError

WORKLOADS = ("idle", "dirty", "service")
REPORT = "/run/migfw-dirty.report"
PIDFILE = "/run/migfw-dirty.pid"
DEFAULTS = {"workload": "idle", "dirty_mib": 32.0, "dirty_rate_mibps": 8.0, "service_rate_hz": 2.0}
# Requests per second per service: at most this many (each is a TCP connection held open for
# up to migfw.testbed.service.TIMEOUT_S, so the client's descriptors stay well below 1024, and
# a 1-vCPU TCG guest forks one shell per FTP request).
MAX_SERVICE_RATE_HZ = 50.0


def workload_settings(values: dict[str, Any], where: str = "workload") -> dict[str, Any]:
    """Validated workload settings from a dict (trial factors); unknown keys are ignored."""
    out = dict(DEFAULTS)
    out.update({k: v for k, v in values.items() if k in DEFAULTS and v is not None})
    if out["workload"] not in WORKLOADS:
        raise MigfwError(
            f"config {where}: {out['workload']!r} is not one of {', '.join(WORKLOADS)}"
        )
    for key in ("dirty_mib", "dirty_rate_mibps", "service_rate_hz"):
        try:
            out[key] = float(out[key])
        except (TypeError, ValueError):
            raise MigfwError(f"config {key}: {out[key]!r} is not a number") from None
    if out["dirty_mib"] <= 0:
        raise MigfwError(f"config dirty_mib: {out['dirty_mib']:g} must be positive")
    if out["dirty_rate_mibps"] < 0:
        raise MigfwError(f"config dirty_rate_mibps: {out['dirty_rate_mibps']:g} is negative")
    if not 0 < out["service_rate_hz"] <= MAX_SERVICE_RATE_HZ:
        raise MigfwError(f"config service_rate_hz: {out['service_rate_hz']:g} must be above 0 "
                         f"and at most {MAX_SERVICE_RATE_HZ:g}")  # fmt: skip
    return out


def parse_report(text: str) -> dict[str, Any]:
    """migfw-dirty's one-line `key=value ...` report → numbers."""
    out: dict[str, Any] = {}
    for part in text.split():
        key, sep, value = part.partition("=")
        if not sep:
            continue
        try:
            out[key] = int(value) if value.isdigit() else float(value)
        except ValueError:
            out[key] = value
    return out


def start(shell: Any, settings: dict[str, Any]) -> None:
    """Start the workload in the guest (returns at once; it runs until `stop`)."""
    if settings["workload"] != "dirty":
        return
    args = " ".join(
        shlex.quote(str(a)) for a in (settings["dirty_mib"], settings["dirty_rate_mibps"], REPORT)
    )
    shell.run(
        f"rm -f {REPORT}; setsid migfw-dirty {args} </dev/null >/dev/null 2>&1 & "
        f"echo $! > {PIDFILE}"
    )
    # It is running once its first report exists (after it made the set resident).
    shell.run(f"i=0; while [ ! -s {REPORT} ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done;"
              f" test -s {REPORT}")  # fmt: skip


def stop(shell: Any, settings: dict[str, Any]) -> dict[str, Any]:
    """Stop the workload and return trial.json `workload`: the settings and its own report."""
    record: dict[str, Any] = {"name": settings["workload"]}
    if settings["workload"] != "dirty":
        return record
    record.update(dirty_mib=settings["dirty_mib"], dirty_rate_mibps=settings["dirty_rate_mibps"])
    shell.run(f"kill $(cat {PIDFILE}); i=0; while kill -0 $(cat {PIDFILE}) 2>/dev/null && "
              f"[ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done", check=False)  # fmt: skip
    record["report"] = parse_report(shell.run(f"cat {REPORT}", check=False))
    return record
