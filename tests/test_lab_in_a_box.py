"""The lab in a box, end to end: real trials through the external provider over libvirt's SSH
transport, with the prober, the attacker (1 kHz SYNs) and the flows on a remote SSH host,
checked with the same assertions as a trial of the local provider on the same hosts
(tests/trialchecks.py, which the local testbed's own tests use too).

Needs root, QEMU, libvirtd, sshd and nc (skipped otherwise). Own prefix, subnet and state
directory; everything is torn down and checked gone at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from testbedcfg import skip_reason
from trialchecks import (
    check_attack,
    check_downtime,
    check_flows,
    check_no_breach,
    check_vm_placement,
)

REPO = Path(__file__).resolve().parents[1]
# The box's prefix and subnets: NET.0.0/24 and NET.1.0/30 (MIGFW_LAB_TEST_NET="prefix,a.b"
# when another testbed uses them).
PREFIX, NET = (os.environ.get("MIGFW_LAB_TEST_NET") or "mfwl,10.238").split(",")
INTERVAL = 0.001

pytestmark = [pytest.mark.testbed, pytest.mark.slow]


def _skip_reason() -> str | None:
    return skip_reason(("sshd", "nc", "tshark"))


def lab_external(state: Path, prefix: str, net: str, pair: int = 0) -> dict:
    """The `testbed.external` block naming the box's pair `pair` (migfw.testbed.pairs: pair k
    is prefix+k, its subnets 2k /24s up, its state in state/pair<k>)."""
    a, b = net.split(".")
    third = 2 * pair
    if pair:
        prefix, state = f"{prefix}{pair}", state / f"pair{pair}"
    lab = state / "lab"
    guest = REPO / "results" / "testbed" / "guest"

    def uri(host: str, last: int) -> str:
        return (
            f"qemu+libssh://root@{a}.{b}.{third}.{last}/system?keyfile={lab}/id_ed25519"
            f"&known_hosts={lab}/known_hosts&known_hosts_verify=normal&sshauth=privkey"
            f"&socket=/run/migfw/{prefix}/host{host}/sock/libvirt-sock"
        )

    return {
        "source_uri": uri("A", 251), "destination_uri": uri("B", 252),
        "source_migration_uri": f"tcp://{a}.{b}.{third + 1}.1",
        "destination_migration_uri": f"tcp://{a}.{b}.{third + 1}.2",
        "domain": f"{prefix}-target", "vm_address": f"{a}.{b}.{third}.10", "ssh_user": "root",
        # The box's own pin of the guest's host key at this VM's address (the image's
        # known_hosts names whichever address built it last).
        "ssh_key": str(guest / "id_ed25519"), "ssh_known_hosts": str(state / "guest_known_hosts"),
        "prober_host": f"root@{a}.{b}.{third}.2", "prober_ssh_key": str(lab / "id_ed25519"),
        "prober_known_hosts": str(lab / "known_hosts"), "prober_python": None,
    }  # fmt: skip


def lab_config(tmp_path: Path, prefix: str = PREFIX, net: str = NET) -> dict:
    """Like config/lab-in-a-box.yaml, on this test's own prefix, subnet and state dir."""
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    state = tmp_path / "state"
    cfg["ruleset"] = str(REPO / "config" / "ruleset.yaml")
    cfg["testbed"].update(
        provider="external",
        lab_in_a_box=True,
        state_dir=str(state),
        guest_dir=str(REPO / "results" / "testbed" / "guest"),
        local={"prefix": prefix, "subnet": f"{net}.0.0/24",
               "migration_subnet": f"{net}.1.0/30"},
        external=lab_external(state, prefix, net),
    )  # fmt: skip
    cfg["trials"]["lead_in_s"] = 2.0
    cfg["trials"]["settle_s"] = 2.0
    return cfg


@pytest.fixture
def lab_cfg(tmp_path: Path):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from migfw.testbed.local import LocalTestbed

    cfg = lab_config(tmp_path)
    try:
        yield cfg
    finally:
        LocalTestbed(cfg).down(quiet=True)


def _tshark_count(pcap: Path, display_filter: str) -> int:
    argv = ["tshark", "-r", str(pcap), "-Y", display_filter, "-T", "fields", "-e", "frame.number"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    return len(out.stdout.split())


def check_trial(out: Path, meta: dict) -> dict:
    """What every trial must show, whichever provider ran it; returns the probe metrics."""
    from migfw.measure.probes import analyse_capture
    from migfw.trials.contract import trial_schema

    on_disk = json.loads((out / "trial.json").read_text())
    assert on_disk == json.loads(json.dumps(meta))
    jsonschema.validate(on_disk, trial_schema())
    assert on_disk["status"] == "ok", on_disk["failure"]
    # The ruleset was deployed and proven with packets before the trial, unchanged after it.
    checks = json.loads((out / "rule_checks.json").read_text())
    assert sum(1 for c in checks if c["ok"]) >= 10 and all(c["ok"] is not False for c in checks)
    assert on_disk["ruleset"]["identical_before_after"] is True
    assert on_disk["breaches"] == [] and on_disk["capture"]["blocked_answers"] == 0
    assert on_disk["capture"]["allowed_answers"] > 0
    # The hypervisor's own figures, read through the provider's libvirt connection.
    hv = on_disk["hypervisor"]
    assert hv["downtime_ms"] > 0 and hv["total_ms"] > hv["downtime_ms"]
    # Counts against tshark (independent dissector): requests and replies in the capture.
    pcap = out / "probe.pcap"
    target = on_disk["target"]
    whole = analyse_capture(pcap, target, INTERVAL)
    assert whole["ps"] == _tshark_count(pcap, f"icmp.type == 8 && ip.dst == {target}")
    assert whole["pr"] == _tshark_count(pcap, f"icmp.type == 0 && ip.src == {target}")
    assert whole["ps"] == on_disk["capture"]["requests_sent"]  # none missing from the capture
    # The attacker's SYNs against tshark, no breach (placement vm), the flows survive; DT from
    # the probes against the hypervisor's pause and QEMU's downtime.
    attacker = on_disk["attack"]["attacker"]
    row = check_attack(out, on_disk, target, attacker)
    check_no_breach(out, on_disk, target, row)
    check_flows(out, on_disk)
    check_vm_placement(on_disk)
    downtime = check_downtime(out, on_disk, INTERVAL)
    print(f"{on_disk['provider']}: {json.dumps(downtime)}")
    return downtime


def test_lab_in_a_box_external_matches_local(lab_cfg, tmp_path: Path) -> None:
    from migfw.testbed.cleanup import leftovers
    from migfw.testbed.external import ExternalTestbed
    from migfw.testbed.local import LocalTestbed
    from migfw.testbed.provision import find_vm
    from migfw.testbed.trial import run_trial

    # --- external: libvirt over SSH, the prober on the remote SSH host
    out = tmp_path / "trials" / "external"
    meta = run_trial(lab_cfg, "external", INTERVAL, out)
    assert meta["provider"] == "external"
    assert meta["prober"]["host"] == f"root@{NET}.0.2" and meta["prober"]["netns"] is None
    # The attacker runs beside the prober, on its host, from its address.
    assert meta["attack"]["attacker"] == meta["prober"]["address"] == f"{NET}.0.2"
    copied = meta["prober"]["copied_sha256"]
    assert set(copied) == {"probe.pcap", "sendlog.csv", "attack.pcap", "attack_sendlog.csv",
                           "flows.csv"}  # fmt: skip
    for name, digest in copied.items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest, name
    # One kernel clock behind every host of the box: the true offsets are 0, so each
    # measured offset must lie within its own error bound (and the bound be small).
    for when in ("start", "end"):
        clock = meta["clock"][when]
        for host in ("prober", "A", "B", "prober-A", "prober-B"):
            assert abs(clock[host]["offset_ms"]) <= clock[host]["error_ms"] < 5, (when, host)
    check_trial(out, meta)
    events = [json.loads(ln) for ln in (out / "events.jsonl").read_text().splitlines()]
    assert any(e["step"] == "deploy" for e in events)  # the external run deployed the rules

    # --- local: the same hosts through local sockets and namespaces, same assertions
    local_cfg = json.loads(json.dumps(lab_cfg))
    local_cfg["testbed"]["provider"] = "local"
    (Path(lab_cfg["testbed"]["state_dir"]) / "deployed.json").unlink()  # deploy again
    out_local = tmp_path / "trials" / "local"
    local_meta = run_trial(local_cfg, "local", INTERVAL, out_local)
    assert local_meta["provider"] == "local" and local_meta["prober"]["host"] is None
    assert local_meta["prober"]["netns"] == f"{PREFIX}-remote"
    assert local_meta["clock"] is None
    assert local_meta["attack"]["attacker"] == f"{NET}.0.3"  # the attacker namespace
    check_trial(out_local, local_meta)
    assert local_meta["direction"] != meta["direction"]  # it went on from where the VM was

    # --- cleanup: the external provider removes nothing; the box's own teardown everything
    assert ExternalTestbed(lab_cfg).down() == []
    bed = ExternalTestbed(lab_cfg).up()
    assert find_vm(bed) in ("A", "B")
    LocalTestbed(lab_cfg).down(quiet=True)
    assert not any(leftovers(lab_cfg).values())
    assert not Path("/sys/class/net", f"{PREFIX}-up").exists()


def test_lab_in_a_box_config_names_the_two_local_pairs_it_brings_up() -> None:
    """config/lab-in-a-box.yaml's second pair is exactly what the box builds as local pair 1
    (the same derivation as lab_external), so its URIs, keys and addresses reach that pair."""
    from migfw.testbed.pairs import pair_config, pair_count

    cfg = yaml.safe_load((REPO / "config" / "lab-in-a-box.yaml").read_text())
    assert pair_count(cfg) == 2
    local = cfg["testbed"]["local"]
    prefix, net = local["prefix"], local["subnet"].rsplit(".", 2)[0]
    for pair in (0, 1):
        want = lab_external(Path("results/testbed"), prefix, net, pair)
        got = pair_config(cfg, pair)["testbed"]["external"]
        # ssh_key: the shared guest image's key, written relative in the config file.
        want["ssh_key"] = "results/testbed/guest/id_ed25519"
        assert {k: got[k] for k in want} == want, pair
