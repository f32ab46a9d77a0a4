"""One real trial (placement vm) with the attacker and the flows: every SYN of
attack_sendlog.csv is in attack.pcap (tshark), the guest firewall lets no blocked probe
through, the allowed port answers, and the stateful flow survives the migration with a stall
of about the downtime.

Needs root, QEMU and libvirtd (skipped otherwise). Its own prefix and subnets (override with
MIGFW_ATTACK_TEST_NET="prefix,subnet,migration_subnet" when another testbed uses them).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest
from testbedcfg import local_config, skip_reason

REPO = Path(__file__).resolve().parents[1]
PREFIX, SUBNET, MIGRATION = (
    os.environ.get("MIGFW_ATTACK_TEST_NET") or "mfwa,10.231.40.0/24,10.231.41.0/30"
).split(",")

pytestmark = [pytest.mark.testbed, pytest.mark.slow]


@pytest.fixture
def testbed_cfg(tmp_path: Path):
    reason = skip_reason(("tshark", "apt-get"))
    if reason:
        pytest.skip(reason)
    from migfw.testbed.local import LocalTestbed

    cfg = local_config(PREFIX, tmp_path / "state", SUBNET, MIGRATION)
    try:
        yield cfg
    finally:
        LocalTestbed(cfg).down(quiet=True)


def tshark(pcap: Path, display_filter: str, *fields: str) -> list[list[str]]:
    cmd = ["tshark", "-r", str(pcap), "-o", "tcp.relative_sequence_numbers:FALSE",
           "-Y", display_filter, "-T", "fields"]  # fmt: skip
    for field in fields or ("frame.number",):
        cmd += ["-e", field]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def test_vm_trial_attack_capture_and_flows(testbed_cfg, tmp_path: Path) -> None:
    from migfw.testbed.local import LocalTestbed, list_netns
    from migfw.testbed.trial import run_trial

    out = tmp_path / "trials" / "placement" / "vm-r01"
    meta = run_trial(testbed_cfg, "placement/vm-r01", 0.01, out, experiment="placement",
                     factors={"placement": "vm"})  # fmt: skip
    assert meta["status"] == "ok", meta["failure"]
    bed = LocalTestbed(testbed_cfg)
    vm, attacker = bed.vm_address, bed.attacker_address
    attack = meta["attack"]
    assert attack["address"] == vm and attack["attacker"] == attacker
    assert attack["blocked_port"] == 23
    assert attack["allowed_port"] == 22 and attack["rate_hz"] == 1000

    # Every logged SYN is in the capture, by port and sequence number (= index) - tshark.
    with open(out / "attack_sendlog.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["port", "index", "t_sched_ns", "t_send_ns"]
    logged = {(int(r[0]), int(r[1])) for r in rows[1:]}
    syns = tshark(out / "attack.pcap",
                  f"ip.src=={attacker} && ip.dst=={vm} && tcp.flags==0x002",
                  "tcp.dstport", "tcp.seq")  # fmt: skip
    captured = {(int(p), int(s)) for p, s in syns}
    assert len(syns) == len(logged) == len(rows) - 1  # no duplicates, nothing missing
    assert captured == logged
    sender = attack["sender"]
    blocked_sent = sender["sent_per_port"]["23"]
    print(f"attacker: {sender['sent_per_port']} SYNs at {sender['achieved_rate_hz']} Hz, "
          f"lateness p99 {sender['lateness_p99_us']} us, allowed answered "
          f"{sender['allowed_answers']}")  # fmt: skip
    probed_s = meta["lead_in_s"] + meta["settle_s"] + meta["hypervisor"]["total_ms"] / 1000
    assert blocked_sent >= 0.9 * 1000 * probed_s  # ~1 kHz for the whole trial

    # Placement vm: the guest's firewall answers no blocked probe, not even while migrating.
    assert tshark(out / "attack.pcap", f"ip.src=={vm} && tcp.srcport==23") == []
    assert meta["breaches"] == [] and meta["breach_position"] == "none"
    assert sender["allowed_answers"] > 0  # the allowed port is reachable (availability)

    # The stateful flow survives with a stall of about the downtime (TCP retransmission
    # timers add up to a few hundred ms on top).
    downtime = meta["hypervisor"]["downtime_ms"]
    with open(out / "flows.csv", newline="") as handle:
        flows = list(csv.DictReader(handle))
    stateful = [r for r in flows if r["flow"] == "stateful"]
    assert len(stateful) >= 0.8 * 100 * probed_s
    assert not any(r["event"] for r in stateful) and stateful[-1]["t_reply_ns"]
    replies = sorted(int(r["t_reply_ns"]) for r in stateful if r["t_reply_ns"])
    stall = max(b - a for a, b in zip(replies, replies[1:], strict=False)) / 1e6
    summary = meta["flows"]
    print(f"downtime {downtime} ms; stateful stall {stall:.0f} ms; established "
          f"{summary['established']}")  # fmt: skip
    assert summary["stateful"]["survived"] and summary["stateful"]["longest_stall_ms"] == stall
    assert 0.5 * downtime - 50 <= stall <= downtime + 2000
    assert summary["temporary_rule"]["where"] == "guest"
    assert "migfw-temporary" not in (out / "ruleset_before.nft").read_text()
    assert json.loads((out / "trial.json").read_text())["flows"]["connected"] == {
        "stateful": True, "established": True}  # fmt: skip
    # The attack-window analysis reads these files the same way.
    from migfw.measure.attack import attack_metrics

    row = attack_metrics(out, meta)
    assert row["blocked_sent"] == row["blocked_captured"] == blocked_sent
    assert row["blocked_answered"] == 0 and row["breach_window_ms"] == 0.0
    assert row["allowed_answered"] == sender["allowed_answers"]
    assert row["stateful_flow_survived"] is True and row["stateful_stall_ms"] == stall
    bed.down(quiet=True)
    assert list_netns(PREFIX) == []
