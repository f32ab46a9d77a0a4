"""The checked ruleset (migfw.testbed.ruleset) rendered for each enforcement point: the guest's
nftables (`render_nft`, pf's decision order through `nft_order`), OpenBSD pf.conf
(`render_pf`, what the thesis ran), the host's nftables on the VM's tap (`render_host_nft`)
and libvirt's nwfilter (`render_nwfilter`); `check_nft` runs `nft -c` on a rendering in a
throwaway network namespace; `migfw testbed ruleset` writes the guest's or pf's rendering.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import subprocess
from dataclasses import replace
from pathlib import Path

from migfw.errors import MigfwError
from migfw.io import atomic_write
from migfw.scratch import scratch
from migfw.testbed.ruleset import (
    ICMP_TYPES,
    NFT_TABLE,
    SYMBOLS,
    Rule,
    Ruleset,
    check_addresses,
    default_addresses,
    load_ruleset,
    nft_order,
)

# ------------------------------------------------------------------------ rendering


def _resolve(item: str, addresses: dict[str, str]) -> str:
    return str(ipaddress.ip_network(addresses[item], strict=False)) if item in SYMBOLS else item


def _plain(net: str) -> str:
    return net[:-3] if net.endswith("/32") else net


def _nft_set(values: list[str]) -> str:
    return values[0] if len(values) == 1 else "{ " + ", ".join(values) + " }"


def _nft_rule(rule: Rule, hook: str, addresses: dict[str, str]) -> str:
    parts = []
    if rule.iface != "any":
        name = "iifname" if hook == "input" else "oifname"
        parts.append(f'{name} {"!= " if rule.iface == "!lo" else ""}"lo"')
    if rule.src:
        parts.append("ip saddr " + _nft_set([_plain(_resolve(a, addresses)) for a in rule.src]))
    if rule.dst:
        parts.append("ip daddr " + _nft_set([_plain(_resolve(a, addresses)) for a in rule.dst]))
    if rule.proto in ("tcp", "udp"):
        if not rule.sport and not rule.dport:
            parts.append(f"meta l4proto {rule.proto}")
        for key, ranges in (("sport", rule.sport), ("dport", rule.dport)):
            if ranges:
                vals = [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges]
                parts.append(f"{rule.proto} {key} {_nft_set(vals)}")
        if rule.proto == "tcp" and rule.action == "pass":
            parts.append("tcp flags & (syn | ack) == syn")
    elif rule.proto == "icmp":
        parts.append(f"icmp type {rule.icmp_type}" if rule.icmp_type else "meta l4proto icmp")
    if rule.log:
        parts.append(f'log prefix "migfw {rule.id} "')
    parts.append("accept" if rule.action == "pass" else "drop")
    parts.append(f'comment "{rule.id}"')
    return " ".join(parts)


def render_nft(rs: Ruleset, addresses: dict[str, str]) -> str:
    """An `nft -f` script that atomically replaces table inet migfw with this ruleset."""
    check_addresses(addresses)
    ordered = nft_order(rs)
    lines = [
        f"# nftables rendering of ruleset {rs.name} by migfw ({len(rs.rules)} rules)",
        "# pf semantics kept: quick rules first, then the others in reverse file order,",
        "# so the first match here is pf's last match; state is checked before any rule.",
        f"# target={addresses['target']} remote={addresses['remote']} "
        f"net={addresses['net']} other={addresses['other']}",
        f"table inet {NFT_TABLE}",
        f"delete table inet {NFT_TABLE}",
        f"table inet {NFT_TABLE} {{",
    ]
    for hook, direction in (("input", "in"), ("output", "out")):
        lines += [
            f"\tchain {hook} {{",
            f"\t\ttype filter hook {hook} priority filter; policy accept;",
            '\t\tct state established,related accept comment "pf-state"',
        ]
        for rule in ordered:
            if rule.direction in ("any", direction):
                lines.append("\t\t" + _nft_rule(rule, hook, addresses))
        lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _pf_addr(items: tuple[str, ...], addresses: dict[str, str]) -> str:
    vals = [f"${a}" if a in SYMBOLS else _plain(a) for a in items]
    return "any" if not vals else vals[0] if len(vals) == 1 else "{ " + " ".join(vals) + " }"


def _pf_ports(ranges: tuple[tuple[int, int], ...]) -> str:
    vals = [str(lo) if lo == hi else f"{lo}:{hi}" for lo, hi in ranges]
    return vals[0] if len(vals) == 1 else "{ " + " ".join(vals) + " }"


def _pf_rule(rule: Rule, addresses: dict[str, str]) -> str:
    parts = ["block drop" if rule.action == "block" else "pass"]
    if rule.direction != "any":
        parts.append(rule.direction)
    if rule.log:
        parts.append("log")
    if rule.quick:
        parts.append("quick")
    if rule.iface == "lo":
        parts.append("on lo0")
    elif rule.iface == "!lo":
        parts.append("on ! lo0")
    if rule.proto == "icmp" or rule.src or rule.dst:
        parts.append("inet")
    if rule.proto != "any":
        parts.append(f"proto {rule.proto}")
    if not (rule.src or rule.dst or rule.sport or rule.dport):
        parts.append("all")
    else:
        parts.append(f"from {_pf_addr(rule.src, addresses)}")
        if rule.sport:
            parts.append(f"port {_pf_ports(rule.sport)}")
        parts.append(f"to {_pf_addr(rule.dst, addresses)}")
        if rule.dport:
            parts.append(f"port {_pf_ports(rule.dport)}")
    if rule.icmp_type:
        parts.append(f"icmp-type {ICMP_TYPES[rule.icmp_type]}")
    if rule.action == "pass":
        parts.append("flags S/SA keep state" if rule.proto == "tcp" else "keep state")
    return " ".join(parts)


def render_pf(rs: Ruleset, addresses: dict[str, str]) -> str:
    """pf.conf text (OpenBSD 5.1 syntax) in file order: pf itself applies last-match."""
    check_addresses(addresses)
    lines = [
        f"# pf.conf rendering of ruleset {rs.name} by migfw ({len(rs.rules)} rules)",
        "# pf: the last matching rule wins unless a matching rule is quick.",
    ]
    for key in SYMBOLS:
        lines.append(f'{key} = "{_plain(str(ipaddress.ip_network(addresses[key], False)))}"')
    for rule in rs.rules:
        rel = f" [{rule.relation[0]} with {rule.relation[1]}]" if rule.relation else ""
        lines.append(f"# {rule.id} (stratum {rule.stratum}): {rule.note}{rel}")
        lines.append(_pf_rule(rule, addresses))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ host (VMM-level) rendering

HOST_TABLE = "migfw_vmm"
# Marks set by the bridge-family chain on the VM's tap port and read by the inet chain:
# nftables' bridge family has no conntrack on this kernel (no nf_conntrack_bridge), but
# br_netfilter passes bridged IPv4 through the inet hooks, where conntrack works.
MARK_TO_VM = 0x6D660001
MARK_FROM_VM = 0x6D660002


def render_host_nft(rs: Ruleset, addresses: dict[str, str], port: str) -> str:
    """An `nft -f` script for a hypervisor host: the ruleset enforced on the VM's tap `port`.

    Same first-match order and state handling as `render_nft`; a rule's `in` is traffic the
    bridge sends out of the port (to the VM), `out` is traffic entering from it. Loopback
    rules never see the port and are left out; `!lo` is always true there.
    """
    check_addresses(addresses)
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", port):
        raise MigfwError(f"host ruleset: {port!r} is not an interface name")
    lines = [
        f"# host-side (VMM-level) nftables rendering of ruleset {rs.name} by migfw",
        f"# enforced on the VM's bridge port {port}; same order and state as the guest's",
        f"# target={addresses['target']} remote={addresses['remote']} "
        f"net={addresses['net']} other={addresses['other']}",
        f"table bridge {HOST_TABLE}",
        f"delete table bridge {HOST_TABLE}",
        f"table inet {HOST_TABLE}",
        f"delete table inet {HOST_TABLE}",
        f"table bridge {HOST_TABLE} {{",
        "\tchain port {",
        "\t\ttype filter hook forward priority -200; policy accept;",
        f'\t\toifname "{port}" meta mark set {MARK_TO_VM:#x}',
        f'\t\tiifname "{port}" meta mark set {MARK_FROM_VM:#x}',
        "\t}",
        "}",
        f"table inet {HOST_TABLE} {{",
        "\tchain forward {",
        "\t\ttype filter hook forward priority filter; policy accept;",
        f'\t\tmeta mark != {{ {MARK_TO_VM:#x}, {MARK_FROM_VM:#x} }} accept comment "not the VM"',
        '\t\tct state established,related accept comment "pf-state"',
    ]
    for direction, mark in (("in", MARK_TO_VM), ("out", MARK_FROM_VM)):
        for rule in nft_order(rs):
            if rule.direction not in ("any", direction) or rule.iface == "lo":
                continue
            text = _nft_rule(replace(rule, iface="any"), "forward", addresses)
            text = text.replace('log prefix "migfw ', 'log prefix "migfw-vmm ')
            lines.append(f"\t\tmeta mark {mark:#x} {text}")
    lines += ["\t}", "}"]
    return "\n".join(lines) + "\n"


NWFILTER_NAME = "migfw-vmm"


def _nwfilter_matches(rule: Rule, addresses: dict[str, str]) -> list[dict[str, str]]:
    """One attribute set per (src, dst, port range) combination: nwfilter has no lists."""

    def nets(items: tuple[str, ...]) -> list[ipaddress.IPv4Network | None]:
        return [ipaddress.ip_network(_resolve(a, addresses)) for a in items] or [None]

    out = []
    for src in nets(rule.src):
        for dst in nets(rule.dst):
            for dports in rule.dport or (None,):
                for sports in rule.sport or (None,):
                    attrs: dict[str, str] = {}
                    for key, net in (("srcipaddr", src), ("dstipaddr", dst)):
                        if net is not None:
                            attrs[key] = str(net.network_address)
                            if net.prefixlen != 32:
                                attrs[key.replace("ipaddr", "ipmask")] = str(net.prefixlen)
                    for key, rng in (("srcport", sports), ("dstport", dports)):
                        if rng is not None:
                            attrs[f"{key}start"] = str(rng[0])
                            if rng[1] != rng[0]:
                                attrs[f"{key}end"] = str(rng[1])
                    out.append(attrs)
    return out


def render_nwfilter(rs: Ruleset, addresses: dict[str, str], name: str = NWFILTER_NAME) -> str:
    """libvirt nwfilter XML enforcing the ruleset on the VM's interface (VMM-level).

    nwfilter evaluates rules by ascending priority and the first match decides, so the
    rules come in `nft_order` with rising priorities. nwfilter's direction is the VM's:
    `in` = to the VM, `out` = from the VM, `inout` = both. Its IP rules are stateful by
    default (replies of an accepted flow pass), like pf's keep state. Loopback rules never
    see the interface and are left out.
    """
    check_addresses(addresses)
    if not re.fullmatch(r"[A-Za-z0-9_.:-]+", name):
        raise MigfwError(f"nwfilter: {name!r} is not a valid filter name")
    direction = {"in": "in", "out": "out", "any": "inout"}
    lines = [
        f"<!-- nwfilter rendering of ruleset {rs.name} by migfw: first match by priority -->",
        f"<filter name='{name}' chain='root'>",
        # pf's state table, consulted before any rule (a SYN-only pass rule would otherwise
        # drop the rest of its own connection).
        "  <rule action='accept' direction='inout' priority='-710'>",
        "    <all state='ESTABLISHED,RELATED' comment='pf-state'/>",
        "  </rule>",
    ]
    priority = -700
    for rule in nft_order(rs):
        if rule.iface == "lo":
            continue
        proto = {"any": "all"}.get(rule.proto, rule.proto)
        action = "accept" if rule.action == "pass" else "drop"
        for attrs in _nwfilter_matches(rule, addresses):
            if rule.icmp_type:
                attrs["type"] = "8" if rule.icmp_type == "echo-request" else "0"
            if rule.proto == "tcp" and rule.action == "pass":
                attrs["flags"] = "SYN,ACK/SYN"  # mask/flags: pf's `flags S/SA`
            attrs["comment"] = rule.id
            body = " ".join(f"{k}='{v}'" for k, v in attrs.items())
            lines.append(
                f"  <rule action='{action}' direction='{direction[rule.direction]}' "
                f"priority='{priority}'>"
            )
            lines.append(f"    <{proto} {body}/>")
            lines.append("  </rule>")
            priority += 10
    lines.append("</filter>")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------ nft -c check

_NFT_ERR = re.compile(
    r"^(?P<file>[^:\n]+):(?P<line>\d+):(?P<col>[\d-]+): Error: (?P<msg>.*)$", re.M
)


def explain_nft_error(stderr: str, text: str) -> str:
    """Turn nft's multi-line error into one line naming the rendered line."""
    m = _NFT_ERR.search(stderr)
    if not m:
        first = stderr.strip().splitlines()
        return first[0] if first else "nft rejected the ruleset"
    lineno = int(m["line"])
    src = text.splitlines()[lineno - 1].strip() if 0 < lineno <= len(text.splitlines()) else ""
    return f"line {lineno} ({src[:80]}): {m['msg'].strip()}"


def check_nft(text: str) -> None:
    """`nft -c -f` the text in a throwaway network namespace; MigfwError names the bad line."""
    from migfw.testbed.netns import netns_argv, temporary_netns

    with scratch("nft") as tmp:
        path = Path(tmp) / "ruleset.nft"
        path.write_text(text, encoding="utf-8")
        with temporary_netns("mfwchk") as ns:
            try:
                proc = subprocess.run(
                    netns_argv(ns, ["nft", "-c", "-f", str(path)]),
                    capture_output=True,
                    text=True,
                    timeout=30,
                )
            except FileNotFoundError:
                raise MigfwError("nft: command not found (apt-get install nftables)") from None
    if proc.returncode != 0:
        raise MigfwError(f"nftables check: {explain_nft_error(proc.stderr, text)}")


# ------------------------------------------------------------------------------ CLI


def render_rulesets(ruleset: str | Path, nft: str | Path, pf: str | Path) -> None:
    """Rule render_ruleset: the ruleset YAML rendered for the default addresses as the
    guest's nftables ruleset (`nft`) and the thesis's pf.conf (`pf`)."""
    rs = load_ruleset(ruleset)
    addresses = default_addresses()
    check_addresses(addresses)
    for out, text in ((nft, render_nft(rs, addresses)), (pf, render_pf(rs, addresses))):
        with atomic_write(out) as handle:
            handle.write(text)


def _cmd(args: argparse.Namespace) -> int:
    rs = load_ruleset(args.ruleset)
    addresses = default_addresses(args.target, args.remote, args.net)
    if args.other:
        addresses["other"] = args.other
    check_addresses(addresses)
    text = render_nft(rs, addresses) if args.format == "nft" else render_pf(rs, addresses)
    if args.check and args.format == "nft":
        check_nft(text)
    if args.out:
        with atomic_write(args.out) as handle:
            handle.write(text)
    else:
        print(text, end="")
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ruleset", help="render the firewall ruleset as nftables or pf.conf")
    p.add_argument("--format", choices=("nft", "pf"), default="nft")
    p.add_argument("--ruleset", default="config/ruleset.yaml", help="ruleset YAML")
    p.add_argument("--target", default="10.231.0.10", help="the VM's address")
    p.add_argument("--remote", default="10.231.0.2", help="the prober's address")
    p.add_argument("--net", default=None, help="testbed subnet (default: target's /24)")
    p.add_argument("--other", default=None, help="a third address in net (default: highest)")
    p.add_argument("--check", action="store_true", help="nft -c the result (needs root)")
    p.add_argument("--out", default=None, help="write here (atomically) instead of stdout")
    p.set_defaults(func=_cmd)


__all__ = [
    "HOST_TABLE",
    "NWFILTER_NAME",
    "check_nft",
    "explain_nft_error",
    "register_cli",
    "render_host_nft",
    "render_nft",
    "render_nwfilter",
    "render_pf",
]
