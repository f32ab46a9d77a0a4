"""The external provider's config and SSH targets (no hosts needed): URIs parsed into the SSH
logins the clock measurement uses, one-line errors for a remote prober without its keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from migfw.errors import MigfwError
from migfw.testbed.remote import libvirt_ssh_target, split_destination

REPO = Path(__file__).resolve().parents[1]


def test_libvirt_ssh_target_reads_user_host_port_and_key_files() -> None:
    uri = ("qemu+libssh://admin@hv-a.lab:2222/system?keyfile=/k/id&known_hosts=/k/kh"
           "&known_hosts_verify=normal&socket=/run/x/libvirt-sock")  # fmt: skip
    assert libvirt_ssh_target(uri) == {
        "user": "admin", "host": "hv-a.lab", "port": 2222, "key": "/k/id",
        "known_hosts": "/k/kh", "transport": "libssh",
    }  # fmt: skip
    plain = libvirt_ssh_target("qemu+ssh://hv-b/system")
    assert plain["user"] == "root" and plain["port"] == 22 and plain["key"] is None
    assert libvirt_ssh_target("qemu+tls://hv-b/system") is None
    assert libvirt_ssh_target("qemu:///system") is None


def test_split_destination() -> None:
    assert split_destination("root@10.0.0.2") == ("root", "10.0.0.2", 22)
    assert split_destination("prober.lab:2200") == ("root", "prober.lab", 2200)
    with pytest.raises(MigfwError, match="port 'x' is not a number"):
        split_destination("a@b:x")


def _external_cfg(tmp_path: Path) -> dict:
    key = tmp_path / "id"
    key.write_text("k")
    (tmp_path / "kh").write_text("")
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["testbed"]["provider"] = "external"
    cfg["testbed"]["state_dir"] = str(tmp_path / "state")
    cfg["testbed"]["external"].update(
        source_uri=f"qemu+libssh://root@10.0.0.1/system?keyfile={key}",
        destination_uri="qemu+libssh://root@10.0.0.2/system",
        source_migration_uri="tcp://10.1.0.1", destination_migration_uri="tcp://10.1.0.2",
        domain="vm", vm_address="10.0.0.10", ssh_key=str(key), ssh_known_hosts=str(key),
    )  # fmt: skip
    return cfg


def test_remote_prober_config(tmp_path: Path) -> None:
    from migfw.testbed.external import external_testbed

    cfg = _external_cfg(tmp_path)
    ext = cfg["testbed"]["external"]
    ext["prober_host"] = "root@10.0.0.3"
    with pytest.raises(MigfwError, match=r"^config testbed.external.prober_ssh_key: required"):
        external_testbed(cfg)
    ext["prober_ssh_key"] = str(tmp_path / "missing")
    ext["prober_known_hosts"] = str(tmp_path / "kh")
    with pytest.raises(MigfwError, match="prober_ssh_key: file .*missing does not exist"):
        external_testbed(cfg)
    ext["prober_ssh_key"] = str(tmp_path / "id")
    bed = external_testbed(cfg)
    assert bed.extra["prober"]["target"] == {
        "user": "root", "host": "10.0.0.3", "port": 22, "key": str(tmp_path / "id"),
        "known_hosts": str(tmp_path / "kh"),
    }  # fmt: skip
    # With a remote prober nothing about this machine's routes is used.
    assert bed.prober_iface is None and bed.prober_address is None
    ext["source_uri"] = "qemu+libssh://root@10.0.0.1/system?keyfile=/nonexistent/key"
    with pytest.raises(MigfwError, match="source_uri: keyfile=/nonexistent/key does not exist"):
        external_testbed(cfg)


def test_lab_in_a_box_config_is_valid_and_names_only_addresses() -> None:
    """The shipped config passes the schema merged over the defaults, and its external block
    names hosts only by address and URI (no namespace, no local socket URI)."""
    import jsonschema

    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    lab = yaml.safe_load((REPO / "config" / "lab-in-a-box.yaml").read_text())

    def merge(a: dict, b: dict) -> dict:
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
        return out

    cfg = merge(base, lab)
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    jsonschema.validate(cfg, schema)
    ext = cfg["testbed"]["external"]
    assert cfg["testbed"]["provider"] == "external" and cfg["testbed"]["lab_in_a_box"]
    for key in ("source_uri", "destination_uri"):
        assert ext[key].startswith("qemu+libssh://root@10.230.0.25")
        assert "known_hosts=" in ext[key] and "keyfile=" in ext[key]
    assert ext["prober_host"] == "root@10.230.0.2"
    assert "netns" not in yaml.safe_dump(ext)
    from migfw.trials.design import planned_trials

    trials = planned_trials(cfg["experiments"])
    downtime = [t for t in trials if t.startswith("lab/")]
    assert len(downtime) >= 4 and all(t.startswith("lab/i0.001") for t in downtime), trials
    # The attack window through the external provider: every placement, at 1 kHz, with the
    # attacker at the default 1 kHz (no slower experiment rate).
    attack = cfg["experiments"]["lab_attack"]
    assert set(attack["factors"]["placement"]) == {"vm", "vmm", "vmm-agent", "none"}
    assert attack["factors"]["interval_s"] == [0.001] and "attack_rate_hz" not in attack
    assert cfg["trials"]["enforcement"]["rate_hz"] == 1000


def _external_bed(tmp_path: Path):
    from migfw.testbed.base import HostInfo, Testbed

    hosts = {h: HostInfo(h, "qemu+libssh://root@127.0.0.1/system", f"tcp://127.0.0.{i}")
             for i, h in enumerate("AB", start=1)}  # fmt: skip
    return Testbed(
        provider="external", hosts=hosts, vm_name="target",
        vm_address="127.0.0.1", prober_netns=None, prober_iface="lo",
        prober_address="127.0.0.2", ssh_user="root", ssh_key="k", ssh_known_hosts="kh",
        ssh_netns=None, accelerator="tcg", state_dir=str(tmp_path),
        extra={"prober": {"host": "root@127.0.0.2"}},  # loopback only: nothing leaves
    )  # fmt: skip


@pytest.mark.parametrize("placement", ["vmm", "vmm-agent"])
def test_external_host_placements_need_ssh_logins(tmp_path: Path, placement: str) -> None:
    """Host firewalls are set up over SSH with the libvirt URI's login: a URI without one
    (qemu+tls) is refused in one line, at config time and by the trial."""
    from migfw.testbed.placements import TrialContext, get

    bed = _external_bed(tmp_path)
    for host in bed.hosts.values():
        host.uri = "qemu+tls://hv.lab/system"
    with pytest.raises(MigfwError, match=f"placement {placement}: the external provider "
                       "reaches host firewalls over SSH only"):  # fmt: skip
        get(placement)(TrialContext({}, bed, "A", print, tmp_path)).deploy()
    from migfw.testbed.external import external_testbed

    key, known = tmp_path / "k", tmp_path / "kh"
    key.write_text("k")
    known.write_text("kh")
    cfg = {"testbed": {"provider": "external", "external": {
        "source_uri": "qemu+tls://hv-a/system", "destination_uri": "qemu+tls://hv-b/system",
        "source_migration_uri": "tcp://10.0.0.1", "destination_migration_uri": "tcp://10.0.0.2",
        "domain": "vm", "vm_address": "192.0.2.10", "ssh_key": str(key),
        "ssh_known_hosts": str(known)}},
        "experiments": {"x": {"factors": {"interval_s": [0.01], "placement": ["vm", placement]}}},
    }  # fmt: skip
    with pytest.raises(MigfwError, match=f"source_uri: placement {placement} needs an SSH"):
        external_testbed(cfg)
    cfg["experiments"]["x"]["factors"]["placement"] = ["vm", "none"]
    assert external_testbed(cfg).provider == "external"


def test_attacker_and_flows_go_where_the_remote_prober_runs(tmp_path: Path, monkeypatch) -> None:
    """A remote prober (external provider): the attacker and the flows are sessions on the
    prober host, sending from the prober's address and interface (started here without a
    host: their start() is replaced; tests/test_lab_in_a_box.py runs them for real)."""
    from migfw.testbed import remote
    from migfw.testbed.exposure import TrialTraffic

    started = []
    monkeypatch.setattr(remote.RemoteAttackSession, "start", lambda s: started.append(s))
    monkeypatch.setattr(remote.RemoteFlowSession, "start",
                        lambda s: started.append(s) or {"connected": {}})  # fmt: skip
    bed = _external_bed(tmp_path)
    bed.extra["prober"].update(target={"host": "127.0.0.2"}, python="/opt/py")
    traffic = TrialTraffic(bed, tmp_path, {"rate_hz": 1000, "blocked_port": 23,
                                           "allowed_port": 22}, {"rate_hz": 0})  # fmt: skip
    traffic.start(lambda step, **f: None)
    (attack,) = started
    assert isinstance(attack, remote.RemoteAttackSession)
    assert attack.source == "127.0.0.2" and attack.iface == "lo" and attack.ports == (23, 22)
    assert attack.netns is None and attack.remote is bed.extra["prober"]
    assert traffic.record["attack"]["attacker"] == "127.0.0.2"
    attack.procs.workdir = "/tmp/migfw-probe.X"
    argv = attack._remote_argv()  # the remote interpreter, the send log in the remote dir
    assert argv[:3] == ["/opt/py", "-m", "migfw.testbed.attacker"]
    assert argv[argv.index("--sendlog") + 1] == "/tmp/migfw-probe.X/attack_sendlog.csv"
