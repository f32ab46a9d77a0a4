"""Placements without a testbed: host-rule and nwfilter renderings against hand-checked golden
files, and the vmm-agent's decision logic with an injected clock (no libvirt)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from migfw.errors import MigfwError
from migfw.testbed.agent import (
    EVENT_RESUMED,
    EVENT_STARTED,
    EVENT_SUSPENDED,
    RESUMED_MIGRATED,
    STARTED_MIGRATED,
    SUSPENDED_MIGRATED,
    AgentLogic,
)
from migfw.testbed.placement import require_where
from migfw.testbed.placements import TrialContext, get, names
from migfw.testbed.ruleset import (
    Packet,
    decide,
    default_addresses,
    load_ruleset,
    nft_order,
)
from migfw.testbed.ruleset_render import render_host_nft, render_nwfilter

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden"
RULESET = load_ruleset(REPO / "config" / "ruleset.yaml")
ADDR = default_addresses()  # target 10.231.0.10, remote 10.231.0.2, other 10.231.0.254


def test_host_nft_matches_golden() -> None:
    assert render_host_nft(RULESET, ADDR, "mfwtap0") == (GOLDEN / "host_rules.nft").read_text()


def test_nwfilter_matches_golden() -> None:
    assert render_nwfilter(RULESET, ADDR) == (GOLDEN / "nwfilter.xml").read_text()


def _first_match(xml: str, pkt: Packet) -> str:
    """Evaluate the nwfilter XML like libvirt does: ascending priority, first match wins."""
    rules = sorted(ET.fromstring(xml).findall("rule"), key=lambda r: int(r.get("priority")))
    for rule in rules:
        direction = rule.get("direction")
        if {pkt.direction, direction} == {"in", "out"}:
            continue
        match = rule[0]
        if match.tag not in ("all", pkt.proto):
            continue
        a = match.attrib
        if "state" in a and "NEW" not in a["state"]:
            continue  # the state rule: a flow's first packet is NEW
        if "srcipaddr" in a and not _in(pkt.src, a["srcipaddr"], a.get("srcipmask", "32")):
            continue
        if "dstipaddr" in a and not _in(pkt.dst, a["dstipaddr"], a.get("dstipmask", "32")):
            continue
        if "dstportstart" in a:
            lo, hi = int(a["dstportstart"]), int(a.get("dstportend", a["dstportstart"]))
            if pkt.dport is None or not lo <= pkt.dport <= hi:
                continue
        if "type" in a and pkt.icmp_type != {"8": "echo-request", "0": "echo-reply"}[a["type"]]:
            continue
        return "pass" if rule.get("action") == "accept" else "block"
    return "pass"


def _in(ip: str, net: str, mask: str) -> bool:
    import ipaddress

    return ipaddress.ip_address(ip) in ipaddress.ip_network(f"{net}/{mask}", strict=False)


@pytest.mark.parametrize(
    "pkt",
    [
        Packet("in", "tcp", "10.231.0.2", "10.231.0.10", 40000, 23),  # S4: blocked
        Packet("in", "tcp", "10.231.0.2", "10.231.0.10", 40000, 22),  # D5: pass
        Packet("in", "tcp", "10.231.0.2", "10.231.0.10", 40000, 80),  # S2 beats S1
        Packet("in", "tcp", "10.231.0.254", "10.231.0.10", 40000, 80),  # S1
        Packet("in", "tcp", "10.231.0.2", "10.231.0.10", 40000, 21),  # F1 / S1
        Packet("in", "udp", "10.231.0.2", "10.231.0.10", 40000, 5003),  # S7
        Packet("in", "udp", "10.231.0.2", "10.231.0.10", 40000, 5007),  # S6 beats S5
        Packet("in", "udp", "10.231.0.254", "10.231.0.10", 40000, 5007),  # S5
        Packet("in", "udp", "10.231.0.2", "10.231.0.10", 40000, 9999),  # D1
        Packet("in", "icmp", "10.231.0.2", "10.231.0.10", icmp_type="echo-request"),  # P1
        Packet("in", "icmp", "10.231.0.10", "10.231.0.10", icmp_type="echo-request"),  # D4
        Packet("out", "tcp", "10.231.0.10", "10.231.0.2", 40000, 4444),  # D3
    ],
)
def test_nwfilter_first_match_reaches_pf_verdicts(pkt: Packet) -> None:
    assert _first_match(render_nwfilter(RULESET, ADDR), pkt) == decide(RULESET, pkt, ADDR)


def test_host_nft_keeps_order_and_skips_loopback() -> None:
    text = render_host_nft(RULESET, ADDR, "mfwtap0")
    ids = [r.id for r in nft_order(RULESET) if r.iface != "lo" and r.direction in ("in", "any")]
    to_vm = [line for line in text.splitlines() if "meta mark 0x6d660001 " in line]
    assert [line.rsplit('comment "', 1)[1].rstrip('"') for line in to_vm] == ids
    assert 'comment "D2"' not in text  # loopback only: never seen on the tap port
    assert 'iifname != "lo"' not in text


def test_renderers_refuse_bad_names() -> None:
    with pytest.raises(MigfwError, match="interface name"):
        render_host_nft(RULESET, ADDR, "tap 0; drop")
    with pytest.raises(MigfwError, match="filter name"):
        render_nwfilter(RULESET, ADDR, name="a'b")


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s


def _logic(delay_ms: float, clock: FakeClock, actions: list) -> AgentLogic:
    def install(host: str) -> None:
        clock.t += 0.004  # nft takes 4 ms
        actions.append(("install", host, clock.t))

    def remove(host: str) -> None:
        clock.t += 0.003
        actions.append(("remove", host, clock.t))

    return AgentLogic("A", delay_ms, install, remove, clock=clock, sleep=clock.sleep)


def test_agent_installs_on_destination_after_delay_then_removes_source() -> None:
    clock, actions = FakeClock(), []
    logic = _logic(200, clock, actions)
    logic.on_event("B", EVENT_STARTED, STARTED_MIGRATED, 990.0)  # incoming: noted only
    assert actions == []
    logic.on_event("B", EVENT_RESUMED, RESUMED_MIGRATED, 1000.0)
    assert clock.slept == [0.2]
    assert actions == [("install", "B", pytest.approx(1000.204)),
                       ("remove", "A", pytest.approx(1000.207))]  # fmt: skip
    report = logic.report()
    assert report["event_seen"] == 1000.0 and report["incoming_seen"] == 990.0
    assert report["rules_installed"] == pytest.approx(1000.204)
    assert report["source_rules_removed"] == pytest.approx(1000.207)
    assert report["host"] == "B" and report["errors"] == [] and logic.current == "B"


def test_agent_ignores_other_events_and_its_own_host() -> None:
    clock, actions = FakeClock(), []
    logic = _logic(0, clock, actions)
    logic.on_event("A", EVENT_RESUMED, RESUMED_MIGRATED, 1.0)  # already enforced there
    logic.on_event("B", EVENT_RESUMED, 0, 1.0)  # an unpause, not a migration
    logic.on_event("B", EVENT_STARTED, 0, 1.0)  # a boot
    assert actions == [] and logic.report()["event_seen"] is None


def test_agent_records_failed_install_and_keeps_source() -> None:
    clock = FakeClock()

    def install(host: str) -> None:
        raise MigfwError("nft failed")

    removed: list[str] = []
    logic = AgentLogic("A", 0, install, removed.append, clock=clock, sleep=clock.sleep)
    logic.on_event("B", EVENT_RESUMED, RESUMED_MIGRATED, 5.0)
    assert removed == [] and logic.current == "A"
    assert logic.report()["errors"] == ["nft failed"]
    with pytest.raises(MigfwError, match="negative"):
        AgentLogic("A", -1, install, removed.append)


def test_expected_where_and_record() -> None:
    assert get("vmm-agent").expected_where("B") == {"A": False, "B": True, "guest": False}
    assert get("vm").expected_where("A") == {"A": False, "B": False, "guest": True}
    assert get("none").expected_where("A") == {"A": False, "B": False, "guest": False}
    assert get("both").expected_where("B") == {"A": False, "B": True, "guest": True}
    want = get("vmm").expected_where("A")
    require_where("vmm", want, "A", {"A": True, "B": False, "guest": False})
    with pytest.raises(MigfwError, match="B: present"):
        require_where("vmm", want, "A", {"A": True, "B": True, "guest": False})
    deployed = {"where": {"A": False}, "checks": []}
    ctx = TrialContext({}, None, "A", print, Path("."), {"agent_delay_ms": 50})
    fw = get("vm")(ctx).describe(deployed, None)
    assert fw["agent_delay_ms"] is None and fw["placement"] == "vm"
    assert get("vmm-state")(ctx).describe.__qualname__.startswith("VmmAgent")
    assert get("vmm-agent")(TrialContext({}, None, "A", print, Path("."))).delay_ms == 200.0


def test_registry_is_the_one_list_of_placements() -> None:
    """Table order, the facts the stages read, and a one-line error for an unknown name."""
    assert names() == ["vm", "both", "vmm", "vmm-state", "vmm-agent", "ovn", "none"]
    assert names(agent=True) == ["vmm-state", "vmm-agent"]
    assert names(guest_rules=True) == ["vm", "both"]
    assert names(host_layer="nwfilter") == ["both", "vmm"]
    with pytest.raises(MigfwError, match="placement 'pf' is not one of vm, both, vmm"):
        get("pf")


def _recording(clock: FakeClock, actions: list) -> dict:
    def install(host: str) -> None:
        clock.t += 0.004
        actions.append(("install", host, round(clock.t, 3)))

    def remove(host: str) -> None:
        clock.t += 0.003
        actions.append(("remove", host, round(clock.t, 3)))

    def carry(source: str, destination: str) -> dict:
        actions.append(("carry", source, destination))
        return {"entries": 3, "inserted": 3, "failed": 0}

    return {"install": install, "remove": remove, "carry": carry}


def test_agent_trigger_incoming_programs_the_destination_before_the_resume() -> None:
    clock, actions = FakeClock(), []
    hooks = _recording(clock, actions)
    logic = AgentLogic("A", 50, hooks["install"], hooks["remove"], clock=clock,
                       sleep=clock.sleep, trigger="incoming")  # fmt: skip
    clock.t = 990.0
    logic.on_event("B", EVENT_STARTED, STARTED_MIGRATED, 990.0)
    assert actions == [("install", "B", 990.054)] and logic.current == "A"
    clock.t = 1000.0
    logic.on_event("B", EVENT_RESUMED, RESUMED_MIGRATED, 1000.0)  # no second install
    assert actions[1:] == [("remove", "A", 1000.003)] and logic.current == "B"
    report = logic.report()
    assert report["trigger"] == "incoming" and report["event"] == "incoming"
    assert report["event_seen"] == 990.0 and report["resumed_seen"] == 1000.0
    assert report["rules_installed"] == pytest.approx(990.054)
    assert "state_copies" not in report


def test_agent_trigger_pre_and_state_copies_at_the_switchover() -> None:
    """vmm-state: programmed before migrating (with a first copy of the state), the final
    copy when the source pauses the VM, the source's rules removed after the resume."""
    clock, actions = FakeClock(), []
    hooks = _recording(clock, actions)
    logic = AgentLogic("B", 0, hooks["install"], hooks["remove"], clock=clock,
                       sleep=clock.sleep, trigger="pre", carry=hooks["carry"])  # fmt: skip
    logic.before_migration("A")
    assert actions == [("install", "A", 1000.004), ("carry", "B", "A")]
    logic.on_event("A", EVENT_STARTED, STARTED_MIGRATED, 1001.0)  # already programmed
    logic.on_event("A", EVENT_SUSPENDED, SUSPENDED_MIGRATED, 1001.5)  # the other host's
    logic.on_event("B", EVENT_SUSPENDED, SUSPENDED_MIGRATED, 1002.0)  # the source pauses
    logic.join(5.0)
    assert actions[2:] == [("carry", "B", "A")]
    logic.on_event("A", EVENT_RESUMED, RESUMED_MIGRATED, 1002.2)
    assert actions[3][:2] == ("remove", "B") and logic.current == "A"
    report = logic.report()
    assert [c["moment"] for c in report["state_copies"]] == ["pre", "suspended"]
    assert report["suspended_seen"] == 1002.0 and report["event"] == "pre"
    with pytest.raises(MigfwError, match="trigger"):
        AgentLogic("A", 0, hooks["install"], hooks["remove"], trigger="later")


def test_closed_port_text_drops_both_directions_and_is_replaced_by_the_rules() -> None:
    from migfw.testbed.ruleset_render import HOST_TABLE, render_host_nft
    from migfw.testbed.temporary import closed_port_nft

    text = closed_port_nft("mfwtap0")
    assert 'oifname "mfwtap0" drop' in text and 'iifname "mfwtap0" drop' in text
    # The agent's install deletes the same bridge table first: one transaction opens it.
    assert f"delete table bridge {HOST_TABLE}" in render_host_nft(RULESET, ADDR, "mfwtap0")
    with pytest.raises(MigfwError, match="interface name"):
        closed_port_nft("a b")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("vm", ["ensure_ruleset"]),
        ("vmm", ["forget_ruleset", "bind_nwfilter", "flush_guest", "verify_by_packets"]),
        ("both", ["bind_nwfilter", "ensure_ruleset", "verify_by_packets"]),
        ("vmm-agent", ["forget_ruleset", "install_host_nft", "flush_guest", "verify_by_packets"]),
        ("none", ["forget_ruleset", "flush_guest", "blocked_port_answers"]),
    ],
)
def test_install_steps_in_order(monkeypatch, tmp_path: Path, name: str, expected: list) -> None:
    """Each placement's install: host rules first, then the guest (its ruleset, or flushed),
    then the packet checks with everything in place (a session opened before nwfilter's
    conntrack rules stalls). The firewall steps are recorded, not run."""
    from migfw.testbed import firewall

    calls: list[str] = []
    for step in ("ensure_ruleset", "forget_ruleset", "flush_guest", "bind_nwfilter",
                 "install_host_nft", "verify_by_packets", "blocked_port_answers"):  # fmt: skip
        result = {"checks": [{"ok": True}]} if step == "ensure_ruleset" else [{"ok": True}]
        monkeypatch.setattr(firewall, step, lambda *a, _s=step, _r=result, **k: calls.append(_s)
                            or _r)  # fmt: skip
    ctx = TrialContext({}, None, "A", lambda *a, **k: None, tmp_path)
    get(name)(ctx).install()
    assert calls == expected
