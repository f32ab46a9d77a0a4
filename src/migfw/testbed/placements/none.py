"""`none`: no firewall anywhere (the control). The guest's ruleset is flushed for the trial
and redeployed and verified after it; the check is that the blocked port answers.
"""

from __future__ import annotations

from typing import Any, ClassVar

from migfw.testbed.placements import register
from migfw.testbed.placements.base import Placement


@register
class NoFirewall(Placement):
    name: ClassVar[str] = "none"
    summary: ClassVar[str] = "no firewall anywhere: the control"
    order: ClassVar[int] = 6
    level: ClassVar[str] = "none"

    def verify(self) -> list[dict[str, Any]]:
        from migfw.testbed import firewall

        return firewall.blocked_port_answers(self.ctx.cfg, self.ctx.bed)

    def after_trial(self) -> None:
        from migfw.testbed import firewall

        # The control leaves no lasting change: the guest's ruleset comes back, verified.
        firewall.ensure_ruleset(self.ctx.cfg, self.ctx.bed, log=lambda *a, **k: None)
