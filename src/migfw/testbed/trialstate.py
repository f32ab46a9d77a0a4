"""What issue 22 adds to a trial around the migration, in one object the trial runner calls:
the co-tenant attackers (migfw.testbed.cotenant), the state-only flows' temporary allow at
every host layer (migfw.testbed.temporary), the `nf_conntrack_tcp_loose` factor and the
conntrack dumps before / just after the resume / at the end (migfw.testbed.conntrack).

    extras = TrialExtras.for_trial(cfg, bed, placement, factors, source, destination, folder)
    extras.apply(shell)                 # the factor's level on both hosts and in the guest
    ... TrialTraffic(..., layers=extras.layers, sides=extras.sides)
    extras.dump("before") / ("resume") / ("end")
    meta["conntrack"] = extras.record
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from migfw.testbed.base import Testbed, cfg_get
from migfw.testbed.conntrack import TrialConntrack

# Co-tenants sit beside the VM's port: on the hosts' Linux bridges, or under `ovn` as logical
# switch ports on br-int (migfw.testbed.ovn_placement.place_cotenants).
NO_COTENANT_PLACEMENTS: tuple[str, ...] = ()
SIDES = ("dst_cotenant", "src_cotenant", "egress")


def side_rates(cfg: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """(blocked, allowed) SYNs per second per co-tenant side: trials.enforcement.sides, each
    rate left out taken from the schema's default for that side."""
    from migfw.config import default

    configured = cfg_get(cfg, "trials.enforcement.sides") or {}
    out = {}
    for side in SIDES:
        rates = {**default(f"trials.enforcement.sides.{side}"), **(configured.get(side) or {})}
        out[side] = (float(rates["rate_hz"]), float(rates["allowed_rate_hz"]))
    return out


def egress_side(cfg: dict[str, Any], bed: Testbed, rate: float, allowed: float) -> Any:
    """The egress attacker's sink (migfw.testbed.egress), when the ruleset blocks the VM's
    SYNs to `other`:25 (rule E1); None when it does not (nothing to test)."""
    from migfw.testbed import egress
    from migfw.testbed.local import LocalTestbed
    from migfw.testbed.ruleset import default_addresses, load_ruleset

    rs = load_ruleset(cfg_get(cfg, "ruleset"))
    addresses = default_addresses(bed.vm_address, bed.prober_address or "",
                                  bed.extra.get("subnet"))  # fmt: skip
    if not egress.blocks_egress(rs, addresses):
        return None
    sink = egress.ensure_sink(LocalTestbed(cfg), addresses["other"])
    return {"sink": sink, "rate_hz": rate, "allowed_rate_hz": allowed}


class TrialExtras:
    def __init__(self, bed: Testbed, conntrack: TrialConntrack | None,
                 sides: dict[str, dict[str, Any]], layers: list[Any]) -> None:  # fmt: skip
        self.bed, self.conntrack, self.sides, self.layers = bed, conntrack, sides, layers
        self.egress: dict[str, Any] | None = None  # {sink, rate_hz, allowed_rate_hz}
        self.closers: list[Any] = []

    @classmethod
    def for_trial(
        cls,
        cfg: dict[str, Any],
        bed: Testbed,
        placement: str,
        factors: dict[str, Any],
        source: str,
        destination: str,
        folder: Path,
        enforcement: dict[str, Any] | None = None,
    ) -> TrialExtras:
        from migfw.testbed import placement as pl
        from migfw.testbed.placements import get

        kind = get(placement)

        local = bed.provider == "local"
        hosts = pl.hosts_reachable(bed)
        loose = factors.get("nf_conntrack_tcp_loose")
        conntrack = (TrialConntrack(bed, folder, source, destination, loose,
                                    host_dumps=kind.nic == "bridge")
                     if hosts else None)  # fmt: skip
        sides: dict[str, dict[str, Any]] = {}
        # The experiment's attack rate caps the co-tenants' (the thesis experiment's 20 Hz).
        rate = float((enforcement or {}).get("rate_hz") or 0)
        if local and rate > 0 and placement not in NO_COTENANT_PLACEMENTS:
            from migfw.testbed import cotenant
            from migfw.testbed.local import LocalTestbed

            rates = side_rates(cfg)
            for side, where in cotenant.sides_for(LocalTestbed(cfg), source, destination).items():
                sides[side] = {**where, "rate_hz": min(rates[side][0], rate),
                               "allowed_rate_hz": min(rates[side][1], rate)}  # fmt: skip
        extras = cls(bed, conntrack, sides, [])
        if local and rate > 0 and min(side_rates(cfg)["egress"]) > 0:
            extras.egress = egress_side(cfg, bed, min(side_rates(cfg)["egress"][0], rate),
                                        min(side_rates(cfg)["egress"][1], rate))  # fmt: skip
        if hosts and kind.host_layer == "host-nft":
            from migfw.testbed.temporary import HostNftAllow

            where = pl.host_commands(bed, source)
            extras.closers.append(lambda: pl.close_host(where))
            extras.layers.append(HostNftAllow(where, source))
        elif hosts and kind.host_layer == "nwfilter":
            from migfw.testbed.temporary import NwfilterAllow

            where = pl.host_commands(bed, source)
            extras.closers.append(lambda: pl.close_host(where))
            extras.layers.append(NwfilterAllow(where, source, pl.port_on(bed, source)))
        return extras

    def apply(self, shell: Any) -> None:
        if self.conntrack is not None:
            self.conntrack.apply(shell)

    def restore(self, shell: Any) -> None:
        if self.conntrack is not None:
            self.conntrack.restore(shell)

    def dump(self, moment: str, shell: Any = None) -> None:
        if self.conntrack is not None:
            self.conntrack.dump(moment, shell)

    @property
    def record(self) -> dict[str, Any] | None:
        return None if self.conntrack is None else self.conntrack.record

    def close(self) -> None:
        while self.closers:
            self.closers.pop()()
