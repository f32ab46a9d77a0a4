"""`vmm-agent`: host nftables on the VM's tap port, installed on the destination by migfw's
event-driven agent (migfw.testbed.agent) `agent_delay_ms` after its `trigger` (libvirt's
incoming-start or resume event, or `pre`: right before the migrate call); with
`port_default: closed` the destination's port drops every frame until then.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from migfw.testbed.placements import register
from migfw.testbed.placements.base import Placement


@register
class VmmAgent(Placement):
    name: ClassVar[str] = "vmm-agent"
    summary: ClassVar[str] = "host nftables installed by an agent after a libvirt event + delay"
    order: ClassVar[int] = 4
    level: ClassVar[str] = "vmm"
    host_rules: ClassVar[bool] = True
    host_layer: ClassVar[str | None] = "host-nft"
    agent: ClassVar[bool] = True
    factors: ClassVar[tuple[str, ...]] = ("trigger", "agent_delay_ms", "port_default")

    def install_hosts(self) -> None:
        from migfw.testbed import firewall

        ctx = self.ctx
        firewall.install_host_nft(ctx.cfg, ctx.bed, ctx.current, ctx.folder)
        ctx.log("host_rules_installed", host=ctx.current)

    def start(self) -> None:
        from migfw.testbed import firewall

        ctx = self.ctx
        trigger = str(ctx.factors.get("trigger") or "resume")
        self.agent_process = firewall.start_agent(
            ctx.cfg, ctx.bed, ctx.current, self.delay_ms or 0.0, trigger, self.carries_state
        )
        ctx.log("agent_started", delay_ms=self.delay_ms, trigger=trigger)
        assert ctx.destination is not None
        self.port_default = firewall.close_destination_port(ctx.bed, ctx.destination,
                                                            dict(ctx.factors), ctx.log)  # fmt: skip

    def migrate(self, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        logic = self.agent_process.logic
        logic.before_migration(self.ctx.destination)  # trigger `pre` programs it now
        self.ctx.log("agent_before_migration", trigger=logic.trigger)
        return call()

    def describe(self, deployed: dict[str, Any], after: dict[str, Any] | None) -> dict[str, Any]:
        out = super().describe(deployed, after)
        # When the closed port opened: the agent's install.
        opened = (self.agent_report or {}).get("rules_installed")
        out["port_default"] = {**self.port_default, "opened_at": opened}
        return out
