"""One real `dirty` trial: the dirty rate the hypervisor saw is the one the guest was asked for.

Issue 10's "done when": CI runs one real trial with the `dirty` workload and asserts the dirty
rate QEMU measured. The guest writes a 32 MiB working set at 8 MiB/s; a 64 MiB/s migration cap
makes the first pass over the 128 MiB guest last about 2 s, longer than the >= 1 s window over
which QEMU computes its rate, so passes >= 2 always carry one (uncapped, a pass can end within
the window and QEMU reports none: seen in the sweep's post-copy trial).

Needs root, QEMU and libvirtd (skipped otherwise). Its own prefix and subnets (override with
MIGFW_DIRTY_TEST_NET="prefix,subnet,migration_subnet" when another testbed uses them).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from testbedcfg import local_testbed, own_net

NET = own_net("MIGFW_DIRTY_TEST_NET", "mfwd,10.231.50.0/24,10.231.51.0/30")
ASKED_MIBPS = 8.0

pytestmark = [pytest.mark.testbed, pytest.mark.slow]


@pytest.fixture
def testbed_cfg(tmp_path: Path):
    with local_testbed(NET, tmp_path / "state", ("apt-get",)) as cfg:
        yield cfg


def test_one_dirty_trial_qemu_sees_the_rate_asked_for(testbed_cfg, tmp_path: Path) -> None:
    from migfw.measure.metrics import trial_metrics
    from migfw.testbed.base import Testbed, read_state
    from migfw.testbed.provision import vm_locations
    from migfw.testbed.trial import run_trial

    out = tmp_path / "trials" / "dirty"
    factors = {"workload": "dirty", "dirty_mib": 32, "dirty_rate_mibps": ASKED_MIBPS,
               "bandwidth_mibps": 64}  # fmt: skip
    meta = run_trial(testbed_cfg, "dirty", 0.01, out, factors=factors)
    assert meta["workload"]["name"] == "dirty"
    assert meta["migration"]["in_force"]["bandwidth_mibps"] == 64

    with open(out / "jobstats.csv") as handle:
        rates = [float(r["dirty_rate_mibps"]) for r in csv.DictReader(handle)
                 if r["dirty_rate_mibps"] and int(r["memory_iteration"]) >= 2]  # fmt: skip
    measured = sorted(r for r in rates if r > 0)
    assert measured, f"QEMU reported no dirty rate in passes >= 2: {rates}"
    median = measured[len(measured) // 2]
    # QEMU counts every page the guest wrote in its window (the kernel's too), and the
    # program's 10 ms ticks are its own: within 25 % (seen: 7.79 MiB/s).
    assert abs(median - ASKED_MIBPS) <= 0.25 * ASKED_MIBPS, measured
    # The analysis reports the same figure (median over passes >= 2, zeros included there).
    row = trial_metrics(out)
    assert row["hv_dirty_rate_mibps"] is not None
    assert abs(row["hv_dirty_rate_mibps"] - ASKED_MIBPS) <= 0.25 * ASKED_MIBPS, row

    if meta["status"] == "ok":
        assert meta["workload"]["report"]["achieved_mibps"] == pytest.approx(ASKED_MIBPS, rel=0.1)
    else:  # the known TCG problem (docs/testbed.md): the guest's kernel dies after switchover
        assert "cannot read the ruleset after migration" in meta["failure"], meta["failure"]
    bed = Testbed.from_dict(read_state(Path(testbed_cfg["testbed"]["state_dir"]))["testbed"])
    assert list(vm_locations(bed).values()) == ["running"]  # recovered either way
