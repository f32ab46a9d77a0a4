"""The source's job statistics during a migration: `JobSampler` polls them every
`SAMPLE_PERIOD_S` (the jobstats.csv rows), switches to post-copy after the first pass, reads
the settings in force once QEMU copies RAM, and feeds the progress watchdog
(migfw.testbed.migration_watchdog.ProgressWatch); the completed job's statistics become the
trial.json `hypervisor` block (`summarize_job_stats`).

Clock: a row's `t` is `time.time()` when the sample returned; `rpc_ms` is the call's round
trip, from which `estimate_delivery` bounds the error of the lifecycle events' timestamps.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from typing import Any

from migfw.testbed.migration_settings import UNLIMITED_MIBPS, in_force_record
from migfw.testbed.migration_watchdog import ProgressWatch

SAMPLE_PERIOD_S = 0.025  # job statistics polled this often (the contract asks for <= 50 ms)
# jobstats.csv columns: sample time, then libvirt's typed-parameter names (active job).
JOBSTAT_FIELDS = [
    "time_elapsed",
    "data_total",
    "data_processed",
    "data_remaining",
    "memory_total",
    "memory_processed",
    "memory_remaining",
    "memory_iteration",
    "memory_dirty_rate",
    "memory_page_size",
    "memory_bps",
    "downtime",
    "auto_converge_throttle",
    "compression_cache_misses",
    "compression_overflow",
    "memory_postcopy_requests",
]
JOBSTATS_COLUMNS = ["t", "rpc_ms", "job_type", *JOBSTAT_FIELDS, "dirty_rate_mibps"]


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def summarize_job_stats(stats: dict[str, Any]) -> dict[str, Any]:
    """libvirt's typed-parameter names → the trial.json `hypervisor` block (ms, bytes)."""
    return {
        "downtime_ms": _num(stats.get("downtime")),
        "total_ms": _num(stats.get("time_elapsed")),
        "setup_ms": _num(stats.get("setup_time")),
        "data_total_bytes": stats.get("data_total"),
        "data_processed_bytes": stats.get("data_processed"),
        "memory_processed_bytes": stats.get("memory_processed"),
        "memory_iterations": stats.get("memory_iteration"),
        "raw": {k: v for k, v in stats.items() if isinstance(v, int | float | str)},
    }


def jobstats_row(
    t: float, job_type: int, stats: dict[str, Any], rpc_ms: float | None = None
) -> dict[str, Any]:
    """One jobstats.csv row; the dirty rate in MiB/s = pages/s × page size."""
    row: dict[str, Any] = {"t": round(t, 6), "rpc_ms": rpc_ms, "job_type": job_type}
    for key in JOBSTAT_FIELDS:
        row[key] = stats.get(key)
    rate, page = stats.get("memory_dirty_rate"), stats.get("memory_page_size")
    row["dirty_rate_mibps"] = rate * page / 2**20 if rate is not None and page else None
    return row


class JobSampler:
    """Polls the source's job statistics; switches to post-copy after the first pass; reads
    the settings in force once the job runs; feeds the progress watchdog."""

    def __init__(self, lv: Any, dom: Any, settings: dict[str, Any]) -> None:
        self.lv, self.dom, self.settings = lv, dom, settings
        self.watch = ProgressWatch(time.monotonic())
        self.rows: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.in_force: dict[str, Any] | None = None
        self.postcopy_requested_at: float | None = None
        self.postcopy_error: str | None = None
        self.errors: list[str] = []
        # Set when the first pass is over (iteration event or a sample with iteration >= 2);
        # the post-copy switch runs in its own thread, as soon as possible after that.
        self.first_pass_done = threading.Event()
        self.threads = [threading.Thread(target=self._run, name="jobstats", daemon=True)]
        if settings["algorithm"] == "postcopy":
            self.threads.append(
                threading.Thread(target=self._postcopy, name="postcopy", daemon=True)
            )

    def on_iteration(self, iteration: int) -> None:
        """MIGRATION_ITERATION event hook (event-loop thread): flag the end of pass 1."""
        if iteration >= 2:
            self.first_pass_done.set()

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self, wait_s: float = 10.0) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(wait_s)  # a sample call stuck in a hung daemon stays behind

    def _postcopy(self) -> None:
        while not self.stop.is_set():
            if self.first_pass_done.wait(0.05):
                self._start_postcopy()
                return

    def _run(self) -> None:
        lv = self.lv
        while not self.stop.is_set():
            began = time.monotonic()
            self.watch.calling(began)
            try:
                stats = self.dom.jobStats(0)
            except lv.libvirtError as exc:
                self.errors.append(str(exc))
                stats = {}
            t = time.time()
            returned = time.monotonic()
            rpc_ms = round(1000 * (returned - began), 2)
            job_type = int(stats.get("type", lv.VIR_DOMAIN_JOB_NONE))
            active = job_type != lv.VIR_DOMAIN_JOB_NONE
            self.watch.sample(returned, stats if active else None, began)
            if active:
                self.rows.append(jobstats_row(t, job_type, stats, rpc_ms))
                if self.in_force is None and (stats.get("memory_total") or 0) > 0:
                    # QEMU is copying RAM: libvirt has applied this migration's parameters.
                    self.watch.calling(time.monotonic())  # monitor calls: may hang too
                    self.in_force = self._read_in_force()
                    self.watch.sample(time.monotonic(), None)
                if (stats.get("memory_iteration") or 0) >= 2:
                    self.first_pass_done.set()
            self.stop.wait(max(0.0, SAMPLE_PERIOD_S - (time.monotonic() - began)))

    def _start_postcopy(self) -> None:
        self.postcopy_requested_at = time.time()
        try:
            self.dom.migrateStartPostCopy(0)
        except self.lv.libvirtError as exc:
            self.postcopy_error = str(exc)

    def _read_in_force(self) -> dict[str, Any]:
        lv = self.lv
        speed = downtime = None
        with contextlib.suppress(lv.libvirtError):
            speed = float(self.dom.migrateGetMaxSpeed(0))
            if speed >= UNLIMITED_MIBPS:  # libvirt's "no limit set" (INT64_MAX bytes in MiB)
                speed = None
        with contextlib.suppress(lv.libvirtError):
            downtime = float(self.dom.migrateGetMaxDowntime(0))
        params, caps = _qemu_migration_state(self.dom)
        memory = None
        with contextlib.suppress(lv.libvirtError):
            memory = self.dom.maxMemory() / 1024
        return in_force_record(speed, downtime, params, caps, memory, False)


def _qemu_migration_state(dom: Any) -> tuple[dict[str, Any] | None, dict[str, bool] | None]:
    """QEMU's own view (query-migrate-parameters/-capabilities) through libvirt's QMP pass-through.

    libvirt marks the domain "custom-monitor" tainted for this; read-only queries are harmless.
    """
    try:
        import libvirt
        import libvirt_qemu
    except ImportError:
        return None, None
    try:
        params = json.loads(
            libvirt_qemu.qemuMonitorCommand(dom, '{"execute":"query-migrate-parameters"}', 0)
        )["return"]
        caps_list = json.loads(
            libvirt_qemu.qemuMonitorCommand(dom, '{"execute":"query-migrate-capabilities"}', 0)
        )["return"]
    except (libvirt.libvirtError, KeyError, ValueError):
        return None, None
    return params, {c["capability"]: bool(c["state"]) for c in caps_list}


# ------------------------------------------------------------------ migrate


def sampling_summary(rows: list[dict[str, Any]], period_s: float) -> dict[str, Any]:
    """How regular the job-stats sampling was (the clock of jobstats.csv)."""
    ts = [r["t"] for r in rows]
    gaps = [b - a for a, b in zip(ts, ts[1:], strict=False)]
    return {
        "period_s": period_s,
        "samples": len(rows),
        "max_gap_ms": round(1000 * max(gaps), 1) if gaps else None,
        "median_gap_ms": round(1000 * sorted(gaps)[len(gaps) // 2], 1) if gaps else None,
    }


def estimate_delivery(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The error of an event's timestamp, estimated from this trial's job-stats round trips.

    An event travels QEMU → libvirtd → this process like the answer to a jobStats call does,
    so its delivery delay is about half a round trip: `typical_ms` = median round trip / 2,
    `max_ms` = the longest round trip seen (a bound while the machine behaved as sampled).
    """
    rtts = sorted(r["rpc_ms"] for r in rows if r.get("rpc_ms") is not None)
    if not rtts:
        return {"typical_ms": None, "max_ms": None}
    return {"typical_ms": round(rtts[len(rtts) // 2] / 2, 2), "max_ms": round(rtts[-1], 2)}


def write_jobstats(path: Any, rows: list[dict[str, Any]]) -> None:
    """jobstats.csv (atomic): one row per sample of the source's job statistics."""
    import csv
    import io

    from migfw.io import atomic_write

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=JOBSTATS_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in JOBSTATS_COLUMNS})
    with atomic_write(path) as handle:
        handle.write(buf.getvalue())
