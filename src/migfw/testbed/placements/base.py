"""The placement interface: where a trial's firewall is, and what it does at each step.

A placement's class attributes are the facts every stage reads (the config check, the
rules' wildcard, crafted trials, the statistics); its methods are the trial's steps, called
by migfw.testbed.trial in this order with a `TrialContext`:

    deploy()          put the firewall where it belongs (and nowhere else), prove it with
                      packets and by looking in the guest and on both hosts
    start()           after the workload started, before the lead-in: agents, observers
    migrate(call)     wraps the migrate call (an agent's `pre` trigger, OVN's binding)
    layers()          firewall layers that need the state-only flows' temporary allow
    after_probing()   the probes stopped: its own trial.json record (`record_key`)
    stop_agent()      stop what start() started: its report (agent_events.json)
    rules_after(g)    where rules are after the migration ({A, B, guest})
    describe(...)     trial.json's `firewall`
    abort()           the trial failed with an exception: stop what runs
    after_trial()     the trial folder is written: leave the testbed as the next trial expects

Every step has a default; a placement overrides what differs. The module level of this
package imports nothing from the testbed: the steps import it inside the methods (only the
testbed calls them), so the registry stays readable by every stage.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from migfw.errors import MigfwError


@dataclass
class TrialContext:
    """What a placement's steps work with: the config, the testbed, the VM's host."""

    cfg: dict[str, Any]
    bed: Any  # migfw.testbed.base.Testbed
    current: str  # the host the VM runs on when the firewall is deployed
    log: Callable[..., None]  # events.jsonl
    folder: Path  # the trial folder being written (or a scratch folder)
    factors: Mapping[str, Any] = field(default_factory=dict)
    destination: str | None = None  # set by the trial before start()


class Placement:
    """One firewall placement; subclasses set the facts and override the steps they need."""

    name: ClassVar[str] = ""  # the factor level, e.g. "vmm-agent"
    summary: ClassVar[str] = ""  # one line for docs and --help
    order: ClassVar[int] = 100  # position in tables and figures
    # vm | vmm | none: the thesis's VM- vs VMM-level claim (both: vm and vmm at once)
    level: ClassVar[str] = "none"
    guest_rules: ClassVar[bool] = False  # the guest's own ruleset is in force
    host_rules: ClassVar[bool] = False  # rules on the host the VM runs on
    # The kind of host rules: "nwfilter" (libvirt), "host-nft" (migfw's agent), "ovn" (ACLs)
    host_layer: ClassVar[str | None] = None
    agent: ClassVar[bool] = False  # the destination is programmed by migfw's host agent
    carries_state: ClassVar[bool] = False  # host conntrack entries are copied with the VM
    factors: ClassVar[tuple[str, ...]] = ()  # factors that apply to this placement only
    nic: ClassVar[str] = "bridge"  # the VM's NIC: the hosts' Linux bridge, or "ovs"
    priority: ClassVar[int] = 0  # Snakemake runs higher ones first (NIC switches grouped)
    record_key: ClassVar[str | None] = None  # trial.json key of after_probing()'s record
    crafted: ClassVar[bool] = True  # `migfw craft --placement` models it
    crafted_full_model: ClassVar[bool] = False  # only issue 22's crafted model fits it

    def __init__(self, ctx: TrialContext) -> None:
        self.ctx = ctx
        self.agent_process: Any = None  # what start() started (migfw.testbed.agent)
        self.agent_report: dict[str, Any] | None = None

    # ------------------------------------------------------------------ facts
    @classmethod
    def expected_where(cls, current: str) -> dict[str, bool]:
        """Where rules must be (True) and must not be (False), the VM on host `current`."""
        return {"A": cls.host_rules and current == "A",
                "B": cls.host_rules and current == "B", "guest": cls.guest_rules}  # fmt: skip

    @property
    def delay_ms(self) -> float | None:
        """The agent's delay (agent placements): the trial's level, 200 ms if not given."""
        if not self.agent:
            return None
        factors = self.ctx.factors
        return float(factors.get("agent_delay_ms") or 0) if "agent_delay_ms" in factors else 200.0

    # ------------------------------------------------------------------ deploy
    def deploy(self) -> dict[str, Any]:
        """Put the firewall in place, prove it; returns {checks, where} (rule_checks.json is
        written). Hosts first: no host rules and no filterref unless this placement wants
        them there."""
        from migfw.io import write_json
        from migfw.testbed import placement as pl
        from migfw.testbed.deploy import require_rules_ok

        ctx = self.ctx
        look = pl.hosts_reachable(ctx.bed)
        if self.host_rules and not look:
            raise MigfwError(
                f"placement {self.name}: the {ctx.bed.provider} provider reaches host firewalls "
                "over SSH only: give qemu+ssh:// or qemu+libssh:// URIs"
            )
        self.clear_hosts(look)
        checks = self.install()
        write_json(ctx.folder / "rule_checks.json", checks)
        require_rules_ok(checks)
        if not look:
            # Hosts without an SSH login cannot be looked into: the guest's ruleset is known.
            return {"checks": checks, "where": {"A": None, "B": None, "guest": self.guest_rules}}
        where = pl.where_rules(ctx.bed, self.guest_rules)
        pl.require_where(self.name, self.expected_where(ctx.current), ctx.current, where)
        return {"checks": checks, "where": where}

    def clear_hosts(self, look: bool) -> None:
        """Remove the other placements' host rules: nwfilter's filterref and migfw's host
        tables (an agent placement keeps the current host's: it reinstalls them)."""
        from migfw.testbed import placement as pl

        ctx = self.ctx
        if self.host_layer != "nwfilter":
            pl.set_filterref(ctx.bed, ctx.current, False)
        for host in ("A", "B") if look else ():
            if not (self.agent and host == ctx.current):
                where = pl.host_commands(ctx.bed, host)
                try:
                    pl.remove_host_rules(where)
                finally:
                    pl.close_host(where)

    def install(self) -> list[dict[str, Any]]:
        """Install the host rules (install_hosts), then the guest's ruleset or nothing in
        the guest, and return the packet checks with everything in place."""
        from migfw.testbed import firewall

        ctx = self.ctx
        if not self.guest_rules:
            # Forget the guest deployment first, so a kill before a restore still makes the
            # next `vm` trial redeploy and verify.
            firewall.forget_ruleset(ctx.bed)
        # Host rules first, then a fresh SSH session: a session opened before nwfilter's
        # conntrack rules appear stalled (its mid-stream packets are NEW to the host's
        # conntrack and fall to the default block).
        self.install_hosts()
        if self.guest_rules:
            firewall.ensure_ruleset(ctx.cfg, ctx.bed, ctx.log)
        else:
            firewall.flush_guest(ctx.bed, ctx.log)
        checks = self.verify()
        ctx.log("verify", placement=self.name, checks=len(checks),
                failed=sum(1 for c in checks if c["ok"] is False))  # fmt: skip
        return checks

    def install_hosts(self) -> None:
        """This placement's rules on the VM's current host (none by default)."""

    def verify(self) -> list[dict[str, Any]]:
        """Every rule of the ruleset checked with packets from the prober."""
        from migfw.testbed import firewall

        return firewall.verify_by_packets(self.ctx.cfg, self.ctx.bed)

    # ------------------------------------------------------------------ around the migration
    def start(self) -> None:
        """After the workload started, before the lead-in (ctx.destination is set)."""

    def migrate(self, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run the migrate call (`call`); a placement may act right before or around it."""
        return call()

    def layers(self) -> list[Any]:
        """Layers besides the host's (trialstate.TrialExtras) that need the state-only flows'
        temporary allow: objects with add(source, port), remove() and `where`."""
        return []

    def after_probing(self) -> dict[str, Any] | None:
        """The probes stopped: the record trial.json keeps under `record_key`."""
        return None

    def stop_agent(self) -> dict[str, Any] | None:
        """Stop the agent or observer start() started; agent_events.json; its report."""
        if self.agent_process is None:
            return None
        from migfw.io import write_json

        report = self.agent_process.stop()
        self.agent_process = None
        self.ctx.log("agent_stopped", **{k: v for k, v in report.items() if k != "events"})
        write_json(self.ctx.folder / "agent_events.json", report)
        report.pop("events", None)
        self.agent_report = report
        return report

    def abort(self) -> None:
        """The trial stopped with an exception: stop what runs."""
        if self.agent_process is not None:
            self.agent_process.stop(drain_s=0.5)
            self.agent_process = None

    # ------------------------------------------------------------------ record
    def rules_after(self, guest_has_rules: bool) -> dict[str, Any] | None:
        """Where rules are after the migration: in the guest, on host A, on host B."""
        from migfw.testbed import placement as pl

        bed = self.ctx.bed
        if not pl.hosts_reachable(bed):  # as deploy(): the guest only
            return {"A": None, "B": None, "guest": guest_has_rules}
        try:
            return pl.where_rules(bed, guest_has_rules)
        except MigfwError as exc:
            self.ctx.log("rules_after_failed", error=str(exc))
            return None

    def describe(self, deployed: dict[str, Any], after: dict[str, Any] | None) -> dict[str, Any]:
        """trial.json's `firewall` (docs/trial_folders.md)."""
        return {
            "placement": self.name,
            "agent_delay_ms": self.delay_ms,
            "rules_before": deployed["where"],
            "rules_after": after,
            "checks": deployed["checks"],
            "agent": self.agent_report,
        }

    def after_trial(self) -> None:
        """The trial folder is complete: leave the testbed as the next trial expects."""
