"""Live migration with libvirt-python: client-managed migrate3 or peer-to-peer migrateToURI3.

`migrate()` takes the migration's parameters as a dict (`migration_settings`: mode,
bandwidth_mibps, max_downtime_ms, algorithm, multifd_channels, xbzrle_cache_mib), turns them
into libvirt flags and VIR_MIGRATE_PARAM_* parameters, and returns epoch start/end, the
settings as requested and as in force (read back from libvirt and from QEMU's own
query-migrate-parameters/-capabilities), libvirt's completed-job statistics, the job's
statistics sampled on the source every `SAMPLE_PERIOD_S` (the `jobstats.csv` rows) and the
domain's lifecycle events on both hosts (`phases`).

Any failure, abort or refusal raises MigrationFailed with libvirt's reason and whatever was
recorded up to then (`details`); the caller records it as a failed trial (never silently
retried). A combination libvirt or QEMU refuses is such a failure, not a crash.

Bounded in time (`ProgressWatch`, from the same job-statistics samples): a migration whose
data processed stops increasing and whose remaining data stops decreasing for
`stall_timeout_s` is aborted through libvirt (`abortJob`) and raises MigrationStalled
("migration stalled: no progress for N s", with the last job statistics); a job-statistics
call that does not return for twice that long (PENDING_FACTOR) means the source's libvirtd
or the VM's QEMU stopped answering (MigrationFailed naming which, `details["unresponsive"]`),
and a libvirt connection whose keepalive times out (migfw.testbed.provision.connect) ends
the migrate call. A migration that finishes but had a stretch without progress of
`slow_stall_s` or more is marked slow (`watchdog.slow`; the trial flags it `migration_slow`).

Clock: every timestamp here is `time.time()` (CLOCK_REALTIME, epoch seconds) taken in this
process when the sample returned or the event was delivered; tcpdump stamps the probe capture
with the same kernel clock, so phases and probes share one clock. The error of an event's
timestamp is its delivery delay (QEMU → libvirtd → this process's event loop), which
`phases.delivery` estimates per trial from the job-stats round trips (`estimate_delivery`).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from migfw.config import default
from migfw.errors import MigfwError
from migfw.testbed.base import Testbed
from migfw.testbed.provision import connect

MODES = ("client", "p2p")
# Level names are slug-safe (they appear in trial ids): `autoconverge`, not auto-converge.
ALGORITHMS = ("precopy", "postcopy", "autoconverge", "multifd", "xbzrle")
ALGORITHM_ALIASES = {"auto-converge": "autoconverge"}
# The QEMU migration capability each non-default algorithm switches on.
ALGORITHM_CAPABILITY = {
    "postcopy": "postcopy-ram",
    "autoconverge": "auto-converge",
    "multifd": "multifd",
    "xbzrle": "xbzrle",
}
LIFECYCLE_EVENTS = ("defined", "undefined", "started", "suspended", "resumed", "stopped",
                    "shutdown", "pmsuspended", "crashed")  # fmt: skip
SAMPLE_PERIOD_S = 0.025  # job statistics polled this often (the contract asks for <= 50 ms)
# What migrateGetMaxSpeed returns when no cap is set: INT64_MAX bytes/s in MiB/s.
UNLIMITED_MIBPS = 2**63 // 2**20 - 1
# The config schema's `migration` defaults (the one place they live). stall_timeout_s and
# slow_stall_s are the progress watchdog (ProgressWatch): abort after this long without
# progress; flag a finished migration that had a stretch without progress this long.
DEFAULTS: dict[str, Any] = {
    key: default(f"migration.{key}")
    for key in ("mode", "bandwidth_mibps", "max_downtime_ms", "algorithm", "multifd_channels",
                "xbzrle_cache_mib", "stall_timeout_s", "slow_stall_s")
}  # fmt: skip
# After a stall: how long abortJob may take, and how long the migrate call then has to return.
ABORT_TIMEOUT_S = 10.0
RETURN_TIMEOUT_S = 30.0
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
# Lifecycle (event, detail) pairs → the phase they mark; first occurrence wins.
PHASE_OF = {
    ("suspended", "migrated"): "suspended",  # source: vCPUs stopped for stop-and-copy
    ("suspended", "postcopy"): "postcopy_switch",  # source: switched to post-copy
    ("resumed", "migrated"): "resumed",  # destination: guest runs again
    ("resumed", "postcopy"): "resumed",  # destination: guest runs (pages still pulled)
    ("stopped", "migrated"): "finished",  # source: migration finished, source gone
}


class MigrationFailed(MigfwError):
    """The hypervisor reported a failed, aborted or refused migration."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


class MigrationStalled(MigrationFailed):
    """No progress for `stall_timeout_s`: the watchdog aborted the migration."""


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


def validate_settings(mode: str, bandwidth_mibps: float, max_downtime_ms: float) -> None:
    migration_settings(
        {"mode": mode, "bandwidth_mibps": bandwidth_mibps, "max_downtime_ms": max_downtime_ms}
    )


def migration_settings(values: dict[str, Any], where: str = "migration") -> dict[str, Any]:
    """Validated, complete migration settings from a dict (config keys or trial factors).

    Unknown keys are ignored (the dict may hold other factors); a bad value is a one-line
    MigfwError naming `where.key`.
    """
    out = dict(DEFAULTS)
    out.update({k: v for k, v in values.items() if k in DEFAULTS and v is not None})
    if out["mode"] not in MODES:
        raise MigfwError(f"config {where}.mode: {out['mode']!r} is not one of {', '.join(MODES)}")
    out["algorithm"] = ALGORITHM_ALIASES.get(out["algorithm"], out["algorithm"])
    if out["algorithm"] not in ALGORITHMS:
        raise MigfwError(
            f"config {where}.algorithm: {out['algorithm']!r} is not one of {', '.join(ALGORITHMS)}"
        )
    numbers = ("bandwidth_mibps", "max_downtime_ms", "multifd_channels", "xbzrle_cache_mib",
               "stall_timeout_s", "slow_stall_s")  # fmt: skip
    for key in numbers:
        try:
            out[key] = float(out[key])
        except (TypeError, ValueError):
            raise MigfwError(f"config {where}.{key}: {out[key]!r} is not a number") from None
        if out[key] < 0:
            raise MigfwError(f"config {where}.{key}: {out[key]:g} is negative")
    if out["multifd_channels"] < 1 or out["multifd_channels"] != int(out["multifd_channels"]):
        raise MigfwError(
            f"config {where}.multifd_channels: {out['multifd_channels']:g} is not a whole "
            "number >= 1"
        )
    out["multifd_channels"] = int(out["multifd_channels"])
    if out["stall_timeout_s"] < 1:
        raise MigfwError(
            f"config {where}.stall_timeout_s: {out['stall_timeout_s']:g} s is below 1 s (the "
            "job statistics are sampled every 25 ms; shorter would abort healthy migrations)"
        )
    if not 0 < out["slow_stall_s"] < out["stall_timeout_s"]:
        raise MigfwError(
            f"config {where}.slow_stall_s: {out['slow_stall_s']:g} s must be above 0 and below "
            f"stall_timeout_s ({out['stall_timeout_s']:g} s)"
        )
    return out


def plan(settings: dict[str, Any], lv: Any) -> tuple[int, dict[str, Any]]:
    """libvirt flags and typed parameters (without the URI) for `settings`.

    `lv` is the libvirt module (passed in so this stays testable against its real constants).
    """
    flags = lv.VIR_MIGRATE_LIVE
    params: dict[str, Any] = {}
    if settings["bandwidth_mibps"] > 0:
        params[lv.VIR_MIGRATE_PARAM_BANDWIDTH] = int(settings["bandwidth_mibps"])
    algorithm = settings["algorithm"]
    if algorithm == "postcopy":
        flags |= lv.VIR_MIGRATE_POSTCOPY
        if settings["bandwidth_mibps"] > 0:  # the cap holds after the switch too
            params[lv.VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY] = int(settings["bandwidth_mibps"])
    elif algorithm == "autoconverge":
        flags |= lv.VIR_MIGRATE_AUTO_CONVERGE
    elif algorithm == "multifd":
        flags |= lv.VIR_MIGRATE_PARALLEL
        params[lv.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS] = int(settings["multifd_channels"])
    elif algorithm == "xbzrle":
        flags |= lv.VIR_MIGRATE_COMPRESSED
        params[lv.VIR_MIGRATE_PARAM_COMPRESSION] = "xbzrle"
        if settings["xbzrle_cache_mib"] > 0:
            params[lv.VIR_MIGRATE_PARAM_COMPRESSION_XBZRLE_CACHE] = int(
                settings["xbzrle_cache_mib"] * 1024 * 1024
            )
    return flags, params


def requested_record(settings: dict[str, Any]) -> dict[str, Any]:
    """trial.json `migration.requested`: what was asked for (0 = hypervisor default → null)."""
    return {
        "algorithm": settings["algorithm"],
        "bandwidth_mibps": settings["bandwidth_mibps"] or None,
        "max_downtime_ms": settings["max_downtime_ms"] or None,
        "multifd_channels": settings["multifd_channels"]
        if settings["algorithm"] == "multifd"
        else None,
        "xbzrle_cache_mib": settings["xbzrle_cache_mib"] or None,
    }


def in_force_record(
    max_speed_mibps: float | None,
    max_downtime_ms: float | None,
    qemu_parameters: dict[str, Any] | None,
    qemu_capabilities: dict[str, bool] | None,
    memory_mib: float | None,
    postcopy_started: bool,
) -> dict[str, Any]:
    """trial.json `migration.in_force`: the settings as libvirt and QEMU report them."""
    caps = qemu_capabilities or {}
    qp = qemu_parameters or {}
    algorithm = None
    if qemu_capabilities is not None:
        on = [name for name, cap in ALGORITHM_CAPABILITY.items() if caps.get(cap)]
        algorithm = "+".join(on) if on else "precopy"
    bandwidth = qp.get("max-bandwidth")
    return {
        "algorithm": algorithm,
        "bandwidth_mibps": max_speed_mibps,
        "max_downtime_ms": max_downtime_ms,
        # libvirt sets INT64_MAX bytes/s where no cap was asked for: no limit → null.
        "qemu_max_bandwidth_mibps": bandwidth / 2**20
        if isinstance(bandwidth, int) and bandwidth / 2**20 < UNLIMITED_MIBPS
        else None,
        "qemu_downtime_limit_ms": qp.get("downtime-limit"),
        "multifd_channels": qp.get("multifd-channels") if caps.get("multifd") else None,
        "xbzrle_cache_mib": qp["xbzrle-cache-size"] / 2**20
        if caps.get("xbzrle") and isinstance(qp.get("xbzrle-cache-size"), int)
        else None,
        "memory_mib": memory_mib,
        "postcopy_started": postcopy_started,
        "qemu_capabilities": sorted(k for k, v in caps.items() if v) if caps else None,
    }


# ------------------------------------------------------------------ event loop


def start_event_loop() -> None:
    """libvirt's default event loop (migfw.testbed.provision.ensure_event_loop): must run
    before the connections whose events we want are opened."""
    from migfw.testbed.provision import ensure_event_loop

    ensure_event_loop()


def _details(lv: Any, kind: str) -> dict[int, str]:
    """Detail code → name for one lifecycle event kind (VIR_DOMAIN_EVENT_<KIND>_<DETAIL>)."""
    prefix = f"VIR_DOMAIN_EVENT_{kind.upper()}_"
    return {
        getattr(lv, n): n[len(prefix) :].lower()
        for n in dir(lv)
        if n.startswith(prefix) and isinstance(getattr(lv, n), int) and "LAST" not in n
    }


class PhaseRecorder:
    """The domain's lifecycle and migration-iteration events on both hosts, timestamped."""

    def __init__(
        self,
        lv: Any,
        vm_name: str,
        conns: dict[str, Any],
        on_iteration: Callable[[int], None] | None = None,
    ) -> None:
        self.lv = lv
        self.on_iteration = on_iteration  # called in the event loop: must not block
        self.vm_name = vm_name
        self.events: list[dict[str, Any]] = []
        self.iterations: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.registered: list[tuple[Any, int]] = []
        self.event_names = {
            getattr(lv, f"VIR_DOMAIN_EVENT_{kind.upper()}"): kind
            for kind in LIFECYCLE_EVENTS
            if hasattr(lv, f"VIR_DOMAIN_EVENT_{kind.upper()}")
        }
        self.details = {kind: _details(lv, kind) for kind in self.event_names.values()}
        for host, conn in conns.items():
            ids = (
                conn.domainEventRegisterAny(
                    None, lv.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._lifecycle, host
                ),
                conn.domainEventRegisterAny(
                    None, lv.VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION, self._iteration, host
                ),
            )
            self.registered += [(conn, i) for i in ids]

    def _lifecycle(self, _conn: Any, dom: Any, event: int, detail: int, host: str) -> None:
        t = time.time()
        if dom.name() != self.vm_name:
            return
        kind = self.event_names.get(event, f"event{event}")
        name = self.details.get(kind, {}).get(detail, f"detail{detail}")
        with self.lock:
            self.events.append({"t": t, "host": host, "event": kind, "detail": name})

    def _iteration(self, _conn: Any, dom: Any, iteration: int, host: str) -> None:
        t = time.time()
        if dom.name() == self.vm_name:
            with self.lock:
                self.iterations.append({"t": t, "host": host, "iteration": int(iteration)})
            if self.on_iteration is not None:
                self.on_iteration(int(iteration))

    def wait_for(self, phases: tuple[str, ...], timeout_s: float) -> None:
        """Events trail the migrate call's return a little: wait (bounded) for `phases`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(self.record()[p] is not None for p in phases):
                return
            time.sleep(0.02)

    def close(self) -> None:
        for conn, cb_id in self.registered:
            with contextlib.suppress(self.lv.libvirtError):
                conn.domainEventDeregisterAny(cb_id)
        self.registered = []

    def record(self, postcopy_requested_at: float | None = None) -> dict[str, Any]:
        with self.lock:
            events = sorted(self.events, key=lambda e: e["t"])
            iterations = sorted(self.iterations, key=lambda e: e["t"])
        return phases_from_events(events, iterations, postcopy_requested_at)


def phases_from_events(
    events: list[dict[str, Any]],
    iterations: list[dict[str, Any]],
    postcopy_requested_at: float | None = None,
) -> dict[str, Any]:
    """trial.json `phases`: the raw events plus the first time of each named phase."""
    out: dict[str, Any] = {
        "clock": "CLOCK_REALTIME epoch s, stamped in the migfw process on event delivery",
        "suspended": None,
        "postcopy_switch": None,
        "resumed": None,
        "finished": None,
        "postcopy_requested": postcopy_requested_at,
        "events": events,
        "iterations": iterations,
    }
    for e in events:
        phase = PHASE_OF.get((e["event"], e["detail"]))
        if phase and out[phase] is None:
            out[phase] = e["t"]
    # The guest's blackout for the attack-window analysis (migfw.measure.attack reads
    # pause/resume): it stops at stop-and-copy or at the post-copy switch, whichever is first.
    stops = [t for t in (out["suspended"], out["postcopy_switch"]) if t is not None]
    out["pause"] = min(stops) if stops else None
    out["resume"] = out["resumed"]
    return out


# ------------------------------------------------------------------ job sampler


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


class ProgressWatch:
    """How long a migration has gone without progress, from its job-statistics samples.

    Progress is the data processed increasing or the data remaining decreasing (libvirt's
    `data_processed`/`data_remaining`: RAM, device state and disks). A stretch without
    progress is proven by samples only: from the sample that last showed progress to the
    start of the latest call that still showed none - a slow call (libvirtd busy for
    seconds) that comes back with progress proves nothing. Not counted: the stretch after
    the last byte is sent (remaining 0: the switchover, the destination finishing). The set-up
    before the first byte (a destination that is not ready) is kept apart (`setup_s`). A call
    that does not return at all is `pending_s` (the source's libvirtd or QEMU does not
    answer). All times are monotonic seconds: a stepped wall clock cannot fake or hide a stall.
    """

    def __init__(self, started: float) -> None:
        self.started = started
        self.last_progress = started
        self.quiet_until: float | None = None  # start of the latest call showing no progress
        self.longest = 0.0  # the longest proven stretch without progress once streaming
        self.setup_s: float | None = None  # set-up: the call to the first byte moved
        self.processed: int | None = None
        self.remaining: int | None = None
        self.streaming = False  # the first byte has moved
        self.done_sending = False  # remaining reached 0 after data moved
        self.last_stats: dict[str, Any] | None = None
        self.last_progress_stats: dict[str, Any] | None = None
        self.call_started: float | None = None  # a sample call in flight since
        self.lock = threading.Lock()

    def calling(self, now: float) -> None:
        with self.lock:
            self.call_started = now

    def sample(self, now: float, stats: dict[str, Any] | None, began: float | None = None) -> None:
        """One returned sample (`stats` None: the call failed or no job runs), its call made
        at `began` (default `now`)."""
        began = now if began is None else began
        with self.lock:
            self.call_started = None
            if not stats:
                return
            self.last_stats = stats
            processed, remaining = stats.get("data_processed"), stats.get("data_remaining")
            moved = processed is not None and processed > (self.processed or 0)
            drained = (
                remaining is not None and self.remaining is not None and remaining < self.remaining
            )
            if processed is not None:
                self.processed = max(processed, self.processed or 0)
            if remaining is not None:
                self.remaining = remaining
            if moved or drained:
                if not self.streaming:
                    self.setup_s = now - self.started
                elif self.quiet_until is not None:
                    self.longest = max(self.longest, self.quiet_until - self.last_progress)
                self.streaming = True
                self.last_progress, self.quiet_until = now, None
                self.last_progress_stats = stats
            else:
                self.quiet_until = max(began, self.quiet_until or began)
            self.done_sending = self.streaming and remaining == 0
            if self.done_sending:  # the switchover is not a stall: nothing to prove
                self.last_progress, self.quiet_until = now, None

    def idle_s(self, now: float | None = None) -> float:
        """Proven seconds without progress so far (0 once all data is sent)."""
        with self.lock:
            if self.done_sending or self.quiet_until is None:
                return 0.0
            return max(0.0, self.quiet_until - self.last_progress)

    def pending_s(self, now: float) -> float:
        """Seconds the sample call in flight has been waiting for libvirt (0 if none)."""
        with self.lock:
            return 0.0 if self.call_started is None else now - self.call_started

    def longest_s(self) -> float:
        """The longest proven stretch without progress after the first byte, the current
        one included."""
        current = self.idle_s() if self.streaming else 0.0
        with self.lock:
            return max(self.longest, current)

    def record(self, settings: dict[str, Any]) -> dict[str, Any]:
        """trial.json `migration.watchdog`."""
        longest = self.longest_s()
        return {
            "stall_timeout_s": settings["stall_timeout_s"],
            "slow_stall_s": settings["slow_stall_s"],
            "longest_no_progress_s": round(longest, 3),
            "setup_s": None if self.setup_s is None else round(self.setup_s, 3),
            "slow": longest >= settings["slow_stall_s"],
            "streamed": self.streaming,
        }


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


def migrate(
    bed: Testbed,
    source: str,
    destination: str,
    settings: dict[str, Any] | None = None,
    timeout_s: float = 300,
) -> dict[str, Any]:
    """Live-migrate the VM from host `source` to `destination`; raises MigrationFailed."""
    import libvirt

    settings = migration_settings(settings or {})
    start_event_loop()  # before the connections are opened, or they carry no events
    # The call's own time: the monitor commands below block while the guest's QEMU is
    # stopped, so a later timestamp would shift with a frozen guest.
    start = time.time()
    sconn = connect(bed, source, keepalive=False)
    try:
        dconn = connect(bed, destination, keepalive=False)
    except BaseException:
        sconn.close()
        raise
    liveness = Liveness({h: bed.hosts[h].uri for h in (source, destination)})
    done: threading.Event | None = None
    recorder: PhaseRecorder | None = None
    sampler: JobSampler | None = None
    details: dict[str, Any] = {"requested": requested_record(settings), "settings": settings}
    try:
        try:
            dom = sconn.lookupByName(bed.vm_name)
        except libvirt.libvirtError as exc:
            raise MigrationFailed(
                f"VM {bed.vm_name} not found on host {source}: {exc}", details
            ) from exc
        if settings["max_downtime_ms"] > 0:
            try:
                dom.migrateSetMaxDowntime(int(settings["max_downtime_ms"]), 0)
            except libvirt.libvirtError as exc:
                raise MigrationFailed(f"max downtime refused: {exc}", details) from exc
        flags, params = plan(settings, libvirt)
        params[libvirt.VIR_MIGRATE_PARAM_URI] = bed.hosts[destination].migration_uri
        details["flags"] = flags
        outcome: dict[str, Any] = {}
        done = threading.Event()
        sampler = JobSampler(libvirt, dom, settings)
        recorder = PhaseRecorder(
            libvirt, bed.vm_name, {source: sconn, destination: dconn}, sampler.on_iteration
        )

        def run() -> None:
            try:
                if settings["mode"] == "client":
                    outcome["ddom"] = dom.migrate3(dconn, params, flags)
                else:
                    dom.migrateToURI3(
                        bed.hosts[destination].uri, params, flags | libvirt.VIR_MIGRATE_PEER2PEER
                    )
            except libvirt.libvirtError as exc:
                outcome["error"] = str(exc)
            finally:
                done.set()

        # Waiting on an Event, not Thread.join: a Ctrl-C inside join() can leave CPython 3.11
        # believing the thread has stopped (bpo-45274 handling), and closing the connections
        # under a running migrate3 crashed libvirt's client (SIGSEGV) in our tests.
        worker = threading.Thread(target=run, name="migrate", daemon=True)
        try:
            worker.start()
            sampler.start()
            liveness.start()
            verdict = _watch(done, sampler, liveness, source, settings, timeout_s)
        except KeyboardInterrupt:
            _abort(dom)  # Ctrl-C: stop the migration, wait until libvirt has returned
            _wait(done, 120)
            raise
        finally:
            if done.is_set():
                sampler.finish()
        end = time.time()
        if verdict is not None:
            _give_up(verdict, source, destination, dom, done, sampler, liveness, recorder,
                     details, start, timeout_s)  # fmt: skip
        wanted = ("resumed", "finished") if "error" not in outcome else ()
        recorder.wait_for(wanted, 2.0)
        details.update(_recorded(recorder, sampler, start, end))
        details["watchdog"] = sampler.watch.record(settings)
        if "error" in outcome:
            raise MigrationFailed(
                f"migration {source}→{destination} failed: {outcome['error']}", details
            )
        stats = _completed_stats(outcome.get("ddom"), dconn, dom, bed.vm_name)
        return {
            "start": start,
            "end": end,
            "source": source,
            "destination": destination,
            "mode": settings["mode"],
            "bandwidth_mibps": settings["bandwidth_mibps"] or None,
            "max_downtime_ms": (details["in_force"] or {}).get("max_downtime_ms")
            or (settings["max_downtime_ms"] or None),
            "hypervisor": summarize_job_stats(stats),
            **details,
        }
    finally:
        liveness.stop()
        if recorder is not None and (done is None or done.is_set()):
            recorder.close()
        # Never close connections a still-running migrate call uses (use after free).
        if done is None or done.is_set():
            for conn in (sconn, dconn):
                with contextlib.suppress(libvirt.libvirtError):
                    conn.close()


WATCH_PERIOD_S = 0.1
# Before the first byte moves (libvirt preparing the destination, starting its QEMU: 1.5-4.5 s
# measured on the loaded 2-core machine) the bound is this many stall timeouts.
SETUP_FACTOR = 3
# A job-statistics call waits on QEMU's monitor, which a TCG QEMU held for 5.0 s early in a
# healthy migration (the first after a re-provision; it then finished): a call pending this
# many stall timeouts, not one, names the VM's QEMU as not answering.
PENDING_FACTOR = 2
LIVENESS_PERIOD_S = 1.0


class Liveness:
    """Both daemons asked, each by its own thread over its own connection (no keepalive),
    for a trivial call (getLibVersion) every LIVENESS_PERIOD_S; `silent_s(host)` is the time
    since the last answer. A stopped daemon leaves its thread waiting in the call until it
    answers or dies (then the connection is opened again). One connection per host, not one
    per question: over qemu+libssh each opening is an SSH login."""

    def __init__(self, uris: dict[str, str]) -> None:
        self.uris = uris
        now = time.monotonic()
        self.last_answer = {h: now for h in uris}
        self.last_error: dict[str, str | None] = {h: None for h in uris}
        self.stopped = threading.Event()
        self.lock = threading.Lock()

    def start(self) -> None:
        for host in self.uris:
            threading.Thread(target=self._run, args=(host,), name=f"liveness-{host}",
                             daemon=True).start()  # fmt: skip

    def stop(self) -> None:
        self.stopped.set()

    def _run(self, host: str) -> None:
        import libvirt

        conn = None
        while not self.stopped.is_set():
            try:
                if conn is None:
                    conn = libvirt.open(self.uris[host])
                conn.getLibVersion()
                with self.lock:
                    self.last_answer[host], self.last_error[host] = time.monotonic(), None
            except libvirt.libvirtError as exc:
                with self.lock:
                    self.last_error[host] = str(exc)
                if conn is not None:
                    with contextlib.suppress(libvirt.libvirtError):
                        conn.close()
                conn = None
            self.stopped.wait(LIVENESS_PERIOD_S)
        if conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()

    def silent_s(self, host: str, now: float) -> float:
        with self.lock:
            return now - self.last_answer[host]


def _watch(
    done: threading.Event,
    sampler: JobSampler,
    liveness: Liveness,
    source: str,
    settings: dict[str, Any],
    timeout_s: float,
) -> str | None:
    """Wait for the migrate call; None when it returned, else why to give up on it:
    `stalled` (samples show no progress), `unanswered:<host>` (that host's libvirtd answers
    nothing, or - the source - a job-statistics call hangs) or `timeout`."""
    limit = settings["stall_timeout_s"]
    deadline = time.monotonic() + timeout_s
    watch = sampler.watch
    while not done.wait(WATCH_PERIOD_S):
        now = time.monotonic()
        for host in liveness.uris:
            if liveness.silent_s(host, now) >= limit:
                return f"unanswered:{host}"
        if watch.pending_s(now) >= PENDING_FACTOR * limit:
            return f"unanswered:{source}"  # the source's QEMU (or its libvirtd)
        if watch.idle_s(now) >= (limit if watch.streaming else SETUP_FACTOR * limit):
            return "stalled"
        if now >= deadline:
            return "timeout"
    return None


def _give_up(
    verdict: str,
    source: str,
    destination: str,
    dom: Any,
    done: threading.Event,
    sampler: JobSampler,
    liveness: Liveness,
    recorder: PhaseRecorder,
    details: dict[str, Any],
    start: float,
    timeout_s: float,
) -> None:
    """Stop a migration the watchdog gave up on, record what is known, raise MigrationFailed.

    Stalled, too long, or the destination not answering: abortJob through the source's
    libvirtd (bounded), then a bounded wait for the migrate call to return. The source's
    libvirtd or QEMU not answering: nothing is sent to it (it would hang too). A call that
    does not return is left to the testbed's repair, which restarts the hung daemon or kills
    the hung QEMU by PID; the call then fails and returns."""
    now = time.monotonic()
    watch, settings = sampler.watch, details["settings"]
    idle = watch.idle_s(now)
    arrow = f"{source}→{destination}"
    abort_error = None
    hung = verdict.partition(":")[2] or None
    if hung is not None:
        silent = liveness.silent_s(hung, now)
        if silent >= settings["stall_timeout_s"]:
            what = "libvirtd"
            why = f"no answer to a call for {silent:.0f} s"
        else:  # the daemon answers; its job-statistics call, i.e. the VM's QEMU, does not
            what = "the VM's QEMU"
            why = (f"job statistics unanswered for {watch.pending_s(now):.0f} s while its "
                   "libvirtd answers")  # fmt: skip
        details["unresponsive"] = {
            "what": what.removeprefix("the VM's "),
            "host": hung,
            "detail": why,
            "error": liveness.last_error.get(hung),
        }
        reason = f"migration {arrow} failed: {what} on host {hung} does not answer ({why})"
        if hung == destination:  # the source can still stop the migration
            abort_error = _abort_bounded(dom, ABORT_TIMEOUT_S)
            reason += "; aborted" if abort_error is None else f"; abort failed: {abort_error}"
        _wait(done, 1.0)
    else:
        abort_error = _abort_bounded(dom, ABORT_TIMEOUT_S)
        _wait(done, RETURN_TIMEOUT_S)
        if verdict == "stalled":
            reason = f"migration stalled: no progress for {idle:.0f} s ({arrow}; " + (
                _progress_text(watch.last_stats) if watch.streaming
                else "the migration stream never started"
            ) + ")"  # fmt: skip
        else:
            reason = f"migration {arrow} exceeded {timeout_s:.0f} s"
        reason += "; aborted" if abort_error is None else f"; abort failed: {abort_error}"
        if not done.is_set():
            reason += f"; the migrate call had not returned {RETURN_TIMEOUT_S:.0f} s later"
    sampler.finish(wait_s=0.0 if not done.is_set() else 10.0)
    details.update(_recorded(recorder, sampler, start, time.time()))
    details["watchdog"] = {
        **watch.record(settings),
        "verdict": verdict,
        "no_progress_s": round(idle, 3),
        "last_jobstats": _plain_stats(watch.last_stats),
        "last_progress_jobstats": _plain_stats(watch.last_progress_stats),
        "sample_errors": sampler.errors[:3],
        "abort_error": abort_error,
        "call_returned": done.is_set(),
    }
    if verdict == "stalled":
        raise MigrationStalled(reason, details)
    raise MigrationFailed(reason, details)


def _plain_stats(stats: dict[str, Any] | None) -> dict[str, Any] | None:
    if stats is None:
        return None
    return {k: v for k, v in stats.items() if isinstance(v, int | float | str)}


def _progress_text(stats: dict[str, Any] | None) -> str:
    stats = stats or {}
    mib = 2**20
    processed, remaining = stats.get("data_processed"), stats.get("data_remaining")
    if processed is None or remaining is None:
        return "no data counters"
    return f"{processed / mib:.1f} MiB sent, {remaining / mib:.1f} MiB remaining"


def _abort_bounded(dom: Any, timeout_s: float) -> str | None:
    """abortJob in a thread, waited for at most `timeout_s`: None, or why it failed."""
    import libvirt

    outcome: dict[str, str] = {}
    returned = threading.Event()

    def run() -> None:
        try:
            dom.abortJob()
        except libvirt.libvirtError as exc:
            outcome["error"] = str(exc)
        finally:
            returned.set()

    threading.Thread(target=run, name="abort", daemon=True).start()
    if not returned.wait(timeout_s):
        return f"no answer within {timeout_s:.0f} s"
    return outcome.get("error")


def _recorded(
    recorder: PhaseRecorder, sampler: JobSampler, start: float, end: float
) -> dict[str, Any]:
    phases = recorder.record(sampler.postcopy_requested_at)
    phases["migrate_call"] = {"start": start, "end": end}
    phases["postcopy_error"] = sampler.postcopy_error
    phases["sampling"] = sampling_summary(sampler.rows, SAMPLE_PERIOD_S)
    phases["delivery"] = estimate_delivery(sampler.rows)
    in_force = dict(sampler.in_force or in_force_record(None, None, None, None, None, False))
    in_force["postcopy_started"] = phases["postcopy_switch"] is not None
    return {"jobstats": sampler.rows, "phases": phases, "in_force": in_force}


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


def _wait(done: threading.Event, timeout_s: float) -> None:
    """Wait for the migrate call to return; further Ctrl-Cs do not cut the wait short."""
    deadline = time.monotonic() + timeout_s
    while not done.is_set() and time.monotonic() < deadline:
        try:
            done.wait(max(0.0, deadline - time.monotonic()))
        except KeyboardInterrupt:
            continue


def _abort(dom: Any) -> None:
    import libvirt

    try:
        dom.abortJob()
    except libvirt.libvirtError:
        pass


def _completed_stats(ddom: Any, dconn: Any, sdom: Any, name: str) -> dict[str, Any]:
    """Completed-job stats: the destination's domain has downtime; fall back to the source."""
    import libvirt

    candidates = [ddom]
    try:
        candidates.append(dconn.lookupByName(name))
    except libvirt.libvirtError:
        pass
    candidates.append(sdom)
    for dom in candidates:
        if dom is None:
            continue
        try:
            stats = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        except libvirt.libvirtError:
            continue
        if stats and "time_elapsed" in stats:
            return stats
    return {}


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
