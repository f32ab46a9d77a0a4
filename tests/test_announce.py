"""migfw.measure.announce: RARP announcements and gratuitous ARPs from crafted captures.

The frames are built here byte by byte from the documented layouts (RFC 903 RARP, RFC 826
ARP, QEMU's `announce_self_create`: broadcast, opcode 3, sender = target = the NIC's MAC,
no IP addresses, padded to 60 bytes) at known capture times, among probe echoes and ARP
traffic that is not an announcement, so the expected list is known exactly.
"""

from __future__ import annotations

import ipaddress
import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pcapcraft as pc  # noqa: E402

from migfw.measure.announce import read_announcements  # noqa: E402
from migfw.testbed.prober import capture_filter  # noqa: E402

T0 = 1_700_000_000 * 10**9
VM_MAC = bytes.fromhex("525400e7000a")
OTHER_MAC = bytes.fromhex("525400aa00bb")
BROADCAST = b"\xff" * 6


def _arp_body(op: int, sha: bytes, spa: str, tha: bytes, tpa: str) -> bytes:
    ip = ipaddress.IPv4Address
    return struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + sha + ip(spa).packed + tha + ip(tpa).packed


def _eth(dst: bytes, src: bytes, ethertype: int, body: bytes, vlan: bool = False) -> bytes:
    tag = struct.pack("!HH", 0x8100, 42) if vlan else b""
    return (dst + src + tag + struct.pack("!H", ethertype) + body).ljust(60, b"\0")


def qemu_rarp(mac: bytes = VM_MAC, vlan: bool = False) -> bytes:
    return _eth(BROADCAST, mac, 0x8035, _arp_body(3, mac, "0.0.0.0", mac, "0.0.0.0"), vlan)


def garp(ip: str, mac: bytes = VM_MAC) -> bytes:
    return _eth(BROADCAST, mac, 0x0806, _arp_body(1, mac, ip, b"\0" * 6, ip))


def _capture() -> tuple[list[tuple[int, bytes]], list[tuple[int, str, str]]]:
    """Frames (epoch ns, bytes) and the announcements among them (epoch ns, kind, MAC)."""
    vm = ":".join(f"{b:02x}" for b in VM_MAC)
    trial = pc.make_trial(50, 0.01, lost=set(range(20, 30)), start_ns=T0)
    frames = [(t, pc.frame(1, p)) for t, p in trial.packets]
    truth = []
    # QEMU's self-announce schedule after the resume at T0 + 0.3 s: 0, 50, 150, 250, 350 ms.
    for k, offset_ms in enumerate((0, 50, 150, 250, 350)):
        t = T0 + 300_000_000 + offset_ms * 1_000_000 + 123  # ns digits must survive
        frames.append((t, qemu_rarp(vlan=k == 2)))  # one behind an 802.1Q tag
        truth.append((t, "rarp", vm))
    t = T0 + 310_000_017
    frames.append((t, garp(pc.TARGET4)))
    truth.append((t, "garp", vm))
    # Not announcements: an ARP request for the VM, a GARP of another host, a RARP reply-less
    # opcode 1 frame with ethertype 0x8035, a truncated RARP.
    frames.append(
        (
            T0 + 5,
            _eth(
                BROADCAST,
                OTHER_MAC,
                0x0806,
                _arp_body(1, OTHER_MAC, "10.231.0.2", b"\0" * 6, pc.TARGET4),
            ),
        )
    )
    frames.append((T0 + 6, garp("10.231.0.99", OTHER_MAC)))
    frames.append(
        (
            T0 + 7,
            _eth(
                BROADCAST,
                OTHER_MAC,
                0x8035,
                _arp_body(1, OTHER_MAC, "0.0.0.0", OTHER_MAC, "0.0.0.0"),
            ),
        )
    )
    frames.append((T0 + 8, (BROADCAST + VM_MAC + b"\x80\x35" + b"\0\x01\x08\x00")))
    frames.sort(key=lambda f: f[0])  # fmt: skip
    return frames, sorted(truth)


def _found(path: Path) -> list[tuple[int, str, str]]:
    return [(a.t_ns, a.kind, a.mac) for a in read_announcements(path, pc.TARGET4)]


def test_pcap_ns_gives_every_announcement_at_its_exact_time(tmp_path: Path) -> None:
    frames, truth = _capture()
    assert _found(pc.write_pcap(tmp_path / "c.pcap", frames, nano=True)) == truth


def test_pcap_us_truncates_to_microseconds(tmp_path: Path) -> None:
    frames, truth = _capture()
    got = _found(pc.write_pcap(tmp_path / "c.pcap", frames, nano=False, be=True))
    assert got == [(t // 1000 * 1000, k, m) for t, k, m in truth]


def test_pcapng_with_nanosecond_interface(tmp_path: Path) -> None:
    frames, truth = _capture()
    section = pc.Section(ifaces=[pc.Iface(tsresol=9)],
                         packets=[(0, t, f, "epb") for t, f in frames])  # fmt: skip
    assert _found(pc.write_pcapng(tmp_path / "c.pcapng", [section])) == truth


def test_without_target_any_gratuitous_arp_counts(tmp_path: Path) -> None:
    frames, truth = _capture()
    path = pc.write_pcap(tmp_path / "c.pcap", frames, nano=True)
    garps = [a for a in read_announcements(path) if a.kind == "garp"]
    assert len(garps) == 2  # the VM's and the other host's


def test_a_capture_that_is_not_ethernet_has_none(tmp_path: Path) -> None:
    trial = pc.make_trial(10, 0.01, start_ns=T0)
    path = pc.write_pcap(tmp_path / "raw.pcap", trial.packets, linktype=101, nano=True)
    assert read_announcements(path, pc.TARGET4) == []


@pytest.mark.skipif(not __import__("shutil").which("tcpdump"), reason="tcpdump not installed")
def test_the_probe_capture_filter_keeps_announcements_and_probes(tmp_path: Path) -> None:
    """The prober's tcpdump filter, applied by tcpdump itself to the crafted capture: the
    untagged announcements and the probes pass, the other host's ARP traffic does not (the
    testbed's bridge is untagged; BPF's `rarp` does not look behind an 802.1Q tag)."""
    import subprocess

    frames, truth = _capture()
    src = pc.write_pcap(tmp_path / "all.pcap", frames, nano=True)
    out = tmp_path / "kept.pcap"
    subprocess.run(["tcpdump", "--time-stamp-precision=nano", "-r", str(src), "-w", str(out),
                    capture_filter(pc.TARGET4)],
                   check=True, capture_output=True)  # fmt: skip
    tagged = (T0 + 450_000_123, "rarp", "52:54:00:e7:00:0a")  # the 802.1Q-tagged one
    assert _found(out) == [a for a in truth if a != tagged]
    from migfw.measure.capture import read_echoes

    echoes = read_echoes(out, pc.TARGET4)
    assert int((echoes.kind == 0).sum()) == 50 and int((echoes.kind == 1).sum()) == 40


def test_the_timeline_phase_band_draws_each_announcement_at_its_time(tmp_path: Path) -> None:
    """draw_phases puts one tick per RARP / gratuitous ARP at (capture time − t0)."""
    from matplotlib.figure import Figure

    from migfw.measure.phases import draw_phases

    frames, truth = _capture()
    announced = read_announcements(pc.write_pcap(tmp_path / "c.pcap", frames, nano=True),
                                   pc.TARGET4)  # fmt: skip
    t0 = T0 / 1e9
    phases = {"suspended": t0 + 0.25, "resumed": t0 + 0.3, "finished": t0 + 0.5}
    ax = Figure().subplots()
    draw_phases(ax, phases, None, t0, announced)
    drawn = {c.get_gid(): sorted(seg[0][0] for seg in c.get_segments()) for c in ax.collections}
    for kind in ("rarp", "garp"):
        want = [t / 1e9 - t0 for t, k, _ in truth if k == kind]
        assert drawn[f"announce-{kind}"] == pytest.approx(want, abs=1e-6)
    labels = ax.get_legend_handles_labels()[1]
    assert "RARP (QEMU) ×5" in labels and "gratuitous ARP (guest) ×1" in labels
