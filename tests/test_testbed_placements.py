"""Real trials per firewall placement on the embedded testbed (issue 8): `vm` (guest
nftables), `vmm-agent` (host nftables installed by the libvirt-event agent after its delay),
`vmm` (libvirt nwfilter), `both` (guest nftables and nwfilter at once; issue 17), `ovn` (OVN
ACLs, multichassis binding; issue 18) and `vmm-state` (the agent plus the VM's conntrack
entries carried; issue 22). One testbed for the module; every trial is a real migration.

Needs root, QEMU, libvirtd (and iptables/ebtables for nwfilter); skipped otherwise. Uses its
own prefix, so it does not disturb a testbed the user has up.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from testbedcfg import local_testbed
from trialchecks import (
    check_agent_placement,
    check_both_placement,
    check_nwfilter_placement,
    check_ovn_placement,
    check_placement_trial,
    check_state_placement,
    check_vm_placement,
)

REPO = Path(__file__).resolve().parents[1]
# Not a prefix of any other test's namespaces; MIGFW_PLACEMENT_TEST_NET="prefix,subnet,
# migration_subnet" when another testbed uses them.
PREFIX, SUBNET, MIGRATION = (
    os.environ.get("MIGFW_PLACEMENT_TEST_NET") or "mfwp,10.231.0.0/24,10.231.1.0/30"
).split(",")

pytestmark = [pytest.mark.testbed, pytest.mark.slow]


@pytest.fixture(scope="module")
def bed_cfg(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("placements")
    with local_testbed((PREFIX, SUBNET, MIGRATION), tmp / "state") as cfg:
        yield cfg, tmp


def _trial(bed_cfg, name: str, factors: dict) -> dict:
    from migfw.testbed.trial import run_trial

    cfg, tmp = bed_cfg
    out = tmp / "trials" / name
    meta = run_trial(cfg, name, 0.01, out, experiment="placement", factors=factors)
    return check_placement_trial(out, meta, factors["placement"])


# The assertions are tests/trialchecks.py's: the lab in a box's external trials get the same.
def test_vm_placement_rules_in_guest_only(bed_cfg) -> None:
    check_vm_placement(_trial(bed_cfg, "vm", {"placement": "vm"}))


def test_vmm_state_carries_conntrack_to_a_closed_port_programmed_at_incoming(bed_cfg) -> None:
    """Issue 22: placement vmm-state, trigger incoming, port closed, tcp_loose 0."""
    factors = {"placement": "vmm-state", "agent_delay_ms": 0, "trigger": "incoming",
               "port_default": "closed", "nf_conntrack_tcp_loose": 0}  # fmt: skip
    meta = _trial(bed_cfg, "state", factors)
    check_state_placement(bed_cfg[1] / "trials" / "state", meta)


def test_vmm_agent_moves_host_rules_after_its_delay(bed_cfg) -> None:
    meta = _trial(bed_cfg, "agent", {"placement": "vmm-agent", "agent_delay_ms": 300})
    check_agent_placement(meta, 300)


def test_vmm_nwfilter_follows_the_vm(bed_cfg) -> None:
    if shutil.which("iptables") is None or shutil.which("ebtables") is None:
        pytest.skip("nwfilter needs iptables and ebtables (scripts/install.sh)")
    check_nwfilter_placement(_trial(bed_cfg, "nwfilter", {"placement": "vmm"}))


def test_both_guest_ruleset_and_nwfilter(bed_cfg) -> None:
    if shutil.which("iptables") is None or shutil.which("ebtables") is None:
        pytest.skip("nwfilter needs iptables and ebtables (scripts/install.sh)")
    check_both_placement(_trial(bed_cfg, "both", {"placement": "both"}))


def test_ovn_acls_follow_the_multichassis_binding(bed_cfg) -> None:
    if shutil.which("ovn-controller") is None:
        pytest.skip("ovn-controller not installed (scripts/install.sh installs OVN)")
    factors = {"placement": "ovn", "ovn_binding": "multichassis"}
    meta = _trial(bed_cfg, "ovn", factors)
    check_ovn_placement(bed_cfg[1] / "trials" / "ovn", meta, "multichassis")
