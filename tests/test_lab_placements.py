"""The firewall placements through the external provider, in the lab in a box: `vmm-agent`
(host nftables installed over SSH by the agent listening to both remote libvirtds), `vmm`
(nwfilter defined through the remote libvirt connections) and `none`, each a real 1 kHz
trial with the attacker and the flows on the prober host, held to the local provider's
assertions (tests/trialchecks.py, as tests/test_testbed_placements.py).

Needs root, QEMU, libvirtd, sshd, nc, tshark (and iptables/ebtables for nwfilter); skipped
otherwise. One box for the module, own prefix and subnets, torn down and checked gone.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from test_lab_in_a_box import INTERVAL, _skip_reason, lab_config
from trialchecks import (
    check_agent_placement,
    check_attack,
    check_none_placement,
    check_nwfilter_placement,
    check_placement_trial,
)

PREFIX, NET = (os.environ.get("MIGFW_LAB_PLACEMENT_TEST_NET") or "mfwm,10.239").split(",")

pytestmark = [pytest.mark.testbed, pytest.mark.slow]


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from migfw.testbed.cleanup import leftovers
    from migfw.testbed.local import LocalTestbed

    tmp = tmp_path_factory.mktemp("lab-placements")
    cfg = lab_config(tmp, PREFIX, NET)
    try:
        yield cfg, tmp
    finally:
        LocalTestbed(cfg).down(quiet=True)
        assert not any(leftovers(cfg).values())


def _trial(box, name: str, factors: dict) -> tuple[Path, dict]:
    from migfw.testbed.trial import run_trial

    cfg, tmp = box
    out = tmp / "trials" / name
    meta = run_trial(cfg, name, INTERVAL, out, experiment="lab", factors=factors)
    assert meta["provider"] == "external" and meta["prober"]["netns"] is None
    on_disk = check_placement_trial(out, meta, factors["placement"])
    # The attacker's SYNs against tshark, from the prober host (same checks as local).
    row = check_attack(out, on_disk, on_disk["target"], f"{NET}.0.2")
    return out, {**on_disk, "attack_row": row}


def test_external_vmm_agent_installs_host_rules_over_ssh(box) -> None:
    out, meta = _trial(box, "agent", {"placement": "vmm-agent", "agent_delay_ms": 300})
    check_agent_placement(meta, 300)
    assert (out / "host_rules.nft").exists()


def test_external_vmm_nwfilter_through_remote_libvirt(box) -> None:
    if shutil.which("iptables") is None or shutil.which("ebtables") is None:
        pytest.skip("nwfilter needs iptables and ebtables (scripts/install.sh)")
    out, meta = _trial(box, "nwfilter", {"placement": "vmm"})
    check_nwfilter_placement(meta)
    assert meta["breaches"] == [] and meta["attack_row"]["breach_window_ms"] == 0.0


def test_external_none_lets_the_blocked_port_answer(box) -> None:
    out, meta = _trial(box, "none", {"placement": "none"})
    check_none_placement(out, meta, meta["target"])
    assert meta["attack_row"]["breach_window_ms"] > 0
