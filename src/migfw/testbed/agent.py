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
EVENT_SUSPENDED = 3
EVENT_RESUMED = 4
STARTED_MIGRATED = 1
SUSPENDED_MIGRATED = 1
RESUMED_MIGRATED = 1
TRIGGERS = ("pre", "incoming", "resume")
OTHER = {"A": "B", "B": "A"}


class AgentLogic:
    """What the agent does on each lifecycle event; timestamps are the clock's (epoch s).

    `trigger` (issue 22) says when the destination is programmed: `resume` (on the
    destination's RESUMED_MIGRATED, as before), `incoming` (on its STARTED_MIGRATED: the paused
    incoming VM appeared, libvirt's prepare), or `pre` (`before_migration`, called by the trial
    runner before the migrate call, as an orchestrator that knows the plan). Either way it
    waits `delay_ms` first, and removes the source's rules once the VM resumed elsewhere.
    `carry(source, destination) -> record` (placement `vmm-state`) copies the VM's connection
    state at the trigger's install and again when the source pauses the VM for the switchover
    (SUSPENDED_MIGRATED), in a thread of its own so no queued event delays it.
    """

    def __init__(
        self,
        current: str,
        delay_ms: float,
        install: Callable[[str], None],
        remove: Callable[[str], None],
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        trigger: str = "resume",
        carry: Callable[[str, str], dict[str, Any]] | None = None,
    ) -> None:
        if delay_ms < 0:
            raise MigfwError(f"agent_delay_ms: {delay_ms} must not be negative")
        if trigger not in TRIGGERS:
            raise MigfwError(f"trigger: {trigger!r} is not one of {', '.join(TRIGGERS)}")
        self.current = current  # the host whose rules are in force
        self.delay_ms = float(delay_ms)
        self.install, self.remove = install, remove
        self.clock, self.sleep = clock, sleep
        self.trigger, self.carry = trigger, carry
        self.installed_on: str | None = None  # the destination, once programmed
        self.timestamps: dict[str, Any] = {}
        self.errors: list[str] = []
        self.carries: list[dict[str, Any]] = []
        self.threads: list[threading.Thread] = []

    def _program(self, host: str, event: str) -> None:
        """Wait the delay, install `host`'s rules (and copy the state there)."""
        self.timestamps["trigger_event"] = event
        self.sleep(self.delay_ms / 1000.0)
        try:
            self.install(host)
            self.timestamps["rules_installed"] = self.clock()
            self.installed_on = host
        except MigfwError as exc:
            self.errors.append(str(exc))
            return
        if self.carry is not None and not self.carries:
            # pre/incoming: a first copy before the switchover (the suspended copy follows);
            # resume: only when the suspended copy did not run.
            self._carry(self.current, host, event)

    def _carry(self, source: str, destination: str, moment: str) -> None:
        record = {"moment": moment, **self.carry(source, destination)}  # type: ignore[misc]
        self.carries.append(record)
        if record.get("error"):
            self.errors.append(f"state copy at {moment}: {record['error']}")

    def before_migration(self, destination: str) -> None:
        """The trial is about to migrate to `destination`: a `pre` agent programs it now."""
        if self.trigger == "pre" and destination != self.current:
            self.timestamps["pre_called"] = self.clock()
            self._program(destination, "pre")

    def on_event(self, host: str, event: int, detail: int, seen: float) -> None:
        if event == EVENT_STARTED and detail == STARTED_MIGRATED and host != self.current:
            # The incoming VM (paused) appears on the destination.
            self.timestamps.setdefault("incoming_seen", seen)
            self.timestamps.setdefault("incoming_host", host)
            if self.trigger == "incoming" and self.installed_on != host:
                self.timestamps["event_seen"] = seen
                self.timestamps["host"] = host
                self._program(host, "incoming")
            return
        if event == EVENT_SUSPENDED and detail == SUSPENDED_MIGRATED and host == self.current:
            self.timestamps.setdefault("suspended_seen", seen)
            if self.carry is not None:  # the switchover: copy the final state at once
                worker = threading.Thread(target=self._carry, args=(host, OTHER[host], "suspended"),
                                          name="migfw-state-copy", daemon=True)  # fmt: skip
                self.threads.append(worker)
                worker.start()
            return
        if not (event == EVENT_RESUMED and detail == RESUMED_MIGRATED) or host == self.current:
            return
        source = self.current
        self.timestamps["resumed_seen"] = seen
        if self.trigger == "resume" or self.installed_on != host:
            self.timestamps["event_seen"] = seen
            self.timestamps["host"] = host
            self._program(host, "resume")
            if self.installed_on != host:
                return  # the install failed: the source keeps its rules
        self.timestamps.setdefault("host", host)
        self.current = host
        try:
            self.remove(source)
            self.timestamps["source_rules_removed"] = self.clock()
        except MigfwError as exc:
            self.errors.append(str(exc))

    def join(self, timeout_s: float) -> None:
        for worker in self.threads:
            worker.join(timeout_s)

    def report(self) -> dict[str, Any]:
        """trial.json's firewall.agent: the trigger, when its event was seen, when the rules
        were installed and the source's removed, the state copies (vmm-state)."""
        keys = ("event_seen", "rules_installed", "source_rules_removed", "incoming_seen",
                "suspended_seen", "resumed_seen", "pre_called")  # fmt: skip
        out: dict[str, Any] = {k: self.timestamps.get(k) for k in keys}
        out.update(host=self.timestamps.get("host"), delay_ms=self.delay_ms,
                   trigger=self.trigger, event=self.timestamps.get("trigger_event"),
                   errors=list(self.errors))  # fmt: skip
        if self.carry is not None:
            out["state_copies"] = list(self.carries)
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
        if hasattr(self.logic, "join"):  # state copies running in their own threads
            self.logic.join(drain_s)
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
