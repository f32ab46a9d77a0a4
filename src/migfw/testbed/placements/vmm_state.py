"""`vmm-state`: `vmm-agent`'s host rules plus the VM's host conntrack entries carried from
the source to the destination (conntrack -L -o save -> conntrack -I) at the agent's trigger
and at the source's SUSPENDED event (migfw.testbed.conntrack.carry): whose connection state
follows the VM (issue 22).
"""

from __future__ import annotations

from typing import ClassVar

from migfw.testbed.placements import register
from migfw.testbed.placements.vmm_agent import VmmAgent


@register
class VmmState(VmmAgent):
    name: ClassVar[str] = "vmm-state"
    summary: ClassVar[str] = "vmm-agent plus the VM's host conntrack entries carried"
    crafted_full_model: ClassVar[bool] = True
    order: ClassVar[int] = 3
    carries_state: ClassVar[bool] = True
