"""One migration trial: probe the VM, live-migrate it, probe on, and write the trial folder.

`migfw testbed trial --config C --spec results/design.tsv --trial-id <experiment>/<slug>-rNN
--out DIR`

The trial's factor levels, repetition and host pair come from its row of the design sheet
(migfw.trials.design; migfw.testbed.trialcli reads it). The folder is built in
`DIR.partial/` and renamed into place only when complete; a finished trial (DIR with
trial.json) is immutable: the command refuses to touch it. A `.partial` left by a killed
run, or one this run cannot finish, is moved aside to
`<trials_dir>/.aborted/<trial id>-<UTC time>/` with `reason.txt`: never deleted, never
trusted. A failed or aborted migration (the hypervisor's error, or a destination daemon,
QEMU or link that died) is a trial with status "failed", its reason and its capture;
afterwards the testbed repairs itself (`recover`: dead libvirtd restarted, the VM found on
either host or re-provisioned; the next trial re-deploys the ruleset on a new VM) so a run
goes on. Only when the repair fails does the command stop, after writing the trial, with one
line saying why. Each trial also records its step times (monotonic) and checks them against
its capture (migfw.testbed.health): a guest silent in the lead-in or settle period for longer
than `trials.max_silence_s` flags the trial.
The firewall is the trial's placement (migfw.testbed.placements, one module each): this
module calls its steps (deploy, start, migrate, layers, after_probing, stop_agent,
rules_after, describe, after_trial) and never compares placement names. The steps around
it live in their own modules: trialdir (the folder), probing (lead-in, migration, settle),
recovery (repair), trialrecord (trial.json's parts), trialcli (the command).
"""

from __future__ import annotations

import contextlib
import copy
import sys
import time
from pathlib import Path
from typing import Any

from migfw.errors import MigfwError
from migfw.io import write_json
from migfw.testbed import placements, workload
from migfw.testbed.base import cfg_get
from migfw.testbed.firewall import guest_shell
from migfw.testbed.probing import probe_and_migrate
from migfw.testbed.providers import ensure_up
from migfw.testbed.recovery import LoginAhead, after_migration
from migfw.testbed.trialdir import (
    IMPLEMENTED_LEVELS,
    UNREPAIRED,
    EventLog,
    check_out_dir,
    finish_out_dir,
    refuse_finished,
    refuse_unapplied,
    refuse_unrepaired,
)
from migfw.testbed.trialrecord import (
    breach_position,
    capture_record,
    conntrack_record,
    hypervisor_pids,
    migration_record,
    prober_record,
    software_versions,
    watchdog_flags,
)
from migfw.trials.contract import DEFAULT_EXPERIMENT, move_aside, validate_trial

__all__ = ["IMPLEMENTED_LEVELS", "check_out_dir", "finish_out_dir", "guest_shell",
           "refuse_finished", "run_trial"]  # fmt: skip


def run_trial(
    cfg: dict[str, Any],
    trial_id: str,
    interval_s: float,
    out: str | Path,
    repetition: int = 1,
    of: int | None = None,
    index: int | None = None,
    experiment: str | None = None,
    factors: dict[str, Any] | None = None,
    lead_in_s: float | None = None,
    settle_s: float | None = None,
    attack_rate_hz: float | None = None,
    pair: int = 0,
) -> dict[str, Any]:
    """Run one trial on host pair `pair` and write its folder; returns trial.json's content.

    `factors` override the config's migration settings (and testbed.guest.memory_mib).
    """
    from migfw.testbed.migrate import migrate
    from migfw.testbed.migration_jobstats import write_jobstats
    from migfw.testbed.migration_settings import migration_settings
    from migfw.testbed.provision import find_vm

    if interval_s <= 0:
        raise MigfwError(f"--interval: {interval_s} must be positive")
    factors = {"placement": "vm", **(factors or {}), "interval_s": interval_s}
    placement = factors["placement"]
    refuse_unapplied(trial_id, factors)  # an unregistered placement, a level not applied
    from migfw.testbed.pairs import pair_config

    cfg = pair_config(cfg, pair)
    # Migration parameters: the config's `migration` block, overridden by this trial's factors.
    settings = migration_settings({**(cfg_get(cfg, "migration") or {}), **factors})
    load = workload.workload_settings(factors)
    if factors.get("memory_mib") is not None:  # the guest's RAM is a factor: (re)provision
        cfg = copy.deepcopy(cfg)
        cfg.setdefault("testbed", {}).setdefault("guest", {})["memory_mib"] = int(
            factors["memory_mib"]
        )
    lead_in = float(lead_in_s if lead_in_s is not None else cfg_get(cfg, "trials.lead_in_s"))
    settle = float(settle_s if settle_s is not None else cfg_get(cfg, "trials.settle_s"))
    enforcement = cfg_get(cfg, "trials.enforcement")
    if enforcement is not None and attack_rate_hz is not None:  # the experiment's own rate
        enforcement = {**enforcement, "rate_hz": float(attack_rate_hz)}
    flows_cfg = cfg_get(cfg, "trials.flows")
    from migfw.testbed.health import trial_health

    max_silence = float(cfg_get(cfg, "trials.max_silence_s"))
    out = Path(out)
    refuse_unrepaired(cfg)
    from migfw.testbed import diskspace

    # Stop in one line, before anything is written, if the trial would not fit on its disk.
    space = diskspace.check_trial_space(out, trial_id, interval_s, lead_in, settle, enforcement,
                                        flows_cfg)  # fmt: skip
    partial = check_out_dir(out, trial_id)
    # What a trial that fails for lack of space records (diskspace.after_failure).
    base: dict[str, Any] = {"trial_id": trial_id, "experiment": experiment or DEFAULT_EXPERIMENT,
                            "factors": factors, "interval_s": interval_s, "target": None,
                            "repetition": int(repetition), "pair": pair, "disk_space": space,
                            "migration": {"source": None, "destination": None}}  # fmt: skip
    log = EventLog(partial / "events.jsonl")
    if of and index is None:
        # k of "trial k/N": the finished trials beside this one, plus this one.
        index = 1 + sum(1 for d in out.parent.iterdir() if (d / "trial.json").exists())
    plc: placements.Placement | None = None
    label = f"trial {index}/{of}" if of else f"trial {trial_id}"
    wall = time.monotonic()
    # The steps outside lead-in, migration and settle (timeline.steps; the overhead's parts).
    marks: dict[str, float] = {"trial_start": wall}
    try:
        log("start", trial_id=trial_id, interval_s=interval_s)
        bed = ensure_up(cfg)
        base["target"] = bed.vm_address
        log("testbed", provider=bed.provider, accelerator=bed.accelerator)
        from migfw.testbed.ovn_placement import ensure_nic

        ensure_nic(cfg, bed, placement, log)  # an OVS port for `ovn`, the Linux bridge else
        from migfw.testbed.ovn_placement import place_cotenants

        place_cotenants(cfg, bed, placement, log)  # the co-tenants beside the VM's port
        from migfw.testbed.deploy import normalise_listing

        source = find_vm(bed)
        if source is None:
            raise MigfwError(f"VM {bed.vm_name} is not running on exactly one host")
        destination = bed.other(source)
        base["migration"] = {"source": source, "destination": destination}
        pids = hypervisor_pids(cfg, bed, source)
        log("pids", **pids)  # read by fault-injection tests: the daemons and the VM's QEMU
        ctx = placements.TrialContext(cfg, bed, source, log, partial, factors, destination)
        plc = placements.get(placement)(ctx)
        fw = plc.deploy()
        marks["deployed"] = time.monotonic()
        from migfw.testbed.trialstate import TrialExtras

        extras = TrialExtras.for_trial(cfg, bed, placement, factors, source, destination, partial,
                                       enforcement)  # fmt: skip
        # One login for the steps before the lead-in: this block, the flows' temporary
        # allow and the `before` dump (probe_and_migrate closes it before migrating).
        shell = guest_shell(bed)
        extras.closers.append(shell.close)
        shell.open()
        # The guest's ruleset before the trial and its nft version, in one exec.
        guest_nft, _, listing = shell.run("nft --version && echo @@ && nft -s list ruleset"
                                          ).partition("@@\n")  # fmt: skip
        guest_nft, before = guest_nft.strip(), normalise_listing(listing)
        extras.apply(shell)  # nf_conntrack_tcp_loose on both hosts and in the guest
        workload.start(shell, load)  # runs through lead-in, migration and settle
        log("workload_started", **load)
        marks["guest_ready"] = time.monotonic()
        (partial / "ruleset_before.nft").write_text(before)
        plc.start()  # agents, observers, OVN's binding
        direction = f"{source}->{destination}"  # ASCII: it ends up in CSV columns
        arrow = f"{source}→{destination}"
        clocks = {}
        if bed.extra.get("prober"):
            from migfw.testbed.hostclocks import clock_offsets

            clocks["start"] = clock_offsets(bed)
            log("clock", **clocks["start"])
        print(f"{label} interval {interval_s} direction {arrow}: lead-in…", flush=True)

        ahead: list[LoginAhead] = []  # the login after the trial, made while the probes stop

        def do_migrate() -> dict[str, Any]:
            return plc.migrate(lambda: migrate(bed, source, destination, settings))

        try:
            result = probe_and_migrate(
                bed, partial, interval_s, enforcement, lead_in, settle, log,
                do_migrate, label, flows_cfg, load, layers=extras.layers + plc.layers(),
                extras=extras, guest=shell, at_settle_end=lambda: ahead.append(LoginAhead(bed)),
            )  # fmt: skip
        finally:
            placement_record = plc.after_probing()
            extras.close()
        plc.stop_agent()
        prober = result["prober"]
        failure = result["failure"]
        mig = result["migration"]
        write_jobstats(partial / "jobstats.csv", mig.get("jobstats") or [])
        clock = result["clock"]
        timeline = clock.to_dict()
        timeline["steps"] = {**marks, **timeline["steps"]}
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=1) as pool:  # the capture read beside the guest
            checked = pool.submit(trial_health, partial / "probe.pcap", bed.vm_address,
                                  prober.get("icmp_id"), timeline, max_silence)  # fmt: skip
            # The console, the repair after a failure, the guest's ruleset and workload after.
            post = after_migration(cfg, bed, partial, log, result, source, before, load,
                                   extras, clocks, ahead[0] if ahead else None)  # fmt: skip
            health = checked.result()
        failure, recovery, repair_error = post["failure"], post["recovery"], post["repair_error"]
        after, diff, identical = post["after"], post["diff"], post["identical"]
        console, load_record = post["console"], post["workload"]
        if result.get("service") is not None:  # the requests' summary (service.csv)
            load_record.update(result["service"])
        rules_after = plc.rules_after(bool(after and "table inet migfw" in after))
        firewall = plc.describe(fw, rules_after)
        cap = result["capture"]
        flags = list(dict.fromkeys(result["flags"] + health["flags"] + watchdog_flags(mig)))
        log("health", **health)
        traffic = result["traffic"]
        attack = traffic.get("attack")
        meta = {
            "trial_id": trial_id,
            "experiment": experiment or DEFAULT_EXPERIMENT,
            "factors": factors,
            "interval_s": interval_s,
            "target": bed.vm_address,
            "status": "failed" if failure else "ok",
            "failure": failure,
            "migration": migration_record(clock, mig, settings, source, destination),
            "hypervisor": mig.get("hypervisor"),
            "phases": mig.get("phases"),
            "workload": load_record,
            "repetition": int(repetition),
            "direction": direction,
            "accelerator": bed.accelerator,
            "provider": bed.provider,
            "pair": pair,
            "clock": clocks or None,
            **capture_record(cap, traffic),  # capture, breaches
            "attack": attack,
            # issue 22: every attacker side, and the conntrack dumps (docs/attack_window.md)
            "attackers": traffic.get("attackers"),
            "conntrack": conntrack_record(extras.record, placement_record),
            "flows": traffic.get("flows"),
            "prober": {**prober, **prober_record(bed, result["capture"])},
            "flags": flags,
            "timeline": timeline,
            "health": health,
            "pids": pids,
            "recovery": recovery,
            "console": console,
            "ruleset": {"identical_before_after": identical, "diff": diff},
            "enforcement": enforcement,
            "firewall": firewall,
            # Placements' own records (e.g. `ovn`): null unless this trial's placement has one.
            **{c.record_key: None for c in placements.registered() if c.record_key},
            **({plc.record_key: placement_record} if plc.record_key else {}),
            "lead_in_s": lead_in,
            "settle_s": settle,
            "software": software_versions(bed, guest_nft),
            "wall_s": round(timeline["steps"].setdefault("trial_end", time.monotonic()) - wall, 2),
            "disk_space": space,  # free before the trial, and what it was expected to write
        }
        if attack is not None and breach_position(partial, meta) is not None:
            meta["breach_position"] = breach_position(partial, meta)
        validate_trial(meta)
        write_json(partial / "trial.json", meta)
        log("done", status=meta["status"])
        log.close()
        finish_out_dir(partial, out)
        if repair_error:
            marker = {"trial_id": trial_id, "error": repair_error, "at": time.time()}
            write_json(Path(bed.state_dir) / UNREPAIRED, marker)
            print(f"{label}: recorded as failed ({failure}); the testbed could not be repaired, "
                  f"stopping: {repair_error}", file=sys.stderr, flush=True)  # fmt: skip
            return meta
    except BaseException as exc:
        if plc is not None:
            plc.abort()
        with contextlib.suppress(OSError):  # a full disk fails the log's last flush too
            log.close()
        recorded = diskspace.after_failure(exc, partial, out, base)
        if recorded is not None:
            print(f"{label}: recorded as failed ({recorded['failure']})", file=sys.stderr,
                  flush=True)  # fmt: skip
            return recorded
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"error: {exc}"
        if partial.exists():
            move_aside(partial, out, trial_id, f"{reason} (this run could not finish the trial)")
        raise
    plc.after_trial()  # e.g. `none`: the guest's ruleset back, verified
    hv = (meta.get("hypervisor") or {}).get("downtime_ms")
    tail = f"downtime {hv:.0f} ms" if hv is not None else f"FAILED: {meta['failure']}"
    print(f"{label} interval {interval_s} direction {arrow}: done: {tail}", flush=True)
    return meta
