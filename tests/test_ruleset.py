"""The ruleset model: validation, pf verdicts worked out by hand, pf == nftables order,
the stratum-1 relations, golden renderings, and a real load into nftables."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from migfw.cli import main
from migfw.errors import MigfwError
from migfw.testbed.netns import run, temporary_netns
from migfw.testbed.ruleset import (
    Packet,
    Ruleset,
    decide,
    decide_first_match,
    deciding_rule,
    default_addresses,
    load_ruleset,
    nft_order,
    ruleset_from_data,
)
from migfw.testbed.ruleset_render import check_nft, render_nft, render_pf

REPO = Path(__file__).resolve().parents[1]
RULESET = REPO / "config" / "ruleset.yaml"
GOLDEN = Path(__file__).resolve().parent / "golden"
ADDR = default_addresses("10.231.0.10", "10.231.0.2", "10.231.0.0/24")
T, R, OTH = ADDR["target"], ADDR["remote"], ADDR["other"]
NEIGHBOUR = "10.231.0.77"  # in net, none of the named hosts
OUTSIDER = "10.231.5.5"  # outside net

needs_root_nft = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("ip") is None,
    reason="needs root, nft and ip",
)


@pytest.fixture(scope="module")
def rs() -> Ruleset:
    return load_ruleset(RULESET)


def test_sample_has_the_thesis_strata(rs: Ruleset) -> None:
    assert len(rs.rules) == 16  # the 14-rule sample, the FTP rule, issue 22's egress rule
    assert [r.id for r in rs.rules if r.stratum in ("verification", "attack")] == ["F1", "E1"]
    assert sum(r.stratum == 1 for r in rs.rules) == 7
    assert sum(r.stratum == 2 for r in rs.rules) == 7
    assert sum(r.stratum == 2 and r.proto == "icmp" for r in rs.rules) == 2
    assert ADDR["other"] == "10.231.0.254"


def tcp(src: str, dport: int, flags: str = "S", iface: str = "eth0") -> Packet:
    return Packet("in", "tcp", src, T, 40000, dport, tcp_flags=flags, iface=iface)


def udp(src: str, dport: int) -> Packet:
    return Packet("in", "udp", src, T, 40000, dport)


# Verdicts and deciding rules worked out by hand from pf's last-match rule.
HAND = [
    (tcp(R, 22), "pass", "D5"),
    (tcp(R, 22, "A"), "block", "D1"),  # no state, not a SYN: D5's flags S/SA do not match
    (tcp(R, 23), "block", "S4"),  # S3 would pass it but S4 comes later
    (tcp(OTH, 23), "block", "S4"),
    (tcp(R, 80), "block", "S2"),
    (tcp(OTH, 80), "pass", "S1"),
    (tcp(OUTSIDER, 80), "block", "D1"),
    (tcp(R, 21), "pass", "F1"),
    (tcp(OTH, 21), "pass", "S1"),
    (tcp(R, 25), "block", "D1"),
    (tcp(T, 22), "block", "D4"),  # spoofed own address: quick D4 beats quick D5 (earlier)
    (tcp(T, 22, iface="lo"), "pass", "D2"),
    (udp(R, 5000), "pass", "S5"),
    (udp(R, 5007), "block", "S6"),
    (udp(OTH, 5007), "pass", "S5"),
    (udp(OTH, 5015), "block", "D1"),
    (udp(R, 5015), "block", "S6"),
    (Packet("in", "icmp", R, T, icmp_type="echo-request"), "pass", "P1"),
    (Packet("in", "icmp", R, T, icmp_type="echo-reply"), "block", "D1"),
    (Packet("out", "icmp", T, R, icmp_type="echo-request"), "pass", "P2"),  # last match
    (Packet("out", "tcp", T, R, 40000, 23), "pass", "D3"),
]


@pytest.mark.parametrize(("pkt", "verdict", "rule_id"), HAND)
def test_decide_matches_hand_worked_verdicts(rs, pkt, verdict, rule_id) -> None:
    assert decide(rs, pkt, ADDR) == verdict
    assert deciding_rule(rs, pkt, ADDR).id == rule_id


def grid() -> list[Packet]:
    hosts = [T, R, OTH, NEIGHBOUR, OUTSIDER, "127.0.0.1"]
    ports = [20, 21, 22, 23, 24, 79, 80, 81, 4999, 5000, 5004, 5005, 5010, 5011, 5020, 5021]
    out = []
    for direction, iface, src, dst in itertools.product(
        ("in", "out"), ("eth0", "lo"), hosts, hosts
    ):
        for port in ports:
            for flags in ("S", "SA", "A"):
                out.append(
                    Packet(direction, "tcp", src, dst, 40000, port, tcp_flags=flags, iface=iface)
                )
            out.append(Packet(direction, "udp", src, dst, 40000, port, iface=iface))
        for kind in ("echo-request", "echo-reply"):
            out.append(Packet(direction, "icmp", src, dst, icmp_type=kind, iface=iface))
    return out


def test_nft_order_reaches_pf_verdicts_on_every_packet(rs: Ruleset) -> None:
    packets = grid()
    ordered = nft_order(rs)
    for pkt in packets:
        assert decide_first_match(ordered, pkt, ADDR) == decide(rs, pkt, ADDR), pkt
    # The reordering matters: file order under first-match gets some packets wrong.
    naive = sum(decide_first_match(list(rs.rules), p, ADDR) != decide(rs, p, ADDR) for p in packets)
    assert naive > 100


def test_stratum1_relations_hold(rs: Ruleset) -> None:
    # Relations are about the rule terms, so compare on first packets (SYNs) coming in.
    packets = [
        p for p in grid() if p.direction == "in" and p.iface == "eth0" and p.tcp_flags == "S"
    ]
    index = {r.id: i for i, r in enumerate(rs.rules)}

    def matched(rule):
        alone = Ruleset("alone", (rule,))
        return {p for p in packets if deciding_rule(alone, p, ADDR) is not None}

    def decides(rule):
        return {p for p in packets if deciding_rule(rs, p, ADDR) == rule}

    kinds = set()
    for rule in rs.rules:
        if not rule.relation:
            continue
        kind, partner_id = rule.relation
        partner = rs.rule(partner_id)
        kinds.add(kind)
        a, b = matched(rule), matched(partner)
        first, later = sorted((rule, partner), key=lambda r: index[r.id])
        if kind == "shadowing":  # the earlier rule is covered by a later opposite one
            assert matched(first) <= matched(later) and first.action != later.action
            assert not decides(first) and decides(later)
        elif kind == "generalisation":  # a later, narrower opposite rule is an exception
            assert matched(later) < matched(first) and first.action != later.action
            assert decides(first) and decides(later)
        elif kind == "correlation":  # partial overlap, opposite actions
            assert a & b and a - b and b - a and rule.action != partner.action
        elif kind == "redundancy":  # same action, covered: removing it changes nothing
            small, big = (rule, partner) if a <= b else (partner, rule)
            assert matched(small) <= matched(big) and small.action == big.action
            without = Ruleset("without", tuple(r for r in rs.rules if r is not small))
            assert all(decide(without, p, ADDR) == decide(rs, p, ADDR) for p in grid())
    assert kinds == {"shadowing", "generalisation", "correlation", "redundancy"}


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("MIGFW_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs; MIGFW_UPDATE_GOLDEN=1 to accept"


def test_render_nft_golden(rs: Ruleset) -> None:
    _golden("ruleset.nft", render_nft(rs, ADDR))


def test_render_pf_golden(rs: Ruleset) -> None:
    text = render_pf(rs, ADDR)
    _golden("ruleset.pf", text)
    # pf keeps file order: rule lines appear in the YAML's order.
    rule_lines = [ln for ln in text.splitlines() if ln.startswith(("pass", "block"))]
    assert len(rule_lines) == 16 and rule_lines[0] == "block drop in log all"


def test_egress_rule_blocks_only_the_sink_port(rs: Ruleset) -> None:
    """E1 (issue 22): the VM's SYN to `other`:25 is blocked outbound, 26 passes (D3)."""
    from migfw.testbed.egress import blocks_egress

    assert blocks_egress(rs, ADDR) and not blocks_egress(rs, ADDR, port=26)
    out = Packet("out", "tcp", T, ADDR["other"], 43025, 25)
    assert deciding_rule(rs, out, ADDR).id == "E1"
    assert decide(rs, Packet("out", "tcp", T, ADDR["remote"], 43025, 25), ADDR) == "pass"


BAD = [
    ({"rules": [{"id": "X1", "action": "allow"}]}, "rule X1 field action"),
    ({"rules": [{"id": "X1", "action": "pass", "proto": "tcp", "dport": "80:70"}]},
     "rule X1 field dport"),
    ({"rules": [{"id": "X1", "action": "pass", "dport": 80}]}, "rule X1 field dport"),
    ({"rules": [{"id": "X1", "action": "pass", "src": "8.8.8.8"}]}, "rule X1 field src"),
    ({"rules": [{"id": "X1", "action": "pass", "src": "targte"}]}, "rule X1 field src"),
    ({"rules": [{"id": "X1", "action": "pass", "colour": "red"}]}, "unknown field 'colour'"),
    ({"rules": [{"id": "X1", "action": "pass", "quick": "yes"}]}, "rule X1 field quick"),
    ({"rules": [{"id": "X1", "action": "pass", "relation": {"kind": "shadowing", "with": "Z"}}]},
     "rule X1 field relation"),
    ({"rules": [{"id": "X1", "action": "pass"}, {"id": "X1", "action": "block"}]}, "used twice"),
    ({"rules": [{"action": "pass"}]}, "rule #1 field id"),
    ({"rules": []}, "empty"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "needle"), BAD)
def test_bad_ruleset_gives_one_line_naming_rule_and_field(data, needle) -> None:
    with pytest.raises(MigfwError) as info:
        ruleset_from_data(data, "bad.yaml")
    msg = str(info.value)
    assert needle in msg and msg.startswith("bad.yaml: ") and "\n" not in msg


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    bad = tmp_path / "r.yaml"
    bad.write_text("rules:\n  - id: A\n    action: [pass\n")
    with pytest.raises(MigfwError, match=r"r\.yaml: line \d+"):
        load_ruleset(bad)


def test_addresses_are_checked(rs: Ruleset) -> None:
    with pytest.raises(MigfwError, match="remote 10.9.9.9 is outside net"):
        render_nft(rs, {**ADDR, "remote": "10.9.9.9"})
    with pytest.raises(MigfwError, match="missing key 'other'"):
        render_pf(rs, {k: v for k, v in ADDR.items() if k != "other"})


@needs_root_nft
def test_rendered_ruleset_really_loads_into_nftables(rs: Ruleset, tmp_path: Path) -> None:
    text = render_nft(rs, ADDR)
    check_nft(text)
    path = tmp_path / "r.nft"
    path.write_text(text)
    with temporary_netns("mfwtst") as ns:
        run(["nft", "-f", str(path)], netns=ns)
        run(["nft", "-f", str(path)], netns=ns)  # idempotent: replaces, never duplicates
        listing = run(["nft", "list", "table", "inet", "migfw"], netns=ns)
    comments = [
        ln.split('comment "')[1].rstrip('"') for ln in listing.splitlines() if "comment" in ln
    ]
    expect_in = ["pf-state"] + [r.id for r in nft_order(rs) if r.direction in ("in", "any")]
    expect_out = ["pf-state"] + [r.id for r in nft_order(rs) if r.direction in ("out", "any")]
    assert comments == expect_in + expect_out
    assert "10.231.0.10" in listing and "5005-5020" in listing


@needs_root_nft
def test_check_nft_names_the_bad_line(rs: Ruleset) -> None:
    lines = render_nft(rs, ADDR).splitlines()
    lines[12] = "\t\tip saddr 10.231.0.2 tcp dport 23 frobnicate"
    with pytest.raises(MigfwError, match=r"^nftables check: line 13 \(ip saddr 10.231.0.2") as info:
        check_nft("\n".join(lines) + "\n")
    assert "\n" not in str(info.value)


def test_cli_writes_pf_and_fails_cleanly(tmp_path: Path, capsys, rs: Ruleset) -> None:
    out = tmp_path / "pf.conf"
    argv = ["testbed", "ruleset", "--ruleset", str(RULESET), "--format", "pf", "--out", str(out)]
    assert main(argv) == 0
    assert out.read_text() == render_pf(rs, ADDR)
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - id: Z\n    action: maybe\n")
    out2 = tmp_path / "never.conf"
    code = main(["testbed", "ruleset", "--ruleset", str(bad), "--out", str(out2)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "rule Z field action" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "pf.conf"]


def test_cli_runs_as_a_process(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["python3", "-m", "migfw", "testbed", "ruleset", "--ruleset", str(tmp_path / "nope.yaml")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "ruleset file not found" in proc.stderr
    assert "Traceback" not in proc.stderr
