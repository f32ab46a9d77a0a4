"""End to end on the embedded testbed: bring it up, run ONE real live-migration trial, check
the capture against the hypervisor's own downtime, tear down, and prove nothing is left.

Needs root, QEMU and libvirtd (skipped otherwise). Uses its own name prefix and state
directory, so it does not disturb a testbed the user has up.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
import yaml
from testbedcfg import local_testbed

REPO = Path(__file__).resolve().parents[1]
PREFIX = "mfwx"  # not a prefix of any other helper's namespaces

pytestmark = [pytest.mark.testbed, pytest.mark.slow]


@pytest.fixture
def testbed_cfg(tmp_path: Path):
    with local_testbed((PREFIX, None, None), tmp_path / "state", ("apt-get",)) as cfg:
        yield cfg


def test_one_migration_trial_matches_hypervisor_downtime(
    testbed_cfg, tmp_path: Path, monkeypatch
) -> None:
    from migfw.measure.probes import analyse_capture
    from migfw.testbed.local import LocalTestbed, list_netns, pid_alive, pids_in_netns
    from migfw.testbed.trial import run_trial
    from migfw.trials.contract import trial_schema

    interval = 0.01
    out = tmp_path / "trials" / "t1"
    meta = run_trial(testbed_cfg, "t1", interval, out, repetition=1, of=1)

    # The folder is complete, valid against the contract, and nothing partial is left.
    assert not out.with_name("t1.partial").exists()
    for name in ("probe.pcap", "trial.json", "sendlog.csv", "events.jsonl",
                 "ruleset_before.nft", "ruleset_after.nft", "rule_checks.json"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    on_disk = json.loads((out / "trial.json").read_text())
    jsonschema.validate(on_disk, trial_schema())
    assert on_disk["status"] == "ok", on_disk["failure"]
    assert on_disk["direction"] == "A->B"
    assert on_disk["ruleset"]["identical_before_after"] is True
    assert on_disk["breaches"] == []
    assert on_disk["capture"]["dropped"] == 0
    checks = json.loads((out / "rule_checks.json").read_text())
    assert any(c["ok"] for c in checks) and all(c["ok"] is not False for c in checks)

    # Independent truth: the probe loss (from tcpdump's capture, analysed by migfw probes)
    # against libvirt's own downtime. Calibrated on this machine (TCG, 128 MiB, 10 trials at
    # 0.01 and 0.001 s): PL*I was 0-35 ms below downtime_ms; allow max(3*I, 50 %) + 20 ms.
    downtime_s = meta["hypervisor"]["downtime_ms"] / 1000
    assert downtime_s > 0
    mig = meta["migration"]
    metrics = analyse_capture(out / "probe.pcap", meta["target"], interval,
                              (mig["start"], mig["end"]))  # fmt: skip
    lost_s = metrics["pl"] * interval
    assert abs(lost_s - downtime_s) <= max(3 * interval, 0.5 * downtime_s) + 0.02, (
        metrics["pl"],
        downtime_s,
    )
    # Every request the prober logged up to 1 s after the migration is in the capture (no
    # silent capture loss where it matters; the last ~100 ms before the prober stops can miss
    # tcpdump's final read under load - reported to the prober's owner).
    from scapy.all import ICMP, rdpcap

    captured = {int(p[ICMP].seq) for p in rdpcap(str(out / "probe.pcap"))
                if ICMP in p and p[ICMP].type == 8}  # fmt: skip
    with open(out / "sendlog.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == on_disk["capture"]["requests_sent"]
    until = (mig["end"] + 1.0) * 1e9
    wanted = {int(r["seq"]) for r in rows if int(r["sent_ns"]) <= until}
    assert len(wanted) > 500 and wanted <= captured, sorted(wanted - captured)[:10]

    # The hypervisor's phase timeline: job statistics sampled on the source every ~25 ms
    # (jobstats.csv) and the lifecycle events of both hosts, in order, on the capture's clock.
    phases = on_disk["phases"]
    assert mig["start"] < phases["suspended"] < phases["resumed"] < mig["end"] + 2.0
    assert phases["finished"] is not None and phases["postcopy_switch"] is None
    assert phases["sampling"]["samples"] >= 10
    assert phases["sampling"]["median_gap_ms"] <= 50, phases["sampling"]
    with open(out / "jobstats.csv") as handle:
        samples = list(csv.DictReader(handle))
    assert len(samples) == phases["sampling"]["samples"]
    assert max(int(r["memory_iteration"] or 0) for r in samples) >= 1
    # The pause as the events saw it lies inside the probes' outage (the guest cannot answer
    # while paused): its start within 300 ms of the first lost probe (event delivery under load
    # reached ~250 ms here) and no longer than the outage. Not against libvirt's `downtime`:
    # under load QEMU's figure ran to 5.4 s while the events' pause was 1.6 s.
    pause_ms = 1000 * (phases["resumed"] - phases["suspended"])
    from migfw.measure.metrics import trial_metrics

    row = trial_metrics(out)
    assert row["hv_pause_ms"] == pytest.approx(pause_ms, abs=1e-3)
    assert abs(row["outage_start_minus_suspend_ms"]) <= 300, row
    assert pause_ms <= row["probe_outage_ms"] + 300, row
    assert row["resume_to_first_reply_ms"] is not None and row["resume_to_first_reply_ms"] >= 0
    in_force = on_disk["migration"]["in_force"]
    assert in_force["algorithm"] == "precopy" and in_force["qemu_downtime_limit_ms"] > 0
    assert in_force["memory_mib"] == testbed_cfg["testbed"]["guest"]["memory_mib"]

    # An existing trial is never overwritten.
    from migfw.errors import MigfwError

    with pytest.raises(MigfwError, match="finished trial"):
        run_trial(testbed_cfg, "t1", interval, out)

    # A migration that fails (here: a destination migration address nobody has, inside
    # the namespaces) is a failed trial with libvirt's reason, and the VM stays usable.
    import migfw.testbed.trial as trial_mod
    from migfw.testbed.providers import ensure_up

    def broken_ensure_up(cfg):
        bed = ensure_up(cfg)
        bed.hosts["A"].migration_uri = "tcp://10.231.1.99"  # unreachable from host B
        return bed

    monkeypatch.setattr(trial_mod, "ensure_up", broken_ensure_up)
    failed = run_trial(testbed_cfg, "t2", interval, tmp_path / "trials" / "t2")
    monkeypatch.undo()
    assert failed["status"] == "failed" and "B→A failed" in failed["failure"]
    assert failed["direction"] == "B->A" and failed["hypervisor"] is None
    assert (tmp_path / "trials" / "t2" / "probe.pcap").stat().st_size > 0
    from migfw.testbed.base import Testbed, read_state
    from migfw.testbed.provision import vm_locations

    bed = Testbed.from_dict(read_state(Path(testbed_cfg["testbed"]["state_dir"]))["testbed"])
    assert vm_locations(bed) == {"B": "running"}

    # A combination QEMU refuses (here 300 multifd channels: QEMU takes at most 255) is a
    # failed trial with QEMU's refusal as its reason, not a crash; the VM stays where it was.
    refused = run_trial(testbed_cfg, "t2r", interval, tmp_path / "trials" / "t2r",
                        factors={"algorithm": "multifd", "multifd_channels": 300})  # fmt: skip
    assert refused["status"] == "failed" and "multifd-channels" in refused["failure"]
    assert refused["migration"]["requested"]["multifd_channels"] == 300
    assert vm_locations(bed) == {"B": "running"}

    # The real `dirty` trial (QEMU's measured dirty rate) is tests/test_testbed_dirty.py.

    # Ctrl-C in the middle of a migration: exit 130, the partial trial moved aside to
    # .aborted with its reason (never deleted, never a trial), and (local
    # provider) no namespace, process or runtime dir left behind.
    pids: list[int] = []
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(yaml.safe_dump(testbed_cfg))
    out3 = tmp_path / "trials" / "t3"
    # As the workflow runs it: the trial's row of a design sheet (migfw.trials.design).
    from migfw.trials.design import TrialSpec, write_design

    sheet = tmp_path / "design.tsv"
    write_design([TrialSpec("t3", "default", 1, (("placement", "vm"), ("interval_s", 0.01)))],
                 sheet)  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-X", "faulthandler", "-m", "migfw", "testbed", "trial",
         "--config", str(cfg_file), "--spec", str(sheet), "--trial-id", "t3", "--out", str(out3)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A shell running the suite in the background (`cmd &`) hands its children SIGINT
        # ignored, and Python then keeps ignoring it: the Ctrl-C below would not arrive.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        for line in proc.stdout:
            if "migrating" in line:
                time.sleep(0.5)
                # libvirtd x2, QEMU, tcpdump and the prober live in our namespaces now.
                pids = pids_in_netns(list_netns(PREFIX))
                proc.send_signal(signal.SIGINT)
                break
        try:
            _, err = proc.communicate(timeout=180)  # the trial waits <= 120 s for an abort
        except subprocess.TimeoutExpired:
            # Still running: SIGABRT makes faulthandler print where each thread waits.
            proc.send_signal(signal.SIGABRT)
            _, err = proc.communicate(timeout=30)
            raise AssertionError(f"no exit 180 s after Ctrl-C:\n{err[-6000:]}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert not out3.exists() and not out3.with_name("t3.partial").exists()
    aborted = list((tmp_path / "trials" / ".aborted").glob("t3-*"))
    assert len(aborted) == 1 and "interrupted" in (aborted[0] / "reason.txt").read_text()
    bed = LocalTestbed(testbed_cfg)
    assert list_netns(PREFIX) == []
    assert len(pids) >= 5, pids
    assert [p for p in pids if pid_alive(p)] == []
    assert not bed.run_root.exists()
    assert not (bed.state_dir / "state.json").exists()
