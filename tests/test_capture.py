"""migfw.measure.capture against crafted files (tests/pcapcraft.py) and real captures."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pcapcraft as pc  # noqa: E402

from migfw.errors import MigfwError  # noqa: E402
from migfw.measure import capture  # noqa: E402
from migfw.measure.capture import echo_destinations, read_echoes  # noqa: E402

T0 = 1_700_000_000 * 10**9 + 123_456_789  # a time with every digit down to the ns used


def _echo_stream(v6: bool = False, n: int = 6) -> list[tuple[int, int, int, int, bytes]]:
    """(ts, kind, ident, seq, ip) alternating request/reply, 1 ms apart."""
    out = []
    for i in range(n):
        kind = i % 2
        seq = 65530 + i // 2
        out.append(
            (
                T0 + i * 1_000_000 + i * 7,
                kind,
                0x1234,
                seq % 65536,
                pc.echo(kind, 0x1234, seq % 65536, v6),
            )
        )
    return out


def _check(e, stream, ts_unit_ns: int = 1) -> None:
    want_ts = [s[0] // ts_unit_ns * ts_unit_ns for s in stream]
    assert e.ts_ns.tolist() == want_ts
    assert e.kind.tolist() == [s[1] for s in stream]
    assert e.ident.tolist() == [s[2] for s in stream]
    assert e.seq.tolist() == [s[3] for s in stream]


# ------------------------------------------------------------------ classic pcap


@pytest.mark.parametrize("nano", [False, True])
@pytest.mark.parametrize("be", [False, True])
@pytest.mark.parametrize("linktype", pc.LINKTYPES)
def test_pcap_every_linktype_and_variant(tmp_path, linktype, be, nano):
    v6 = linktype == 229
    stream = _echo_stream(v6)
    pkts = [(ts, pc.frame(linktype, ip, be=be)) for ts, _, _, _, ip in stream]
    # noise: an echo to another host and a non-ICMP packet must not be reported
    other = (
        pc.icmp4(pc.PROBER4, "10.231.0.99", 8, 1, 1)
        if not v6
        else pc.icmp6(pc.PROBER6, "fd00::99", 128, 1, 1)
    )
    udp = (
        pc.icmp4(pc.PROBER4, pc.TARGET4, 8, 1, 1, proto=17)
        if not v6
        else pc.icmp6(pc.PROBER6, pc.TARGET6, 1, 1, 1)
    )
    pkts.insert(2, (T0 + 10, pc.frame(linktype, other, be=be)))
    pkts.insert(3, (T0 + 20, pc.frame(linktype, udp, be=be)))
    f = pc.write_pcap(tmp_path / "x.cap", pkts, linktype=linktype, nano=nano, be=be)
    e = read_echoes(f, pc.TARGET6 if v6 else pc.TARGET4)
    _check(e, stream, 1 if nano else 1000)
    assert (e.packets, e.echo_packets, e.other_packets) == (8, 7, 1)
    assert e.linktypes == {linktype: 8}


@pytest.mark.parametrize("linktype", [1, 101, 0, 108, 113, 276])
def test_ipv6_echo_on_linktypes(tmp_path, linktype):
    stream = _echo_stream(v6=True)
    f = pc.write_pcap(
        tmp_path / "x",
        [(s[0], pc.frame(linktype, s[4])) for s in stream],
        linktype=linktype,
        nano=True,
    )
    _check(read_echoes(f, pc.TARGET6), stream)
    assert len(read_echoes(f, pc.TARGET4)) == 0


@pytest.mark.parametrize(
    "vlans", [(0x8100,), (0x88A8,), (0x9100,), (0x88A8, 0x8100), (0x9100, 0x8100, 0x8100)]
)
@pytest.mark.parametrize("linktype", [1, 113])
def test_vlan_tags(tmp_path, vlans, linktype):
    stream = _echo_stream()
    pkts = [(s[0], pc.frame(linktype, s[4], vlans=vlans)) for s in stream]
    f = pc.write_pcap(tmp_path / "v", pkts, linktype=linktype, nano=True)
    _check(read_echoes(f, pc.TARGET4), stream)


def test_ipv6_extension_headers_and_fragments(tmp_path):
    t = T0
    pkts = [
        (t, pc.icmp6(pc.PROBER6, pc.TARGET6, 128, 9, 1, ext=(0, 60))),  # hop-by-hop + dest-opts
        (t + 1, pc.icmp6(pc.TARGET6, pc.PROBER6, 129, 9, 1, ext=(43,))),  # routing
        (t + 2, pc.icmp6(pc.PROBER6, pc.TARGET6, 128, 9, 2, frag_offset=0)),  # first fragment
        (t + 3, pc.icmp6(pc.PROBER6, pc.TARGET6, 128, 9, 3, frag_offset=8)),  # later: skipped
        (t + 4, pc.icmp6(pc.PROBER6, pc.TARGET6, 128, 9, 4, ext=(0,), frag_offset=0)),
    ]
    f = pc.write_pcap(
        tmp_path / "x", [(ts, pc.frame(101, p)) for ts, p in pkts], linktype=101, nano=True
    )
    e = read_echoes(f, pc.TARGET6)
    assert e.seq.tolist() == [1, 1, 2, 4]
    assert e.kind.tolist() == [0, 1, 0, 0]
    assert e.echo_packets == 4 and e.other_packets == 1


def test_ipv4_fragments_total_length_zero_and_nonzero_code(tmp_path):
    pkts = [
        (T0, pc.icmp4(pc.PROBER4, pc.TARGET4, 8, 5, 1, total_length=0)),  # TSO: length 0
        (T0 + 1, pc.icmp4(pc.PROBER4, pc.TARGET4, 8, 5, 2, frag_offset=185)),  # later fragment
        (T0 + 2, pc.icmp4(pc.TARGET4, pc.PROBER4, 0, 5, 1, code=3)),  # odd code still echo
        (T0 + 3, pc.icmp4(pc.PROBER4, pc.TARGET4, 8, 5, 3, total_length=10)),  # bogus: < IHL
        (T0 + 4, pc.icmp4(pc.PROBER4, pc.TARGET4, 8, 5, 4)[:24]),  # ICMP header cut by snaplen
    ]
    f = pc.write_pcap(tmp_path / "x", [(t, pc.frame(1, p)) for t, p in pkts], nano=True)
    e = read_echoes(f, pc.TARGET4)
    assert e.seq.tolist() == [1, 1] and e.kind.tolist() == [0, 1]
    assert e.ts_ns.tolist() == [T0, T0 + 2]
    assert (e.packets, e.echo_packets, e.other_packets) == (5, 2, 3)


def test_null_linktype_in_either_byte_order(tmp_path):
    stream = _echo_stream()
    # A BSD NULL header written by a big-endian host inside a little-endian file.
    f = pc.write_pcap(
        tmp_path / "x", [(s[0], pc.frame(0, s[4], be=True)) for s in stream], linktype=0, nano=True
    )
    _check(read_echoes(f, pc.TARGET4), stream)


# ------------------------------------------------------------------ pcapng


@pytest.mark.parametrize("be", [False, True])
@pytest.mark.parametrize("resol", [None, 6, 9, 3, 0, 12, 0x88, 0x80 | 30, 0x80 | 40])
def test_pcapng_tsresol(tmp_path, be, resol):
    # Fine resolutions overflow 64 bits at epoch times: if_tsoffset moves the epoch.
    offset = 1_700_000_000 if resol in (12, 0x80 | 40) else 0
    iface = pc.Iface(1, tsresol=resol, tsoffset=offset)
    stream = _echo_stream()
    sec = pc.Section(be=be, ifaces=[iface])
    sec.packets = [(0, s[0], pc.frame(1, s[4]), "epb") for s in stream]
    e = read_echoes(pc.write_pcapng(tmp_path / "x.ng", [sec]), pc.TARGET4)
    # Expected: the written tick count converted back to ns with exact integer arithmetic.
    r = 6 if resol is None else resol
    want = []
    for s in stream:
        t = pc.ticks(s[0], iface)
        if r & 0x80:
            ns = (t * 10**9) >> (r & 0x7F)
        elif r <= 9:
            ns = t * 10 ** (9 - r)
        else:
            ns = t // 10 ** (r - 9)
        want.append(ns + offset * 10**9)
    assert e.ts_ns.tolist() == want
    if r in (9, 12):
        assert want == [s[0] for s in stream]


def test_pcapng_tsresol_2_pow_minus_8_exact(tmp_path):
    """if_tsresol 0x88: ticks of 1/256 s = 3,906,250 ns."""
    iface = pc.Iface(1, tsresol=0x88)
    base = 1_519_128_000 * 10**9
    times = [base + k * 3_906_250 for k in (0, 1, 50, 255, 256, 1000)]
    sec = pc.Section(
        ifaces=[iface],
        packets=[(0, t, pc.frame(1, pc.echo(0, 1, i)), "epb") for i, t in enumerate(times)],
    )
    e = read_echoes(pc.write_pcapng(tmp_path / "p2", [sec]), pc.TARGET4)
    assert e.ts_ns.tolist() == times


def test_pcapng_multi_section_multi_interface(tmp_path):
    """Two sections of opposite byte order; interfaces with different link types,
    resolutions, snaplens and a tsoffset; EPB, obsolete PB, and unknown blocks skipped."""
    s1 = pc.Section(
        be=False,
        ifaces=[
            pc.Iface(1, tsresol=9, snaplen=128),
            pc.Iface(113, tsresol=6, tsoffset=1000, snaplen=65535),
        ],
        extra_blocks=[(0x00000004, b"\0" * 8), (0x0BAD, b"junk")],
    )
    s1.packets = [
        (0, T0, pc.frame(1, pc.echo(0, 7, 1)), "epb"),
        (1, T0 + 1_000_000_000, pc.frame(113, pc.echo(1, 7, 1)), "epb"),
        (0, T0 + 2_000_000_000, pc.frame(1, pc.echo(0, 7, 2)), "pb"),
    ]
    s2 = pc.Section(be=True, ifaces=[pc.Iface(101, tsresol=9)], version=(1, 2))
    s2.packets = [(0, T0 + 3_000_000_000, pc.echo(1, 7, 2), "epb")]
    f = pc.write_pcapng(tmp_path / "m", [s1, s2])
    e = read_echoes(f, pc.TARGET4)
    assert e.ts_ns.tolist() == [
        T0,
        T0 + 1_000_000_000 - 789,
        T0 + 2_000_000_000,
        T0 + 3_000_000_000,
    ]
    assert e.kind.tolist() == [0, 1, 0, 1] and e.seq.tolist() == [1, 1, 2, 2]
    assert e.linktypes == {1: 2, 113: 1, 101: 1}
    assert e.fmt == "pcapng (2 sections)"


def test_pcapng_simple_packet_block(tmp_path):
    sec = pc.Section(ifaces=[pc.Iface(1)])
    sec.packets = [(0, T0, pc.frame(1, pc.icmp4(pc.PROBER4, "10.231.0.77", 8, 1, 1)), "spb")]
    f = pc.write_pcapng(tmp_path / "s", [sec])
    assert echo_destinations(f) == {"10.231.0.77": 1}  # no time needed to list
    assert len(read_echoes(f, pc.TARGET4)) == 0
    sec.packets = [(0, T0, pc.frame(1, pc.echo(0, 1, 1)), "spb")]
    with pytest.raises(MigfwError, match="Simple Packet Blocks.*no timestamp"):
        read_echoes(pc.write_pcapng(tmp_path / "s2", [sec]), pc.TARGET4)


# ------------------------------------------------------------------ chunking


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_small_chunks_carry_partial_records(tmp_path, monkeypatch, kind):
    """Records straddling chunk boundaries (and pcapng blocks bigger than a chunk)."""
    monkeypatch.setattr(capture.containers, "CHUNK_BYTES", 200)  # the chunked reader's
    trial = pc.make_trial(300, 0.001, lost={5, 6, 7}, seed=3)
    pkts = [(t, pc.frame(1, p)) for t, p in trial.packets]
    big = pc.icmp4(pc.TARGET4, "10.231.0.50", 8, 1, 1, payload=b"y" * 1400)  # > one chunk
    pkts.insert(10, (pkts[9][0], pc.frame(1, big)))
    if kind == "pcap":
        f = pc.write_pcap(tmp_path / "c", pkts, nano=True)
    else:
        f = pc.write_pcapng(
            tmp_path / "c",
            [
                pc.Section(
                    ifaces=[pc.Iface(1, tsresol=9)], packets=[(0, t, d, "epb") for t, d in pkts]
                )
            ],
        )
    e = read_echoes(f, pc.TARGET4)
    assert e.ts_ns.tolist() == [t for t, _ in trial.packets]
    assert e.packets == len(pkts) and int((e.kind == 0).sum()) == 300
    assert echo_destinations(f) == {pc.TARGET4: 300, "10.231.0.50": 1}


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_gzip_compressed_captures_read_as_they_are(tmp_path, monkeypatch, kind):
    """A .pcap.gz / .pcapng.gz (as shared online; tshark reads them as they are) gives the
    echoes of the uncompressed file, in small chunks too, from a file or a FIFO; corrupt or
    cut gzip data and other compressors are refused in one line."""
    import gzip
    import threading

    monkeypatch.setattr(capture.containers, "CHUNK_BYTES", 200)
    trial = pc.make_trial(200, 0.001, lost={5, 6}, seed=4)
    pkts = [(t, pc.frame(1, p)) for t, p in trial.packets]
    if kind == "pcap":
        raw = pc.pcap_bytes(pkts, nano=True)
    else:
        sec = pc.Section(ifaces=[pc.Iface(1, tsresol=9)])
        sec.packets = [(0, t, d, "epb") for t, d in pkts]
        raw = pc.pcapng_bytes([sec])
    packed = gzip.compress(raw)
    f = tmp_path / f"c.{kind}.gz"
    f.write_bytes(packed)
    e = read_echoes(f, pc.TARGET4)
    assert e.ts_ns.tolist() == [t for t, _ in trial.packets] and e.packets == len(pkts)
    assert echo_destinations(f) == {pc.TARGET4: 200}
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_bytes, args=(packed,))
    writer.start()
    try:
        assert read_echoes(fifo, pc.TARGET4).ts_ns.tolist() == e.ts_ns.tolist()
    finally:
        writer.join()
    f.write_bytes(packed[: len(packed) // 2])  # a download cut short
    _refused(f, "corrupt gzip data")
    bad = bytearray(packed)
    bad[len(bad) // 2] ^= 0xFF
    f.write_bytes(bytes(bad))
    _refused(f, "corrupt gzip data")
    f.write_bytes(gzip.compress(b"time,src,dst\n"))
    _refused(f, "looks like text", "at byte 0 of the decompressed data")
    f.write_bytes(gzip.compress(raw[:-5]))  # whole gzip, cut capture inside
    _refused(f, "file ends inside", "of the decompressed data")
    f.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 60)
    _refused(f, "zstd-compressed file: decompress it first")


# ------------------------------------------------------------------ refusals


def _refused(path, *words):
    with pytest.raises(MigfwError) as info:
        read_echoes(path, pc.TARGET4)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(str(path))
    for w in words:
        assert w in msg, msg
    return msg


def test_not_a_capture(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    _refused(tmp_path / "empty", "empty file", "at byte 0")
    (tmp_path / "text.pcap").write_text("timestamp,src,dst\n1,2,3\n")
    _refused(tmp_path / "text.pcap", "looks like text", "timestamp,src,dst")
    (tmp_path / "bin").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    _refused(tmp_path / "bin", "unknown magic number 0x89504e47")
    (tmp_path / "short").write_bytes(b"\xd4\xc3\xb2\xa1\x02\x00")
    _refused(tmp_path / "short", "truncated pcap file header")
    with pytest.raises(MigfwError, match="cannot open"):
        read_echoes(tmp_path / "absent.pcap", pc.TARGET4)


def test_bad_versions_and_linktype_bits(tmp_path):
    f = tmp_path / "v"
    f.write_bytes(pc.pcap_bytes([], version=(2, 5)))
    _refused(f, "unsupported pcap version 2.5")
    f.write_bytes(pc.pcap_bytes([], version=(1, 0)))
    _refused(f, "archaic pcap version 1.0")
    f.write_bytes(pc.pcap_bytes([], linktype_field=0x00300001))
    _refused(f, "reserved bits", "at byte 20")
    f.write_bytes(pc.pcap_bytes([(T0, pc.frame(1, pc.echo(0, 1, 1)))], linktype_field=0x14000001))
    assert len(read_echoes(f, pc.TARGET4)) == 1  # FCS-length bits are not reserved
    pc.write_pcapng(f, [pc.Section(version=(1, 1))])
    _refused(f, "unsupported pcapng version 1.1", "at byte 12")


def test_corrupt_records(tmp_path):
    good = pc.pcap_bytes(
        [(T0, pc.frame(1, pc.echo(0, 1, 1))), (T0 + 1000, pc.frame(1, pc.echo(1, 1, 1)))]
    )
    first = 24 + 16 + len(pc.frame(1, pc.echo(0, 1, 1)))
    f = tmp_path / "c.pcap"
    f.write_bytes(good[: first + 7])
    _refused(f, "inside a record header (7 of 16 bytes)", f"at byte {first}")
    f.write_bytes(good[:-5])
    _refused(f, "file ends inside a record", f"at byte {first}")
    bad = bytearray(good)
    bad[first + 8 : first + 12] = (300000).to_bytes(4, "little")
    f.write_bytes(bad)
    _refused(f, "claims 300000 captured bytes", f"at byte {first}")
    bad = bytearray(good)
    bad[first + 4 : first + 8] = (1_000_000).to_bytes(4, "little")
    f.write_bytes(bad)
    _refused(f, "microsecond field 1000000", f"at byte {first}")
    f.write_bytes(pc.pcap_bytes([(T0, pc.frame(1, pc.echo(0, 1, 1)))], nano=True, be=True))
    raw = bytearray(f.read_bytes())
    raw[28:32] = (10**9).to_bytes(4, "big")
    f.write_bytes(raw)
    _refused(f, "nanosecond field 1000000000", "at byte 24")


def test_corrupt_pcapng(tmp_path):
    sec = pc.Section(ifaces=[pc.Iface(1)], packets=[(0, T0, pc.frame(1, pc.echo(0, 1, 1)), "epb")])
    good = pc.pcapng_bytes([sec])
    f = tmp_path / "c.ng"
    f.write_bytes(good[:-6])
    _refused(f, "file ends inside a block")
    bad = bytearray(good)
    bad[-4:] = (12345).to_bytes(4, "little")
    f.write_bytes(bad)
    _refused(f, "header and trailer don't match")
    sec.packets = [(1, T0, pc.frame(1, pc.echo(0, 1, 1)), "epb")]
    f.write_bytes(pc.pcapng_bytes([sec]))
    _refused(f, "interface 1, which has no interface block")
    # An IDB option whose length runs past the block.
    e = "<"
    idb = pc.block(e, 1, b"\x01\x00\x00\x00\x00\x00\x00\x00" + b"\x09\x00\x40\x00" + b"\x06\0\0\0")
    shb = pc.block(e, 0x0A0D0D0A, (0x1A2B3C4D).to_bytes(4, "little") + b"\x01\0\0\0" + b"\xff" * 8)
    f.write_bytes(shb + idb)
    _refused(f, "option 9 of length 64 runs past the end of its block", f"at byte {len(shb) + 16}")
    f.write_bytes(shb + pc.block(e, 6, b"\0" * 4))
    _refused(f, "bad total length 16")


def test_pick_cache_dir(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "link.py").write_text("# v1")
    got = capture._pick_cache_dir(tmp_path / "pkg", tmp_path)  # in-tree is writable
    assert Path(got).parent == tmp_path / "pkg" / "__pycache__"
    # A folder per version of the kernels' sources: an edit to a called module (numba does
    # not see those) never meets machine code cached for the old one.
    (tmp_path / "pkg" / "link.py").write_text("# v2")
    assert capture._pick_cache_dir(tmp_path / "pkg", tmp_path) not in (got, None)
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a directory")
    got = capture._pick_cache_dir(blocker / "pkg", tmp_path / "home")
    assert Path(got).parent == tmp_path / "home" / ".cache" / "migfw"
    got = capture._pick_cache_dir(blocker / "pkg", blocker / "home")
    assert got.startswith("/") and "migfw-numba" in got


# ------------------------------------------------------------------ real third-party captures

TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "pcap"

# file -> (target, requests, replies) from the testdata README (tcpdump's counts)
EXPECTED = {
    "suricata_verify/icmpv4-ping.pcap": ("192.168.1.13", 75, 75),
    "suricata_verify/issue-4280-iprep_input.pcap": (None, 10, 5),
    "suricata_verify/icmp_and_ssh.pcap": ("8.8.8.8", 20, 20),
    "suricata_verify/icmp-ping-plus-weird-code.pcap": ("1.2.3.4", 2, 1),
    "suricata_verify/rsmurf6.pcap": ("ff02::1", 1000, 0),
    "suricata_verify/frag-30.pcap": ("2001:db8:1::1", 3, 2),
    "suricata_verify/detect-vlan-id_input.pcap": ("2.2.2.2", 1, 1),
    "suricata_verify/eve-flow-vlan-02_input.pcap": ("255.255.255.255", 3, 0),
    "dpkt/dns_icmp.pcap": (None, 12, 10),
    "dpkt/truncated_dns.pcap": (None, 0, 0),
    "pyshark/capture_test.pcapng": ("172.16.253.20", 4, 4),
    "tcpdump/e1000g.pcap": ("10.5.233.117", 10, 10),
    "tcpdump/HDLC.pcap": ("10.0.0.2", 5, 5),
    # tcpdump says 0/0 ("bad-len 0"); the brief: read TSO length-0 packets by caplen
    "tcpdump/icmp-length-zero.pcapng": ("10.25.132.13", 1, 0),
    "tcpdump/tcp-handshake-nano.pcap": (None, 0, 0),
    "libpcap/gateway_or_not.pcap": (None, 6, 6),
    **{f"gopacket_pcapng_suite/{n}": (None, 0, 0) for n in (
        "le_test001.pcapng", "be_test001.pcapng", "le_test002.pcapng", "le_test006.pcapng",
        "le_test008.pcapng", "be_test008.pcapng", "le_test010.pcapng", "le_test202.pcapng",
        "le_test902.pcapng",
    )},
}  # fmt: skip

REFUSED = {
    "suricata_verify/bug-6875-01_fuzz.pcap": ("claims 1409179648 captured bytes", 228),
    "dpkt/truncated_dns_2.pcap": ("inside a record header", 240),
    "tcpdump/timestamp_invalid_micro.pcap": ("microsecond field", 116),
    "tcpdump/timestamp_invalid_nano.pcap": ("nanosecond field", 116),
    "libpcap/pcap-invalid-version-1.pcap": ("archaic pcap version", 4),
    "libpcap/pcap-invalid-version-2.pcap": ("unsupported pcap version 2.5", 4),
    "libpcap/pcapng-invalid-vers-1.pcapng": ("unsupported pcapng version 0.1", 12),
    "libpcap/pcapng-invalid-vers-2.pcapng": ("unsupported pcapng version 1.1", 12),
    "libpcap/shb-option-too-long.pcapng": ("don't match", 0),
    "libpcap/linktype-reserved-field-not-zero.pcap": ("reserved bits", 20),
}


def _need_testdata():
    if not TESTDATA.is_dir():
        pytest.skip("../shared/testdata is absent (a user's clone)")


def _tshark_counts(path: Path) -> tuple[int, int, dict[str, int]]:
    """(requests, replies, request destinations) by tshark, outer ICMP header only."""
    res = subprocess.run(
        ["tshark", "-n", "-r", str(path),
         "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE",
         "-T", "fields", "-E", "occurrence=f", "-e", "icmp.type", "-e", "icmpv6.type",
         "-e", "ip.dst", "-e", "ipv6.dst"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    req = rep = 0
    dests: dict[str, int] = {}
    for line in res.stdout.splitlines():
        t4, t6, d4, d6 = (line.split("\t") + ["", "", "", ""])[:4]
        if t4 == "8" or t6 == "128":
            req += 1
            dests[d4 or d6] = dests.get(d4 or d6, 0) + 1
        elif t4 == "0" or t6 == "129":
            rep += 1
    return req, rep, dests


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_capture_counts(name):
    _need_testdata()
    path = TESTDATA / name
    target, want_req, want_rep = EXPECTED[name]
    dests = echo_destinations(path)
    assert sum(dests.values()) == want_req
    if target is not None:
        e = read_echoes(path, target)
        assert int((e.kind == 0).sum()) == want_req
        assert int((e.kind == 1).sum()) == want_rep
        assert np.all(e.ts_ns > 10**18)  # absolute epoch ns (all these files are 2000s+)
    if shutil.which("tshark"):
        t_req, t_rep, t_dests = _tshark_counts(path)
        assert dests == t_dests
        if target is not None:
            assert (want_req, want_rep) == (t_req, t_rep)


def test_real_capture_timestamps_match_tshark():
    _need_testdata()
    if not shutil.which("tshark"):
        pytest.skip("tshark absent")
    for name, target in [
        ("suricata_verify/icmpv4-ping.pcap", "192.168.1.13"),
        ("pyshark/capture_test.pcapng", "172.16.253.20"),
        ("tcpdump/e1000g.pcap", "10.5.233.117"),
    ]:
        path = TESTDATA / name
        flt = f"(icmp.type==8 && ip.dst=={target}) || (icmp.type==0 && ip.src=={target})"
        res = subprocess.run(
            ["tshark", "-r", str(path), "-Y", flt,
             "-T", "fields", "-e", "frame.time_epoch", "-e", "icmp.seq"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        rows = [line.split("\t") for line in res.stdout.split("\n") if line]
        want = [round(float(a) * 1e6) * 1000 for a, _ in rows]  # files are µs
        e = read_echoes(path, target)
        assert e.ts_ns.tolist() == want
        assert e.seq.tolist() == [int(b) for _, b in rows]


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_real_capture_refused(name):
    _need_testdata()
    path = TESTDATA / name
    words, offset = REFUSED[name]
    _refused(path, words, f"at byte {offset}")


@pytest.mark.slow
def test_numba_cache_with_read_only_package(tmp_path):
    """Bind-mount the package read-only in a private mount namespace: the reader must
    still import, compile into ~/.cache/migfw/numba and read a capture."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare for a private read-only bind mount")
    pkg = Path(capture.__file__).resolve().parent
    f = pc.write_pcap(tmp_path / "x.pcap", [(T0, pc.frame(1, pc.echo(0, 1, 1)))])
    code = (
        "from migfw.measure.probes import analyse_capture; import os;"
        f"print(analyse_capture({str(f)!r}, None, 1.0)['ps'], os.environ['NUMBA_CACHE_DIR'])"
    )
    script = f'mount --bind -o ro {pkg} {pkg} && {sys.executable} -c "{code}"'
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["HOME"] = str(tmp_path / "home")
    res = subprocess.run(
        ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    if res.returncode and "mount" in res.stderr and "denied" in res.stderr.lower():
        pytest.skip(f"cannot bind-mount here: {res.stderr.strip()}")
    assert res.returncode == 0, res.stderr
    ps, cache = res.stdout.split()
    assert ps == "1" and Path(cache).parent == tmp_path / "home" / ".cache" / "migfw"
    assert any(Path(cache).iterdir())


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_fuzzed_files_parse_or_refuse_cleanly(tmp_path, kind):
    """Random byte corruption and truncation: every result is either a read or one
    MigfwError line; never another exception or a crash (the kernels do no bounds checks,
    so every length they trust must be checked first)."""
    import random

    trial = pc.make_trial(40, 0.01, lost={3}, v6=False, noise_every=7)
    pkts = [(t, pc.frame(1, p, vlans=(0x8100,))) for t, p in trial.packets]
    if kind == "pcap":
        good = pc.pcap_bytes(pkts, nano=True)
    else:
        ifaces = [pc.Iface(1, tsresol=9), pc.Iface(229, tsresol=0x88, tsoffset=5)]
        sec = pc.Section(ifaces=ifaces, packets=[(0, t, d, "epb") for t, d in pkts])
        sec.packets.append((1, T0, pc.echo(0, 1, 1, v6=True), "spb"))
        good = pc.pcapng_bytes([sec, pc.Section(be=True, packets=sec.packets[:5])])
    rng = random.Random(20130107)
    f = tmp_path / "fuzz"
    outcomes = {"read": 0, "refused": 0}
    for _ in range(400):
        data = bytearray(good)
        for _ in range(rng.choice((1, 2, 8))):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.2:
            data = data[: rng.randrange(len(data))]
        f.write_bytes(bytes(data))
        for call in (lambda: read_echoes(f, pc.TARGET4), lambda: echo_destinations(f)):
            try:
                call()
                outcomes["read"] += 1
            except MigfwError as exc:
                assert "\n" not in str(exc) and str(exc).startswith(str(f))
                outcomes["refused"] += 1
    assert outcomes["read"] > 50 and outcomes["refused"] > 50, outcomes


def _tshark_echoes(path: Path) -> list[tuple[int, int, int, str]]:
    """(epoch ns, ICMP/ICMPv6 type, seq, checksum status) of every echo, by tshark."""
    res = subprocess.run(
        ["tshark", "-n", "-r", str(path), "-T", "fields", "-e", "frame.time_epoch",
         "-e", "icmp.type", "-e", "icmpv6.type", "-e", "icmp.seq",
         "-e", "icmpv6.echo.sequence_number", "-e", "icmp.checksum.status",
         "-e", "icmpv6.checksum.status"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    out = []
    for line in res.stdout.splitlines():
        t, ty4, ty6, s4, s6, c4, c6 = line.split("\t")
        ns = int(t.replace(".", ""))  # 9 decimals: the exact ns value as a string
        out.append((ns, int(ty4 or ty6), int(s4 or s6), c4 or c6))
    return out


def _ours(path: Path) -> list[tuple[int, int, int]]:
    rows = []
    for target, types in ((pc.TARGET4, (8, 0)), (pc.TARGET6, (128, 129))):
        e = read_echoes(path, target)
        kinds = [types[k] for k in e.kind.tolist()]
        rows += zip(e.ts_ns.tolist(), kinds, e.seq.tolist(), strict=True)
    return sorted(rows)


def test_crafted_files_decode_in_tshark_too(tmp_path):
    """The writer is checked by a peer tool: tshark decodes every crafted link type and
    container as the same echo packets (time, type, seq; valid checksums) as the reader."""
    if not shutil.which("tshark"):
        pytest.skip("tshark absent")
    # One pcapng, one interface per (link type, IP version), each with its own tsresol.
    sec = pc.Section(be=True)
    sec.ifaces, sec.packets = [], []
    t = T0
    for lt in pc.LINKTYPES:
        for v6 in (False, True) if lt not in (228, 229) else (lt == 229,):
            sec.ifaces.append(pc.Iface(lt, tsresol=9 if len(sec.ifaces) % 2 else 6))
            vl = (0x88A8, 0x8100) if lt in (1, 113) else ()
            for k in range(2):
                t += 1_000_000
                ip = pc.echo(k, 7, len(sec.packets), v6)
                sec.packets.append((len(sec.ifaces) - 1, t, pc.frame(lt, ip, vlans=vl), "epb"))
    files = [pc.write_pcapng(tmp_path / "all.pcapng", [pc.Section(), sec])]
    stream = [(T0 + i * 1_000_001, pc.frame(1, pc.echo(i % 2, 3, i // 2))) for i in range(6)]
    files.append(pc.write_pcap(tmp_path / "be-ns.pcap", stream, nano=True, be=True))
    files.append(pc.write_pcap(tmp_path / "le-us.pcap", stream))
    for path in files:
        theirs = _tshark_echoes(path)
        assert len(theirs) >= 6 and all(c == "1" for *_, c in theirs), path.name
        assert [r[:3] for r in theirs] == _ours(path), path.name
