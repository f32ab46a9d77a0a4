"""Unit tests of the testbed's pure logic: domain XML, config → Testbed, state, trial folder
handling, job statistics, accelerator choice, and the guest's FTP server (run for real with
busybox on loopback)."""

from __future__ import annotations

import ftplib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from migfw.errors import MigfwError
from migfw.testbed.base import HostInfo, load_config, read_state
from migfw.testbed.base import Testbed as Bed  # not collected as a test class
from migfw.testbed.providers import ensure_up

REPO = Path(__file__).resolve().parents[1]

XML_PARAMS = {
    "name": "mfw-target",
    "accelerator": "tcg",
    "memory_mib": 128,
    "vcpus": 1,
    "kernel": "/images/a&b/vmlinuz",
    "initrd": "/images/initramfs.img",
    "cmdline": "console=ttyS0 migfw.ip=10.231.0.10/24",
    "bridge": "br0",
    "tap": "mfwtap0",
    "mac": "52:54:00:e7:00:0a",
    "serial_log": "/var/log/libvirt/qemu/migfw-serial.log",
}


# ------------------------------------------------------------------ domain XML


def test_domain_xml_tcg_values_and_escaping() -> None:
    from migfw.testbed.provision import render_domain_xml

    root = ET.fromstring(render_domain_xml(XML_PARAMS))
    assert root.get("type") == "qemu"  # TCG
    assert root.findtext("name") == "mfw-target"
    assert root.find("memory").text == "128" and root.find("memory").get("unit") == "MiB"
    assert root.findtext("vcpu") == "1"
    assert root.findtext("os/kernel") == "/images/a&b/vmlinuz"  # escaped, parsed back
    assert root.findtext("os/cmdline") == XML_PARAMS["cmdline"]
    nic = root.find("devices/interface")
    assert nic.get("type") == "bridge"
    assert nic.find("source").get("bridge") == "br0"
    assert nic.find("target").get("dev") == "mfwtap0"
    assert nic.find("model").get("type") == "virtio"
    assert root.find("devices/serial/source").get("path") == XML_PARAMS["serial_log"]


def test_domain_xml_kvm_and_bad_values(tmp_path: Path) -> None:
    from migfw.testbed.provision import render_domain_xml

    params = dict(XML_PARAMS, accelerator="kvm", memory_mib=512, vcpus=2)
    root = ET.fromstring(render_domain_xml(params))
    assert root.get("type") == "kvm"
    assert root.findtext("memory") == "512" and root.findtext("vcpu") == "2"
    with pytest.raises(MigfwError, match="memory_mib: 64 MiB is below"):
        render_domain_xml(dict(XML_PARAMS, memory_mib=64))
    with pytest.raises(MigfwError, match="accelerator 'xen'"):
        render_domain_xml(dict(XML_PARAMS, accelerator="xen"))
    template = tmp_path / "domain.xml"
    template.write_text("<domain><name>$name</name><uuid>$uuid</uuid></domain>")
    with pytest.raises(MigfwError, match=r"placeholder \$uuid has no value"):
        render_domain_xml(XML_PARAMS, template)


# ------------------------------------------------------------------ config and providers


def test_load_config_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(MigfwError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("testbed: [unclosed\n")
    with pytest.raises(MigfwError) as info:
        load_config(bad)
    assert "\n" not in str(info.value) and "not valid YAML" in str(info.value)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(MigfwError, match="mapping"):
        load_config(listy)


def test_unknown_provider_is_refused() -> None:
    with pytest.raises(MigfwError, match="testbed.provider: unknown provider 'cloud'"):
        ensure_up({"testbed": {"provider": "cloud"}})


def test_local_addresses_follow_the_configured_subnet(tmp_path: Path) -> None:
    from migfw.testbed.local import LocalTestbed

    cfg = {"testbed": {"local": {"prefix": "zz", "subnet": "10.231.5.0/24",
                                 "migration_subnet": "10.231.6.4/30"},
                       "state_dir": str(tmp_path)}}  # fmt: skip
    bed = LocalTestbed(cfg)
    assert (bed.prober_address, bed.vm_address) == ("10.231.5.2", "10.231.5.10")
    assert bed.attacker_address == "10.231.5.3"
    assert bed.host_address == {"A": "10.231.5.251", "B": "10.231.5.252"}
    assert bed.mig_address == {"A": "10.231.6.5", "B": "10.231.6.6"}
    assert bed.ns == {"A": "zz-hostA", "B": "zz-hostB", "remote": "zz-remote",
                      "switch": "zz-switch", "attacker": "zz-attacker"}  # fmt: skip
    assert bed.uri("B") == "qemu+unix:///system?socket=/run/migfw/zz/hostB/sock/libvirt-sock"


def test_vm_shape_names_the_emulator(tmp_path: Path, monkeypatch) -> None:
    """testbed.guest.emulator: `system` the /usr/bin QEMU, the default QEMU 10 of
    .qemu-backports/ relative to the working directory (the repository's root), a missing
    binary one config error line."""
    from migfw.testbed.local import LocalTestbed
    from migfw.testbed.provision import render_domain_xml

    base = {"local": {"prefix": "zz", "subnet": "10.231.5.0/24",
                      "migration_subnet": "10.231.6.4/30"}, "state_dir": str(tmp_path)}  # fmt: skip
    if Path("/usr/bin/qemu-system-x86_64").exists():
        shaped = LocalTestbed({"testbed": {**base, "guest": {"emulator": "system"}}}).vm_shape()
        assert shaped["emulator"] == "/usr/bin/qemu-system-x86_64"
    wrapper = tmp_path / ".qemu-backports" / "qemu-system-x86_64"
    wrapper.parent.mkdir()
    wrapper.write_text("#!/bin/sh\n")
    wrapper.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    guest = {"memory_mib": 512, "emulator": ".qemu-backports/qemu-system-x86_64"}
    shape = LocalTestbed({"testbed": {**base, "guest": guest}}).vm_shape()
    assert shape == {"memory_mib": 512, "vcpus": 1, "emulator": str(wrapper)}
    assert LocalTestbed({"testbed": base}).vm_shape() == shape | {"memory_mib": 128}  # default
    root = ET.fromstring(render_domain_xml({**XML_PARAMS, **shape}))
    assert root.findtext("devices/emulator") == str(wrapper)
    wrapper.chmod(0o644)
    with pytest.raises(MigfwError, match=r"^config testbed.guest.emulator: .* is not an exec"):
        LocalTestbed({"testbed": {**base, "guest": guest}}).vm_shape()


def _external_cfg(tmp_path: Path, **over: object) -> dict:
    key = tmp_path / "key"
    key.write_text("k")
    known = tmp_path / "known_hosts"
    known.write_text("h")
    ext = {
        "source_uri": "qemu+ssh://root@hv-a.example/system",
        "destination_uri": "qemu+ssh://root@hv-b.example/system",
        "source_migration_uri": "tcp://10.0.0.1",
        "destination_migration_uri": "tcp://10.0.0.2",
        "domain": "fw-vm",
        "vm_address": "127.0.0.1",
        "ssh_user": "admin",
        "ssh_key": str(key),
        "ssh_known_hosts": str(known),
        "prober_host": None,
    }
    ext.update(over)
    return {"testbed": {"provider": "external", "accelerator": "kvm", "external": ext,
                        "state_dir": str(tmp_path)}}  # fmt: skip


def test_external_testbed_from_config(tmp_path: Path) -> None:
    from migfw.testbed.external import external_testbed

    bed = external_testbed(_external_cfg(tmp_path))
    assert bed.provider == "external"
    assert bed.hosts["A"].uri == "qemu+ssh://root@hv-a.example/system"
    assert bed.hosts["B"].migration_uri == "tcp://10.0.0.2"
    assert (bed.vm_name, bed.vm_address, bed.ssh_user) == ("fw-vm", "127.0.0.1", "admin")
    assert bed.prober_netns is None and bed.ssh_netns is None
    assert bed.prober_iface == "lo"  # the route to 127.0.0.1
    # Round trip through state.json's representation.
    again = Bed.from_dict(json.loads(json.dumps(bed.to_dict())))
    assert again == bed and isinstance(again.hosts["A"], HostInfo)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"domain": None}, "testbed.external.domain: required"),
        ({"vm_address": "vm.example"}, "vm_address: 'vm.example' is not an IP address"),
        ({"ssh_key": "/nonexistent/key"}, "ssh_key: file /nonexistent/key does not exist"),
        ({"destination_migration_uri": "10.0.0.2"}, "must be tcp://HOST"),
        ({"prober_host": "root@p.example"}, "prober_ssh_key: required with prober_host"),
    ],
)
def test_external_config_errors(tmp_path: Path, override: dict, message: str) -> None:
    from migfw.testbed.external import external_testbed

    with pytest.raises(MigfwError, match=message):
        external_testbed(_external_cfg(tmp_path, **override))


def test_state_file_errors_and_empty_status(tmp_path: Path) -> None:
    from migfw.testbed.local import LocalTestbed

    assert read_state(tmp_path) is None
    cfg = {"testbed": {"state_dir": str(tmp_path), "local": {"prefix": "zzq"}}}
    assert LocalTestbed(cfg).status() == {
        "up": False,
        "state_file": str(tmp_path.resolve() / "state.json"),
        "reason": "no testbed recorded",
    }
    (tmp_path / "state.json").write_text("{broken")
    with pytest.raises(MigfwError, match="state.json: not valid JSON"):
        read_state(tmp_path)


# ------------------------------------------------------------------ processes


def test_pid_alive_and_kill_pid_on_a_process_we_start() -> None:
    from migfw.testbed.local import kill_pid, pid_alive

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        deadline = time.monotonic() + 5  # /proc/PID/cmdline is empty until exec completes
        while not pid_alive(proc.pid, "time.sleep") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pid_alive(proc.pid, "time.sleep")
        assert not pid_alive(proc.pid, "libvirtd")  # another program's pid is not ours
        kill_pid(proc.pid, grace=2)
        assert not pid_alive(proc.pid)
        assert proc.poll() is not None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not pid_alive(None)


# ------------------------------------------------------------------ trial folder


def test_trial_out_dir_rules(tmp_path: Path) -> None:
    from migfw.testbed.trial import check_out_dir, finish_out_dir

    out = tmp_path / "t1"
    partial = check_out_dir(out)
    assert partial == tmp_path / "t1.partial" and partial.is_dir()
    (partial / "probe.pcap").write_bytes(b"x")
    finish_out_dir(partial, out)
    assert (out / "probe.pcap").read_bytes() == b"x" and not partial.exists()
    with pytest.raises(MigfwError, match="never overwritten"):
        check_out_dir(out)
    # Snakemake makes the (empty) output dir before the job: that is allowed.
    empty = tmp_path / "t2"
    empty.mkdir()
    partial = check_out_dir(empty)
    finish_out_dir(partial, empty)
    assert empty.is_dir()
    # A stale partial dir of a killed run is discarded, never taken as a trial.
    stale = tmp_path / "t3.partial"
    stale.mkdir()
    (stale / "probe.pcap").write_bytes(b"half")
    partial = check_out_dir(tmp_path / "t3")
    assert list(partial.iterdir()) == []


def test_trial_json_validation_names_the_field() -> None:
    from migfw.trials.contract import validate_trial

    good = {"trial_id": "a", "interval_s": 0.01, "target": "10.231.0.10", "status": "ok",
            "failure": None, "migration": {"start": 1.0, "end": 2.0, "source": "A",
                                           "destination": "B"}}  # fmt: skip
    validate_trial(good)
    with pytest.raises(MigfwError, match="trial.json: status"):
        validate_trial(dict(good, status="maybe"))
    with pytest.raises(MigfwError, match="trial.json: interval_s"):
        validate_trial(dict(good, interval_s=0))


def test_job_stats_summary_and_settings() -> None:
    from migfw.testbed.migration_jobstats import summarize_job_stats
    from migfw.testbed.migration_settings import validate_settings

    # Values as libvirt 9.0 reported them for one of our migrations.
    stats = {"type": 3, "time_elapsed": 5189, "downtime": 324, "setup_time": 0,
             "data_total": 135012352, "data_processed": 105953527,
             "memory_processed": 105953527, "memory_iteration": 3}  # fmt: skip
    out = summarize_job_stats(stats)
    assert out["downtime_ms"] == 324.0 and out["total_ms"] == 5189.0 and out["setup_ms"] == 0.0
    assert out["data_total_bytes"] == 135012352 and out["memory_iterations"] == 3
    assert summarize_job_stats({})["downtime_ms"] is None
    validate_settings("p2p", 100, 20)
    with pytest.raises(MigfwError, match="migration.mode: 'ssh'"):
        validate_settings("ssh", 0, 0)
    with pytest.raises(MigfwError, match="bandwidth_mibps: -1"):
        validate_settings("client", -1, 0)


# ------------------------------------------------------------------ accelerator


def test_accelerator_choice_uses_cache_and_refuses_broken_kvm(tmp_path, monkeypatch) -> None:
    import platform

    from migfw.testbed import accel

    def no_probe(*_a, **_k):
        raise AssertionError("KVM probed although the result is cached")

    assert accel.detect_accelerator("tcg", Path("k"), Path("i"), tmp_path, "h")["used"] == "tcg"
    with pytest.raises(MigfwError, match="testbed.accelerator: 'hvf'"):
        accel.detect_accelerator("hvf", Path("k"), Path("i"), tmp_path, "h")
    monkeypatch.setattr(accel, "try_kvm", no_probe)
    key = {"qemu": accel.qemu_version(), "host_kernel": platform.release(), "image": "h"}
    result = {"kvm_ok": False, "reason": "guest did not boot under KVM within 10 s"}
    (tmp_path / "accel.json").write_text(json.dumps({"key": key, "result": result}))
    chosen = accel.detect_accelerator("auto", Path("k"), Path("i"), tmp_path, "h")
    assert chosen["used"] == "tcg" and chosen["reason"] == result["reason"]
    with pytest.raises(MigfwError, match="accelerator is kvm but KVM does not work"):
        accel.detect_accelerator("kvm", Path("k"), Path("i"), tmp_path, "h")
    # A different image invalidates the cache: the (here forbidden) probe would run.
    with pytest.raises(AssertionError, match="probed"):
        accel.detect_accelerator("auto", Path("k"), Path("i"), tmp_path, "other")


# ------------------------------------------------------------------ guest FTP server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def guest_ftpd(tmp_path: Path):
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox not installed")
    root = tmp_path / "ftp"
    root.mkdir()
    payload = bytes(range(256)) * 40 + b"end\n"  # binary, 10244 bytes
    (root / "blob.bin").write_bytes(payload)
    port = _free_port()
    script = REPO / "resources" / "guest" / "ftpd"
    proc = subprocess.Popen(
        [busybox, "nc", "-ll", "-p", str(port), "-e", busybox, "sh", str(script)],
        env={
            **os.environ,
            "MIGFW_FTP_ROOT": str(root),
            "MIGFW_FTP_SESSIONS": str(tmp_path / "sessions"),
        },
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield port, payload
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()


@pytest.mark.parametrize("passive", [True, False])
def test_guest_ftpd_serves_files_anonymously(guest_ftpd, passive: bool) -> None:
    port, payload = guest_ftpd
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", port, timeout=5)
    try:
        assert ftp.login().startswith("230")
        ftp.set_pasv(passive)
        buf = io.BytesIO()
        assert ftp.retrbinary("RETR blob.bin", buf.write).startswith("226")
        assert buf.getvalue() == payload
        assert ftp.nlst() == ["blob.bin"]
        assert ftp.size("blob.bin") == len(payload)
        with pytest.raises(ftplib.error_perm, match="550"):
            ftp.retrbinary("RETR missing.txt", buf.write)
        with pytest.raises(ftplib.error_perm, match="550 Read-only"):
            ftp.storbinary("STOR x.txt", io.BytesIO(b"x"))
    finally:
        ftp.close()


def test_guest_ftpd_refuses_named_users(guest_ftpd) -> None:
    port, _ = guest_ftpd
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", port, timeout=5)
    try:
        with pytest.raises(ftplib.error_perm, match="530"):
            ftp.login("root", "secret")
    finally:
        ftp.close()


# ------------------------------------------------------------------ VM recovery decisions


class _FakeDomain:
    def __init__(self, log: list, host: str) -> None:
        self.log, self.host = log, host

    def resume(self) -> None:
        self.log.append(("resume", self.host))

    def destroy(self) -> None:
        self.log.append(("destroy", self.host))


class _FakeConn:
    def __init__(self, log: list, host: str) -> None:
        self.log, self.host = log, host

    def lookupByName(self, name: str) -> _FakeDomain:  # noqa: N802 - libvirt's name
        return _FakeDomain(self.log, self.host)

    def close(self) -> None:
        pass


def _bed(provider: str = "local") -> Bed:
    hosts = {h: HostInfo(h, f"test:///{h}", f"tcp://10.231.1.{i}") for i, h in enumerate("AB")}
    return Bed(provider, hosts, "vm", "10.231.0.10", None, None, None, "root", "k", "kh", None,
               "tcg", "/tmp")  # fmt: skip


@pytest.mark.parametrize(
    ("locations", "expected_host", "expected_log"),
    [
        ({"B": "running"}, "B", []),
        ({"A": "running", "B": "paused"}, "A", [("destroy", "B")]),  # aborted migration
        ({"A": "paused"}, "A", [("resume", "A")]),
        ({}, "A", [("destroy_all",), ("start", "A")]),
        ({"A": "paused", "B": "paused"}, "A", [("destroy_all",), ("start", "A")]),
    ],
)
def test_ensure_vm_recovery(monkeypatch, locations, expected_host, expected_log) -> None:
    from migfw.testbed import provision

    log: list = []
    monkeypatch.setattr(provision, "vm_locations", lambda bed: dict(locations))
    monkeypatch.setattr(provision, "connect", lambda bed, host: _FakeConn(log, host))
    monkeypatch.setattr(provision, "destroy_vm", lambda bed: log.append(("destroy_all",)) or [])
    monkeypatch.setattr(provision, "start_vm", lambda bed, host: log.append(("start", host)) or 1.0)
    assert provision.ensure_vm(_bed()) == expected_host
    assert log == expected_log


def test_ensure_vm_never_provisions_on_external_hosts(monkeypatch) -> None:
    from migfw.testbed import provision

    monkeypatch.setattr(provision, "vm_locations", lambda bed: {})
    with pytest.raises(MigfwError, match="external testbed: domain vm is not running"):
        provision.ensure_vm(_bed("external"))


def test_guest_console_keeps_the_alarming_lines(tmp_path: Path) -> None:
    from migfw.testbed.provision import guest_console

    bed = _bed()
    bed.extra.update(host_roots={"A": str(tmp_path / "A"), "B": str(tmp_path / "B")},
                     serial_log="/var/log/libvirt/qemu/migfw-serial.log")  # fmt: skip
    log = tmp_path / "B" / "var/log/libvirt/qemu/migfw-serial.log"
    log.parent.mkdir(parents=True)
    assert guest_console(bed, "B") is None  # no file yet
    log.write_text("\n")
    assert guest_console(bed, "B") is None  # nothing printed since the guest arrived
    lines = [
        "[   61.204113] virtio_net virtio0: output.0:id 3 is not a head!",
        "[   61.300000] virtio_net virtio0 eth0: NETDEV WATCHDOG: transmit queue 0 timed out",
        "[   88.012345] watchdog: BUG: soft lockup - CPU#0 stuck for 23s! [swapper/0:0]",
        "[   88.012900] RIP: 0010:native_safe_halt+0xb/0x10",
        "[   90.000001] list_del corruption. next->prev should be ffff9e, but was dead000000000122",
    ]
    log.write_text("\n".join(lines) + "\n")
    text, info = guest_console(bed, "B")
    assert text.splitlines() == lines
    assert info == {"host": "B", "lines": 5, "alerts": [lines[0], *lines[2:]],
                    "alerts_total": 4}  # fmt: skip
    assert guest_console(bed, "B", max_alerts=1)[1]["alerts"] == [lines[0]]
    assert guest_console(_bed("external"), "B") is None  # no host roots: no console


# ------------------------------------------------------------------ preflight


def test_preflight_names_each_missing_piece(monkeypatch, tmp_path: Path) -> None:
    from migfw.testbed import preflight

    real_which = shutil.which
    monkeypatch.setattr(preflight.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(preflight.shutil, "which",
                        lambda cmd: None if cmd == "libvirtd" else real_which(cmd))  # fmt: skip
    cfg = {"testbed": {"accelerator": "kvm", "state_dir": str(tmp_path)}}
    found = preflight.problems(cfg)
    assert found[0].startswith("not root")
    assert "command libvirtd not found (apt-get install libvirt-daemon-driver-qemu)" in found
    assert all("\n" not in line for line in found)
    with pytest.raises(MigfwError, match=r"preflight: not root.*\(\+\d+ more"):
        preflight.require_local(cfg)
    bad = preflight.problems({"testbed": {"accelerator": "xen"}})
    assert any("testbed.accelerator: 'xen'" in line for line in bad)


# ------------------------------------------------------------------ migration parameters


def test_migration_settings_from_a_dict_and_their_libvirt_plan() -> None:
    libvirt = pytest.importorskip("libvirt")
    from migfw.testbed.migration_settings import migration_settings, plan, requested_record

    # Factors of a trial mixed with others: unknown keys are ignored, numbers normalised.
    s = migration_settings({"algorithm": "multifd", "multifd_channels": 4.0,
                            "bandwidth_mibps": 32, "interval_s": 0.01})  # fmt: skip
    assert s["multifd_channels"] == 4 and s["mode"] == "client"
    flags, params = plan(s, libvirt)
    assert flags == libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PARALLEL
    assert params == {"bandwidth": 32, "parallel.connections": 4}
    flags, params = plan(
        migration_settings({"algorithm": "postcopy", "bandwidth_mibps": 8}), libvirt
    )
    assert flags == libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_POSTCOPY
    assert params == {"bandwidth": 8, "bandwidth.postcopy": 8}
    flags, params = plan(
        migration_settings({"algorithm": "xbzrle", "xbzrle_cache_mib": 16}), libvirt
    )
    assert flags == libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_COMPRESSED
    assert params == {"compression": "xbzrle", "compression.xbzrle.cache": 16 * 2**20}
    flags, params = plan(migration_settings({"algorithm": "auto-converge"}), libvirt)  # alias
    assert (flags, params) == (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_AUTO_CONVERGE, {})
    assert plan(migration_settings({}), libvirt) == (libvirt.VIR_MIGRATE_LIVE, {})
    req = requested_record(migration_settings({"algorithm": "precopy", "max_downtime_ms": 50}))
    assert req == {"algorithm": "precopy", "bandwidth_mibps": None, "max_downtime_ms": 50.0,
                   "multifd_channels": None, "xbzrle_cache_mib": None}  # fmt: skip


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"algorithm": "rdma"}, "migration.algorithm: 'rdma' is not one of precopy"),
        ({"multifd_channels": 0}, "migration.multifd_channels: 0 is not a whole number"),
        ({"multifd_channels": 2.5}, "migration.multifd_channels: 2.5 is not a whole number"),
        ({"bandwidth_mibps": "fast"}, "migration.bandwidth_mibps: 'fast' is not a number"),
        ({"max_downtime_ms": -1}, "migration.max_downtime_ms: -1 is negative"),
        ({"mode": "ssh"}, "migration.mode: 'ssh' is not one of client, p2p"),
    ],
)
def test_bad_migration_settings_are_one_line_errors(values, message) -> None:
    from migfw.testbed.migration_settings import migration_settings

    with pytest.raises(MigfwError, match=message):
        migration_settings(values)


def test_in_force_record_reads_qemus_view() -> None:
    from migfw.testbed.migration_settings import in_force_record

    # QEMU 7.2's answers to query-migrate-parameters/-capabilities during a multifd migration.
    params = {"max-bandwidth": 67108864, "downtime-limit": 300, "multifd-channels": 3,
              "xbzrle-cache-size": 67108864}  # fmt: skip
    caps = {"events": True, "multifd": True, "xbzrle": False, "postcopy-ram": False}
    rec = in_force_record(64.0, 300.0, params, caps, 128.0, False)
    assert rec["algorithm"] == "multifd" and rec["multifd_channels"] == 3
    assert rec["qemu_max_bandwidth_mibps"] == 64.0 and rec["qemu_downtime_limit_ms"] == 300
    assert rec["xbzrle_cache_mib"] is None and rec["qemu_capabilities"] == ["events", "multifd"]
    caps = {"events": True, "xbzrle": True}
    assert in_force_record(None, None, params, caps, None, False)["xbzrle_cache_mib"] == 64.0
    assert in_force_record(None, None, params, {"events": True}, None, False)["algorithm"] == (
        "precopy"
    )
    assert in_force_record(None, None, None, None, None, False)["algorithm"] is None


def test_phases_jobstats_rows_and_sampling(tmp_path) -> None:
    from migfw.testbed.migration_events import phases_from_events
    from migfw.testbed.migration_jobstats import (
        JOBSTATS_COLUMNS,
        estimate_delivery,
        jobstats_row,
        sampling_summary,
        write_jobstats,
    )

    events = [
        {"t": 10.0, "host": "B", "event": "started", "detail": "migrated"},
        {"t": 12.5, "host": "A", "event": "suspended", "detail": "postcopy"},
        {"t": 13.0, "host": "A", "event": "suspended", "detail": "migrated"},
        {"t": 13.2, "host": "B", "event": "resumed", "detail": "migrated"},
        {"t": 13.3, "host": "B", "event": "resumed", "detail": "postcopy"},
        {"t": 15.0, "host": "A", "event": "stopped", "detail": "migrated"},
    ]
    p = phases_from_events(events, [], postcopy_requested_at=12.4)
    assert (p["suspended"], p["postcopy_switch"], p["resumed"], p["finished"]) == (
        13.0, 12.5, 13.2, 15.0)  # fmt: skip
    assert p["postcopy_requested"] == 12.4
    assert (p["pause"], p["resume"]) == (12.5, 13.2)  # the post-copy switch stops the guest first
    # QEMU reports 2560 dirty pages/s of 4 KiB = 10 MiB/s.
    row = jobstats_row(1.5, 2, {"memory_dirty_rate": 2560, "memory_page_size": 4096,
                                "memory_iteration": 2}, rpc_ms=1.25)  # fmt: skip
    assert row["dirty_rate_mibps"] == 10.0 and row["memory_iteration"] == 2
    assert jobstats_row(1.5, 2, {})["dirty_rate_mibps"] is None
    rows = [dict(row, t=t, rpc_ms=r) for t, r in ((0.0, 1.0), (0.025, 3.0), (0.075, 40.0))]
    assert sampling_summary(rows, 0.025) == {"period_s": 0.025, "samples": 3,
                                             "max_gap_ms": 50.0, "median_gap_ms": 50.0}  # fmt: skip
    assert estimate_delivery(rows) == {"typical_ms": 1.5, "max_ms": 40.0}
    write_jobstats(tmp_path / "jobstats.csv", rows)
    lines = (tmp_path / "jobstats.csv").read_text().splitlines()
    assert lines[0] == ",".join(JOBSTATS_COLUMNS) and len(lines) == 4


# ------------------------------------------------------------------ guest workload


def test_workload_settings_and_the_dirty_report() -> None:
    from migfw.testbed.workload import parse_report, workload_settings

    assert workload_settings({"interval_s": 0.01}) == {
        "workload": "idle", "dirty_mib": 32.0, "dirty_rate_mibps": 8.0,
        "service_rate_hz": 2.0}  # fmt: skip
    s = workload_settings({"workload": "dirty", "dirty_mib": 64, "dirty_rate_mibps": "16"})
    assert (s["dirty_mib"], s["dirty_rate_mibps"]) == (64.0, 16.0)
    with pytest.raises(MigfwError, match="workload: 'stress' is not one of idle, dirty"):
        workload_settings({"workload": "stress"})
    with pytest.raises(MigfwError, match="dirty_mib: 0 must be positive"):
        workload_settings({"dirty_mib": 0})
    # The line migfw-dirty wrote for 16 MiB at 8 MiB/s, stopped after 2.41 s.
    line = ("working_set_mib=16.000 rate_mibps=8.000 pages_written=4935 seconds=2.410 "
            "achieved_mibps=8.000 last_second_mibps=0.000 final=1\n")  # fmt: skip
    rep = parse_report(line)
    assert rep["pages_written"] == 4935 and rep["final"] == 1
    assert rep["achieved_mibps"] == 8.0
    assert rep["pages_written"] * 4096 / 2**20 / rep["seconds"] == pytest.approx(8.0, abs=0.01)


def test_dirty_program_writes_at_the_rate_it_is_asked(tmp_path) -> None:
    """resources/guest/dirty.c, compiled as the image builder does, run on the host."""
    import shutil
    import signal
    import subprocess
    import time

    from migfw.testbed.guest import build_dirty
    from migfw.testbed.workload import parse_report

    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    binary = tmp_path / "migfw-dirty"
    assert build_dirty(binary).startswith("gcc")
    report = tmp_path / "report"
    proc = subprocess.Popen([str(binary), "8", "4", str(report)])
    time.sleep(2.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    rep = parse_report(report.read_text())
    assert rep["final"] == 1 and rep["working_set_mib"] == 8.0 and rep["rate_mibps"] == 4.0
    # Pages are owed per 10 ms tick from absolute deadlines: the rate holds to within a tick.
    assert rep["achieved_mibps"] == pytest.approx(4.0, rel=0.05)
    assert subprocess.run([str(binary)], capture_output=True).returncode == 2
