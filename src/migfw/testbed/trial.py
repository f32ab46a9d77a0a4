"""One migration trial: probe the VM, live-migrate it, probe on, and write the trial folder.

`migfw testbed trial --config C --trial-id ID --interval S --repetition N --out DIR`

The folder is built in `DIR.partial/` and renamed into place only when complete; an
existing trial (DIR with files in it) is never overwritten. A failed or aborted migration
is a trial with status "failed" and its reason (never dropped, never silently retried);
afterwards the VM is recovered (found on either host, or re-provisioned) so a run goes on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from migfw.errors import MigfwError
from migfw.io import write_json
from migfw.testbed.base import Testbed, cfg_get, load_config
from migfw.testbed.providers import ensure_up
from migfw.trials.contract import validate_trial

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


def check_out_dir(out: Path) -> Path:
    """The partial dir to build in; refuses if `out` already holds a trial."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MigfwError(f"{out}: trial folder already exists; a capture is never overwritten")
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)  # left by a killed run: never a finished trial
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
        checks = verify_rules(rs, addresses, bed.prober_netns, shell, ftp_path="readme.txt")
    log("verify", checks=len(checks), failed=sum(1 for c in checks if c["ok"] is False))
    done = {"vm": instance, "sha256": digest, "ruleset": str(ruleset_path), "nft": nft_text,
            "checks": checks, "at": time.time()}  # fmt: skip
    write_json(marker, done)
    require_rules_ok(checks)
    return done


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
) -> dict[str, Any]:
    """Run one trial and write its folder; returns trial.json's content."""
    from migfw.testbed.migrate import migrate, validate_settings
    from migfw.testbed.provision import ensure_vm, find_vm

    if interval_s <= 0:
        raise MigfwError(f"--interval: {interval_s} must be positive")
    mode = str(cfg_get(cfg, "migration.mode", "client"))
    bandwidth = float(cfg_get(cfg, "migration.bandwidth_mibps", 0))
    max_downtime = float(cfg_get(cfg, "migration.max_downtime_ms", 0))
    validate_settings(mode, bandwidth, max_downtime)
    lead_in = float(cfg_get(cfg, "trials.lead_in_s", 5.0))
    settle = float(cfg_get(cfg, "trials.settle_s", 3.0))
    enforcement = cfg_get(cfg, "trials.enforcement", None)
    out = Path(out)
    partial = check_out_dir(out)
    log = EventLog(partial / "events.jsonl")
    if of and index is None:
        # k of "trial k/N": the finished trials beside this one, plus this one.
        index = 1 + sum(1 for d in out.parent.iterdir() if (d / "trial.json").exists())
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
            before = read_ruleset(shell)
            guest_nft = shell.run("nft --version").strip()
        (partial / "ruleset_before.nft").write_text(before)
        source = find_vm(bed)
        if source is None:
            raise MigfwError(f"VM {bed.vm_name} is not running on exactly one host")
        destination = bed.other(source)
        direction = f"{source}->{destination}"  # ASCII: it ends up in CSV columns
        arrow = f"{source}→{destination}"
        print(f"{label} interval {interval_s} direction {arrow}: lead-in…", flush=True)
        result = _probe_and_migrate(
            bed, partial, interval_s, enforcement, lead_in, settle, log,
            lambda: migrate(bed, source, destination, mode, bandwidth, max_downtime),
            label,
        )  # fmt: skip
        failure = result["failure"]
        mig = result["migration"]
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
            "capture": {
                "packets": cap.get("capture_packets"),
                "dropped": cap.get("capture_dropped"),
                "flagged": bool(cap.get("capture_dropped")),
                "requests_sent": cap.get("requests_sent"),
                "allowed_answers": cap.get("allowed_answers"),
                "blocked_answers": cap.get("blocked_answers"),
            },
            "breaches": cap.get("breaches") or [],
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
    except BaseException:
        log.close()
        shutil.rmtree(partial, ignore_errors=True)
        raise
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

    session = ProbeSession(
        bed.prober_netns,
        bed.prober_iface,
        bed.vm_address,
        interval_s,
        partial / "probe.pcap",
        partial / "sendlog.csv",
        enforcement=enforcement,
    )
    failure = None
    migration: dict[str, Any] = {}
    session.start()
    try:
        log("probe_started")
        time.sleep(lead_in)
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
    return {"failure": failure, "migration": migration, "capture": capture}


def _cmd_trial(args: argparse.Namespace) -> int:
    from migfw.testbed.local import terminate_as_interrupt

    cfg = load_config(args.config)
    try:
        with terminate_as_interrupt():
            meta = run_trial(cfg, args.trial_id, args.interval, args.out, args.repetition, args.of)
    except KeyboardInterrupt:
        # An interrupted run leaves nothing behind: no partial trial (run_trial removed it),
        # no prober (ProbeSession killed it) and, on the local provider, no testbed.
        if cfg_get(cfg, "testbed.provider", "local") == "local":
            from migfw.testbed.local import LocalTestbed

            LocalTestbed(cfg).down(quiet=True)
        raise
    # A failed migration is a result (status failed in trial.json), not a command error.
    return 0 if meta else 1


def register_cli(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("trial", help="run one live-migration trial and write its folder")
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--trial-id", required=True)
    parser.add_argument("--interval", type=float, required=True, help="probe interval (s)")
    parser.add_argument("--repetition", type=int, default=1)
    parser.add_argument("--of", type=int, default=None, help="number of trials in the run")
    parser.add_argument("--out", required=True, help="trial folder (must not exist)")
    parser.set_defaults(func=_cmd_trial)
