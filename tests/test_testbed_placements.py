"""Real trials per firewall placement on the embedded testbed (issue 8): `vm` (guest
nftables), `vmm-agent` (host nftables installed by the libvirt-event agent after its delay)
and `vmm` (libvirt nwfilter). One testbed for the module; every trial is a real migration.

Needs root, QEMU, libvirtd (and iptables/ebtables for nwfilter); skipped otherwise. Uses its
own prefix, so it does not disturb a testbed the user has up.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from testbedcfg import local_config, skip_reason

REPO = Path(__file__).resolve().parents[1]
PREFIX = "mfwp"  # not a prefix of any other test's namespaces

pytestmark = [pytest.mark.testbed, pytest.mark.slow]


@pytest.fixture(scope="module")
def bed_cfg(tmp_path_factory: pytest.TempPathFactory):
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    from migfw.testbed.local import LocalTestbed

    tmp = tmp_path_factory.mktemp("placements")
    cfg = local_config(PREFIX, tmp / "state", "10.231.0.0/24", "10.231.1.0/30")
    try:
        yield cfg, tmp
    finally:
        LocalTestbed(cfg).down(quiet=True)


def _trial(bed_cfg, name: str, factors: dict) -> dict:
    from migfw.testbed.trial import run_trial

    cfg, tmp = bed_cfg
    out = tmp / "trials" / name
    meta = run_trial(cfg, name, 0.01, out, experiment="placement", factors=factors)
    assert meta["status"] == "ok", meta["failure"]
    on_disk = json.loads((out / "trial.json").read_text())
    assert on_disk["firewall"]["placement"] == factors["placement"]
    checks = json.loads((out / "rule_checks.json").read_text())
    assert any(c["ok"] for c in checks) and all(c["ok"] is not False for c in checks)
    return on_disk


def test_vm_placement_rules_in_guest_only(bed_cfg) -> None:
    meta = _trial(bed_cfg, "vm", {"placement": "vm"})
    fw = meta["firewall"]
    src, dst = meta["migration"]["source"], meta["migration"]["destination"]
    assert fw["rules_before"] == {"A": False, "B": False, "guest": True}
    assert fw["rules_after"] == {"A": False, "B": False, "guest": True}
    assert fw["agent"] is None and fw["agent_delay_ms"] is None and src != dst
    # The guest's firewall travels with it: no blocked probe was ever answered.
    assert meta["capture"]["blocked_answers"] == 0 and meta["breaches"] == []


def test_vmm_agent_moves_host_rules_after_its_delay(bed_cfg) -> None:
    meta = _trial(bed_cfg, "agent", {"placement": "vmm-agent", "agent_delay_ms": 300})
    fw = meta["firewall"]
    src, dst = meta["migration"]["source"], meta["migration"]["destination"]
    assert fw["agent_delay_ms"] == 300
    assert fw["rules_before"] == {src: True, dst: False, "guest": False}
    assert fw["rules_after"] == {src: False, dst: True, "guest": False}
    agent = fw["agent"]
    assert agent["host"] == dst and agent["errors"] == []
    # The agent waited its delay after the resume event, then installed, then removed.
    waited = agent["rules_installed"] - agent["event_seen"]
    assert 0.3 <= waited < 0.3 + 2.0, waited
    assert agent["source_rules_removed"] >= agent["rules_installed"]
    # The incoming VM appeared on the destination before it resumed there.
    assert agent["incoming_seen"] < agent["event_seen"]
    assert meta["migration"]["start"] < agent["event_seen"] < meta["migration"]["end"] + 2.0


def test_vmm_nwfilter_follows_the_vm(bed_cfg) -> None:
    if shutil.which("iptables") is None or shutil.which("ebtables") is None:
        pytest.skip("nwfilter needs iptables and ebtables (scripts/install.sh)")
    meta = _trial(bed_cfg, "nwfilter", {"placement": "vmm"})
    fw = meta["firewall"]
    src, dst = meta["migration"]["source"], meta["migration"]["destination"]
    assert fw["rules_before"] == {src: True, dst: False, "guest": False}
    assert fw["rules_after"] == {src: False, dst: True, "guest": False}
    seen = {e["event"]: e for e in fw["nwfilter_at_events"]}
    # The destination's libvirtd instantiated the filter before the VM ran there.
    assert seen["resumed"]["filter_present"] is True
