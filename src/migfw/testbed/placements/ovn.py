"""`ovn`: the ruleset as OVN ACLs on the VM's logical switch port, enforced by each host's
ovn-controller in OVS (migfw.testbed.ovn, migfw.testbed.ovn_placement). The VM's NIC is an
OVS port on br-int for these trials; `ovn_binding` says how the port moves: `multichassis`
(bound to both hosts during the migration, activated by the VM's RARP) or `rebind` (to the
destination only after the resume).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from migfw.testbed.placements import register
from migfw.testbed.placements.base import Placement


@register
class Ovn(Placement):
    name: ClassVar[str] = "ovn"
    summary: ClassVar[str] = "OVN ACLs on the VM's logical port (ovn-controller on each host)"
    order: ClassVar[int] = 5
    level: ClassVar[str] = "vmm"
    host_rules: ClassVar[bool] = True
    host_layer: ClassVar[str | None] = "ovn"
    factors: ClassVar[tuple[str, ...]] = ("ovn_binding",)
    nic: ClassVar[str] = "ovs"
    priority: ClassVar[int] = 1  # ovn trials first: two VM boots for the NIC switch in all
    record_key: ClassVar[str | None] = "ovn"
    crafted: ClassVar[bool] = False

    def deploy(self) -> dict[str, Any]:
        from migfw.io import write_json
        from migfw.testbed import firewall, ovn_placement
        from migfw.testbed import placement as pl
        from migfw.testbed.deploy import require_rules_ok

        ctx = self.ctx
        self.clear_hosts(pl.hosts_reachable(ctx.bed))
        fw = ovn_placement.setup(ctx.cfg, ctx.bed, ctx.current, ctx.log, ctx.folder)
        firewall.forget_ruleset(ctx.bed)
        write_json(ctx.folder / "rule_checks.json", fw["checks"])
        require_rules_ok(fw["checks"])
        return fw

    def start(self) -> None:
        from migfw.testbed.ovn_placement import DEFAULT_BINDING, OvnTrial

        ctx = self.ctx
        binding = str(ctx.factors.get("ovn_binding") or DEFAULT_BINDING)
        self.trial = OvnTrial(ctx.cfg, ctx.bed, ctx.current, ctx.destination, binding, ctx.folder,
                              ctx.log).start()  # fmt: skip

    def migrate(self, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        return self.trial.migrate(call)

    def layers(self) -> list[Any]:
        return [self.trial.temporary_acl()]

    def after_probing(self) -> dict[str, Any] | None:
        return self.trial.stop()

    def rules_after(self, guest_has_rules: bool) -> dict[str, Any] | None:
        from migfw.testbed.ovn_placement import bound_where, site_for

        return {**bound_where(site_for(self.ctx.cfg, start=False)), "guest": guest_has_rules}
