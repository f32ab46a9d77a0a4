"""One migration trial: probe the VM, live-migrate it, probe on, and write the trial folder.

`migfw testbed trial --config C --trial-id <experiment>/<slug>-rNN --out DIR`

The trial's factor levels come from its id and the config's `experiments` (or `--factors
JSON`). The folder is built in `DIR.partial/` and renamed into place only when complete; a
finished trial (DIR with trial.json) is immutable: the command refuses to touch it. A
`.partial` left by a killed run, or one this run cannot finish, is moved aside to
`<trials_dir>/.aborted/<trial id>-<UTC time>/` with `reason.txt`: never deleted, never
trusted. A failed or aborted migration is a trial with status "failed" and its reason;
afterwards the VM is recovered (found on either host, or re-provisioned) so a run goes on.
Placements: `vm` (the ruleset in the guest) and `none` (the guest's ruleset flushed for the
trial and restored after); other placements are refused until implemented.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from migfw.errors import MigfwError
from migfw.io import write_json
from migfw.testbed.base import Testbed, cfg_get, load_config
from migfw.testbed.providers import ensure_up
from migfw.trials.contract import DEFAULT_EXPERIMENT, move_aside, validate_trial

PY_PACKAGES = ["migfw", "libvirt-python", "fabric", "paramiko", "scapy"]


class EventLog:
    """events.jsonl: one timestamped line per step, flushed as it happens."""

    def __init__(self, path: Path, echo: bool = False) -> None:
        self.path = path
        self.handle = open(path, "a")  # noqa: SIM115 - closed in close()

    def __call__(self, step: str, **fields: Any) -> None:
        record = {"t": time.time(), "step": step, **fields}
        self.handle.write(json.dumps(record, default=str) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


IMPLEMENTED_PLACEMENTS = ("vm", "none")


def refuse_finished(out: Path) -> None:
    """One line and no change if `out` already holds a trial: finished trials are immutable."""
    if (out / "trial.json").exists():
        raise MigfwError(f"{out}: finished trial (trial.json present); trials are never rerun")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MigfwError(f"{out}: trial folder already exists; a capture is never overwritten")


def check_out_dir(out: Path, trial_id: str | None = None) -> Path:
    """The partial dir to build in; refuses if `out` already holds a trial."""
    refuse_finished(out)
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        # Left by a killed run: never a finished trial, never deleted either.
        where = move_aside(partial, out, trial_id or out.name,
                           "left behind by an earlier run that did not finish this trial "
                           f"(found at {time.strftime('%Y-%m-%d %H:%M:%S')} UTC)")  # fmt: skip
        print(f"{partial}: an earlier run's half-written trial, moved to {where}", flush=True)
    partial.mkdir(parents=True)
    return partial


def finish_out_dir(partial: Path, out: Path) -> None:
    if out.exists():
        out.rmdir()  # an empty dir (Snakemake creates output dirs before the job runs)
    partial.rename(out)


def addresses_for(bed: Testbed) -> dict[str, str]:
    from migfw.testbed.ruleset import default_addresses

    return default_addresses(bed.vm_address, bed.prober_address or "", bed.extra.get("subnet"))


def guest_shell(bed: Testbed):  # -> GuestShell
    from migfw.testbed.deploy import GuestShell

    return GuestShell(
        bed.vm_address, bed.ssh_user, bed.ssh_key, bed.ssh_known_hosts, netns=bed.ssh_netns
    )


def vm_instance_id(bed: Testbed) -> str | None:
    """The running domain's UUID: a re-provisioned VM gets a new one (and has no ruleset)."""
    from migfw.testbed.provision import connect, find_vm

    host = find_vm(bed)
    if host is None:
        return None
    conn = connect(bed, host)
    try:
        return conn.lookupByName(bed.vm_name).UUIDString()
    finally:
        conn.close()


def ensure_ruleset(cfg: dict[str, Any], bed: Testbed, log: EventLog) -> dict[str, Any]:
    """Deploy and verify the ruleset once per VM instance; refuse if any rule misbehaves."""
    from migfw.testbed.deploy import deploy_ruleset, require_rules_ok, verify_rules
    from migfw.testbed.ruleset import load_ruleset, render_nft

    ruleset_path = cfg_get(cfg, "ruleset", "config/ruleset.yaml")
    rs = load_ruleset(ruleset_path)
    addresses = addresses_for(bed)
    nft_text = render_nft(rs, addresses)
    digest = hashlib.sha256(nft_text.encode()).hexdigest()
    instance = vm_instance_id(bed)
    marker = Path(bed.state_dir) / "deployed.json"
    if marker.exists():
        done = json.loads(marker.read_text())
        if done.get("vm") == instance and done.get("sha256") == digest:
            require_rules_ok(done["checks"])
            return done
    log("deploy", ruleset=str(ruleset_path), sha256=digest)
    with guest_shell(bed) as shell:
        deploy_ruleset(shell, nft_text)
        if bed.extra.get("prober"):  # the packets come from the remote prober host
            from migfw.testbed.remote import remote_verify

            checks = remote_verify(bed, ruleset_path, addresses, ftp_path="readme.txt")
        else:
            checks = verify_rules(rs, addresses, bed.prober_netns, shell, ftp_path="readme.txt")
    log("verify", checks=len(checks), failed=sum(1 for c in checks if c["ok"] is False))
    done = {"vm": instance, "sha256": digest, "ruleset": str(ruleset_path), "nft": nft_text,
            "checks": checks, "at": time.time()}  # fmt: skip
    write_json(marker, done)
    require_rules_ok(checks)
    return done


def prober_record(bed: Testbed, capture: dict[str, Any]) -> dict[str, Any]:
    """Where the probes came from: this machine (a namespace of it) or a remote host."""
    remote = bed.extra.get("prober")
    return {
        "host": remote["host"] if remote else None,
        "netns": bed.prober_netns,
        "iface": bed.prober_iface,
        "address": bed.prober_address,
        "copied_sha256": capture.get("copied_sha256"),
    }


def software_versions(bed: Testbed, guest_nft: str | None) -> dict[str, Any]:
    from migfw.testbed.accel import qemu_version

    packages = {}
    for name in PY_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    libvirt_version = None
    try:
        import libvirt

        v = libvirt.getVersion()
        libvirt_version = f"{v // 1000000}.{v // 1000 % 1000}.{v % 1000}"
    except Exception:  # noqa: BLE001 - versions are informative only
        pass
    guest_kernel = None
    manifest = bed.extra.get("guest_manifest")
    if manifest and Path(manifest).exists():
        guest_kernel = json.loads(Path(manifest).read_text()).get("kernel_version")
    return {
        "qemu": qemu_version() if bed.provider == "local" else None,
        "libvirt": libvirt_version,
        "kernel": {"host": platform.release(), "guest": guest_kernel},
        "nft": guest_nft,
        "python": platform.python_version(),
        "python_packages": packages,
    }


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
    pair: int = 0,
) -> dict[str, Any]:
    """Run one trial on host pair `pair` and write its folder; returns trial.json's content."""
    from migfw.testbed.migrate import migrate, validate_settings
    from migfw.testbed.provision import ensure_vm, find_vm

    if interval_s <= 0:
        raise MigfwError(f"--interval: {interval_s} must be positive")
    factors = {"placement": "vm", **(factors or {}), "interval_s": interval_s}
    placement = factors["placement"]
    if placement not in IMPLEMENTED_PLACEMENTS:
        raise MigfwError(
            f"trial {trial_id}: placement {placement!r} is not implemented by the testbed yet "
            f"(implemented: {', '.join(IMPLEMENTED_PLACEMENTS)})"
        )
    from migfw.testbed.pairs import pair_config

    cfg = pair_config(cfg, pair)
    mode = str(cfg_get(cfg, "migration.mode", "client"))
    bandwidth = float(cfg_get(cfg, "migration.bandwidth_mibps", 0))
    max_downtime = float(cfg_get(cfg, "migration.max_downtime_ms", 0))
    validate_settings(mode, bandwidth, max_downtime)
    lead_in = float(lead_in_s if lead_in_s is not None else cfg_get(cfg, "trials.lead_in_s", 5.0))
    settle = float(settle_s if settle_s is not None else cfg_get(cfg, "trials.settle_s", 3.0))
    enforcement = cfg_get(cfg, "trials.enforcement", None)
    out = Path(out)
    partial = check_out_dir(out, trial_id)
    log = EventLog(partial / "events.jsonl")
    if of and index is None:
        # k of "trial k/N": the finished trials beside this one, plus this one.
        index = 1 + sum(1 for d in out.parent.iterdir() if (d / "trial.json").exists())
    restore = False
    label = f"trial {index}/{of}" if of else f"trial {trial_id}"
    wall = time.monotonic()
    try:
        log("start", trial_id=trial_id, interval_s=interval_s)
        bed = ensure_up(cfg)
        log("testbed", provider=bed.provider, accelerator=bed.accelerator)
        deployed = ensure_ruleset(cfg, bed, log)
        write_json(partial / "rule_checks.json", deployed["checks"])
        from migfw.testbed.deploy import diff_rulesets, read_ruleset

        with guest_shell(bed) as shell:
            if placement == "none":
                # The control arm: no firewall. Forget the deployment first, so a kill
                # before the restore below still makes the next trial redeploy and verify.
                (Path(bed.state_dir) / "deployed.json").unlink(missing_ok=True)
                restore = True
                shell.run("nft flush ruleset")
                log("ruleset_flushed")
            before = read_ruleset(shell)
            guest_nft = shell.run("nft --version").strip()
        (partial / "ruleset_before.nft").write_text(before)
        source = find_vm(bed)
        if source is None:
            raise MigfwError(f"VM {bed.vm_name} is not running on exactly one host")
        destination = bed.other(source)
        direction = f"{source}->{destination}"  # ASCII: it ends up in CSV columns
        arrow = f"{source}→{destination}"
        clocks = {}
        if bed.extra.get("prober"):
            from migfw.testbed.remote import clock_offsets

            clocks["start"] = clock_offsets(bed)
            log("clock", **clocks["start"])
        print(f"{label} interval {interval_s} direction {arrow}: lead-in…", flush=True)
        result = _probe_and_migrate(
            bed, partial, interval_s, enforcement, lead_in, settle, log,
            lambda: migrate(bed, source, destination, mode, bandwidth, max_downtime),
            label,
        )  # fmt: skip
        prober = result["prober"]
        failure = result["failure"]
        mig = result["migration"]
        if clocks:
            clocks["end"] = clock_offsets(bed)
            log("clock", **clocks["end"])
        if failure:
            where = ensure_vm(bed)  # recover: the run goes on with a running VM
            log("recovered", host=where)
        after, diff, identical = None, None, None
        try:
            with guest_shell(bed) as shell:
                after = read_ruleset(shell)
            diff = diff_rulesets(before, after)
            identical = not diff
            (partial / "ruleset_after.nft").write_text(after)
        except MigfwError as exc:
            log("ruleset_after_failed", error=str(exc))
            if not failure:
                failure = f"cannot read the ruleset after migration: {exc}"
        cap = result["capture"]
        meta = {
            "trial_id": trial_id,
            "experiment": experiment or DEFAULT_EXPERIMENT,
            "factors": factors,
            "interval_s": interval_s,
            "target": bed.vm_address,
            "status": "failed" if failure else "ok",
            "failure": failure,
            "migration": {
                "start": mig.get("start"),
                "end": mig.get("end"),
                "source": source,
                "destination": destination,
                "mode": mode,
                "bandwidth_mibps": mig.get("bandwidth_mibps", bandwidth or None),
                "max_downtime_ms": mig.get("max_downtime_ms", max_downtime or None),
            },
            "hypervisor": mig.get("hypervisor"),
            "repetition": int(repetition),
            "direction": direction,
            "accelerator": bed.accelerator,
            "provider": bed.provider,
            "pair": pair,
            "clock": clocks or None,
            "capture": {
                "packets": cap.get("capture_packets"),
                "dropped": cap.get("capture_dropped"),
                "flagged": bool(cap.get("capture_dropped")),
                "requests_sent": cap.get("requests_sent"),
                "allowed_answers": cap.get("allowed_answers"),
                "blocked_answers": cap.get("blocked_answers"),
            },
            "breaches": cap.get("breaches") or [],
            "prober": {**prober, **prober_record(bed, result["capture"])},
            "flags": result["flags"],
            "ruleset": {"identical_before_after": identical, "diff": diff},
            "enforcement": enforcement,
            "lead_in_s": lead_in,
            "settle_s": settle,
            "software": software_versions(bed, guest_nft),
            "wall_s": round(time.monotonic() - wall, 2),
        }
        validate_trial(meta)
        write_json(partial / "trial.json", meta)
        log("done", status=meta["status"])
        log.close()
        finish_out_dir(partial, out)
    except BaseException as exc:
        log.close()
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"error: {exc}"
        if partial.exists():
            move_aside(partial, out, trial_id, f"{reason} (this run could not finish the trial)")
        raise
    if restore:
        ensure_ruleset(cfg, bed, log=lambda *a, **k: None)  # the guest's ruleset, verified
    hv = (meta.get("hypervisor") or {}).get("downtime_ms")
    tail = f"downtime {hv:.0f} ms" if hv is not None else f"FAILED: {meta['failure']}"
    print(f"{label} interval {interval_s} direction {arrow}: done: {tail}", flush=True)
    return meta


def _probe_and_migrate(
    bed: Testbed,
    partial: Path,
    interval_s: float,
    enforcement: dict[str, Any] | None,
    lead_in: float,
    settle: float,
    log: EventLog,
    do_migrate: Any,
    label: str,
) -> dict[str, Any]:
    """Probe for lead_in, migrate, probe for settle; the probe always stops."""
    from migfw.testbed.migrate import MigrationFailed
    from migfw.testbed.prober import ProbeSession

    args = (bed.prober_iface, bed.vm_address, interval_s, partial / "probe.pcap",
            partial / "sendlog.csv")  # fmt: skip
    if bed.extra.get("prober"):  # tcpdump and the prober run on the prober host, over SSH
        from migfw.testbed.remote import RemoteProbeSession

        session: ProbeSession = RemoteProbeSession(
            bed.extra["prober"], *args, enforcement=enforcement
        )
    else:
        session = ProbeSession(bed.prober_netns, *args, enforcement=enforcement)
    failure = None
    flags: list[str] = []
    migration: dict[str, Any] = {}
    session.start()
    prober = {"icmp_id": session.ident, "pids": session.pids}
    if getattr(session, "remote_pids", None):  # on the prober host, not here
        prober["remote_pids"] = session.remote_pids
    # Recorded for a later run's takeover: an orphan prober is found by these PIDs.
    write_json(Path(bed.state_dir) / "prober.json", prober)
    try:
        log("probe_started", icmp_id=session.ident, pids=session.pids)
        time.sleep(lead_in)
        stray = session.stray(bed.prober_address or "")
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
            log("migrate_start")
            try:
                migration = do_migrate()
                log("migrate_end", downtime_ms=migration["hypervisor"]["downtime_ms"],
                    total_ms=migration["hypervisor"]["total_ms"])  # fmt: skip
            except MigrationFailed as exc:
                failure = str(exc)
                log("migrate_failed", error=failure)
            time.sleep(settle)
    finally:
        capture = session.stop()
        log("probe_stopped", **{k: v for k, v in capture.items() if k != "breaches"})
        (Path(bed.state_dir) / "prober.json").unlink(missing_ok=True)
    return {"failure": failure, "migration": migration, "capture": capture,
            "prober": prober, "flags": flags}  # fmt: skip


def resolve_trial(cfg: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The trial's experiment, factor levels and repetition: from --factors, or its id and
    the config's experiments (the id alone names the trial; nothing else is needed)."""
    from migfw.trials.contract import parse_trial_id, planned_trials, trial_spec

    try:
        experiment, slug_factors, repetition = parse_trial_id(args.trial_id)
        named = True
    except MigfwError:
        if not (args.factors or args.interval is not None):
            raise
        # A hand-made id outside the contract's naming (tests, a lab's own runs).
        experiment, slug_factors, repetition, named = DEFAULT_EXPERIMENT, {}, 1, False
    if args.factors or not named:
        try:
            factors = json.loads(args.factors or "{}")
        except json.JSONDecodeError as exc:
            raise MigfwError(f"--factors: not JSON ({exc})") from None
        if not isinstance(factors, dict):
            raise MigfwError("--factors: expected a JSON object of factor levels")
        spec = {"experiment": experiment, "repetition": repetition,
                "factors": {**slug_factors, **factors}}  # fmt: skip
    else:
        experiments = cfg.get("experiments") or {}
        spec = trial_spec(experiments, args.trial_id)
        ids = planned_trials(experiments)
        spec["of"] = len(ids)
        spec["index"] = ids.index(args.trial_id) + 1 if args.trial_id in ids else None
    if args.interval is not None:
        spec["factors"] = {**spec["factors"], "interval_s": args.interval}
    if args.repetition is not None:
        spec["repetition"] = args.repetition
    if "interval_s" not in spec["factors"]:
        raise MigfwError(f"trial {args.trial_id}: no interval_s (give --interval or --factors)")
    return spec


def _cmd_trial(args: argparse.Namespace) -> int:
    from migfw.testbed.local import terminate_as_interrupt
    from migfw.testbed.owner import acquire

    cfg = load_config(args.config)
    refuse_finished(Path(args.out))  # before anything else: a finished trial is immutable
    spec = resolve_trial(cfg, args)
    factors = dict(spec["factors"])
    interval = float(factors.pop("interval_s"))
    from migfw.testbed.pairs import pair_config, trial_pair

    # The pair the workflow's resource reserved for this trial (round-robin, same function).
    pair = trial_pair(cfg, args.trial_id) if args.pair is None else args.pair
    # None: our Snakemake run owns the testbed
    owner = acquire(pair_config(cfg, pair), "migfw testbed trial")
    try:
        with terminate_as_interrupt():
            meta = run_trial(
                cfg, args.trial_id, interval, args.out, spec["repetition"],
                spec.get("of"), spec.get("index"), spec["experiment"], factors,
                spec.get("lead_in_s"), spec.get("settle_s"), pair=pair,
            )  # fmt: skip
    except KeyboardInterrupt:
        # An interrupted run leaves nothing behind: the partial trial moved aside (run_trial),
        # no prober (ProbeSession killed it) and, on the local provider, no testbed.
        if cfg_get(cfg, "testbed.provider", "local") == "local":
            from migfw.testbed.local import LocalTestbed
            from migfw.testbed.pairs import pair_config

            LocalTestbed(pair_config(cfg, pair)).down(quiet=True)
        raise
    finally:
        if owner is not None:
            owner.release()
    # A failed migration is a result (status failed in trial.json), not a command error.
    return 0 if meta else 1


def register_cli(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("trial", help="run one live-migration trial and write its folder")
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--trial-id", required=True, help="<experiment>/<slug>-rNN")
    parser.add_argument("--out", required=True, help="trial folder (must not hold a trial)")
    parser.add_argument("--factors", help="factor levels as JSON (default: from the config)")
    parser.add_argument("--interval", type=float, default=None, help="probe interval (s)")
    parser.add_argument("--repetition", type=int, default=None)
    parser.add_argument(
        "--pair", type=int, default=None, help="host pair (testbed.pairs); default: the trial's"
    )
    parser.set_defaults(func=_cmd_trial)
