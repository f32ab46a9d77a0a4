"""One real trial (placement vm) with the attacker and the flows: every SYN of
attack_sendlog.csv is in attack.pcap (tshark), the guest firewall lets no blocked probe
through, the allowed port answers, and the stateful flow survives the migration with a stall
of about the downtime.

Needs root, QEMU and libvirtd (skipped otherwise). Its own prefix and subnets (override with
MIGFW_ATTACK_TEST_NET="prefix,subnet,migration_subnet" when another testbed uses them).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from testbedcfg import local_testbed, own_net
from trialchecks import check_attack, check_flows, check_no_breach

REPO = Path(__file__).resolve().parents[1]
NET = own_net("MIGFW_ATTACK_TEST_NET", "mfwa,10.231.40.0/24,10.231.41.0/30")

pytestmark = [pytest.mark.testbed, pytest.mark.slow]


@pytest.fixture
def testbed_cfg(tmp_path: Path):
    with local_testbed(NET, tmp_path / "state", ("tshark", "apt-get")) as cfg:
        yield cfg


def test_vm_trial_attack_capture_and_flows(testbed_cfg, tmp_path: Path) -> None:
    from migfw.testbed.local import LocalTestbed, list_netns
    from migfw.testbed.trial import run_trial

    out = tmp_path / "trials" / "placement" / "vm-r01"
    meta = run_trial(testbed_cfg, "placement/vm-r01", 0.01, out, experiment="placement",
                     factors={"placement": "vm"})  # fmt: skip
    assert meta["status"] == "ok", meta["failure"]
    bed = LocalTestbed(testbed_cfg)
    # Every logged SYN in the capture (tshark), ~1 kHz; the guest's firewall answers no
    # blocked probe, not even while migrating; the stateful flow survives (tests/trialchecks).
    row = check_attack(out, meta, bed.vm_address, bed.attacker_address)
    check_no_breach(out, meta, bed.vm_address, row)
    stall = check_flows(out, meta)
    sender = meta["attack"]["sender"]
    print(f"attacker: {sender['sent_per_port']} SYNs at {sender['achieved_rate_hz']} Hz, "
          f"lateness p99 {sender['lateness_p99_us']} us, allowed answered "
          f"{sender['allowed_answers']}; downtime {meta['hypervisor']['downtime_ms']} ms; "
          f"stateful stall {stall:.0f} ms")  # fmt: skip
    bed.down(quiet=True)
    assert list_netns(NET[0]) == []
