"""The migrating domain's lifecycle and migration-iteration events on both hosts
(`PhaseRecorder`), and the trial.json `phases` block built from them (`phases_from_events`).

Clock: every timestamp is `time.time()` (CLOCK_REALTIME, epoch seconds) taken in this process
when the event was delivered; its error is the delivery delay (QEMU → libvirtd → this
process's event loop), estimated per trial by migfw.testbed.migration_jobstats.estimate_delivery.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

LIFECYCLE_EVENTS = ("defined", "undefined", "started", "suspended", "resumed", "stopped",
                    "shutdown", "pmsuspended", "crashed")  # fmt: skip
# Lifecycle (event, detail) pairs → the phase they mark; first occurrence wins.
PHASE_OF = {
    ("suspended", "migrated"): "suspended",  # source: vCPUs stopped for stop-and-copy
    ("suspended", "postcopy"): "postcopy_switch",  # source: switched to post-copy
    ("resumed", "migrated"): "resumed",  # destination: guest runs again
    ("resumed", "postcopy"): "resumed",  # destination: guest runs (pages still pulled)
    ("stopped", "migrated"): "finished",  # source: migration finished, source gone
}


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
