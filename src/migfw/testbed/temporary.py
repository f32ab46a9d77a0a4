"""Temporary allow rules at the host layers (issue 22 item 1): the state-only flows
(`established`, `guest_first`) are opened while *every* active firewall layer of the trial's
placement admits them, then the allow goes at every layer before the lead-in ends, so from
then on only connection state passes them.

A layer has `where` (`A`/`B`: the host; the guest's own rule is migfw.testbed.exposure's),
`add(source, ports) -> rule text` (every port in one change: one `nft -f`, one
`iptables-restore`, one OVN transaction) and `remove()` (every rule it added, again at once).

- `HostNftAllow`: host nftables (`vmm-agent`, `vmm-state`): an accept for the VM's port
  inserted at the top of the host table's forward chain, deleted by its handle.
- `NwfilterAllow`: libvirt nwfilter (`vmm`): an accept at the top of the iptables chains
  libvirtd instantiated for the VM's port, deleted by its spec.
"""

from __future__ import annotations

import re
from typing import Any

from migfw.errors import MigfwError

COMMENT = "migfw-temporary-state-only"


class HostNftAllow:
    """Accept `source -> VM:port` on a host's bridge port, at the top of its forward chain."""

    def __init__(self, where: Any, host: str) -> None:
        self.commands, self.where = where, host
        self.handles: list[int] = []

    def add(self, source: str, ports: tuple[int, ...]) -> str:
        from migfw.testbed import placement as pl
        from migfw.testbed.ruleset_render import HOST_TABLE, MARK_TO_VM

        rules = [f"meta mark {MARK_TO_VM:#x} ip saddr {source} tcp dport {int(p)} accept"
                 for p in ports]  # fmt: skip
        text = "".join(f'insert rule inet {HOST_TABLE} forward {r} comment "{COMMENT}"\n'
                       for r in rules)  # fmt: skip
        proc = pl._nft(self.commands, ["--echo", "--handle", "-f", "-"], text)
        found = re.findall(r"# handle (\d+)", proc.stdout or "")
        if proc.returncode != 0 or len(found) != len(rules):
            raise MigfwError(f"host {self.where}: temporary allow not added: "
                             f"{(proc.stderr or proc.stdout).strip()}")  # fmt: skip
        self.handles += [int(h) for h in found]
        return "; ".join(f"inet {HOST_TABLE} forward: {r}" for r in rules)

    def remove(self) -> None:
        from migfw.testbed import placement as pl
        from migfw.testbed.ruleset_render import HOST_TABLE

        handles, self.handles = self.handles, []
        if handles:  # one transaction: every handle or none
            text = "".join(f"delete rule inet {HOST_TABLE} forward handle {h}\n" for h in handles)
            proc = pl._nft(self.commands, ["-f", "-"], text)
            if proc.returncode != 0:
                raise MigfwError(f"host {self.where}: temporary allows {handles} not removed: "
                                 f"{proc.stderr.strip()}")  # fmt: skip
        listing = pl._nft(self.commands, ["list", "chain", "inet", HOST_TABLE, "forward"])
        if COMMENT in (listing.stdout or ""):
            raise MigfwError(f"host {self.where}: a temporary allow is still there")


class NwfilterAllow:
    """An accept for the state-only ports at the top of the chains libvirtd instantiated for
    the VM's port on this host (FO-<port>: to the VM, FI-<port>: from it; iptables-nft).
    Redefining the filter would do the same through libvirt but costs ~1 s per change
    (libvirtd re-instantiates every chain); the rule exists only on the source host, where
    the flows open, and is gone before the migration, as with every other layer."""

    def __init__(self, where: Any, host: str, port: str) -> None:
        self.commands, self.where, self.port = where, host, port
        self.specs: list[tuple[str, list[str]]] = []

    def _restore(self, op: str, specs: list[tuple[str, list[str]]]) -> None:
        """Every rule in one `iptables-restore --noflush` (one process, one commit)."""
        import shlex

        from migfw.testbed import placement as pl

        lines = [f"{op} {chain}{' 1' if op == '-I' else ''} {shlex.join(spec)}"
                 for chain, spec in specs]  # fmt: skip
        proc = pl._run(self.commands, ["iptables-restore", "-w", "--noflush"],
                       "*filter\n" + "\n".join(lines) + "\nCOMMIT\n")  # fmt: skip
        if proc.returncode != 0:
            raise MigfwError(f"host {self.where}: iptables-restore {op} "
                             f"{', '.join(c for c, _ in specs)}: "
                             f"{(proc.stderr or proc.stdout).strip()}")  # fmt: skip

    def add(self, source: str, ports: tuple[int, ...]) -> str:
        vm_spec = ["-p", "tcp", "-m", "comment", "--comment", COMMENT]
        specs = []
        for port in ports:
            to_vm = ["-s", source, *vm_spec[:2], "--dport", str(int(port)), *vm_spec[2:],
                     "-j", "ACCEPT"]  # fmt: skip
            from_vm = ["-d", source, *vm_spec[:2], "--sport", str(int(port)), *vm_spec[2:],
                       "-j", "RETURN"]  # fmt: skip
            specs += [(f"FO-{self.port}", to_vm), (f"FI-{self.port}", from_vm)]
        self._restore("-I", specs)
        self.specs += specs
        return "; ".join(f"nwfilter chains FO/FI-{self.port}: tcp {source} <-> :{int(p)} accept"
                         for p in ports)  # fmt: skip

    def remove(self) -> None:
        specs, self.specs = self.specs, []
        if specs:
            self._restore("-D", specs[::-1])


def closed_port_nft(port: str) -> str:
    """`port_default=closed` (issue 22): the VM's port on the destination drops every frame,
    both directions, until the agent installs the rules - whose `nft -f` text starts by
    deleting this table, so the port opens in the same transaction that programs it (as
    os-vif's dead VLAN until Neutron's agent binds the port)."""
    from migfw.testbed.ruleset_render import HOST_TABLE

    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", port):
        raise MigfwError(f"port_default: {port!r} is not an interface name")
    comment = '"port_default closed: until the agent programs this host"'
    return (f"table bridge {HOST_TABLE}\ndelete table bridge {HOST_TABLE}\n"
            f"table bridge {HOST_TABLE} {{\n\tchain closed {{\n"
            "\t\ttype filter hook forward priority -300; policy accept;\n"
            f'\t\toifname "{port}" drop comment {comment}\n'
            f'\t\tiifname "{port}" drop comment {comment}\n\t}}\n}}\n')  # fmt: skip
