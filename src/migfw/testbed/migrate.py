"""Live migration with libvirt-python: client-managed migrate3 or peer-to-peer migrateToURI3.

`migrate()` returns epoch start/end and libvirt's completed-job statistics (downtime, total
and setup time, data transferred). Any failure or abort raises MigrationFailed with
libvirt's reason; the caller records it as a failed trial (never silently retried).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from migfw.errors import MigfwError
from migfw.testbed.base import Testbed
from migfw.testbed.provision import connect

MODES = ("client", "p2p")


class MigrationFailed(MigfwError):
    """The hypervisor reported a failed or aborted migration."""


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
    if mode not in MODES:
        raise MigfwError(f"config migration.mode: {mode!r} is not one of {', '.join(MODES)}")
    if bandwidth_mibps < 0:
        raise MigfwError(f"config migration.bandwidth_mibps: {bandwidth_mibps} is negative")
    if max_downtime_ms < 0:
        raise MigfwError(f"config migration.max_downtime_ms: {max_downtime_ms} is negative")


def migrate(
    bed: Testbed,
    source: str,
    destination: str,
    mode: str = "client",
    bandwidth_mibps: float = 0,
    max_downtime_ms: float = 0,
    timeout_s: float = 300,
) -> dict[str, Any]:
    """Live-migrate the VM from host `source` to `destination`; raises MigrationFailed."""
    import libvirt

    validate_settings(mode, bandwidth_mibps, max_downtime_ms)
    # The call's own time: the monitor commands below block while the guest's QEMU is
    # stopped, so a later timestamp would shift with a frozen guest.
    start = time.time()
    sconn = connect(bed, source)
    dconn = connect(bed, destination)
    done: threading.Event | None = None
    try:
        try:
            dom = sconn.lookupByName(bed.vm_name)
        except libvirt.libvirtError as exc:
            raise MigrationFailed(f"VM {bed.vm_name} not found on host {source}: {exc}") from exc
        if max_downtime_ms > 0:
            dom.migrateSetMaxDowntime(int(max_downtime_ms), 0)
        try:
            applied_downtime = float(dom.migrateGetMaxDowntime(0))
        except (libvirt.libvirtError, AttributeError):
            applied_downtime = float(max_downtime_ms) if max_downtime_ms else None
        params: dict[str, Any] = {}
        if bandwidth_mibps > 0:
            params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = int(bandwidth_mibps)
        flags = libvirt.VIR_MIGRATE_LIVE
        outcome: dict[str, Any] = {}
        done = threading.Event()

        def run() -> None:
            try:
                if mode == "client":
                    params[libvirt.VIR_MIGRATE_PARAM_URI] = bed.hosts[destination].migration_uri
                    outcome["ddom"] = dom.migrate3(dconn, params, flags)
                else:
                    params[libvirt.VIR_MIGRATE_PARAM_URI] = bed.hosts[destination].migration_uri
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
            done.wait(timeout_s)
        except KeyboardInterrupt:
            _abort(dom)  # Ctrl-C: stop the migration, wait until libvirt has returned
            _wait(done, 120)
            raise
        if not done.is_set():
            _abort(dom)
            _wait(done, 60)
            raise MigrationFailed(f"migration {source}→{destination} exceeded {timeout_s:.0f} s")
        end = time.time()
        if "error" in outcome:
            raise MigrationFailed(f"migration {source}→{destination} failed: {outcome['error']}")
        stats = _completed_stats(outcome.get("ddom"), dconn, dom, bed.vm_name)
        return {
            "start": start,
            "end": end,
            "source": source,
            "destination": destination,
            "mode": mode,
            "bandwidth_mibps": float(bandwidth_mibps) if bandwidth_mibps else None,
            "max_downtime_ms": applied_downtime,
            "hypervisor": summarize_job_stats(stats),
        }
    finally:
        # Never close connections a still-running migrate call uses (use after free).
        if done is None or done.is_set():
            sconn.close()
            dconn.close()


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
