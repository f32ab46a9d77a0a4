"""Issue 22's analysis against hand-worked captures: attackers on every side, one-probe
breaches and the bounds of breach-free trials, flows in both directions of initiative (and
flows that never opened) with their conntrack dumps, and the cell statistics.

Probe times (blocked port 23, every side): t_i = T0 + i ms + (i mod 3) us, i = 0..9, i.e.
0, 1.001, 2.002, 3.000, 4.001, 5.002, 6.000, 7.001, 8.002, 9.000 ms; consecutive gaps are
1.001 or 0.998 ms, so the longest is 1.001 ms. The guest pauses at 5.5 ms and resumes at
6.5 ms.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from migfw.measure import attack
from migfw.measure.attackstats import (
    attack_window_table,
    clopper_pearson,
    flow_table,
    upper_bound,
)
from migfw.measure.flowstate import flow_entry, parse_conntrack
from migfw.trials.crafted import ACK, RST, SYN, pcap_bytes, tcp_frames, write_side

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
VM, PROBER = "10.231.0.10", "10.231.0.2"
PEERS = {"switch": "10.231.0.66", "dst_cotenant": "10.231.0.67", "src_cotenant": "10.231.0.68",
         "egress": "10.231.0.2"}  # fmt: skip


def t(i: int) -> int:
    return T0 + i * MS + (i % 3) * 1000


SENDS = [(23, i, t(i)) for i in range(10)] + [(22, i, T0 + i * MS + MS // 2) for i in range(10)]
PHASES = {"pause": (T0 + 5_500_000) / 1e9, "resume": (T0 + 6_500_000) / 1e9}


def meta_for(sides: dict[str, dict]) -> dict:
    attackers = {
        side: {"address": VM, "peer": PEERS[side], "blocked_port": 23, "allowed_port": 22,
               "rate_hz": 1000, **extra}
        for side, extra in sides.items()
    }  # fmt: skip
    return {
        "target": VM,
        "attackers": attackers,
        "migration": {"start": T0 / 1e9, "end": (T0 + 10 * MS) / 1e9},
        "phases": dict(PHASES),
    }


def side_row(tmp_path: Path, side: str, evidence: list, sends=SENDS, extra=None) -> dict:
    write_side(tmp_path, side, VM, PEERS[side], sends, evidence)
    row = attack.attack_metrics(tmp_path, meta_for({side: extra or {}}))
    prefix = f"breach_{side}_"
    return {k[len(prefix) :]: v for k, v in row.items() if k.startswith(prefix)}


def test_one_probe_breach_is_breached_with_its_bound(tmp_path: Path) -> None:
    m = side_row(tmp_path, "switch", [(t(4) + 300_000, 23, 4, RST | ACK)])
    assert (m["sent"], m["answered"], m["breached"], m["runs"]) == (10, 1, True, 1)
    assert m["max_run_probes"] == 1 and m["window_ms"] == 0.0
    assert m["window_hi_ms"] == pytest.approx(5.002 - 3.000, abs=1e-9)  # t5 - t3
    assert m["gap_max_ms"] == pytest.approx(1.001, abs=1e-9)
    assert m["bound_ms"] == pytest.approx(2.002, abs=1e-9)  # max(gap, hi)
    assert m["position"] == "before_switchover"  # t4 = 4.001 ms < pause 5.5 ms
    assert (m["allowed_sent"], m["allowed_answered"]) == (10, 0)


def test_breach_free_trial_is_bounded_by_its_longest_probe_gap(tmp_path: Path) -> None:
    answers = [(T0 + i * MS + 800_000, 22, i, SYN | ACK) for i in range(10)]
    m = side_row(tmp_path, "switch", answers)
    assert (m["answered"], m["breached"], m["runs"], m["max_run_probes"]) == (0, False, 0, 0)
    assert m["window_ms"] == m["window_hi_ms"] == 0.0
    assert m["bound_ms"] == m["gap_max_ms"] == pytest.approx(1.001, abs=1e-9)
    assert m["position"] == "none"
    assert (m["allowed_answered"], m["allowed_outage_ms"]) == (10, 0.0)


def test_cotenant_sides_count_only_answers_to_their_own_port(tmp_path: Path) -> None:
    flooded = (t(2) + 300_000, 23, 2, SYN | ACK)  # to the switch's port 40023: not ours
    answers = [(t(7) + 300_000, 23, 7, SYN | ACK), (t(8) + 300_000, 23, 8, RST | ACK)]
    write_side(tmp_path, "dst_cotenant", VM, PEERS["dst_cotenant"], SENDS, answers)
    # The flooded frame: an answer to the switch attacker's probe port in this capture.
    from migfw.trials import crafted

    data = (tmp_path / "attack_dst_cotenant.pcap").read_bytes()
    frame = crafted.tcp_frames(VM, PEERS["switch"], np.array([23]), np.array([40023]),
                               np.array([1]), np.array([3]), np.array([SYN | ACK]))  # fmt: skip
    extra = pcap_bytes(np.array([flooded[0]]), frame)[24:]
    (tmp_path / "attack_dst_cotenant.pcap").write_bytes(data + extra)
    row = attack.attack_metrics(tmp_path, meta_for({"dst_cotenant": {"host": "B"}}))
    m = {k[len("breach_dst_cotenant_") :]: v for k, v in row.items()
         if k.startswith("breach_dst_cotenant_")}  # fmt: skip
    assert (m["answered"], m["runs"], m["max_run_probes"]) == (2, 1, 2)
    assert m["window_ms"] == pytest.approx(8.002 - 7.001, abs=1e-9)
    assert m["window_hi_ms"] == pytest.approx(9.000 - 6.000, abs=1e-9)  # t9 - t6
    assert m["bound_ms"] == pytest.approx(3.0, abs=1e-9)
    assert m["position"] == "after_resume"  # t7 = 7.001 ms >= resume 6.5 ms
    assert m["captured"] == 10
    assert "breach_switch_sent" not in row and "blocked_sent" not in row  # no switch files


def test_allowed_port_outage_on_the_source_cotenant(tmp_path: Path) -> None:
    # Allowed probes at i + 0.5 ms; 4, 5, 6 (4.5, 5.5, 6.5 ms) unanswered.
    answers = [(T0 + i * MS + 800_000, 22, i, SYN | ACK) for i in range(10) if i not in (4, 5, 6)]
    m = side_row(tmp_path, "src_cotenant", answers, extra={"host": "A"})
    assert m["answered"] == 0 and m["allowed_answered"] == 7
    assert m["allowed_outage_ms"] == pytest.approx(2.0, abs=1e-9)  # 6.5 - 4.5
    assert m["allowed_outage_hi_ms"] == pytest.approx(4.0, abs=1e-9)  # 7.5 - 3.5


def test_egress_arrivals_on_the_guest_clock(tmp_path: Path) -> None:
    # The guest's clock runs 1 s ahead of the host's and stands still while it is paused
    # (host 5.5-6.5 ms): probe i is sent at guest time G + i ms, i.e. host time i ms for
    # i <= 5 and (i + 1) ms after the resume. Probes 6 and 7 get out (host 7.2, 8.2 ms).
    guest0 = T0 + 1_000_000_000
    sends = [(25, i, guest0 + i * MS) for i in range(10)]
    arrivals = [(T0 + 7 * MS + 200_000, 25, 6, SYN), (T0 + 8 * MS + 200_000, 25, 7, SYN)]
    write_side(tmp_path, "egress", VM, PEERS["egress"], sends, arrivals)
    meta = meta_for({"egress": {"blocked_port": 25, "allowed_port": None, "clock": "guest"}})
    row = attack.attack_metrics(tmp_path, meta)
    m = {k[len("breach_egress_") :]: v for k, v in row.items() if k.startswith("breach_egress_")}
    assert (m["sent"], m["answered"], m["breached"], m["runs"]) == (10, 2, True, 1)
    assert m["window_ms"] == pytest.approx(1.0, abs=1e-9)  # on the guest's clock
    assert m["window_hi_ms"] == pytest.approx(3.0, abs=1e-9)  # G8 - G5
    assert m["bound_ms"] == pytest.approx(3.0, abs=1e-9)
    # By the arrival of probe 6 (host 7.2 ms), after the resume; by its guest send time
    # (6 ms after G, i.e. "host 6 ms") it would wrongly read as inside the blackout.
    assert m["position"] == "after_resume"
    assert m["captured"] == 2 and "allowed_sent" not in m


def test_a_side_with_one_of_its_two_files_is_an_error(tmp_path: Path) -> None:
    from migfw.errors import MigfwError

    write_side(tmp_path, "src_cotenant", VM, PEERS["src_cotenant"], SENDS, [])
    (tmp_path / "attack_src_cotenant_sendlog.csv").unlink()
    with pytest.raises(MigfwError, match="attack_src_cotenant_sendlog.csv: missing"):
        attack.attack_metrics(tmp_path, meta_for({"src_cotenant": {}}))
    write_side(tmp_path / "b", "src_cotenant", VM, PEERS["src_cotenant"], SENDS, [])
    with pytest.raises(MigfwError, match="attackers.src_cotenant: missing address"):
        attack.attack_metrics(tmp_path / "b", {"target": VM, "attackers": {"src_cotenant": {
            "blocked_port": 23, "rate_hz": 1}}, "migration": {"start": 0, "end": 1}})  # fmt: skip


# --------------------------------------------------------------------------- flows

# Milliseconds after T0: temporary allow rules removed at 2, migration 10-40, guest paused
# 20-30 (the hypervisor's events).
FLOW_META = {
    "target": VM,
    "migration": {"start": (T0 + 10 * MS) / 1e9, "end": (T0 + 40 * MS) / 1e9},
    "phases": {"suspended": (T0 + 20 * MS) / 1e9, "resumed": (T0 + 30 * MS) / 1e9},
    "flows": {
        "rate_hz": 100,
        "flows": {
            "established": {"port": 7, "local_port": 50007, "initiative": "prober",
                            "state_only": True},
            "guest_first": {"port": 13, "local_port": 50013, "initiative": "guest",
                            "state_only": True},
            "late": {"port": 9, "local_port": 50009, "initiative": "prober", "state_only": True},
            "stateful": {"port": 21, "local_port": 50021},
        },
        "temporary_rules": [{"where": "guest", "removed_at": (T0 + 1.5 * MS) / 1e9},
                            {"where": "B", "removed_at": (T0 + 2 * MS) / 1e9}],
    },
}  # fmt: skip
# (flow, seq, send ms, reply ms or None, event)
FLOW_ROWS = [
    ("established", 0, 1.0, 1.2, ""),  # before the allow rules were gone
    ("established", 1, 5.0, 5.2, ""),  # after them, before migrating: opened
    ("established", 2, 25.0, 31.5, ""),  # sent into the pause, answered after the resume
    ("established", 3, 31.0, 31.5, ""),
    ("established", 4, 45.0, 45.2, ""),  # after the migration's end: survived
    ("guest_first", 0, 3.0, 9.0, ""),  # the guest answers on its own ticks
    ("guest_first", 1, 9.1, 19.0, ""),
    ("guest_first", 2, 19.1, 32.0, ""),  # held across the pause
    ("guest_first", 3, 32.1, 42.0, ""),
    ("guest_first", 4, 42.1, 52.0, ""),
    ("late", 0, 1.0, 1.2, ""),  # answered only while allowed
    ("late", 1, 5.0, None, ""),
    ("late", 2, 45.0, 45.2, ""),  # after migrating: too late to have been established
    ("stateful", 0, 1.0, None, "error:connect timed out"),
]


def ns(ms: float) -> int:
    return T0 + round(ms * MS)


def write_flows(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["flow,seq,t_send_ns,t_reply_ns,event"]
    for flow, seq, send, reply, event in FLOW_ROWS:
        lines.append(f"{flow},{seq},{ns(send)},{'' if reply is None else ns(reply)},{event}")
    (folder / "flows.csv").write_text("\n".join(lines) + "\n")
    # The prober's capture: its request k at its send time with sequence number base + 8k,
    # the guest's answer at its reply time acknowledging base + 8(k + 1); the answer at
    # 31.5 ms to requests 2 and 3 is one segment acknowledging both.
    segs = []  # (t_ms, to_vm, local port, vm port, seq, ack, flags)
    for flow, port, base in (("established", 7, 1000), ("guest_first", 13, 5000)):
        answered = {}
        for f, seq, send, reply, _ in FLOW_ROWS:
            if f != flow:
                continue
            segs.append((send, True, 50000 + port, port, base + 8 * seq, 77, 0x18))
            if reply is not None:
                answered[reply] = max(answered.get(reply, 0), base + 8 * (seq + 1))
        for reply, ack in answered.items():
            segs.append((reply, False, 50000 + port, port, 77, ack, 0x18))
    ts = np.array([ns(s[0]) for s in segs], dtype=np.int64)
    frames = np.concatenate([
        tcp_frames(PROBER, VM, np.array([lp]), np.array([p]), np.array([sq]), np.array([ak]),
                   np.array([fl])) if to_vm else
        tcp_frames(VM, PROBER, np.array([p]), np.array([lp]), np.array([sq]), np.array([ak]),
                   np.array([fl]))
        for _, to_vm, lp, p, sq, ak, fl in segs
    ])  # fmt: skip
    (folder / "flows.pcap").write_bytes(pcap_bytes(ts, frames))
    ct = folder / "conntrack"
    ct.mkdir(exist_ok=True)
    (ct / "src-before.txt").write_text(  # plain `conntrack -L`
        f"tcp      6 431999 ESTABLISHED src={PROBER} dst={VM} sport=50007 dport=7 src={VM} "
        f"dst={PROBER} sport=7 dport=50007 [ASSURED] mark=0 use=1\n"
        "udp      17 20 src=10.231.0.99 dst=10.231.0.10 sport=5353 dport=5353 [UNREPLIED] "
        "src=10.231.0.10 dst=10.231.0.99 sport=5353 dport=5353 mark=0 use=1\n"
        "conntrack v1.4.7 (conntrack-tools): 2 flow entries have been shown.\n"
    )
    (ct / "dst-resume.txt").write_text(  # -o extended
        f"ipv4     2 tcp      6 299 ESTABLISHED src={PROBER} dst={VM} sport=50007 dport=7 "
        f"src={VM} dst={PROBER} sport=7 dport=50007 [ASSURED] mark=0 zone=0 use=2\n"
        f"ipv4     2 tcp      6 119 SYN_SENT src={PROBER} dst={VM} sport=50013 dport=13 "
        f"[UNREPLIED] src={VM} dst={PROBER} sport=13 dport=50013 mark=0 zone=0 use=2\n"
        f"ipv4     2 tcp      6 299 ESTABLISHED src={VM} dst={PROBER} sport=13 dport=50013 "
        f"src={PROBER} dst={VM} sport=50013 dport=13 mark=0 zone=0 use=2\n"
    )
    (ct / "guest-end.txt").write_text(  # -o save, as conntrack -I takes it back
        f"-A -t 431974 -u SEEN_REPLY,ASSURED -s {PROBER} -d {VM} -r {VM} -q {PROBER} -p tcp "
        "--sport 50007 --dport 7 --reply-port-src 7 --reply-port-dst 50007 --state ESTABLISHED\n"
    )
    (ct / "dst-end.txt").write_text("")  # a dump with no entries


def test_flows_both_initiatives_and_flows_that_never_opened(tmp_path: Path) -> None:
    write_flows(tmp_path)
    row = attack.attack_metrics(tmp_path, FLOW_META)
    est = {k[len("established_") :]: v for k, v in row.items() if k.startswith("established_")}
    assert est["opened"] is True and est["survived"] is True and est["reset"] is False
    assert est["stall_ms"] == pytest.approx(31.5 - 5.2, abs=1e-9)
    # trial.json's epoch seconds hold ~0.24 us at today's epoch: times from it are that exact.
    assert est["recovery_ms"] == pytest.approx(1.5, abs=1e-3)  # resume 30 -> 31.5
    assert est["first_after_resume"] == "prober"  # its request at 31 ms
    assert est["restored_by"] == "prober"  # the answer at 31.5 acks data sent at 31
    assert est["ct_src_before"] == "ESTABLISHED:prober"
    assert est["ct_dst_resume"] == "ESTABLISHED:prober"
    assert est["ct_guest_end"] == "ESTABLISHED:prober"
    assert est["ct_dst_end"] == "absent"
    assert "ct_src_resume" not in est  # no such dump
    gf = {k[len("guest_first_") :]: v for k, v in row.items() if k.startswith("guest_first_")}
    assert gf["opened"] is True and gf["survived"] is True
    assert gf["stall_ms"] == pytest.approx(13.0, abs=1e-9)  # 19 -> 32
    assert gf["recovery_ms"] == pytest.approx(2.0, abs=1e-3)
    assert gf["first_after_resume"] == "guest" and gf["restored_by"] == "guest"
    assert gf["ct_src_before"] == "absent"
    assert gf["ct_dst_resume"] == "ESTABLISHED:guest"  # opened by the guest's packet
    # `late` was answered only while allowed and after migrating: it never opened, and
    # its survival is no number at all (not False).
    assert row["late_opened"] is False
    assert row["late_survived"] is None and row["late_stall_ms"] is None
    assert row["late_reset"] is None
    assert row["stateful_opened"] is False and row["stateful_flow_survived"] is None


def test_flow_whose_guest_never_answers_after_the_resume(tmp_path: Path) -> None:
    """The prober speaks first after the resume; nothing comes back: dropped at the
    destination (no state there). first_after_resume prober, restored_by none."""
    write_flows(tmp_path)
    rows = [r for r in FLOW_ROWS if r[0] == "established" and r[2] < 20]
    rows += [("established", 2, 25.0, None, ""), ("established", 3, 31.0, None, ""),
             ("established", 4, 45.0, None, "timeout")]  # fmt: skip
    lines = ["flow,seq,t_send_ns,t_reply_ns,event"]
    lines += [f"{f},{q},{ns(s)},{'' if r is None else ns(r)},{e}" for f, q, s, r, e in rows]
    (tmp_path / "flows.csv").write_text("\n".join(lines) + "\n")
    segs = [(s, q) for f, q, s, r, e in rows]
    ts = np.array([ns(s) for s, _ in segs] + [ns(1.2), ns(5.2)], dtype=np.int64)
    frames = np.concatenate(
        [tcp_frames(PROBER, VM, np.array([50007]), np.array([7]), np.array([1000 + 8 * q]),
                    np.array([77]), np.array([0x18])) for _, q in segs]
        + [tcp_frames(VM, PROBER, np.array([7]), np.array([50007]), np.array([77]),
                      np.array([1000 + 8 * k]), np.array([0x18])) for k in (1, 2)]
    )  # fmt: skip
    (tmp_path / "flows.pcap").write_bytes(pcap_bytes(ts, frames))
    row = attack.attack_metrics(tmp_path, FLOW_META)
    assert row["established_opened"] is True and row["established_survived"] is False
    assert row["established_first_after_resume"] == "prober"
    assert row["established_restored_by"] == "none"
    assert row["established_recovery_ms"] is None


def test_conntrack_listings_in_three_formats() -> None:
    text = (
        "tcp      6 431999 ESTABLISHED src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 src=2.2.2.2 "
        "dst=1.1.1.1 sport=2 dport=1 [ASSURED] mark=0 use=1\n"
        "[1700000000.123456]\tipv4     2 tcp      6 10 TIME_WAIT src=1.1.1.1 dst=2.2.2.2 "
        "sport=3 dport=2 src=2.2.2.2 dst=1.1.1.1 sport=2 dport=3 [ASSURED] mark=0 use=1\n"
        "-A -t 5 -u SEEN_REPLY -s 2.2.2.2 -d 1.1.1.1 -r 1.1.1.1 -q 2.2.2.2 -p tcp "
        "--sport 2 --dport 4 --reply-port-src 4 --reply-port-dst 2 --state CLOSE_WAIT\n"
        "icmp     1 29 src=1.1.1.1 dst=2.2.2.2 type=8 code=0 id=7 src=2.2.2.2 dst=1.1.1.1 "
        "type=0 code=0 id=7 mark=0 use=1\n"
        "conntrack v1.4.7 (conntrack-tools): 4 flow entries have been shown.\n"
    )
    entries = parse_conntrack(text)
    states = [("tcp", "ESTABLISHED"), ("tcp", "TIME_WAIT"), ("tcp", "CLOSE_WAIT"), ("icmp", None)]
    assert [(e["proto"], e["state"]) for e in entries] == states
    assert entries[0]["reply"] == {"src": "2.2.2.2", "dst": "1.1.1.1", "sport": "2", "dport": "1"}
    assert entries[2]["orig"] == {"src": "2.2.2.2", "dst": "1.1.1.1", "sport": "2", "dport": "4"}
    assert flow_entry(entries, "2.2.2.2", 2, 1) == "ESTABLISHED:prober"
    assert flow_entry(entries, "2.2.2.2", 2, 3) == "TIME_WAIT:prober"
    assert flow_entry(entries, "2.2.2.2", 2, 4) == "CLOSE_WAIT:guest"
    assert flow_entry(entries, "2.2.2.2", 2, None) == "ESTABLISHED:prober"
    assert flow_entry(entries, "2.2.2.2", 9, None) == "absent"


# --------------------------------------------------------------------------- across trials


def test_exact_binomial_bounds() -> None:
    # k = 0: 1 - 0.05^(1/n), which the rule of three (3/n) approximates for large n only.
    assert upper_bound(0, 5) == pytest.approx(1 - 0.05 ** (1 / 5), rel=1e-12)  # 0.4507
    assert upper_bound(0, 5) == pytest.approx(0.45072, abs=1e-5)
    assert 3 / 5 == 0.6  # the rule of three would say 60 % at n = 5
    assert upper_bound(0, 50_000) == pytest.approx(5.9914e-05, rel=1e-4)
    assert upper_bound(5, 5) == 1.0
    # k = 1 of 2: the exact 95 % interval is [1 - sqrt(0.975), sqrt(0.975)].
    low, high = clopper_pearson(1, 2)
    assert low == pytest.approx(1 - math.sqrt(0.975), rel=1e-9)
    assert high == pytest.approx(math.sqrt(0.975), rel=1e-9)
    assert clopper_pearson(0, 4) == (0.0, pytest.approx(1 - 0.025 ** (1 / 4), rel=1e-9))
    assert all(math.isnan(v) for v in clopper_pearson(0, 0))


def _trial(placement: str, rep: int, **cells) -> dict:
    row = {"trial_id": f"placement/{placement}-r{rep:02d}", "status": "ok",
           "experiment": "placement", "placement": placement,
           "agent_delay_ms": 200 if placement == "vmm-agent" else None}  # fmt: skip
    for k, v in cells.items():
        row[k] = v
        if k in attack_sides_older():
            row[attack_sides_older()[k]] = v
    return row


def attack_sides_older() -> dict[str, str]:
    return {"breach_switch_sent": "blocked_sent", "breach_switch_answered": "blocked_answered",
            "breach_switch_window_ms": "breach_window_ms",
            "breach_switch_window_hi_ms": "breach_window_hi_ms",
            "breach_switch_total_ms": "breaches_total_ms"}  # fmt: skip


def switch(sent, answered, window, hi, bound, gap, run) -> dict:
    return {"breach_switch_sent": sent, "breach_switch_answered": answered,
            "breach_switch_window_ms": window, "breach_switch_window_hi_ms": hi,
            "breach_switch_total_ms": window, "breach_switch_bound_ms": bound,
            "breach_switch_gap_max_ms": gap, "breach_switch_max_run_probes": run,
            "breach_switch_rate_hz": 1000}  # fmt: skip


def hand_trials() -> pd.DataFrame:
    rows = []
    for rep, bound in enumerate((1.0, 1.2, 1.1, 1.05, 1.3), start=1):
        rows.append(_trial("vm", rep, **switch(10_000, 0, 0.0, 0.0, bound, bound, 0),
                           established_opened=True, established_survived=True))  # fmt: skip
    for rep, lo in enumerate((200.0, 210.0, 220.0), start=1):
        rows.append(_trial("vmm-agent", rep,
                           **switch(10_000, int(lo) + 1, lo, lo + 2, lo + 2, 1.0, int(lo) + 1),
                           established_opened=False, established_survived=None))  # fmt: skip
    for rep, bound in enumerate((10.0, 20.0, 12.0), start=1):
        rows.append(_trial("vmm", rep, **switch(10_000, 0, 0.0, 0.0, bound, bound, 0),
                           established_opened=True, established_survived=False))  # fmt: skip
    rows.append(_trial("both", 1, **switch(1_000, 1, 0.0, 2.0, 2.0, 1.0, 1)))
    rows.append(_trial("both", 2, **switch(1_000, 0, 0.0, 0.0, 1.0, 1.0, 0)))
    return pd.DataFrame(rows)


def test_cells_state_breaches_and_bounds() -> None:
    table = attack_window_table(hand_trials(), resamples=999, seed=1)
    assert list(table["placement"]) == ["vm", "both", "vmm", "vmm-agent"]
    assert set(table["side"]) == {"switch"}
    cell = table.set_index("placement")
    vm = cell.loc["vm"]
    assert (vm["n"], vm["breached_trials"], vm["blocked_sent_total"]) == (5, 0, 50_000)
    assert vm["breached_upper"] == pytest.approx(1 - 0.05 ** (1 / 5), rel=1e-9)
    assert vm["answered_upper"] == pytest.approx(1 - 0.05 ** (1 / 50_000), rel=1e-9)
    assert vm["answered_rule_of_three"] == pytest.approx(6e-05)
    assert vm["bound_ms"] == 1.3 and vm["gap_max_ms"] == 1.3
    assert "0 of 50,000 answered" in vm["statement"]
    assert "0 of 5 trials breached (one-sided 95 % upper bound 45 % per trial)" in vm["statement"]
    assert "any exposure was shorter than 1.3 ms" in vm["statement"]
    assert "0.0 (CI 0–0)" not in vm["statement"]
    assert vm["established_n"] == 5 and vm["established_opened"] == 5

    agent = cell.loc["vmm-agent"]
    assert agent["breached_trials"] == 3 and agent["max_run_probes"] == 221
    assert agent["breached_ci_low"] == pytest.approx(0.025 ** (1 / 3), rel=1e-9)  # 0.292
    # Its observed windows (200, 210, 220) against the most vm could have had (its bounds,
    # mean 1.13): 208.87, every resample far above 0; and vm's observed 0 against its bounds.
    assert agent["excess_over_vm_ms"] == pytest.approx(210 - 1.13, abs=1e-9)
    assert agent["excess_over_vm_boot_low"] >= 200 - 1.3  # every resample far above 0
    assert agent["vm_excess_ms"] == pytest.approx(0 - 212.0, abs=1e-9)
    # The established flow never opened under vmm-agent: no survival number at all.
    assert agent["established_n"] == 0 and agent["established_opened"] == 0
    assert math.isnan(agent["established_survival"])

    vmm = cell.loc["vmm"]
    assert vmm["excess_over_vm_ms"] == pytest.approx(0 - 1.13, abs=1e-9)
    assert vmm["vm_excess_ms"] == pytest.approx(0 - 14.0, abs=1e-9)
    assert vmm["excess_over_vm_boot_high"] < 0 and vmm["vm_excess_boot_high"] < 0
    assert vmm["established_n"] == 3 and vmm["established_survived"] == 0

    both = cell.loc["both"]  # one trial breached by a single probe
    assert both["breached_trials"] == 1 and both["breach_window_ms_max"] == 0.0
    assert both["breached_ci_low"] == pytest.approx(1 - math.sqrt(0.975), rel=1e-9)
    assert "breached in 1 of 2 trials" in both["statement"]
    assert "no run of ≥ 2 consecutive probes answered; every exposure < 2.0 ms" in (
        both["statement"])  # fmt: skip
    assert "under 2.0 ms between the unanswered neighbours" in both["statement"]


def test_cells_report_the_allowed_port_outage_per_side() -> None:
    """A closed port default shows no breach but a longer allowed-port outage: the cell gives
    its mean (t CI), max and the hi bound; hand-worked: outages 300, 350, 400 ms (hi +10)."""
    rows = []
    for rep, outage in enumerate((300.0, 350.0, 400.0), start=1):
        row = _trial("vmm-agent", rep, **switch(10_000, 0, 0.0, 0.0, 1.0, 1.0, 0))
        row.update(port_default="closed", breach_dst_cotenant_sent=5_000,
                   breach_dst_cotenant_answered=0, breach_dst_cotenant_window_ms=0.0,
                   breach_dst_cotenant_window_hi_ms=0.0, breach_dst_cotenant_bound_ms=2.0,
                   breach_dst_cotenant_allowed_sent=500,
                   breach_dst_cotenant_allowed_answered=500 - int(outage / 10),
                   breach_dst_cotenant_allowed_outage_ms=outage,
                   breach_dst_cotenant_allowed_outage_hi_ms=outage + 10)  # fmt: skip
        rows.append(row)
    table = attack_window_table(pd.DataFrame(rows), resamples=99, seed=1)
    dst = table[table["side"] == "dst_cotenant"].iloc[0]
    assert dst["breached_trials"] == 0
    assert dst["allowed_outage_ms_mean"] == pytest.approx(350.0)
    from scipy import stats

    half = stats.t.ppf(0.975, 2) * 50.0 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n), sd 50
    assert dst["allowed_outage_ms_ci_t_low"] == pytest.approx(350.0 - half, rel=1e-9)
    assert (dst["allowed_outage_ms_max"], dst["allowed_outage_hi_ms_max"]) == (400.0, 410.0)
    assert ("the allowed port went unanswered for up to 400.0 ms (longest run per trial, mean "
            "350.0") in dst["statement"]  # fmt: skip


def test_flow_table_counts_survival_over_opened_flows_only() -> None:
    trials = pd.DataFrame([
        {"status": "ok", "experiment": "placement", "placement": "vmm",
         "established_opened": opened, "established_survived": survived,
         "established_stall_ms": stall, "established_restored_by": restored,
         "established_first_after_resume": "prober", "established_ct_dst_resume": ct}
        for opened, survived, stall, restored, ct in (
            (True, True, 210.0, "guest", "ESTABLISHED:guest"),
            (True, False, 5.0, "none", "absent"),
            (False, None, None, None, "absent"),
        )
    ])  # fmt: skip
    table = flow_table(trials)
    assert len(table) == 1
    row = table.iloc[0]
    assert (row["trials"], row["opened"], row["survived"]) == (3, 2, 1)
    assert row["survival"] == 0.5 and row["restored_guest"] == 1 and row["restored_none"] == 1
    assert (row["first_prober"], row["ct_dst_resume_entries"], row["ct_dst_resume_dumps"]) == (
        3, 1, 3)  # fmt: skip
    assert row["initiative"] == "prober" and bool(row["state_only"]) is True
    assert "opened in 2 of 3 trials; survived 1 of 2" in row["statement"]
    never = trials.assign(established_opened=False, established_survived=None)
    assert "did not open in any of 3 trials" in flow_table(never).iloc[0]["statement"]


def test_flow_table_tells_ovn_bindings_apart() -> None:
    """attack_window.csv has a row per ovn_binding; flow_survival.csv must too (the full grid
    runs ovn with multichassis and rebind: pooled, their flows would read as one cell)."""
    rows = [{"status": "ok", "experiment": "attack", "placement": "ovn", "ovn_binding": binding,
             "established_opened": True, "established_survived": survived}
            for binding, survived in (("multichassis", True), ("multichassis", True),
                                      ("rebind", False))]  # fmt: skip
    rows.append(
        {
            "status": "ok",
            "experiment": "attack",
            "placement": "vm",
            "established_opened": True,
            "established_survived": True,
        }
    )
    table = flow_table(pd.DataFrame(rows))
    cells = {(r["placement"], r["ovn_binding"]): (r["trials"], r["survived"])
             for _, r in table.iterrows()}  # fmt: skip
    assert cells == {("vm", ""): (1, 1), ("ovn", "multichassis"): (2, 2), ("ovn", "rebind"): (1, 0)}


def test_older_trials_table_gives_the_same_switch_numbers(tmp_path: Path) -> None:
    """A trials.csv from before issue 22 (no breach_switch_* columns) still gives its rows."""
    trials = hand_trials()
    older = trials.drop(columns=[c for c in trials.columns if c.startswith("breach_switch_")])
    new, old = (attack_window_table(t, resamples=199, seed=3) for t in (trials, older))
    for column in ("n", "breach_window_ms_mean", "blocked_answered_pct", "diff_vs_vm_ms",
                   "breached_trials"):  # fmt: skip
        assert list(new[column]) == list(old[column]), column
    assert old["bound_ms"].isna().all()
    json.dumps(old.to_dict(orient="records"), default=str)


# --------------------------------------------------------------------------- crafted truth

SHORT = {"lead_in_s": 1.0, "migration_s": 3.0, "settle_s": 1.5}
MODEL_CASES = [
    ("vm", None, {}),
    ("none", None, {}),
    ("vmm", None, {}),
    ("vmm-agent", 200, {"trigger": "resume"}),
    ("vmm-agent", 200, {"trigger": "resume", "tcp_loose": 0}),
    ("vmm-agent", 50, {"trigger": "incoming"}),
    ("vmm-agent", 1000, {"trigger": "pre"}),
    ("vmm-agent", 200, {"port_default": "closed"}),
    ("vmm-agent", 200, {"port_default": "closed", "tcp_loose": 0}),
    ("vmm-state", 200, {}),
    ("vmm-state", 200, {"port_default": "closed"}),
    ("both", None, {}),
    ("vmm-agent", 200, {"open_everywhere": False}),
]


@pytest.mark.parametrize(("placement", "delay", "model"), MODEL_CASES)
def test_crafted_issue22_trials_match_their_truth(
    tmp_path: Path, placement: str, delay: int | None, model: dict
) -> None:
    """Every side's and every flow's cells against the truth the generator computed from
    its model (migfw.trials.crafted_exposure), for each placement and factor level."""
    from migfw.measure.metrics import trial_metrics
    from migfw.trials.crafted import CraftedAttack, CraftedTrial, craft_placement_trial

    spec = CraftedTrial("attack/x-r01", 0.01, seed=5, **SHORT)
    truth = craft_placement_trial(spec, CraftedAttack(placement, delay, issue22=True, **model),
                                  tmp_path)  # fmt: skip
    row = trial_metrics(tmp_path)
    checked = 0
    for side, cells in truth["sides"].items():
        for key, value in cells.items():
            got = row[f"breach_{side}_{key}"]
            assert got == (pytest.approx(value, abs=1e-6) if isinstance(value, float) else value), (
                side, key)  # fmt: skip
            checked += 1
    for flow, cells in truth["flows"].items():
        for key, value in cells.items():
            if key == "ct":
                for dump, state in value.items():
                    assert row[f"{flow}_ct_{dump}"] == state, (flow, dump)
                    checked += 1
                continue
            column = "stateful_flow_survived" if (flow, key) == ("stateful", "survived") else (
                f"{flow}_{key}")  # fmt: skip
            expected = pytest.approx(value, abs=1e-3) if isinstance(value, float) else value
            assert row[column] == expected, (flow, key)
            checked += 1
    assert checked >= 50  # 3 sides x 17, and every opened flow's cells
    if "agent_installed_after_resume_ms" in truth:
        assert row["agent_installed_after_resume_ms"] == pytest.approx(
            truth["agent_installed_after_resume_ms"], abs=1e-3)  # fmt: skip
    assert row["nf_conntrack_tcp_loose"] == model.get("tcp_loose", 1)
    # What the model says, in words (docs/attack_window.md): the guest's own firewall or a
    # destination programmed before the guest runs lets nothing through; state moves with the
    # guest (vm, none) or with vmm-state; elsewhere only the guest speaking first with loose
    # tracking gets its flow back.
    sides = truth["sides"]
    opened = truth["flows"]["established"]["opened"]
    if placement in ("vm", "both", "vmm") or model.get("trigger") in ("pre", "incoming") or (
            model.get("port_default") == "closed"):  # fmt: skip
        assert all(not s["breached"] for s in sides.values())
    else:
        assert all(s["breached"] for s in sides.values())
    if not opened:
        assert row["established_survived"] is None and row["guest_first_survived"] is None
    elif placement in ("vm", "none", "vmm-state"):
        assert row["established_survived"] and row["guest_first_survived"]
        assert row["established_restored_by"] == "prober"
        assert row["guest_first_restored_by"] == "guest"
    else:
        assert row["established_survived"] is False
        assert row["guest_first_survived"] is (model.get("tcp_loose", 1) == 1)
    if model.get("port_default") == "closed":
        # Exposure became outage: the allowed port is dark from the resume to the install.
        outage = sides["dst_cotenant"]["allowed_outage_ms"]
        assert outage > delay and row["breach_dst_cotenant_allowed_outage_ms"] == outage


def test_crafted_sides_agree_with_tshark(tmp_path: Path) -> None:
    import shutil
    import subprocess

    from migfw.trials.crafted import CraftedAttack, CraftedTrial, craft_placement_trial

    if not shutil.which("tshark"):
        pytest.skip("tshark not installed")
    spec = CraftedTrial("attack/x-r01", 0.01, seed=2, **SHORT)
    truth = craft_placement_trial(spec, CraftedAttack("vmm-agent", 200, issue22=True), tmp_path)

    def count(pcap: str, flt: str) -> int:
        out = subprocess.run(["tshark", "-n", "-r", str(tmp_path / pcap), "-Y", flt, "-T",
                              "fields", "-e", "frame.number"], capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
        return len(out.split())

    dst = truth["sides"]["dst_cotenant"]
    answers = (f"ip.src == {VM} && tcp.srcport == 23 && tcp.dstport == 41023 && "
               "tcp.flags.ack == 1 && (tcp.flags.syn == 1 || tcp.flags.reset == 1)")  # fmt: skip
    assert count("attack_dst_cotenant.pcap", answers) == dst["answered"] > 0
    assert count("attack_dst_cotenant.pcap", "tcp.dstport == 23 && tcp.flags.syn == 1 && "
                 "tcp.flags.ack == 0") == dst["sent"]  # fmt: skip
    egress = truth["sides"]["egress"]
    assert count("attack_egress.pcap", f"ip.src == {VM} && tcp.dstport == 25") == egress["answered"]
    assert count("flows.pcap", "tcp.port == 13") > 0


def test_a_flow_that_ended_before_the_migration_did_not_open() -> None:
    """attack/vm-r05 of the full grid: guest_first timed out 19 s before the pause (a starved
    TCG guest); it was not established when the migration started, so it is not 'opened'."""
    from migfw.measure.flowstate import flow_opened

    send = np.array([1_000, 2_000, 3_000], dtype=np.int64) * 1_000_000  # 1, 2, 3 s
    reply = np.array([1_100, 2_100, -1], dtype=np.int64)
    reply[:2] *= 1_000_000
    flow = {"send": send, "reply": reply, "events": [(2, "timeout")],
            "sent_at": {0: int(send[0]), 1: int(send[1]), 2: int(send[2])}}  # fmt: skip
    assert flow_opened(flow, False, None, start_s=10.0) is False  # ended at 3 s, start 10 s
    assert flow_opened(flow, False, None, start_s=2.5) is True  # the timeout came after start
    assert flow_opened(dict(flow, events=[]), False, None, start_s=10.0) is True
