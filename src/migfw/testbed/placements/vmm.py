"""`vmm`: libvirt's own per-interface firewall, nwfilter, on the hypervisor hosts.

The filter (rendered from the ruleset) is defined on both hosts' libvirtds and referenced by
the VM's interface (`<filterref>`); the destination's libvirtd instantiates it while it
prepares the incoming VM. An observer records when the destination's chains exist at each
migration event (trial.json firewall.nwfilter_at_events).
"""

from __future__ import annotations

from typing import Any, ClassVar

from migfw.testbed.placements import register
from migfw.testbed.placements.base import Placement


@register
class Vmm(Placement):
    name: ClassVar[str] = "vmm"
    summary: ClassVar[str] = "libvirt nwfilter on the hosts, instantiated with the incoming VM"
    order: ClassVar[int] = 2
    level: ClassVar[str] = "vmm"
    host_rules: ClassVar[bool] = True
    host_layer: ClassVar[str | None] = "nwfilter"

    def install_hosts(self) -> None:
        from migfw.testbed import firewall

        ctx = self.ctx
        firewall.bind_nwfilter(ctx.cfg, ctx.bed, ctx.current, ctx.folder)
        ctx.log("nwfilter_bound", host=ctx.current)

    def start(self) -> None:
        from migfw.testbed import firewall

        # When does the destination's filter exist? Watched at the migration's events.
        self.agent_process = firewall.start_observer(self.ctx.bed, self.ctx.current)

    def describe(self, deployed: dict[str, Any], after: dict[str, Any] | None) -> dict[str, Any]:
        observed = (self.agent_report or {}).get("nwfilter_at_events")
        self.agent_report = None  # the observer's record is `nwfilter_at_events`, not `agent`
        out = super().describe(deployed, after)
        if observed is not None:
            out["nwfilter_at_events"] = observed
        return out
