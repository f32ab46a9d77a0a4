"""`vm`: the ruleset in the guest (nftables `table inet migfw`), as the thesis ran it.

Nobody has to put it on the destination: it is guest memory and migrates with the VM. It is
deployed over SSH and proved with packets once per VM instance (migfw.testbed.firewall
caches it by the domain's UUID), so consecutive `vm` trials on one VM pay for it once.
"""

from __future__ import annotations

from typing import Any, ClassVar

from migfw.testbed.placements import register
from migfw.testbed.placements.base import Placement


@register
class Vm(Placement):
    name: ClassVar[str] = "vm"
    summary: ClassVar[str] = "nftables in the guest: migrates with the VM's memory"
    order: ClassVar[int] = 0
    level: ClassVar[str] = "vm"
    guest_rules: ClassVar[bool] = True

    def install(self) -> list[dict[str, Any]]:
        from migfw.testbed import firewall

        ctx = self.ctx
        return firewall.ensure_ruleset(ctx.cfg, ctx.bed, ctx.log)["checks"]
