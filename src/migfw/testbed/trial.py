"""One migration trial: probe the VM, live-migrate it, probe on, and write the trial folder.

`migfw testbed trial --config C --trial-id <experiment>/<slug>-rNN --out DIR`

The trial's factor levels come from its id and the config's `experiments` (or `--factors
JSON`). The folder is built in `DIR.partial/` and renamed into place only when complete; a
finished trial (DIR with trial.json) is immutable: the command refuses to touch it. A
`.partial` left by a killed run, or one this run cannot finish, is moved aside to
`<trials_dir>/.aborted/<trial id>-<UTC time>/` with `reason.txt`: never deleted, never
trusted. A failed or aborted migration (the hypervisor's error, or a destination daemon,
QEMU or link that died) is a trial with status "failed", its reason and its capture;
afterwards the testbed repairs itself (`recover`: dead libvirtd restarted, the VM found on
either host or re-provisioned; the next trial re-deploys the ruleset on a new VM) so a run
goes on. Only when the repair fails does the command stop, after writing the trial, with one
line saying why. Each trial also records its step times (monotonic) and checks them against
its capture (migfw.testbed.health): a guest silent in the lead-in or settle period for longer
than `trials.max_silence_s` flags the trial.
Placements (migfw.testbed.placement): `vm` (the ruleset in the guest), `vmm` (libvirt
nwfilter on the hosts), `vmm-agent` (host nftables installed by an event-driven agent after
`agent_delay_ms`) and `none` (nothing filters). For all but `vm` the guest's ruleset is
flushed for the trial; `none` restores it after.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from migfw.errors import MigfwError
from migfw.io import write_json
from migfw.testbed import workload
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


IMPLEMENTED_PLACEMENTS = ("vm", "vmm", "vmm-agent", "none", "ovn", "vmm-state")
# Placements whose destination is programmed by migfw's host agent (trigger, delay, default).
AGENT_PLACEMENTS = ("vmm-agent", "vmm-state")
# Factor levels of issue 22's contract (migfw.trials.attack_contract) the testbed applies so
# far; a trial asking for another level is refused rather than run without it.
IMPLEMENTED_LEVELS: dict[str, tuple[Any, ...]] = {
    "trigger": ("pre", "incoming", "resume", None),
    "port_default": ("open", "closed", None),
    "nf_conntrack_tcp_loose": (None, 0, 1),
}
# How long before the settle ends the `end` conntrack dumps start (they take ~0.3 s).
END_DUMP_S = 0.5
# Written when a testbed could not be repaired after a failed trial: every later trial refuses
# in one line until `migfw testbed cleanup`/`down` (the failed trial itself is kept: its
# command exits 0 so Snakemake never deletes its capture).
UNREPAIRED = "unrepaired.json"


def refuse_unrepaired(cfg: dict[str, Any]) -> None:
    from migfw.testbed.base import state_dir

    marker = state_dir(cfg) / UNREPAIRED
    if marker.exists():
        try:
            body = json.loads(marker.read_text())
        except (OSError, json.JSONDecodeError):
            body = {}
        raise MigfwError(
            f"testbed could not be repaired after trial {body.get('trial_id', '?')} "
            f"({body.get('error', 'see ' + str(marker))}); stopping: run `migfw testbed cleanup` "
            "to start a fresh testbed"
        )


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


def setup_placement(
    cfg: dict[str, Any],
    bed: Testbed,
    placement: str,
    current: str,
    log: EventLog,
    partial: Path,
) -> dict[str, Any]:
    """Put the firewall where `placement` wants it (and nowhere else), then prove it with
    packets and by looking in the guest and on both hosts. Writes rule_checks.json and, for
    host placements, the rendered host rules. The hosts are reached in their namespaces
    (local) or over SSH (external: placement.host_commands)."""
    from migfw.testbed import placement as pl
    from migfw.testbed.deploy import require_rules_ok, verify_rules
    from migfw.testbed.ruleset import load_ruleset, render_host_nft, render_nwfilter

    look = pl.hosts_reachable(bed)
    if placement in pl.HOST_PLACEMENTS and not look:
        raise MigfwError(
            f"placement {placement}: the {bed.provider} provider reaches host firewalls over "
            "SSH only: give qemu+ssh:// or qemu+libssh:// URIs"
        )
    ruleset_path = cfg_get(cfg, "ruleset", "config/ruleset.yaml")
    rs = load_ruleset(ruleset_path)
    addresses = addresses_for(bed)
    port = str(bed.extra.get("tap", "mfwtap0"))
    # Hosts first: no host rules and no filterref unless the placement wants them there.
    if placement != "vmm":
        pl.set_filterref(bed, current, False)
    for host in ("A", "B") if look else ():
        if not (placement in AGENT_PLACEMENTS and host == current):
            where = pl.host_commands(bed, host)
            try:
                pl.remove_host_rules(where)
            finally:
                pl.close_host(where)
    if placement == "ovn":  # OVN ACLs on the VM's logical port (migfw.testbed.ovn_placement)
        from migfw.testbed import ovn_placement

        fw = ovn_placement.setup(cfg, bed, current, log, partial)
        (Path(bed.state_dir) / "deployed.json").unlink(missing_ok=True)
        write_json(partial / "rule_checks.json", fw["checks"])
        require_rules_ok(fw["checks"])
        return fw
    if placement == "vm":
        deployed = ensure_ruleset(cfg, bed, log)
        checks = deployed["checks"]
        guest_rules = True
    else:
        # Forget the guest deployment first, so a kill before a restore still makes the
        # next `vm` trial redeploy and verify.
        (Path(bed.state_dir) / "deployed.json").unlink(missing_ok=True)
        # Host rules first, then a fresh SSH session: a session opened before nwfilter's
        # conntrack rules appear stalled (its mid-stream packets are NEW to the host's
        # conntrack and fall to the default block).
        if placement in AGENT_PLACEMENTS:
            text = render_host_nft(rs, addresses, port)
            (partial / "host_rules.nft").write_text(text)
            where = pl.host_commands(bed, current)
            try:
                pl.install_host_rules(where, text)
            finally:
                pl.close_host(where)
            log("host_rules_installed", host=current)
        elif placement == "vmm":
            xml = render_nwfilter(rs, addresses)
            (partial / "nwfilter.xml").write_text(xml)
            pl.define_nwfilter(bed, xml)
            pl.set_filterref(bed, current, True)
            log("nwfilter_bound", host=current)
        with guest_shell(bed) as shell:
            shell.run("nft flush ruleset")
            log("ruleset_flushed")
        guest_rules = False
        if placement == "none":
            checks = _none_checks(cfg, bed)
        elif bed.extra.get("prober"):  # the packets come from the remote prober host
            from migfw.testbed.remote import remote_verify

            checks = remote_verify(bed, ruleset_path, addresses, ftp_path="readme.txt")
        else:
            with guest_shell(bed) as shell:
                checks = verify_rules(rs, addresses, bed.prober_netns, shell,
                                      ftp_path="readme.txt")  # fmt: skip
        log("verify", placement=placement, checks=len(checks),
            failed=sum(1 for c in checks if c["ok"] is False))  # fmt: skip
    write_json(partial / "rule_checks.json", checks)
    require_rules_ok(checks)
    if not look:
        # Hosts without an SSH login cannot be looked into: the guest's ruleset is known.
        return {"checks": checks, "where": {"A": None, "B": None, "guest": guest_rules}}
    where = pl.where_rules(bed, guest_rules)
    pl.require_where(placement, current, where)
    return {"checks": checks, "where": where}


def _none_checks(cfg: dict[str, Any], bed: Testbed) -> list[dict[str, Any]]:
    """The control: the blocked port must answer (nothing filters anywhere)."""
    from migfw.testbed.deploy import probe_tcp
    from migfw.testbed.netns import in_netns

    port = int(cfg_get(cfg, "trials.enforcement.blocked_port", 23))
    if bed.extra.get("prober"):  # from the prober host, as every other check
        from migfw.testbed.remote import remote_probe_tcp

        observed = remote_probe_tcp(bed, port)
    else:
        with in_netns(bed.prober_netns):
            observed = probe_tcp(bed.prober_address or "", bed.vm_address, port, 1.0)
    return [{"rule": "none", "probe": f"tcp SYN {bed.prober_address} -> {bed.vm_address}:{port}",
             "expected": "answer", "observed": observed,
             "ok": observed.split(" ")[0] == "answer", "deciding_rule": None}]  # fmt: skip


def _host_hooks(bed: Testbed, agent: Any) -> tuple[dict[str, Any], Any]:
    """Each host's command session (opened now, so an install pays no SSH login), and the
    VM's port on a host: asked of the agent's own libvirt connection to it (external)."""
    from migfw.testbed import placement as pl

    where = {h: pl.host_commands(bed, h) for h in ("A", "B")}
    agent.cleanup.extend(lambda w=w: pl.close_host(w) for w in where.values())
    for w in where.values():
        if isinstance(w, pl.HostSsh):
            w.open()

    def port(host: str) -> str:
        if bed.provider == "local" or host not in agent.conns:
            return str(bed.extra.get("tap", "mfwtap0"))
        return pl.domain_port(agent.conns[host], bed.vm_name) or str(bed.extra.get("tap"))

    return where, port


def start_agent(
    cfg: dict[str, Any],
    bed: Testbed,
    current: str,
    delay_ms: float,
    trigger: str = "resume",
    carry_state: bool = False,
):  # -> EventAgent
    """The host agent of `vmm-agent` (and `vmm-state`, which also carries the VM's conntrack
    entries: `carry_state`), listening to both hosts for the trial."""
    from migfw.testbed import placement as pl
    from migfw.testbed.agent import AgentLogic, EventAgent
    from migfw.testbed.ruleset import load_ruleset, render_host_nft

    rs = load_ruleset(cfg_get(cfg, "ruleset", "config/ruleset.yaml"))
    addresses = addresses_for(bed)
    hooks: dict[str, Any] = {}
    carry = None
    if carry_state:
        from migfw.testbed.conntrack import carry as copy_state

        def carry(source: str, destination: str) -> dict[str, Any]:
            return copy_state(hooks["where"][source], hooks["where"][destination],
                              bed.vm_address)  # fmt: skip

    logic = AgentLogic(
        current, delay_ms,
        install=lambda host: pl.install_host_rules(
            hooks["where"][host], render_host_nft(rs, addresses, hooks["port"](host))),
        remove=lambda host: pl.remove_host_rules(hooks["where"][host]),
        trigger=trigger, carry=carry,
    )  # fmt: skip
    agent = EventAgent({h: bed.hosts[h].uri for h in ("A", "B")}, bed.vm_name, logic)
    hooks["where"], hooks["port"] = _host_hooks(bed, agent)
    agent.start()
    return agent


def close_destination_port(
    bed: Testbed, destination: str, factors: dict[str, Any], log: EventLog
) -> dict[str, Any]:
    """`port_default`: `closed` drops every frame of the VM's port on the destination until
    the agent's install (migfw.testbed.temporary.closed_port_nft); `open` leaves it alone."""
    from migfw.testbed import placement as pl
    from migfw.testbed.temporary import closed_port_nft

    level = str(factors.get("port_default") or "open")
    if level != "closed":
        return {"level": level, "closed_at": None}
    where = pl.host_commands(bed, destination)
    try:
        pl.install_host_rules(where, closed_port_nft(pl.port_on(bed, destination)))
    finally:
        pl.close_host(where)
    log("port_closed", host=destination)
    return {"level": level, "closed_at": time.time(), "host": destination}


def start_observer(bed: Testbed, current: str):  # -> EventAgent
    """For `vmm`: watch the destination's nwfilter chains at the migration's events."""
    from migfw.testbed import placement as pl
    from migfw.testbed.agent import EventAgent, FilterObserver

    hooks: dict[str, Any] = {}
    logic = FilterObserver(
        current, lambda h: pl.nwfilter_chains_present(hooks["where"][h], hooks["port"](h))
    )
    agent = EventAgent({h: bed.hosts[h].uri for h in ("A", "B")}, bed.vm_name, logic)  # type: ignore[arg-type]
    hooks["where"], hooks["port"] = _host_hooks(bed, agent)
    agent.start()
    return agent


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
        "qemu": qemu_version(bed.extra.get("emulator")) if bed.provider == "local" else None,
        "libvirt": libvirt_version,
        "kernel": {"host": platform.release(), "guest": guest_kernel},
        "nft": guest_nft,
        "python": platform.python_version(),
        "python_packages": packages,
    }


def hypervisor_pids(cfg: dict[str, Any], bed: Testbed, vm_host: str | None) -> dict[str, Any]:
    """The PIDs the testbed recorded (libvirtd per host) and the VM's QEMU (local provider)."""
    if bed.provider != "local":
        return {}
    from migfw.testbed.base import read_state
    from migfw.testbed.local import LocalTestbed

    local = LocalTestbed(cfg)
    pids: dict[str, Any] = dict((read_state(local.state_dir) or {}).get("pids", {}))
    if vm_host is not None:
        pids["qemu"] = local.vm_pid(vm_host)
        pids["qemu_host"] = vm_host
    return pids


def watchdog_flags(migration: dict[str, Any]) -> list[str]:
    """`migration_slow`: the migration finished but went `slow_stall_s` or longer without
    progress (a stalled one is a failed trial instead)."""
    watchdog = migration.get("watchdog") or {}
    return ["migration_slow"] if watchdog.get("slow") and migration.get("hypervisor") else []


def recover(cfg: dict[str, Any], bed: Testbed) -> dict[str, Any]:
    """After a failed migration: restart dead daemons (local), then one running VM again.

    Raises MigfwError (one line) when the testbed cannot be repaired.
    """
    from migfw.testbed.provision import ensure_vm

    repaired: list[str] = []
    if bed.provider == "local":
        from migfw.testbed.local import LocalTestbed

        repaired = LocalTestbed(cfg).repair()
    earlier_boot = bed.extra.pop("last_boot_s", None)
    try:
        where = ensure_vm(bed)  # sets last_boot_s only when it booted a new VM
    except MigfwError:
        if bed.provider != "local":
            raise
        # A daemon that died during the repair itself (libvirt 9.0 after a killed QEMU):
        # once more, then give up in one line.
        repaired += LocalTestbed(cfg).repair()
        where = ensure_vm(bed)
    reprovisioned = "last_boot_s" in bed.extra
    if not reprovisioned and earlier_boot is not None:
        bed.extra["last_boot_s"] = earlier_boot
    if bed.provider == "local":
        from migfw.testbed.local import LocalTestbed, kill_pid

        local = LocalTestbed(cfg)
        keep = local.vm_pid(where)
        for pid in local.stray_qemus(keep) if keep else []:
            kill_pid(pid)
            repaired.append(f"killed QEMU PID {pid} left by the failed migration")
    return {"repaired": repaired, "vm_host": where, "reprovisioned": reprovisioned}


def reprovision(bed: Testbed) -> dict[str, Any]:
    """Destroy the unreachable VM wherever it runs and boot a new one (local provider)."""
    from migfw.testbed.provision import destroy_vm, ensure_vm

    destroy_vm(bed)
    where = ensure_vm(bed)
    return {"vm_host": where, "reprovisioned": True,
            "reason": "guest unreachable after the trial"}  # fmt: skip


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
    from migfw.testbed.migrate import migrate, migration_settings, write_jobstats
    from migfw.testbed.provision import find_vm, guest_console

    if interval_s <= 0:
        raise MigfwError(f"--interval: {interval_s} must be positive")
    factors = {"placement": "vm", **(factors or {}), "interval_s": interval_s}
    placement = factors["placement"]
    if placement not in IMPLEMENTED_PLACEMENTS:
        raise MigfwError(
            f"trial {trial_id}: placement {placement!r} is not implemented by the testbed yet "
            f"(implemented: {', '.join(IMPLEMENTED_PLACEMENTS)})"
        )
    for name, levels in IMPLEMENTED_LEVELS.items():
        if factors.get(name) not in levels:
            raise MigfwError(
                f"trial {trial_id}: factor {name}={factors[name]!r} is not applied by the "
                "testbed yet (docs/attack_window.md: a later stage of issue 22)"
            )
    from migfw.testbed.pairs import pair_config

    cfg = pair_config(cfg, pair)
    # Migration parameters: the config's `migration` block, overridden by this trial's factors.
    settings = migration_settings({**(cfg_get(cfg, "migration", None) or {}), **factors})
    load = workload.workload_settings(factors)
    mode = settings["mode"]
    if factors.get("memory_mib") is not None:  # the guest's RAM is a factor: (re)provision
        cfg = copy.deepcopy(cfg)
        cfg.setdefault("testbed", {}).setdefault("guest", {})["memory_mib"] = int(
            factors["memory_mib"]
        )
    lead_in = float(lead_in_s if lead_in_s is not None else cfg_get(cfg, "trials.lead_in_s", 5.0))
    settle = float(settle_s if settle_s is not None else cfg_get(cfg, "trials.settle_s", 3.0))
    enforcement = cfg_get(cfg, "trials.enforcement", None)
    if enforcement is not None and attack_rate_hz is not None:  # the experiment's own rate
        enforcement = {**enforcement, "rate_hz": float(attack_rate_hz)}
    flows_cfg = cfg_get(cfg, "trials.flows", None)
    from migfw.testbed.health import DEFAULT_MAX_SILENCE_S

    max_silence = float(cfg_get(cfg, "trials.max_silence_s", DEFAULT_MAX_SILENCE_S))
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
    restore = False
    agent = None
    label = f"trial {index}/{of}" if of else f"trial {trial_id}"
    wall = time.monotonic()
    try:
        log("start", trial_id=trial_id, interval_s=interval_s)
        bed = ensure_up(cfg)
        base["target"] = bed.vm_address
        log("testbed", provider=bed.provider, accelerator=bed.accelerator)
        from migfw.testbed.ovn_placement import ensure_nic

        ensure_nic(cfg, bed, placement, log)  # an OVS port for `ovn`, the Linux bridge else
        from migfw.testbed.ovn_placement import place_cotenants

        place_cotenants(cfg, bed, placement, log)  # the co-tenants beside the VM's port
        from migfw.testbed.deploy import diff_rulesets, read_ruleset

        source = find_vm(bed)
        if source is None:
            raise MigfwError(f"VM {bed.vm_name} is not running on exactly one host")
        destination = bed.other(source)
        base["migration"] = {"source": source, "destination": destination}
        pids = hypervisor_pids(cfg, bed, source)
        log("pids", **pids)  # read by fault-injection tests: the daemons and the VM's QEMU
        delay_ms = (float(factors.get("agent_delay_ms") or 0 if "agent_delay_ms" in factors
                          else 200) if placement in AGENT_PLACEMENTS else None)  # fmt: skip
        fw = setup_placement(cfg, bed, placement, source, log, partial)
        restore = placement == "none"
        from migfw.testbed.trialstate import TrialExtras

        extras = TrialExtras.for_trial(cfg, bed, placement, factors, source, destination, partial,
                                       enforcement)  # fmt: skip
        with guest_shell(bed) as shell:
            before = read_ruleset(shell)
            guest_nft = shell.run("nft --version").strip()
            extras.apply(shell)  # nf_conntrack_tcp_loose on both hosts and in the guest
            workload.start(shell, load)  # runs through lead-in, migration and settle
            log("workload_started", **load)
        (partial / "ruleset_before.nft").write_text(before)
        agent = None
        port_default = None
        if placement in AGENT_PLACEMENTS:
            trigger = str(factors.get("trigger") or "resume")
            agent = start_agent(cfg, bed, source, delay_ms, trigger, placement == "vmm-state")
            log("agent_started", delay_ms=delay_ms, trigger=trigger)
            port_default = close_destination_port(bed, destination, factors, log)
        elif placement == "vmm":
            agent = start_observer(bed, source)  # when does the destination's filter exist?
        direction = f"{source}->{destination}"  # ASCII: it ends up in CSV columns
        arrow = f"{source}→{destination}"
        clocks = {}
        if bed.extra.get("prober"):
            from migfw.testbed.remote import clock_offsets

            clocks["start"] = clock_offsets(bed)
            log("clock", **clocks["start"])
        print(f"{label} interval {interval_s} direction {arrow}: lead-in…", flush=True)

        def do_migrate() -> dict[str, Any]:
            if agent is not None and hasattr(agent.logic, "before_migration"):
                agent.logic.before_migration(destination)  # trigger `pre` programs it now
                log("agent_before_migration", trigger=agent.logic.trigger)
            return migrate(bed, source, destination, settings)

        ovn_trial = None
        if placement == "ovn":
            from migfw.testbed.ovn_placement import DEFAULT_BINDING, OvnTrial

            binding = str(factors.get("ovn_binding") or DEFAULT_BINDING)
            ovn_trial = OvnTrial(cfg, bed, source, destination, binding, partial, log).start()
            do_migrate = lambda: ovn_trial.migrate(  # noqa: E731
                lambda: migrate(bed, source, destination, settings))  # fmt: skip
        layers = list(extras.layers)
        if ovn_trial is not None:
            layers.append(ovn_trial.temporary_acl())
        try:
            result = _probe_and_migrate(
                bed, partial, interval_s, enforcement, lead_in, settle, log,
                do_migrate, label, flows_cfg, load, layers=layers, extras=extras,
            )  # fmt: skip
        finally:
            ovn_record = ovn_trial.stop() if ovn_trial is not None else None
            extras.close()
        agent_report = None
        if agent is not None:
            agent_report = agent.stop()
            log("agent_stopped", **{k: v for k, v in agent_report.items() if k != "events"})
            write_json(partial / "agent_events.json", agent_report)
            agent_report.pop("events", None)
        prober = result["prober"]
        failure = result["failure"]
        mig = result["migration"]
        write_jobstats(partial / "jobstats.csv", mig.get("jobstats") or [])
        clock = result["clock"]
        # Read the guest's console before any repair re-provisions the VM (which empties it):
        # where it ran after the migration, i.e. the destination unless the migration failed.
        console = guest_console(bed, source if mig.get("hypervisor") is None else destination)
        if console is not None:
            (partial / "console.log").write_text(console[0])
            log("console", **console[1])
        recovery, repair_error = None, None
        if clocks:
            clocks["end"] = clock_offsets(bed)
            log("clock", **clocks["end"])
        if failure:
            # A hypervisor fault is an outcome: repair the testbed so the run goes on.
            try:
                recovery = recover(cfg, bed)
                log("recovered", **recovery)
            except MigfwError as exc:
                repair_error = str(exc)
                recovery = {"error": repair_error}
                log("repair_failed", error=repair_error)
        after, diff, identical = None, None, None
        load_record: dict[str, Any] = {"name": load["workload"], "report": None}
        try:
            if repair_error:
                raise MigfwError("testbed not repaired")
            with guest_shell(bed) as shell:
                after = read_ruleset(shell)
                load_record = workload.stop(shell, load)
                extras.restore(shell)  # nf_conntrack_tcp_loose back to the kernel's 1
            diff = diff_rulesets(before, after)
            identical = not diff
            (partial / "ruleset_after.nft").write_text(after)
        except MigfwError as exc:
            log("ruleset_after_failed", error=str(exc))
            if not failure:
                failure = f"cannot read the ruleset after migration: {exc}"
            if not repair_error and bed.provider == "local":
                # A guest that no longer answers is as good as gone: replace it, so the
                # next trial starts from a fresh VM (and re-deploys its ruleset).
                try:
                    recovery = {**(recovery or {}), **reprovision(bed)}
                    log("reprovisioned", **recovery)
                except MigfwError as exc2:
                    repair_error = str(exc2)
                    recovery = {**(recovery or {}), "error": repair_error}
                    log("repair_failed", error=repair_error)
        if result.get("service") is not None:  # the requests' summary (service.csv)
            load_record.update(result["service"])
        from migfw.testbed.placement import hosts_reachable as placement_hosts_reachable
        from migfw.testbed.placement import record, where_rules

        rules_after = None
        has_rules = bool(after and "table inet migfw" in after)
        if placement == "ovn":
            from migfw.testbed.ovn_placement import bound_where, site_for

            rules_after = {**bound_where(site_for(cfg, start=False)), "guest": has_rules}
        elif not placement_hosts_reachable(bed):  # as setup_placement: the guest only
            rules_after = {"A": None, "B": None, "guest": has_rules}
        else:
            try:
                rules_after = where_rules(bed, has_rules)
            except MigfwError as exc:
                log("rules_after_failed", error=str(exc))
        observed = None
        if placement == "vmm" and agent_report is not None:
            observed, agent_report = agent_report.get("nwfilter_at_events"), None
        firewall = record(placement, delay_ms, fw["where"], rules_after, fw["checks"],
                          agent_report)  # fmt: skip
        if placement in AGENT_PLACEMENTS:
            firewall["agent_delay_ms"] = delay_ms
        if port_default is not None:  # when the closed port opened: the agent's install
            opened = (agent_report or {}).get("rules_installed")
            firewall["port_default"] = {**port_default, "opened_at": opened}
        if observed is not None:
            firewall["nwfilter_at_events"] = observed
        cap = result["capture"]
        from migfw.testbed.health import check_silences

        timeline = clock.to_dict()
        try:
            health = check_silences(partial / "probe.pcap", bed.vm_address,
                                    prober.get("icmp_id"), timeline, max_silence)  # fmt: skip
        except MigfwError as exc:  # e.g. an empty capture: the trial says so, no health
            health = {"max_silence_s": max_silence, "error": str(exc), "flags": []}
        flags = list(dict.fromkeys(result["flags"] + health["flags"] + watchdog_flags(mig)))
        log("health", **health)
        traffic = result["traffic"]
        attack = traffic.get("attack")
        # Allowed/blocked-port answers: the attacker's sender, or the prober's when it probed.
        answers = ((attack or {}).get("sender") or {}) if attack is not None else cap
        meta = {
            "trial_id": trial_id,
            "experiment": experiment or DEFAULT_EXPERIMENT,
            "factors": factors,
            "interval_s": interval_s,
            "target": bed.vm_address,
            "status": "failed" if failure else "ok",
            "failure": failure,
            "migration": {
                # The migrate call itself (not when libvirt got to start the job): a frozen
                # guest or a slow daemon cannot shift these.
                "start": clock.epoch("migrate_call"),
                "end": clock.epoch("migrate_return"),
                "source": source,
                "destination": destination,
                "mode": mode,
                "algorithm": settings["algorithm"],
                "bandwidth_mibps": mig.get("bandwidth_mibps", settings["bandwidth_mibps"] or None),
                "max_downtime_ms": mig.get("max_downtime_ms", settings["max_downtime_ms"] or None),
                "requested": mig.get("requested"),
                "in_force": mig.get("in_force"),
                # The progress watchdog (migfw.testbed.migrate.ProgressWatch); after a stall
                # or a hung daemon, the last job statistics and what did not answer.
                "watchdog": mig.get("watchdog"),
                "unresponsive": mig.get("unresponsive"),
            },
            "hypervisor": mig.get("hypervisor"),
            "phases": mig.get("phases"),
            "workload": load_record,
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
                "allowed_answers": answers.get("allowed_answers"),
                "blocked_answers": answers.get("blocked_answers"),
            },
            # Answered blocked-port probes: the attacker's (attack.pcap, one per probe index)
            # where the testbed has an attacker namespace; else the prober's own (probe.pcap),
            # e.g. the external provider's remote prober.
            "breaches": (traffic.get("breaches") if attack is not None else cap.get("breaches"))
            or [],
            "attack": attack,
            # issue 22: every attacker side, and the conntrack dumps (docs/attack_window.md)
            "attackers": traffic.get("attackers"),
            "conntrack": _conntrack_record(extras.record, ovn_record),
            "flows": traffic.get("flows"),
            "prober": {**prober, **prober_record(bed, result["capture"])},
            "flags": flags,
            "timeline": timeline,
            "health": health,
            "pids": pids,
            "recovery": recovery,
            "console": console[1] if console is not None else None,
            "ruleset": {"identical_before_after": identical, "diff": diff},
            "enforcement": enforcement,
            "firewall": firewall,
            "ovn": ovn_record,
            "lead_in_s": lead_in,
            "settle_s": settle,
            "software": software_versions(bed, guest_nft),
            "wall_s": round(time.monotonic() - wall, 2),
            "disk_space": space,  # free before the trial, and what it was expected to write
        }
        if attack is not None and _breach_position(partial, meta) is not None:
            meta["breach_position"] = _breach_position(partial, meta)
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
        if agent is not None:
            agent.stop(drain_s=0.5)
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
    flows_cfg: dict[str, Any] | None = None,
    load: dict[str, Any] | None = None,
    layers: list[Any] | None = None,
    extras: Any = None,
) -> dict[str, Any]:
    """Probe for lead_in, migrate, probe for settle; the probes always stop.

    The ICMP prober runs in the prober's namespace; the attacker's SYN probes (from its own
    namespace, when the testbed has one) and the stateful flows run beside it
    (migfw.testbed.exposure); without an attacker namespace the prober sends the SYNs. The
    `service` workload's requests (migfw.testbed.service) run beside the prober too."""
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
                           egress=getattr(extras, "egress", None))  # fmt: skip

    def dump(moment: str) -> None:  # conntrack dumps, inside the probing (issue 22)
        if extras is not None:
            extras.dump(moment)
            log("conntrack_dump", moment=moment)

    failure = None
    flags: list[str] = []
    migration: dict[str, Any] = {}
    session.start()
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
        traffic.start(log)
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
        dump("before")  # the temporary allows are gone: the state-only flows' entries
        time.sleep(max(0.0, lead_in - (time.monotonic() - clock.steps["lead_in_start"])))
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
            if migration.get("hypervisor"):
                dump("resume")  # the migrate call returns just after the resume event
            # The end dump is taken in the settle's last moments (while every flow still
            # runs), so it costs the trial no time of its own.
            left = settle - (time.monotonic() - clock.steps["migrate_return"])
            time.sleep(max(0.0, left - END_DUMP_S))
            dump("end")
            time.sleep(max(0.0, settle - (time.monotonic() - clock.steps["migrate_return"])))
            clock.mark("settle_end")
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


def _conntrack_record(
    record: dict[str, Any] | None, ovn_record: dict[str, Any] | None
) -> dict[str, Any] | None:
    """trial.json `conntrack`: the kernel dumps, and under ovn OVS's own (its hosts' tables)."""
    ovn_dumps = ((ovn_record or {}).get("conntrack") or {}).get("dumps") or {}
    if record is None and not ovn_dumps:
        return None
    out = dict(record or {"tcp_loose": {}, "dumps": {}})
    out["dumps"] = {**out.get("dumps", {}), **ovn_dumps}
    return out


def _breach_position(folder: Path, meta: dict[str, Any]) -> Any:
    """trial.json `breach_position` when it needs no analysis: `none` for a trial without
    breaches. With breaches it is left out: placing the runs relative to the pause belongs to
    the attack-window analysis, a later stage the testbed may not import (the analysis fills
    it in; tests/test_architecture.py keeps the order)."""
    return "none" if not meta.get("breaches") else None


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
    # Captures are private by default (a lab's hosts have other users): the trial folder 0700,
    # its files 0600, tcpdump's too (it inherits this). docs/testbed.md: sharing results.
    os.umask(0o077)
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
                spec.get("lead_in_s"), spec.get("settle_s"), spec.get("attack_rate_hz"),
                pair=pair,
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


def _cmd_placement(args: argparse.Namespace) -> int:
    """Deploy one placement on the running testbed and record its packet checks (the DAG's
    `deploy_placement` evidence); each trial deploys and verifies its placement again."""
    import tempfile

    from migfw.testbed.owner import acquire
    from migfw.testbed.provision import find_vm

    if args.placement not in IMPLEMENTED_PLACEMENTS:
        raise MigfwError(f"--placement: {args.placement!r} is not one of "
                         f"{', '.join(IMPLEMENTED_PLACEMENTS)}")  # fmt: skip
    cfg = load_config(args.config)
    owner = acquire(cfg, "migfw testbed placement")  # None: our Snakemake run owns it
    try:
        bed = ensure_up(cfg)
        from migfw.testbed.ovn_placement import ensure_nic

        ensure_nic(cfg, bed, args.placement, lambda *a, **k: None)
        current = find_vm(bed)
        if current is None:
            raise MigfwError(f"VM {bed.vm_name} is not running on exactly one host")
        with tempfile.TemporaryDirectory(prefix="migfw-placement-") as tmp:
            log = EventLog(Path(tmp) / "events.jsonl")
            try:
                fw = setup_placement(cfg, bed, args.placement, current, log, Path(tmp))
            finally:
                log.close()
            rendered = {p.name: p.read_text() for p in Path(tmp).iterdir()
                        if p.suffix in (".nft", ".xml")}  # fmt: skip
        if args.placement == "none":
            # The control leaves no lasting change: the guest's ruleset comes back.
            ensure_ruleset(cfg, bed, log=lambda *a, **k: None)
    finally:
        if owner is not None:
            owner.release()
    failed = sum(1 for c in fw["checks"] if c["ok"] is False)
    write_json(args.out, {"placement": args.placement, "vm_host": current,
                          "rules_where": fw["where"], "checks": fw["checks"],
                          "rendered": rendered, "at": time.time()})  # fmt: skip
    probed = sum(1 for c in fw["checks"] if c["ok"] is not None)
    print(f"placement {args.placement} on host {current}: {probed - failed}/{probed} packet "
          f"checks as expected; rules at {fw['where']}")  # fmt: skip
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    place = sub.add_parser("placement", help="deploy a firewall placement and verify it")
    place.add_argument("--config", default="config/config.yaml")
    place.add_argument("--placement", required=True)
    place.add_argument("--out", required=True, help="JSON evidence: rules and packet checks")
    place.set_defaults(func=_cmd_placement)
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
