"""The `vmm-agent` placement: a host firewall agent driven by libvirt domain events.

Cloud agents (Neutron's OVS agent, Calico's Felix, CloudStack's security groups) learn that
a VM now runs on a host from the control plane, then program that host's firewall. This
agent does the same with libvirt: it listens to lifecycle events on both hosts' libvirtds
(libvirt-python's default event loop, virConnectDomainEventRegisterAny). When the VM resumes
on a host after an incoming migration (VIR_DOMAIN_EVENT_RESUMED_MIGRATED), it waits
`delay_ms`, installs the host rules there, and then removes the source's rules.

The decision logic (`AgentLogic`) is plain Python with injected clock, sleep and rule
actions, so it is unit-tested on its own; `EventAgent` wires it to real libvirt events.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from migfw.errors import MigfwError

# libvirt's lifecycle constants (libvirt-domain.h), so the logic needs no libvirt import.
EVENT_STARTED = 2
EVENT_RESUMED = 4
STARTED_MIGRATED = 1
RESUMED_MIGRATED = 1


class AgentLogic:
    """What the agent does on each lifecycle event; timestamps are the clock's (epoch s)."""

    def __init__(
        self,
        current: str,
        delay_ms: float,
        install: Callable[[str], None],
        remove: Callable[[str], None],
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if delay_ms < 0:
            raise MigfwError(f"agent_delay_ms: {delay_ms} must not be negative")
        self.current = current  # the host whose rules are in force
        self.delay_ms = float(delay_ms)
        self.install, self.remove = install, remove
        self.clock, self.sleep = clock, sleep
        self.timestamps: dict[str, Any] = {}
        self.errors: list[str] = []

    def on_event(self, host: str, event: int, detail: int, seen: float) -> None:
        if event == EVENT_STARTED and detail == STARTED_MIGRATED:
            # The incoming VM (paused) appears on the destination: noted, not acted on.
            self.timestamps.setdefault("incoming_seen", seen)
            self.timestamps.setdefault("incoming_host", host)
            return
        if not (event == EVENT_RESUMED and detail == RESUMED_MIGRATED) or host == self.current:
            return
        source = self.current
        self.timestamps["event_seen"] = seen
        self.timestamps["host"] = host
        self.sleep(self.delay_ms / 1000.0)
        try:
            self.install(host)
            self.timestamps["rules_installed"] = self.clock()
            self.current = host
            self.remove(source)
            self.timestamps["source_rules_removed"] = self.clock()
        except MigfwError as exc:
            self.errors.append(str(exc))

    def report(self) -> dict[str, Any]:
        """trial.json's firewall.agent: event seen, rules installed, source rules removed."""
        keys = ("event_seen", "rules_installed", "source_rules_removed", "incoming_seen")
        out: dict[str, Any] = {k: self.timestamps.get(k) for k in keys}
        out.update(host=self.timestamps.get("host"), delay_ms=self.delay_ms,
                   errors=list(self.errors))  # fmt: skip
        return out


class EventAgent:
    """Runs AgentLogic on lifecycle events of `vm_name` from both hosts' libvirtds."""

    def __init__(self, uris: dict[str, str], vm_name: str, logic: AgentLogic) -> None:
        self.uris, self.vm_name, self.logic = uris, vm_name, logic
        self.events: queue.Queue = queue.Queue()
        self.conns: dict[str, Any] = {}
        self.callbacks: dict[str, int] = {}
        self.worker: threading.Thread | None = None
        self.log: list[dict[str, Any]] = []
        self.cleanup: list[Callable[[], None]] = []  # run at stop(), after the last action

    def _callback(self, host: str) -> Callable[..., None]:
        def on_lifecycle(_conn: Any, dom: Any, event: int, detail: int, _opaque: Any) -> None:
            seen = time.time()  # stamped in the event loop thread, before any queueing
            if dom.name() == self.vm_name:
                self.events.put((host, event, detail, seen))

        return on_lifecycle

    def _work(self) -> None:
        while True:
            item = self.events.get()
            if item is None:
                return
            host, event, detail, seen = item
            self.log.append({"host": host, "event": event, "detail": detail, "t": seen})
            self.logic.on_event(host, event, detail, seen)

    def start(self) -> None:
        import libvirt

        from migfw.testbed.provision import NoAnswer, open_libvirt

        self.worker = threading.Thread(target=self._work, name="migfw-agent", daemon=True)
        self.worker.start()
        for host, uri in self.uris.items():
            try:
                conn = open_libvirt(uri)  # the event loop, keepalives, a bounded open
            except (libvirt.libvirtError, NoAnswer) as exc:
                self.stop()
                raise MigfwError(f"agent: cannot connect to host {host} ({uri}): {exc}") from exc
            self.conns[host] = conn
            self.callbacks[host] = conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._callback(host), None
            )

    def stop(self, drain_s: float = 5.0) -> dict[str, Any]:
        """Stop listening; let a pending install finish (up to the delay plus drain_s)."""
        for host, conn in self.conns.items():
            if host in self.callbacks:
                try:
                    conn.domainEventDeregisterAny(self.callbacks[host])
                except Exception:  # noqa: BLE001 - a dead daemon has nothing to deregister
                    pass
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass
        self.conns.clear()
        if self.worker is not None:
            self.events.put(None)
            self.worker.join(self.logic.delay_ms / 1000.0 + drain_s)
        while self.cleanup:
            try:
                self.cleanup.pop()()
            except Exception:  # noqa: BLE001 - closing sessions; nothing to report
                pass
        return {**self.logic.report(), "events": self.log}


class FilterObserver:
    """For `vmm` (nwfilter): records, at each lifecycle event of the incoming VM, whether the
    destination's libvirtd has already instantiated the filter there. Changes nothing."""

    delay_ms = 0.0

    def __init__(self, current: str, present: Callable[[str], bool]) -> None:
        self.current, self.present = current, present
        self.seen: list[dict[str, Any]] = []

    def on_event(self, host: str, event: int, detail: int, seen: float) -> None:
        if host == self.current:
            return
        names = {(EVENT_STARTED, STARTED_MIGRATED): "incoming_started",
                 (EVENT_RESUMED, RESUMED_MIGRATED): "resumed"}  # fmt: skip
        name = names.get((event, detail))
        if name:
            present = self.present(host)
            self.seen.append(
                {"event": name, "host": host, "t": seen, "filter_present": present,
                 "checked": time.time()}
            )  # fmt: skip

    def report(self) -> dict[str, Any]:
        return {"nwfilter_at_events": self.seen}
