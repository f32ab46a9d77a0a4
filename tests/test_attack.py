"""The attack-window metrics against crafted captures whose truth is known by construction.

Hand-worked case (blocked port 23): probes 0..9 sent at t_i = T0 + i ms + (i mod 3) us,
i.e. 0, 1.001, 2.002, 3.000, 4.001, 5.002, 6.000, 7.001, 8.002, 9.000 ms.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from migfw.errors import MigfwError
from migfw.measure import attack
from migfw.measure.capture import read_tcp
from migfw.measure.metrics import trial_metrics
from migfw.trials.crafted import (
    ACK,
    RST,
    SYN,
    CraftedAttack,
    CraftedTrial,
    craft_placement_trial,
    craft_trial,
    write_attack,
)

T0 = 1_700_000_000_000_000_000
VM = "10.231.0.10"
SENDS = [(23, i, T0 + i * 1_000_000 + (i % 3) * 1000) for i in range(10)]
SENDS += [(22, i, T0 + i * 1_000_000 + 500_000) for i in range(10)]
META = {
    "attack": {"address": VM, "blocked_port": 23, "allowed_port": 22, "rate_hz": 1000},
    "migration": {"start": T0 / 1e9, "end": (T0 + 10_000_000) / 1e9},
    "phases": {"pause": (T0 + 5_500_000) / 1e9, "resume": (T0 + 6_500_000) / 1e9},
}


def t(i: int) -> int:
    return SENDS[i][2]


def metrics(tmp_path: Path, answers: list, meta: dict | None = None) -> dict:
    write_attack(tmp_path, VM, SENDS, answers)
    return attack.attack_metrics(tmp_path, meta or META)


def test_two_runs_duplicates_reordered_late_and_unlogged(tmp_path: Path) -> None:
    answers = [
        (t(4) + 300_000, 23, 4, SYN | ACK),  # reordered: index 4's answer captured first
        (t(2) + 300_000, 23, 2, RST | ACK),
        (t(3) + 300_000, 23, 3, SYN | ACK),
        (t(3) + 900_000, 23, 3, SYN | ACK),  # duplicate (retransmitted SYN-ACK)
        (T0 + 5_000_000_000, 23, 7, RST | ACK),  # answered 5 s later, after the trial's window
        (t(9) + 300_000, 23, 42, SYN | ACK),  # answers a probe that was never sent: ignored
        (t(8) + 300_000, 23, 8, ACK),  # a bare ACK is no answer to a SYN
        *[(t(i) + 800_000, 22, i, SYN | ACK) for i in range(10)],  # allowed port: no breach
    ]
    m = metrics(tmp_path, answers)
    assert m["blocked_sent"] == 10 and m["blocked_captured"] == 10
    assert m["blocked_answered"] == 4  # 2, 3, 4, 7
    assert m["allowed_sent"] == 10 and m["allowed_answered"] == 10
    assert m["breach_runs"] == 2
    # Longest run 2..4: 4.001 - 2.002 ms; bounds: t5 - t1 = 5.002 - 1.001 ms.
    assert m["breach_window_ms"] == pytest.approx(1.999, abs=1e-9)
    assert m["breach_window_lo_ms"] == pytest.approx(1.999, abs=1e-9)
    assert m["breach_window_hi_ms"] == pytest.approx(4.001, abs=1e-9)
    assert m["breaches_total_ms"] == pytest.approx(1.999 + 0.0, abs=1e-9)
    # Run 2..4 starts before the pause (5.5 ms), run 7 after the resume (6.5 ms).
    assert m["breach_position"] == "before_switchover;after_resume"


def test_single_answered_probe_at_the_edge_of_the_log(tmp_path: Path) -> None:
    m = metrics(tmp_path, [(t(0) + 300_000, 23, 0, RST | ACK)])
    assert (m["blocked_answered"], m["breach_runs"]) == (1, 1)
    assert m["breach_window_ms"] == 0.0
    assert m["breach_window_hi_ms"] == pytest.approx(1.001, abs=1e-9)  # t1 - t0 (edge: t0)


def test_single_probe_inside_the_blackout(tmp_path: Path) -> None:
    meta = dict(META, phases={"pause": (T0 + 5_500_000) / 1e9, "resume": (T0 + 7_500_000) / 1e9})
    m = metrics(tmp_path, [(t(6) + 300_000, 23, 6, SYN | ACK)], meta)
    assert m["breach_window_hi_ms"] == pytest.approx(7.001 - 5.002, abs=1e-9)  # t7 - t5
    assert m["breach_position"] == "blackout"


def test_no_breach_and_all_breaches(tmp_path: Path) -> None:
    m = metrics(tmp_path, [])
    assert (m["blocked_answered"], m["breach_runs"], m["breach_window_ms"]) == (0, 0, 0.0)
    assert m["breach_position"] == "none"
    m = metrics(tmp_path / "all", [(t(i) + 1, 23, i, RST | ACK) for i in range(10)])
    assert m["breach_window_ms"] == pytest.approx(9.0, abs=1e-9)
    assert m["breach_window_hi_ms"] == pytest.approx(9.0, abs=1e-9)  # both edges of the log


def test_unsent_index_splits_a_run(tmp_path: Path) -> None:
    sends = [s for s in SENDS if not (s[0] == 23 and s[1] == 5)]  # probe 5 never sent
    write_attack(tmp_path, VM, sends, [(t(i) + 1, 23, i, RST | ACK) for i in (3, 4, 6, 7, 8)])
    m = attack.attack_metrics(tmp_path, META)
    # Runs 3..4 (1.001 ms) and 6..8 (2.002 ms): the longest is 6..8, bounded by t5? no: by
    # itself on the left (5 was never sent) and t9 on the right.
    assert m["breach_runs"] == 2
    assert m["breach_window_ms"] == pytest.approx(2.002, abs=1e-9)
    assert m["breach_window_hi_ms"] == pytest.approx(9.000 - 6.000, abs=1e-9)
    assert m["breaches_total_ms"] == pytest.approx(1.001 + 2.002, abs=1e-9)


def test_trials_without_attack_data_get_empty_cells(tmp_path: Path) -> None:
    craft_trial(CraftedTrial("i0.5-r01", 0.5, migration_s=3), tmp_path)
    row = trial_metrics(tmp_path)
    for column in attack.ATTACK_COLUMNS:
        assert row.get(column) is None


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("attack.pcap", b"hello\n", "not a pcap"),
        ("attack_sendlog.csv", b"port,index\n23,0\n", "header must be"),
        ("attack_sendlog.csv", b"port,index,t_sched_ns,t_send_ns\n23,0,x,1\n", "line 2"),
        ("flows.csv", b"flow,seq,t_send_ns,t_reply_ns,event\nWeird-1,0,1,2,\n", "flow name"),
        ("flows.csv", b"flow,seq,t_send_ns,t_reply_ns,event\nstateful,0,1,2.5,\n", "integers"),
    ],
)
def test_corrupt_files_give_one_line_naming_the_file(
    tmp_path: Path, name: str, content: bytes, problem: str
) -> None:
    write_attack(tmp_path, VM, SENDS, [])
    (tmp_path / name).write_bytes(content)
    with pytest.raises(MigfwError) as err:
        attack.attack_metrics(tmp_path, META)
    text = str(err.value)
    assert name in text and problem in text and "\n" not in text


def test_pcap_without_sendlog_is_an_error(tmp_path: Path) -> None:
    write_attack(tmp_path, VM, SENDS, [])
    (tmp_path / "attack_sendlog.csv").unlink()
    with pytest.raises(MigfwError, match="attack_sendlog.csv: missing"):
        attack.attack_metrics(tmp_path, META)


def test_flows_hand_worked(tmp_path: Path) -> None:
    end_s = META["migration"]["end"]
    after = T0 + 20_000_000  # after the migration's end
    (tmp_path / "flows.csv").write_text(
        "flow,seq,t_send_ns,t_reply_ns,event\n"
        f"stateful,0,{T0},{T0 + 100},\n"
        f"stateful,1,{T0 + 10_000_000},,\n"  # unanswered: the gap spans it
        f"stateful,2,{after},{after + 300},\n"
        f"established,0,{T0},{T0 + 100},\n"
        f"established,1,{T0 + 3_000_000},{T0 + 3_000_100},\n"
        f"established,2,{after},,reset\n"
    )
    # Both flows' first requests (at T0) precede the migration's start: they opened.
    meta = dict(META, migration={"start": (T0 + 1_000_000) / 1e9, "end": end_s})
    m = attack.attack_metrics(tmp_path, meta)
    assert end_s < after / 1e9
    assert m["stateful_opened"] is True and m["established_opened"] is True
    assert m["stateful_flow_survived"] is True and m["stateful_reset"] is False
    assert m["stateful_stall_ms"] == pytest.approx(20.0002, abs=1e-9)
    assert m["established_survived"] is False and m["established_reset"] is True
    assert m["established_stall_ms"] == pytest.approx(3.0, abs=1e-9)


SHORT = {"lead_in_s": 1.0, "migration_s": 3.0, "settle_s": 1.0}


@pytest.mark.parametrize(
    ("placement", "delay", "vmm_ms"),
    [("none", None, 0.0), ("vm", None, 0.0), ("vmm-agent", 200, 0.0), ("vmm-agent", 0, 0.0),
     ("vmm", None, 0.0), ("vmm", None, 50.0)],
)  # fmt: skip
def test_crafted_placements_match_their_truth(
    tmp_path: Path, placement: str, delay: int | None, vmm_ms: float
) -> None:
    spec = CraftedTrial("x", 0.01, seed=3, **SHORT)
    truth = craft_placement_trial(
        spec, CraftedAttack(placement, delay, vmm_window_ms=vmm_ms), tmp_path
    )
    row = trial_metrics(tmp_path)
    for key in ("blocked_sent", "blocked_answered", "breach_runs"):
        assert row[key] == truth[key], key
    for key in ("breach_window_ms", "breach_window_hi_ms", "breaches_total_ms"):
        assert row[key] == pytest.approx(truth[key], abs=1e-9), key
    assert row["breach_window_lo_ms"] == row["breach_window_ms"]
    assert row["placement"] == placement
    assert row["agent_delay_ms"] == (delay if placement == "vmm-agent" else None)
    assert row["established_survived"] == truth["established_survived"]
    assert row["established_stall_ms"] == pytest.approx(truth["established_stall_ms"], abs=1e-9)
    assert row["stateful_flow_survived"] == truth["stateful_survived"]
    positions = sorted(set(truth["breach_positions"]))
    assert sorted(filter(None, row["breach_position"].replace("none", "").split(";"))) == positions
    sent = truth["blocked_sent"]
    if placement == "none":  # every probe answered except those reaching the paused guest
        pause_ms = (truth["pause_end"] - truth["pause_start"]) * 1e3
        assert sent - row["blocked_answered"] == pytest.approx(pause_ms, abs=1)
        assert row["blocked_answered"] / sent >= 0.9
        assert row["breach_runs"] == 2
    elif placement == "vm" or (placement == "vmm" and vmm_ms == 0):
        assert row["blocked_answered"] == 0 and row["breach_window_ms"] == 0.0
    else:  # open from resume for lag + delay (vmm-agent) or vmm_ms: 1 ms probe spacing
        open_ms = 5.0 + delay if placement == "vmm-agent" else vmm_ms
        assert open_ms - 1.1 <= row["breach_window_ms"] <= open_ms
        assert row["breach_window_hi_ms"] <= open_ms + 1.1
        assert row["breach_position"] == "after_resume"


def test_tcp_reader_agrees_with_tshark(tmp_path: Path) -> None:
    spec = CraftedTrial("x", 0.01, seed=5, **SHORT)
    craft_placement_trial(spec, CraftedAttack("vmm-agent", 200), tmp_path)
    pcap = tmp_path / "attack.pcap"
    seg = read_tcp(pcap, VM)
    answered, syns, answers = attack.answered_indices(seg, 23)
    if not shutil.which("tshark"):
        pytest.skip("tshark not installed")

    def count(display_filter: str) -> int:
        out = subprocess.run(
            ["tshark", "-n", "-r", str(pcap), "-Y", display_filter, "-T", "fields", "-e",
             "tcp.ack_raw"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        return len(out.split())

    assert syns == count("tcp.dstport == 23 && tcp.flags.syn == 1 && tcp.flags.ack == 0")
    assert answers == count(
        f"ip.src == {VM} && tcp.srcport == 23 && tcp.flags.ack == 1"
        " && (tcp.flags.syn == 1 || tcp.flags.reset == 1)"
    )
    assert seg.tcp_packets == count("tcp")
    assert len(answered) == answers  # one answer per probe in the model


def test_tcp_reader_other_link_types(tmp_path: Path) -> None:
    """The same segments through raw-IP (link type 101) and pcapng containers."""
    write_attack(tmp_path, VM, SENDS, [(t(i) + 1, 23, i, RST | ACK) for i in (1, 2)])
    eth = read_tcp(tmp_path / "attack.pcap", VM)
    data = (tmp_path / "attack.pcap").read_bytes()
    # Rewrite: link type 101 and each record without its 14-byte Ethernet header.
    header, body, out = bytearray(data[:24]), data[24:], bytearray()
    header[20:24] = (101).to_bytes(4, "little")
    pos = 0
    while pos < len(body):
        caplen = int.from_bytes(body[pos + 8 : pos + 12], "little") - 14
        rec = bytearray(body[pos : pos + 16])
        rec[8:12] = rec[12:16] = caplen.to_bytes(4, "little")
        out += rec + body[pos + 16 + 14 : pos + 16 + 14 + caplen]
        pos += 16 + 14 + caplen
    raw = tmp_path / "raw.pcap"
    raw.write_bytes(bytes(header) + bytes(out))
    for other in [raw] + ([tmp_path / "ng.pcapng"] if shutil.which("editcap") else []):
        if other.suffix == ".pcapng":
            subprocess.run(["editcap", "-F", "pcapng", str(raw), str(other)], check=True)
        seg = read_tcp(other, VM)
        assert np.array_equal(seg.ts_ns, eth.ts_ns)
        assert np.array_equal(seg.ack, eth.ack) and np.array_equal(seg.flags, eth.flags)
        assert np.array_equal(seg.dport, eth.dport) and np.array_equal(seg.to_target, eth.to_target)


def test_truth_json_written(tmp_path: Path) -> None:
    spec = CraftedTrial("x", 0.01, seed=1, **SHORT)
    craft_placement_trial(spec, CraftedAttack("none"), tmp_path)
    truth = json.loads((tmp_path / "truth.json").read_text())
    meta = json.loads((tmp_path / "trial.json").read_text())
    assert truth["placement"] == "none" and meta["firewall"]["placement"] == "none"
    assert meta["breach_position"] == ["before_switchover", "after_resume"]
    assert attack.trial_breach_position(tmp_path, meta) == meta["breach_position"]
    assert {"attack.pcap", "attack_sendlog.csv", "flows.csv"} <= {
        p.name for p in tmp_path.iterdir()
    }


def test_trial_breach_position_for_trial_json(tmp_path: Path) -> None:
    write_attack(tmp_path, VM, SENDS, [(t(i) + 1, 23, i, RST | ACK) for i in (2, 7)])
    assert attack.trial_breach_position(tmp_path, META) == ["before_switchover", "after_resume"]
    write_attack(tmp_path / "b", VM, SENDS, [])
    assert attack.trial_breach_position(tmp_path / "b", META) == "none"


def test_attack_window_table_hand_worked() -> None:
    import pandas as pd

    from migfw.measure.attackstats import attack_window_table, wilson

    rows = []
    for placement, windows, survived in (
        ("vm", [0.0, 0.0, 0.0], [True, True, True]),
        ("vmm-agent", [200.0, 210.0, 220.0], [False, False, True]),
    ):
        for w, s in zip(windows, survived, strict=True):
            rows.append(
                {"status": "ok", "experiment": "placement", "placement": placement,
                 "agent_delay_ms": 200 if placement == "vmm-agent" else None,
                 "blocked_sent": 100, "blocked_answered": 10 if w else 0,
                 "breach_window_ms": w, "breaches_total_ms": w,
                 "established_survived": s, "stateful_flow_survived": True}
            )  # fmt: skip
    rows.append({"status": "ok", "experiment": "thesis", "placement": "vm", "blocked_sent": None})
    table = attack_window_table(pd.DataFrame(rows), resamples=999, seed=1)
    assert list(table["placement"]) == ["vm", "vmm-agent"]  # the thesis trial has no attack data
    agent = table.iloc[1]
    assert agent["n"] == 3 and agent["breach_window_ms_mean"] == pytest.approx(210.0)
    assert agent["breach_window_ms_sd"] == pytest.approx(10.0)
    # t CI: 210 ± t(0.975, 2) * 10 / sqrt(3) = 210 ± 24.841
    assert agent["breach_window_ms_ci_t_low"] == pytest.approx(210 - 24.8414, abs=1e-3)
    assert agent["blocked_answered_pct"] == pytest.approx(10.0)
    assert agent["established_survived"] == 1 and agent["established_survival"] == pytest.approx(
        1 / 3
    )
    # Wilson 95 % for 1/3: 0.0615 .. 0.7923 (hand-computed with z = 1.95996)
    assert agent["established_wilson_low"] == pytest.approx(0.06149, abs=1e-4)
    assert agent["established_wilson_high"] == pytest.approx(0.79234, abs=1e-4)
    assert all(v != v for v in wilson(0, 0))  # NaN for n = 0
    assert agent["diff_vs_vm_ms"] == pytest.approx(210.0)
    assert 200.0 <= agent["diff_vs_vm_boot_low"] <= agent["diff_vs_vm_boot_high"] <= 220.0
    vm = table.iloc[0]
    assert (vm["diff_vs_vm_ms"], vm["diff_vs_vm_boot_low"]) == (0.0, 0.0)


def test_verdict_sentence_follows_the_numbers(tmp_path: Path) -> None:
    import pandas as pd

    from migfw.measure.attackstats import COLUMNS
    from migfw.paper.compare import attack_window_headline

    def verdict():
        return attack_window_headline(tmp_path / "attack_window.csv")[0]

    assert "no placement trials" in verdict().measured
    # An attack_window.csv from before issue 22 (no bounds): the observed windows decide.
    base = dict.fromkeys(COLUMNS, float("nan"))
    base.update(experiment="placement", side="switch", n=3, established_n=3,
                established_survived=3, breach_window_ms_mean=0.0)  # fmt: skip
    rows = [
        dict(base, placement="vm", diff_vs_vm_ms=0.0),
        dict(base, placement="vmm", breach_window_ms_mean=0.0,
             diff_vs_vm_ms=0.0, diff_vs_vm_boot_low=0.0, diff_vs_vm_boot_high=0.0),
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "attack_window.csv", index=False)
    why = verdict().why
    assert "No difference is shown against vmm" in why and "do not support" in why
    assert "From the default run (experiment `placement`)" in verdict().measured
    agent = dict(base, placement="vmm-agent", agent_delay_ms=200, breach_window_ms_mean=205.0)
    agent.update(diff_vs_vm_ms=205.0, diff_vs_vm_boot_low=204.0, diff_vs_vm_boot_high=206.0)
    rows.append(agent)
    pd.DataFrame(rows).to_csv(tmp_path / "attack_window.csv", index=False)
    why = verdict().why
    assert "smaller than under vmm-agent (delay 200 ms)" in why and "only for some" in why
    # With bounds: vmm-agent's windows beyond the most vm could have had; vmm's zero windows
    # against vm's bound (and vm's zeros against vmm's): no difference, whatever the sign.
    bounded = dict(breached_trials=0, breached_upper=0.45, bound_ms=2.9)
    rows = [
        dict(rows[0], **bounded),
        dict(
            rows[1],
            **dict(bounded, bound_ms=22.5),
            excess_over_vm_ms=-2.0,
            excess_over_vm_boot_low=-2.9,
            excess_over_vm_boot_high=-1.0,
            vm_excess_ms=-15.0,
            vm_excess_boot_low=-22.5,
            vm_excess_boot_high=-9.0,
        ),
        dict(
            agent,
            breached_trials=3,
            breach_window_ms_min=200.0,
            breach_window_ms_max=210.0,
            breach_window_hi_ms_max=212.0,
            excess_over_vm_ms=203.0,
            excess_over_vm_boot_low=201.0,
            excess_over_vm_boot_high=206.0,
            vm_excess_ms=-207.0,
            vm_excess_boot_low=-212.0,
            vm_excess_boot_high=-202.0,
        ),
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "attack_window.csv", index=False)
    row = verdict()
    assert "never breached (0/3 trials breached (≤ 45 % per trial, every exposure < 2.9 ms))" in (
        row.why
    )
    assert "smaller than under vmm-agent (delay 200 ms) (203.0 ms beyond vm's bound" in row.why
    assert "No difference is shown against vmm (" in row.why
    assert "vmm-agent (delay 200 ms): 3/3 trials breached, window 200.0–210.0 ms" in row.measured
    assert "0.0 (CI 0–0)" not in row.measured + row.why
    # The report's landing page: valid reStructuredText (a warning would stop docutils).
    from docutils.core import publish_parts

    from migfw.paper.compare import verdict_rst

    html = publish_parts(verdict_rst(row), writer_name="html",
                         settings_overrides={"halt_level": 2})["html_body"]  # fmt: skip
    assert "never breached" in html and "3/3 trials breached" in html
    pd.DataFrame([dict(r, experiment="attack") for r in rows] + rows).to_csv(
        tmp_path / "attack_window.csv", index=False
    )
    assert "From the full grid (config/attack.yaml, experiment `attack`)" in verdict().measured
    # A grid (> 6 VMM-level cells): counts, with the deciding cells named and the breach-free
    # ones that show no difference counted as such.
    grid = [rows[0], rows[2]] + [
        dict(rows[1], trigger=t, port_default=d) for t in ("pre", "incoming", "resume")
        for d in ("open", "closed")
    ]  # fmt: skip
    pd.DataFrame(grid).to_csv(tmp_path / "attack_window.csv", index=False)
    why = verdict().why
    assert ("Against 7 VMM-level cells: smaller than 1, larger than 0, no difference shown for "
            "6 (6 of them never breached either).") in why  # fmt: skip
    assert "It is smaller than under vmm-agent (delay 200 ms) (203.0 ms beyond vm's bound" in why


def test_cli_craft_attack_window_and_figures(tmp_path: Path, capsys) -> None:
    """migfw craft --placement, trial-metrics, collect, attack-window, the figures."""
    from migfw.cli import main

    metrics_files = []
    for placement, delays in (("vm", [0]), ("vmm-agent", [0, 100])):
        for delay in delays:
            for rep in (1, 2):
                name = f"{placement}-d{delay}-r{rep}"
                folder = tmp_path / "trials" / name
                # One id per trial: two folders with one trial_id are refused (issue 19).
                args = ["craft", "--trial", f"{name[:-3]}-i0.5-r0{rep}", "--out", str(folder)]
                args += ["--placement", placement, "--agent-delay-ms", str(delay)]
                args += ["--experiment", "placement", "--rate-hz", "200"]
                assert main(args) == 0
                out = tmp_path / f"{name}.json"
                assert main(["trial-metrics", str(folder), "--out", str(out)]) == 0
                metrics_files.append(str(out))
    trials, table = tmp_path / "trials.csv", tmp_path / "attack_window.csv"
    assert main(["collect", *metrics_files, "--out", str(trials)]) == 0
    assert main(["attack-window", str(trials), "--out", str(table), "--resamples", "99"]) == 0
    import pandas as pd

    aw = pd.read_csv(table)
    assert list(zip(aw["placement"], aw["agent_delay_ms"].fillna(-1), strict=True)) == [
        ("vm", -1),
        ("vmm-agent", 0),
        ("vmm-agent", 100),
    ]
    # 200 Hz probes: the window opens for 5 ms (+ delay) after resume, probes 5 ms apart.
    agent0, agent100 = aw.iloc[1], aw.iloc[2]
    assert agent0["breach_window_ms_mean"] <= 5.0
    assert 100.0 <= agent100["breach_window_ms_mean"] <= 105.0
    assert agent100["diff_vs_vm_ms"] == pytest.approx(agent100["breach_window_ms_mean"])
    png = tmp_path / "aw.png"
    assert main(["fig-attack-window", str(trials), "--table", str(table), "--out", str(png)]) == 0
    assert png.stat().st_size > 0 and png.with_suffix(".svg").exists()
    timeline = tmp_path / "tl.png"
    folder = tmp_path / "trials" / "vmm-agent-d100-r1"
    assert main(["fig-timeline", str(folder), "--out", str(timeline)]) == 0
    assert timeline.stat().st_size > 0


def _tcp(sport: int, dport: int, seq: int, ack: int, flags: int) -> bytes:
    import struct

    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 1024, 0, 0)


@pytest.mark.parametrize("case", ["sll-vlan-v6", "vxlan-v4", "gre-v6-in-v4", "cut"])
def test_tcp_reader_through_encapsulations_and_ipv6(tmp_path: Path, case: str) -> None:
    """TCP probes and answers inside what the echo reader decapsulates (tests/pcapcraft)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import pcapcraft as pc

    v6 = case in ("sll-vlan-v6", "gre-v6-in-v4")
    vm, attacker = ("2001:db8:5::10", "2001:db8:5::66") if v6 else (VM, "10.231.0.66")
    ip = pc.ipv6 if v6 else pc.ipv4
    packets = [
        ip(attacker, vm, 6, _tcp(40023, 23, 7, 0, SYN)),
        ip(vm, attacker, 6, _tcp(23, 40023, 99, 8, RST | ACK)),
        ip(vm, attacker, 6, _tcp(22, 40022, 5, 8, SYN | ACK)),  # other port
        ip(attacker, "2001:db8:5::99" if v6 else "10.231.0.99", 6, _tcp(1, 23, 0, 0, SYN)),
    ]
    if case == "sll-vlan-v6":
        frames, linktype = [pc.frame(113, p, vlans=(0x8100,)) for p in packets], 113
    elif case == "vxlan-v4":
        frames = [pc.ether(pc.underlay(17, pc.vxlan(pc.ether(p)))) for p in packets]
        linktype = 1
    elif case == "gre-v6-in-v4":
        frames, linktype = [pc.ether(pc.underlay(47, pc.gre(p, 0x86DD))) for p in packets], 1
    else:  # snaplen cut inside the TCP header of the answer
        frames = [pc.ether(p) for p in packets]
        frames[1] = frames[1][: 14 + 20 + 10]
        linktype = 1
    path = pc.write_pcap(
        tmp_path / "a.pcap", [(T0 + i, f) for i, f in enumerate(frames)], linktype=linktype
    )
    seg = read_tcp(path, vm)
    assert seg.tcp_packets == 4 - (case == "cut")
    if case == "cut":
        assert seg.cut_packets == 1 and len(seg) == 2
        return
    assert len(seg) == 3  # the SYN to another address is not the VM's
    assert list(seg.to_target) == [True, False, False]
    assert (int(seg.seq[0]), int(seg.ack[1]), int(seg.flags[1])) == (7, 8, RST | ACK)
    answered, syns, answers = attack.answered_indices(seg, 23)
    assert list(answered) == [7] and (syns, answers) == (1, 1)
