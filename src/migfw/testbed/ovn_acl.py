"""The ruleset as OVN ACLs on a port group (placement `ovn`, issue 18).

OVN's ACLs are evaluated by priority, highest first, and the first match decides; so the
rules come in `nft_order` (pf's last match = the first match here) with falling priorities.
A rule's `in` is `to-lport` (traffic OVN delivers to the VM's port), `out` is `from-lport`.
Passing rules are `allow-related`: OVN then sends the port's traffic through conntrack (OVS
userspace conntrack here) and lets replies and established packets pass before any ACL, as
pf's state table does. pf's `flags S/SA` (only a SYN starts state) is not written into the
match: OVN evaluates the ACLs again for every packet of an established connection in its
original direction (a drop ACL matching one marks the connection blocked), so a SYN-only
allow would block the connection at its first ACK; OVS's userspace conntrack gives the
same rule instead: a TCP packet that is neither a SYN nor part of a known connection is
`ct.inv`, which OVN drops. Blocking rules are `drop`. Every match is IPv4 (`ip4`): pf
filters IP, so ARP must pass.
Loopback rules never see the port and are left out; `!lo` is always true there.

The state-only flows (issue 22) are opened under a temporary `allow-related` ACL from the
prober to their port (`temporary_allow`). Removing it would cut them at their next packet, for
the reason above; what a stateful firewall's `keep state` does - pass the packets of a
connection it already admitted, refuse new ones - is, in OVN, an ACL that admits only
conntrack-established packets of that flow (`keep_state`: the same match `&& ct.est`): a new
connection's packets are `ct.new` there and meet the drop rules as before. The temporary ACL
is swapped for it in one transaction (`swap_script`).

Below the rules: pf's implicit pass for an IPv4 packet no rule matched (priority 2), and
below that the default drop Neutron puts on every port (its `neutron_pg_drop` group),
which here only meets what is not IPv4 (the testbed has IPv6 off).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any

from migfw.errors import MigfwError
from migfw.testbed.ruleset import Rule, Ruleset, check_addresses, nft_order
from migfw.testbed.ruleset_render import _resolve

PORT_GROUP = "pg_migfw"
TOP_PRIORITY = 2000
TEMPORARY_NAME = "migfw-temporary-established"
KEEP_STATE_NAME = "migfw-keep-state"
ICMP_CODES = {"echo-request": 8, "echo-reply": 0}


@dataclass(frozen=True)
class Acl:
    direction: str  # to-lport | from-lport
    priority: int
    match: str
    action: str  # allow-related | drop
    name: str

    def nbctl(self, group: str, ref: str = "acl") -> list[str]:
        """ovn-nbctl arguments adding this ACL to port group `group` (a generic `create`:
        `acl-add --name` would also switch logging on, a controller round trip per packet)."""
        return ["--", f"--id=@{ref}", "create", "ACL", f"direction={self.direction}",
                f"priority={self.priority}", f"match={json.dumps(self.match)}",
                f"action={self.action}", f"name={self.name}", "log=false",
                "--", "add", "Port_Group", group, "acls", f"@{ref}"]  # fmt: skip


def _set(values: list[str]) -> str:
    return values[0] if len(values) == 1 else "{" + ", ".join(values) + "}"


def _ports(field: str, ranges: tuple[tuple[int, int], ...]) -> str:
    single = [str(lo) for lo, hi in ranges if lo == hi]
    spans = [f"({field} >= {lo} && {field} <= {hi})" for lo, hi in ranges if lo != hi]
    parts = ([f"{field} == {_set(single)}"] if single else []) + spans
    return parts[0] if len(parts) == 1 else "(" + " || ".join(parts) + ")"


def acl_match(rule: Rule, direction: str, addresses: dict[str, str], group: str) -> str:
    """OVN match expression of `rule` for traffic to (`to-lport`) or from the port group."""
    where = f"outport == @{group}" if direction == "to-lport" else f"inport == @{group}"
    parts = [where, "ip4"]
    for key, items in (("ip4.src", rule.src), ("ip4.dst", rule.dst)):
        if items:
            nets = [ipaddress.ip_network(_resolve(a, addresses), strict=False) for a in items]
            vals = [str(n.network_address) if n.prefixlen == 32 else str(n) for n in nets]
            parts.append(f"{key} == {_set(vals)}")
    if rule.proto in ("tcp", "udp"):
        parts.append(rule.proto)
        for key, ranges in (("src", rule.sport), ("dst", rule.dport)):
            if ranges:
                parts.append(_ports(f"{rule.proto}.{key}", ranges))
    elif rule.proto == "icmp":
        parts.append("icmp4")
        if rule.icmp_type:
            parts.append(f"icmp4.type == {ICMP_CODES[rule.icmp_type]}")
    return " && ".join(parts)


def render_acls(rs: Ruleset, addresses: dict[str, str], group: str = PORT_GROUP) -> list[Acl]:
    """The ACLs enforcing `rs` on the ports of `group`, highest priority first."""
    check_addresses(addresses)
    acls: list[Acl] = []
    ordered = [r for r in nft_order(rs) if r.iface != "lo"]
    if TOP_PRIORITY - len(ordered) * 2 <= 2:
        raise MigfwError(f"ruleset {rs.name}: too many rules for OVN ACL priorities")
    priority = TOP_PRIORITY
    for rule in ordered:
        for ours, ovn in (("in", "to-lport"), ("out", "from-lport")):
            if rule.direction in ("any", ours):
                action = "allow-related" if rule.action == "pass" else "drop"
                acls.append(Acl(ovn, priority, acl_match(rule, ovn, addresses, group), action,
                                rule.id))  # fmt: skip
        priority -= 1
    for ovn, port in (("to-lport", "outport"), ("from-lport", "inport")):
        acls.append(Acl(ovn, 2, f"{port} == @{group} && ip4", "allow-related", "pf-default"))
        acls.append(Acl(ovn, 1, f"{port} == @{group} && ip", "drop", "default-drop"))
    return acls


def nbctl_script(acls: list[Acl], port: str, group: str = PORT_GROUP) -> list[str]:
    """One ovn-nbctl transaction: the port group made anew with `port` and the ACLs (the
    old group and its ACLs go in the same transaction, so no moment has half a ruleset)."""
    args = ["--if-exists", "destroy", "Port_Group", group, "--", "pg-add", group, port]
    for i, acl in enumerate(acls):
        args += acl.nbctl(group, f"acl{i}")
    return args


def render_text(acls: list[Acl], group: str = PORT_GROUP) -> str:
    """The ACLs as `ovn-nbctl acl-add` lines (the trial's record, docs)."""
    import shlex

    lines = [f"# OVN ACLs on port group {group} (migfw; highest priority first)"]
    lines += ["ovn-nbctl " + shlex.join(a.nbctl(group)[1:]) for a in acls]
    return "\n".join(lines) + "\n"


def apply_acls(site: Any, acls: list[Acl], group: str = PORT_GROUP) -> None:
    from migfw.testbed.ovn import nbctl

    nbctl(site, *nbctl_script(acls, site.vm_port, group))


def remove_acls(site: Any, group: str = PORT_GROUP) -> None:
    from migfw.testbed.ovn import nbctl

    nbctl(site, "--if-exists", "destroy", "Port_Group", group)


def state_only_match(source: str, port: int, group: str = PORT_GROUP) -> str:
    """Traffic from `source` to tcp `port` of the group's VM (a state-only flow's direction)."""
    src = ipaddress.ip_address(source)
    return f"outport == @{group} && ip4 && ip4.src == {src} && tcp && tcp.dst == {int(port)}"


def temporary_allow(source: str, port: int, group: str = PORT_GROUP) -> Acl:
    """The allow a state-only flow connects under, above every rule (issue 22)."""
    return Acl("to-lport", TOP_PRIORITY + 1, state_only_match(source, port, group),
               "allow-related", TEMPORARY_NAME)  # fmt: skip


def keep_state(source: str, port: int, group: str = PORT_GROUP) -> Acl:
    """pf's `keep state` for that flow once its allow is gone: only packets OVS conntrack
    holds as established pass (`ct.est`); a new connection (`ct.new`) meets the rules."""
    return Acl("to-lport", TOP_PRIORITY + 1, f"{state_only_match(source, port, group)} && ct.est",
               "allow-related", KEEP_STATE_NAME)  # fmt: skip


def swap_script(old: list[str], keep: list[Acl], group: str = PORT_GROUP) -> list[str]:
    """One ovn-nbctl transaction: the ACLs `keep` join the group and the ACLs with UUIDs
    `old` leave it (no moment without either)."""
    args: list[str] = []
    for i, acl in enumerate(keep):
        args += acl.nbctl(group, f"keep{i}")
    for uuid in old:
        args += ["--", "remove", "Port_Group", group, "acls", uuid]
    return args[1:] if args[:1] == ["--"] else args
