"""`both`: the guest's own ruleset (as `vm`) and libvirt nwfilter on the hosts (as `vmm`).

Defence in depth: the guest's nftables migrate with its memory, and the destination's
libvirtd instantiates the nwfilter while it prepares the incoming VM. The filter is bound
first, then the guest's ruleset is deployed (once per VM instance) and every rule is checked
with packets with both in place.
"""

from __future__ import annotations

from typing import ClassVar

from migfw.testbed.placements import register
from migfw.testbed.placements.vmm import Vmm


@register
class Both(Vmm):
    name: ClassVar[str] = "both"
    summary: ClassVar[str] = "guest nftables and host nwfilter together"
    crafted_full_model: ClassVar[bool] = True
    order: ClassVar[int] = 1
    level: ClassVar[str] = "both"
    guest_rules: ClassVar[bool] = True
