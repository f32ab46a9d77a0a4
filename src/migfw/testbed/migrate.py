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
call that does not return for twice that long (PENDING_FACTOR) while the VM's QEMU uses no
CPU (or for six times that long: BUSY_PENDING_FACTOR) means the source's libvirtd or the VM's
QEMU stopped answering (MigrationFailed naming which, `details["unresponsive"]`),
and a libvirt connection whose keepalive times out (migfw.testbed.provision.connect) ends
the migrate call. A migration that finishes but had a stretch without progress of
`slow_stall_s` or more is marked slow (`watchdog.slow`; the trial flags it `migration_slow`).

The parts, one module each: migration_settings (validation, libvirt flags and parameters,
the requested/in-force records), migration_events (lifecycle events → `phases`),
migration_jobstats (the sampler → jobstats.csv, in-force settings, post-copy switch) and
migration_watchdog (progress, daemon liveness, when to give up); this module makes the call,
gives up on it when the watchdog says so, and assembles what they recorded.

Clock: every timestamp here is `time.time()` (CLOCK_REALTIME, epoch seconds) taken in this
process when the sample returned or the event was delivered; tcpdump stamps the probe capture
with the same kernel clock, so phases and probes share one clock. The error of an event's
timestamp is its delivery delay (QEMU → libvirtd → this process's event loop), which
`phases.delivery` estimates per trial from the job-stats round trips (`estimate_delivery`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from migfw.errors import MigfwError
from migfw.testbed.base import Testbed
from migfw.testbed.migration_events import PhaseRecorder, start_event_loop
from migfw.testbed.migration_jobstats import (
    SAMPLE_PERIOD_S,
    JobSampler,
    estimate_delivery,
    sampling_summary,
    summarize_job_stats,
)
from migfw.testbed.migration_settings import (
    in_force_record,
    migration_settings,
    plan,
    requested_record,
)
from migfw.testbed.migration_watchdog import Liveness, watch_call
from migfw.testbed.provision import connect

# After a stall: how long abortJob may take, and how long the migrate call then has to return.
ABORT_TIMEOUT_S = 10.0
RETURN_TIMEOUT_S = 30.0


class MigrationFailed(MigfwError):
    """The hypervisor reported a failed, aborted or refused migration."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


class MigrationStalled(MigrationFailed):
    """No progress for `stall_timeout_s`: the watchdog aborted the migration."""


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
    liveness = Liveness({h: bed.hosts[h].uri for h in (source, destination)}, (source, bed.vm_name))
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
            verdict = watch_call(done, sampler.watch, liveness, source, settings, timeout_s)
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
    # The samples as the watchdog gave up: the sampler runs on through the abort, whose
    # cancelled job may report zeroed counters.
    last_stats, last_progress_stats = watch.last_stats, watch.last_progress_stats
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
            cpu_idle = liveness.qemu_idle_s(now)
            why = (f"job statistics unanswered for {watch.pending_s(now):.0f} s, no CPU used "
                   f"for {cpu_idle:.0f} s, while its libvirtd answers")  # fmt: skip
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
                _progress_text(last_stats) if watch.streaming
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
        "last_jobstats": _plain_stats(last_stats),
        "last_progress_jobstats": _plain_stats(last_progress_stats),
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
