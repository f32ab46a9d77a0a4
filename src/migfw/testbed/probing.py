"""The trial's measured span: probe for the lead-in, migrate, probe for the settle; the ICMP
prober, the attackers and flows (migfw.testbed.exposure), the `service` workload's requests
and the conntrack dumps run beside it, and always stop.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from migfw.errors import MigfwError
from migfw.io import write_json
from migfw.testbed.base import Testbed

# How long before the settle ends the `end` conntrack dumps start (they take ~0.3 s).
END_DUMP_S = 0.5


def _start_beside(session: Any, bed: Testbed) -> Any:
    """Start the ICMP prober and its capture in a thread; returns `ready()`, which waits for
    it and raises what its start raised. On a prober host (one SSH login for every session)
    it starts here and now."""
    if bed.extra.get("prober"):
        session.start()
        return lambda: None
    import threading

    failed: list[BaseException] = []

    def run() -> None:
        try:
            session.start()
        except BaseException as exc:  # noqa: BLE001 - raised by ready()
            failed.append(exc)

    starter = threading.Thread(target=run, name="migfw-prober-start", daemon=True)
    starter.start()

    def ready() -> None:
        starter.join()
        if failed:
            raise failed[0]

    return ready


def probe_and_migrate(
    bed: Testbed,
    partial: Path,
    interval_s: float,
    enforcement: dict[str, Any] | None,
    lead_in: float,
    settle: float,
    log: Any,  # migfw.testbed.trialdir.EventLog
    do_migrate: Any,
    label: str,
    flows_cfg: dict[str, Any] | None = None,
    load: dict[str, Any] | None = None,
    layers: list[Any] | None = None,
    extras: Any = None,
    guest: Any = None,
    at_settle_end: Any = None,
) -> dict[str, Any]:
    """Probe for lead_in, migrate, probe for settle; the probes always stop.

    `guest`: an open guest shell the flows' temporary allow and the `before` dump use (one
    login less each); closed here before the migration. `at_settle_end()` is called when
    the settle ends without a failure, before the probes stop (e.g. a login made meanwhile).

    The ICMP prober runs in the prober's namespace; the attacker's SYN probes (from its own
    namespace, when the testbed has one) and the stateful flows run beside it
    (migfw.testbed.exposure); without an attacker namespace the prober sends the SYNs. The
    `service` workload's requests (migfw.testbed.service) run beside the prober too."""
    from concurrent.futures import ThreadPoolExecutor

    from migfw.testbed.exposure import TrialTraffic
    from migfw.testbed.health import StepClock
    from migfw.testbed.migrate import MigrationFailed
    from migfw.testbed.prober import ProbeSession

    # The blocked-port probes come from the attacker (migfw.testbed.exposure): the local
    # testbed's attacker namespace, or where the external provider's prober runs.
    has_attacker = bool(bed.extra.get("attacker_netns")) or bed.provider == "external"
    clock = StepClock()
    probe_enforcement = None if has_attacker else enforcement
    args = (bed.prober_iface, bed.vm_address, interval_s, partial / "probe.pcap",
            partial / "sendlog.csv")  # fmt: skip
    # The `service` workload's requests come from where the prober runs (its namespace, this
    # machine, or the prober host: then the remote session runs them beside the prober).
    wants_service = (load or {}).get("workload") == "service"
    if bed.extra.get("prober"):  # tcpdump and the prober run on the prober host, over SSH
        from migfw.testbed.attacker import probe_sport
        from migfw.testbed.remote import RemoteProbeSession
        from migfw.testbed.service import ALLOWED

        remote_service = None
        if wants_service:
            remote_service = {"services": list(ALLOWED), "rate_hz": load["service_rate_hz"],
                              "log": partial / "service.csv"}  # fmt: skip
        # The attacker shares the host: its SYNs and their answers are attack.pcap's.
        ports = (int((enforcement or {}).get(k, d)) for k, d in (("blocked_port", 23),
                                                               ("allowed_port", 22)))  # fmt: skip
        session: ProbeSession = RemoteProbeSession(
            bed.extra["prober"], *args, enforcement=probe_enforcement, service=remote_service,
            exclude_sports=tuple(probe_sport(p) for p in ports) if has_attacker else (),
        )  # fmt: skip
        wants_service = False  # started and stopped by the remote session
    else:
        session = ProbeSession(bed.prober_netns, *args, enforcement=probe_enforcement)
    traffic = TrialTraffic(bed, partial, enforcement if has_attacker else None, flows_cfg,
                           layers=layers, sides=getattr(extras, "sides", None),
                           egress=getattr(extras, "egress", None), shell=guest)  # fmt: skip

    def dump(moment: str, shell: Any = None) -> None:  # conntrack dumps (issue 22)
        if extras is not None:
            extras.dump(moment, shell)
            log("conntrack_dump", moment=moment)

    failure = None
    flags: list[str] = []
    migration: dict[str, Any] = {}
    ready = _start_beside(session, bed)  # the attackers start meanwhile (TrialTraffic.start)
    try:
        traffic.start(log, ready=ready)
        ready()
    except BaseException:
        with contextlib.suppress(BaseException):  # the capture so far, kept with the trial
            ready()
            session.stop()
        raise
    prober = {"icmp_id": session.ident, "pids": session.pids}
    if getattr(session, "remote_pids", None):  # on the prober host, not here
        prober["remote_pids"] = session.remote_pids
    # Recorded for a later run's takeover: an orphan prober is found by these PIDs.
    write_json(Path(bed.state_dir) / "prober.json", prober)
    traffic_record: dict[str, Any] = {}
    service = None
    service_record = None
    service_errors: list[str] = []
    try:
        prober["pids"] = {**session.pids, **traffic.pids}
        if traffic.remote_pids:
            prober["remote_pids"] = {**prober.get("remote_pids", {}), **traffic.remote_pids}
        if wants_service:
            from migfw.testbed.service import ALLOWED, ServiceSession

            rate = load["service_rate_hz"]
            generator = ServiceSession(bed.prober_netns, bed.vm_address, list(ALLOWED), rate,
                                       partial / "service.csv")  # fmt: skip
            generator.start()  # kills its process itself if it cannot start
            service = generator
            prober["pids"]["service"] = generator.proc.pid
            log("service_started", services=list(ALLOWED), rate_hz=rate)
        write_json(Path(bed.state_dir) / "prober.json", prober)
        # The lead-in proper starts once every probe and flow runs (starting the attacker and
        # the flows takes seconds on a loaded machine): `lead_in` of it precede the migration.
        clock.mark("lead_in_start")
        log("probe_started", icmp_id=session.ident, pids=prober["pids"])
        dump("before", guest)  # the temporary allows are gone: the state-only flows' entries
        if guest is not None:
            guest.close()  # no session of ours crosses the migration
        time.sleep(max(0.0, lead_in - (time.monotonic() - clock.steps["lead_in_start"])))
        traffic.confirm()  # checks that ran beside the lead-in (ovn: no new connection passes)
        stray = session.stray(bed.prober_address or "")
        # The attacker's SYNs are ours too (a switch floods them to the prober's port
        # while the VM's MAC is not yet learned on its new port).
        stray["syn_sources"].pop(str(bed.extra.get("attacker_address")), None)
        if stray["echo_ids"] or stray["syn_sources"]:
            # Someone else's prober shares the link: every number would be wrong.
            failure = (
                "stray traffic on the probe link during the lead-in: echo requests with "
                f"ICMP ids {sorted(stray['echo_ids'])} (ours {session.ident}), SYNs from "
                f"{sorted(stray['syn_sources'])}; not migrating"
            )
            flags.append("stray_traffic")
            log("stray_traffic", **{k: {str(a): b for a, b in v.items()} for k, v in stray.items()})
        else:
            print(f"{label}: migrating…", flush=True)
            clock.mark("migrate_call")
            log("migrate_start")
            try:
                migration = do_migrate()
                clock.mark("migrate_return")
                log("migrate_end", downtime_ms=migration["hypervisor"]["downtime_ms"],
                    total_ms=migration["hypervisor"]["total_ms"])  # fmt: skip
            except MigfwError as exc:
                # MigrationFailed, or a daemon that cannot be reached (it died): an outcome.
                clock.mark("migrate_return")
                failure = str(exc)
                migration = dict(exc.details)  # what was recorded before the failure
                if not isinstance(exc, MigrationFailed):
                    failure = f"migration failed: {failure}"
                log("migrate_failed", error=failure)
            # The dumps run in threads inside the settle: the resume dump at once (the
            # migrate call returns just after the resume event), the end dump in its last
            # moments (while every flow still runs); a slow one (a guest login under load)
            # overlaps the other and the settle instead of adding to them.
            with ThreadPoolExecutor(max_workers=2) as pool:
                dumps = [pool.submit(dump, "resume")] if migration.get("hypervisor") else []
                left = settle - (time.monotonic() - clock.steps["migrate_return"])
                time.sleep(max(0.0, left - END_DUMP_S))
                dumps.append(pool.submit(dump, "end"))
                time.sleep(max(0.0, settle - (time.monotonic() - clock.steps["migrate_return"])))
                for done in dumps:
                    done.result()
            clock.mark("settle_end")
            if not failure:  # logins for the stop and for after the trial, made meanwhile
                traffic.prepare_stop()
                if at_settle_end is not None:
                    at_settle_end()
    finally:
        try:
            if service is not None:
                try:
                    service_record = service.stop()
                    log("service_stopped", **service_record)
                except MigfwError as exc:
                    service_errors.append(str(exc))
            # The probes stop beside the attackers and flows (their last-answer waits overlap).
            traffic_record = traffic.stop(log, also=session.stop)
        finally:
            if service is not None:
                service.kill()
            stopped = getattr(traffic, "also_result", None)
            if isinstance(stopped, BaseException):
                raise stopped
            capture = stopped if stopped is not None else session.stop()
        clock.mark("probes_stopped")
        log("probe_stopped", **{k: v for k, v in capture.items() if k != "breaches"})
        if getattr(session, "service_result", None) is not None:  # run on the prober host
            service_record = session.service_result
            log("service_stopped", **service_record)
        (Path(bed.state_dir) / "prober.json").unlink(missing_ok=True)
    if not has_attacker:  # the prober's own enforcement SYNs (no attacker namespace)
        traffic_record.setdefault("breaches", capture.get("breaches") or [])
    if traffic_record.get("copied_sha256"):  # attack.pcap, its send log, flows.csv
        capture["copied_sha256"] = {**(capture.get("copied_sha256") or {}),
                                    **traffic_record.pop("copied_sha256")}  # fmt: skip
    if traffic_record.get("errors") and not failure:
        failure = "attack/flows: " + "; ".join(traffic_record["errors"])
    if service_errors and not failure:
        failure = "service load: " + "; ".join(service_errors)
    return {"failure": failure, "migration": migration, "capture": capture,
            "prober": prober, "flags": flags, "traffic": traffic_record,
            "clock": clock, "service": service_record}  # fmt: skip
