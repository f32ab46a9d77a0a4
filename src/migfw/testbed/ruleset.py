"""The target VM's firewall ruleset: YAML data -> checked model -> pf.conf or nftables.

Semantics are pf's (what the thesis ran): rules are read top to bottom, the LAST matching
rule decides unless a matching rule is `quick`, which decides at once; no match = pass;
passing rules keep state; a passing TCP rule only starts state on a SYN (`flags S/SA`).

nftables decides on the FIRST terminal match, so `render_nft` emits the rules in the order
`nft_order` gives: quick rules in file order, then the other rules in reverse file order.
That is exactly pf's decision (first matching quick rule, else last matching non-quick rule)
- tests/test_ruleset.py checks it packet by packet. pf's state table, consulted before any
rule, becomes `ct state established,related accept` at the top of each chain.

The renderings (guest nft, pf, host nft, nwfilter), the `nft -c` check and `migfw testbed
ruleset` are migfw.testbed.ruleset_render.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migfw.errors import MigfwError
from migfw.io import read_yaml

SYMBOLS = ("target", "remote", "net", "other")
ACTIONS = ("pass", "block")
DIRECTIONS = ("in", "out", "any")
PROTOS = ("tcp", "udp", "icmp", "any")
ICMP_TYPES = {"echo-request": "echoreq", "echo-reply": "echorep"}  # nft name -> pf name
RELATIONS = ("shadowing", "correlation", "generalisation", "redundancy")
# Literal CIDRs must stay inside the testbed range (or loopback, for antispoof rules).
ALLOWED_LITERALS = (ipaddress.ip_network("10.231.0.0/16"), ipaddress.ip_network("127.0.0.0/8"))
NFT_TABLE = "migfw"
RULE_KEYS = {
    "id", "stratum", "note", "action", "direction", "quick", "iface", "proto", "src", "dst",
    "sport", "dport", "icmp_type", "log", "relation",
}  # fmt: skip


@dataclass(frozen=True)
class Rule:
    id: str
    action: str
    direction: str = "any"
    quick: bool = False
    iface: str = "any"  # any | lo | !lo
    proto: str = "any"
    src: tuple[str, ...] = ()  # empty = any
    dst: tuple[str, ...] = ()
    sport: tuple[tuple[int, int], ...] = ()  # inclusive ranges; empty = any
    dport: tuple[tuple[int, int], ...] = ()
    icmp_type: str | None = None
    log: bool = False
    stratum: int | str = 1  # 1, 2, "verification" (the FTP rule) or "attack" (issue 22's E1)
    note: str = ""
    relation: tuple[str, str] | None = None  # (kind, other rule id)


@dataclass(frozen=True)
class Ruleset:
    name: str
    rules: tuple[Rule, ...]
    source: str = "<memory>"

    def rule(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)


@dataclass(frozen=True)
class Packet:
    """The first packet of a flow as the target VM's firewall sees it (IPv4)."""

    direction: str  # in | out
    proto: str  # tcp | udp | icmp
    src: str
    dst: str
    sport: int | None = None
    dport: int | None = None
    icmp_type: str | None = None
    iface: str = "eth0"
    tcp_flags: str = "S"


# ---------------------------------------------------------------- loading and validation


def _fail(where: str, msg: str) -> MigfwError:
    return MigfwError(f"{where}: {msg}")


def _ports(value: Any, where: str) -> tuple[tuple[int, int], ...]:
    if value is None or value == "any":
        return ()
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        text = str(item)
        m = re.fullmatch(r"(\d+)(?::(\d+))?", text)
        if not m or isinstance(item, bool):
            raise _fail(where, f"{text!r} is not a port or 'lo:hi' range")
        lo, hi = int(m[1]), int(m[2] or m[1])
        if not (1 <= lo <= hi <= 65535):
            raise _fail(where, f"{text!r} is outside 1-65535 or reversed")
        out.append((lo, hi))
    return tuple(out)


def _addrs(value: Any, where: str) -> tuple[str, ...]:
    if value is None or value == "any":
        return ()
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        text = str(item)
        if text in SYMBOLS:
            out.append(text)
            continue
        try:
            net = ipaddress.ip_network(text, strict=True)
        except ValueError:
            raise _fail(
                where, f"{text!r} is neither one of {', '.join(SYMBOLS)} nor a CIDR"
            ) from None
        if not any(net.subnet_of(ok) for ok in ALLOWED_LITERALS if net.version == ok.version):
            raise _fail(where, f"{text} is outside 10.231.0.0/16 and 127.0.0.0/8")
        out.append(str(net))
    return tuple(out)


def _choice(raw: dict, key: str, choices: tuple[str, ...], default: str, where: str) -> str:
    value = raw.get(key, default)
    if value not in choices:
        raise _fail(f"{where} field {key}", f"{value!r} is not one of {', '.join(choices)}")
    return value


def _bool(raw: dict, key: str, where: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise _fail(f"{where} field {key}", f"{value!r} is not true/false")
    return value


def parse_rule(raw: Any, where: str) -> Rule:
    if not isinstance(raw, dict):
        raise _fail(where, "is not a mapping")
    unknown = sorted(set(raw) - RULE_KEYS)
    if unknown:
        raise _fail(where, f"unknown field {unknown[0]!r}")
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", rule_id):
        raise _fail(f"{where} field id", f"{rule_id!r} must be letters, digits, _ or -")
    where = f"rule {rule_id}"
    if "action" not in raw:
        raise _fail(f"{where} field action", "missing (pass or block)")
    action = _choice(raw, "action", ACTIONS, "pass", where)
    direction = _choice(raw, "direction", DIRECTIONS, "any", where)
    proto = _choice(raw, "proto", PROTOS, "any", where)
    iface = _choice(raw, "iface", ("any", "lo", "!lo"), "any", where)
    sport = _ports(raw.get("sport"), f"{where} field sport")
    dport = _ports(raw.get("dport"), f"{where} field dport")
    if (sport or dport) and proto not in ("tcp", "udp"):
        raise _fail(f"{where} field {'dport' if dport else 'sport'}", "ports need proto tcp or udp")
    icmp_type = raw.get("icmp_type")
    if icmp_type is not None:
        if proto != "icmp":
            raise _fail(f"{where} field icmp_type", "needs proto icmp")
        if icmp_type not in ICMP_TYPES:
            raise _fail(
                f"{where} field icmp_type", f"{icmp_type!r} is not one of {list(ICMP_TYPES)}"
            )
    stratum = raw.get("stratum", 1)
    if stratum not in (1, 2, "verification", "attack"):
        raise _fail(f"{where} field stratum", f"{stratum!r} is not 1, 2, verification or attack")
    relation = raw.get("relation")
    if relation is not None:
        if (
            not isinstance(relation, dict)
            or relation.get("kind") not in RELATIONS
            or not isinstance(relation.get("with"), str)
        ):
            raise _fail(f"{where} field relation", f"needs kind ({', '.join(RELATIONS)}) and with")
        relation = (relation["kind"], relation["with"])
    note = raw.get("note", "")
    if not isinstance(note, str):
        raise _fail(f"{where} field note", "is not text")
    return Rule(
        id=rule_id,
        action=action,
        direction=direction,
        quick=_bool(raw, "quick", where),
        iface=iface,
        proto=proto,
        src=_addrs(raw.get("src"), f"{where} field src"),
        dst=_addrs(raw.get("dst"), f"{where} field dst"),
        sport=sport,
        dport=dport,
        icmp_type=icmp_type,
        log=_bool(raw, "log", where),
        stratum=stratum,
        note=" ".join(note.split()),
        relation=relation,
    )


def ruleset_from_data(data: Any, source: str = "<memory>") -> Ruleset:
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        raise MigfwError(f"{source}: needs a top-level 'rules' list")
    if data.get("version", 1) != 1:
        raise MigfwError(f"{source}: version {data.get('version')!r} is not supported (1)")
    rules = []
    for i, raw in enumerate(data["rules"], start=1):
        try:
            rules.append(parse_rule(raw, f"rule #{i}"))
        except MigfwError as exc:
            raise MigfwError(f"{source}: {exc}") from None
    ids = [r.id for r in rules]
    for rule in rules:
        if ids.count(rule.id) > 1:
            raise MigfwError(f"{source}: rule {rule.id}: id is used twice")
        if rule.relation and rule.relation[1] not in ids:
            raise MigfwError(
                f"{source}: rule {rule.id} field relation: no rule {rule.relation[1]!r}"
            )
    if not rules:
        raise MigfwError(f"{source}: 'rules' is empty")
    return Ruleset(name=str(data.get("name", Path(source).stem)), rules=tuple(rules), source=source)


def load_ruleset(path: str | Path) -> Ruleset:
    """Read and validate a ruleset YAML file; any problem -> one-line MigfwError."""
    path = Path(path)
    return ruleset_from_data(read_yaml(path, "ruleset file"), str(path))


# ------------------------------------------------------------------------ addresses


def default_addresses(
    target: str = "10.231.0.10", remote: str = "10.231.0.2", net: str | None = None
) -> dict[str, str]:
    """The addresses dict; `net` defaults to target's /24, `other` to its highest free host."""
    try:
        tgt = ipaddress.ip_address(target)
        rem = ipaddress.ip_address(remote)
        network = ipaddress.ip_network(net or f"{tgt}/24", strict=False)
    except ValueError as exc:
        raise MigfwError(f"addresses: {exc}") from None
    other = next(
        (h for h in reversed(list(network.hosts())) if h not in (tgt, rem)),
        None,
    )
    if other is None:
        raise MigfwError(f"addresses: net {network} has no host besides target and remote")
    return {"target": str(tgt), "remote": str(rem), "net": str(network), "other": str(other)}


def check_addresses(addresses: dict[str, str]) -> dict[str, ipaddress.IPv4Network]:
    """Validate the addresses dict; return each symbol as a network (hosts as /32)."""
    out = {}
    for key in SYMBOLS:
        if key not in addresses:
            raise MigfwError(f"addresses: missing key {key!r}")
        try:
            out[key] = ipaddress.ip_network(str(addresses[key]), strict=False)
        except ValueError:
            raise MigfwError(f"addresses: {key} {addresses[key]!r} is not an address") from None
        if out[key].version != 4:
            raise MigfwError(f"addresses: {key} {addresses[key]} is not IPv4")
    for key in ("target", "remote", "other"):
        if out[key].num_addresses != 1:
            raise MigfwError(f"addresses: {key} {addresses[key]} must be a single address")
        if not out[key].subnet_of(out["net"]):
            raise MigfwError(f"addresses: {key} {addresses[key]} is outside net {out['net']}")
    if len({out["target"], out["remote"], out["other"]}) != 3:
        raise MigfwError("addresses: target, remote and other must differ")
    return out


# ------------------------------------------------------------------------ evaluator


def _in_ranges(port: int | None, ranges: tuple[tuple[int, int], ...]) -> bool:
    return not ranges or (port is not None and any(lo <= port <= hi for lo, hi in ranges))


def _in_addrs(ip: str, items: tuple[str, ...], nets: dict[str, ipaddress.IPv4Network]) -> bool:
    if not items:
        return True
    addr = ipaddress.ip_address(ip)
    return any(addr in (nets[i] if i in nets else ipaddress.ip_network(i)) for i in items)


def matches(rule: Rule, pkt: Packet, addresses: dict[str, str]) -> bool:
    nets = check_addresses(addresses)
    return _matches(rule, pkt, nets)


def _matches(rule: Rule, pkt: Packet, nets: dict[str, ipaddress.IPv4Network]) -> bool:
    if rule.direction not in ("any", pkt.direction):
        return False
    if rule.iface == "lo" and pkt.iface != "lo" or rule.iface == "!lo" and pkt.iface == "lo":
        return False
    if rule.proto not in ("any", pkt.proto):
        return False
    if rule.icmp_type is not None and pkt.icmp_type != rule.icmp_type:
        return False
    if not (_in_ranges(pkt.sport, rule.sport) and _in_ranges(pkt.dport, rule.dport)):
        return False
    if not (_in_addrs(pkt.src, rule.src, nets) and _in_addrs(pkt.dst, rule.dst, nets)):
        return False
    # pf's implicit `flags S/SA` on passing TCP rules: only a SYN without ACK starts state.
    if rule.action == "pass" and rule.proto == "tcp":
        return "S" in pkt.tcp_flags and "A" not in pkt.tcp_flags
    return True


def deciding_rule(rs: Ruleset, pkt: Packet, addresses: dict[str, str]) -> Rule | None:
    """The rule pf applies to `pkt` (last match, or first matching quick rule), or None."""
    nets = check_addresses(addresses)
    decided = None
    for rule in rs.rules:
        if _matches(rule, pkt, nets):
            decided = rule
            if rule.quick:
                break
    return decided


def decide(rs: Ruleset, pkt: Packet, addresses: dict[str, str]) -> str:
    """pf's verdict for `pkt`: 'pass' or 'block' (no matching rule: pass)."""
    rule = deciding_rule(rs, pkt, addresses)
    return rule.action if rule else "pass"


def enforcement_problems(config: dict[str, Any]) -> list[str]:
    """The attacker's ports against each other and against the ruleset: the blocked port must
    differ from the allowed one, the ruleset must block a SYN to it from the prober and the
    attacker, and pass one to the allowed port. Otherwise every answer on the "blocked" port
    would count as a breach (or the allowed port, the control, would never answer)."""
    from migfw.config import DEFAULT_SUBNETS, SUBNET_KEYS, config_value

    key = "trials.enforcement"
    blocked, allowed = (
        config_value(config, f"{key}.blocked_port"),
        config_value(config, f"{key}.allowed_port"),
    )
    if not isinstance(blocked, int) or not isinstance(allowed, int):
        return []
    if blocked == allowed:
        return [f"{key}.blocked_port: {blocked} is also allowed_port; every answer would count "
                "as a breach (the ruleset must block one port and pass the other)"]  # fmt: skip
    path = config.get("ruleset")
    if not isinstance(path, str) or not Path(path).is_file():
        return []  # a missing ruleset is reported by the step that reads it
    try:
        ruleset = load_ruleset(path)
        subnet = ipaddress.ip_network(
            str(config_value(config, SUBNET_KEYS[0]) or DEFAULT_SUBNETS[SUBNET_KEYS[0]])
        )
        base = subnet.network_address
        vm, prober, attacker = (str(base + k) for k in (10, 2, 3))
        addresses = default_addresses(vm, prober, str(subnet))
        check_addresses(addresses)
    except (MigfwError, ValueError):
        return []  # the ruleset's or the subnet's own check names the problem
    problems = []
    verbs = {"block": "blocks", "pass": "passes"}
    for port, want, name in ((blocked, "block", "blocked_port"), (allowed, "pass", "allowed_port")):
        for who, src in (("the prober", prober), ("the attacker", attacker)):
            packet = Packet("in", "tcp", src, vm, sport=40000, dport=port)
            rule = deciding_rule(ruleset, packet, addresses)
            verdict = rule.action if rule else "pass"
            if verdict != want:
                by = f"rule {rule.id}" if rule else "no rule (pass)"
                problems.append(
                    f"{key}.{name}: {path} does not {want} tcp/{port} from {who} ({src} -> "
                    f"{vm}: {verdict} by {by}); pick a port the ruleset {verbs[want]}"
                )
                break
    return problems


def nft_order(rs: Ruleset) -> list[Rule]:
    """Rules in the order a first-match engine must see them to reach pf's verdicts."""
    quick = [r for r in rs.rules if r.quick]
    rest = [r for r in rs.rules if not r.quick]
    return quick + rest[::-1]


def decide_first_match(rules: list[Rule], pkt: Packet, addresses: dict[str, str]) -> str:
    """nftables-style verdict: the first matching rule decides (no match: accept)."""
    nets = check_addresses(addresses)
    for rule in rules:
        if _matches(rule, pkt, nets):
            return rule.action
    return "pass"


__all__ = [
    "Packet",
    "Rule",
    "Ruleset",
    "check_addresses",
    "decide",
    "decide_first_match",
    "default_addresses",
    "deciding_rule",
    "load_ruleset",
    "matches",
    "nft_order",
    "ruleset_from_data",
]
