"""Captures from a hypervisor's uplink: echoes inside MPLS, GRE, VXLAN and Geneve (and VLAN
tags, IP-in-IP), nested, over IPv4 and IPv6 underlays; truncated tunnel headers; refusal of
records longer than both their snaplen and their wire length, and of unsupported link
types.

Every frame is written byte by byte by tests/pcapcraft.py and cross-checked with tshark.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pcapcraft as pc  # noqa: E402

from migfw.errors import MigfwError  # noqa: E402
from migfw.measure.capture import echo_destinations, read_echoes  # noqa: E402
from migfw.measure.probes import analyse_capture  # noqa: E402

T0 = 1_700_000_000 * 10**9
IP4, IP6 = 0x0800, 0x86DD
TEB, MPLS = 0x6558, 0x8847


def _eth_ip(ip: bytes, vlans: tuple[int, ...] = ()) -> bytes:
    return pc.ether(ip, vlans=vlans)


# name -> builder(inner IP packet) -> outermost Ethernet frame (link type 1)
ENCAPS = {
    "mpls1": lambda ip: pc.ether(pc.mpls(ip), MPLS),
    "mpls3": lambda ip: pc.ether(pc.mpls(ip, (16, 17, 18)), MPLS),
    "mpls_in_vlan": lambda ip: pc.ether(pc.mpls(ip, (100, 200)), MPLS, vlans=(0x8100,)),
    "gre4": lambda ip: _eth_ip(pc.underlay(47, pc.gre(ip, pc.ETH_TYPES[ip[0] >> 4]))),
    "gre6_key_seq_csum": lambda ip: _eth_ip(
        pc.underlay(47, pc.gre(ip, pc.ETH_TYPES[ip[0] >> 4], 0xABCD, 7, True), v6=True)
    ),
    "gre_key_teb_vlan": lambda ip: _eth_ip(
        pc.underlay(47, pc.gre(pc.ether(ip, vlans=(0x8100,)), TEB, key=42))
    ),
    "gre_in_mpls": lambda ip: pc.ether(
        pc.mpls(pc.underlay(47, pc.gre(ip, pc.ETH_TYPES[ip[0] >> 4]))), MPLS
    ),
    "mpls_in_gre": lambda ip: _eth_ip(pc.underlay(47, pc.gre(pc.mpls(ip, (300, 301)), MPLS))),
    "vxlan4": lambda ip: _eth_ip(pc.underlay(17, pc.vxlan(pc.ether(ip)))),
    "vxlan6_qinq": lambda ip: _eth_ip(
        pc.underlay(17, pc.vxlan(pc.ether(ip, vlans=(0x88A8, 0x8100))), v6=True)
    ),
    "vxlan_in_vlan": lambda ip: _eth_ip(pc.underlay(17, pc.vxlan(pc.ether(ip))), (0x8100,)),
    "geneve_opts_teb": lambda ip: _eth_ip(
        pc.underlay(
            17,
            pc.geneve(
                pc.ether(ip),
                options=pc.geneve_option(0x0102, 0x80, b"\x00\x01\x02\x03" * 2)
                + pc.geneve_option(0x0103, 0x01, b""),
            ),
        )
    ),
    "geneve6_ip": lambda ip: _eth_ip(
        pc.underlay(17, pc.geneve(ip, proto=pc.ETH_TYPES[ip[0] >> 4]), v6=True)
    ),
    "geneve_in_gre": lambda ip: _eth_ip(
        pc.underlay(47, pc.gre(pc.underlay(17, pc.geneve(pc.ether(ip))), IP4))
    ),
    "vxlan_in_vxlan": lambda ip: _eth_ip(
        pc.underlay(17, pc.vxlan(pc.ether(pc.underlay(17, pc.vxlan(pc.ether(ip), vni=9)))))
    ),
    "ip_in_ip": lambda ip: _eth_ip(pc.underlay(4 if ip[0] >> 4 == 4 else 41, ip)),
    # Port mirroring to an analyser (OVS, Cisco): the mirrored Ethernet frame inside GRE.
    "erspan1": lambda ip: _eth_ip(pc.underlay(47, pc.erspan(pc.ether(ip), 1))),
    "erspan2_vlan": lambda ip: _eth_ip(
        pc.underlay(47, pc.erspan(pc.ether(ip, vlans=(0x8100,)), 2))
    ),
    "erspan3_platform6": lambda ip: _eth_ip(
        pc.underlay(47, pc.erspan(pc.ether(ip), 3, platform=True), v6=True)
    ),
    "pptp_ppp": lambda ip: _eth_ip(pc.underlay(47, pc.pptp(pc.ppp(ip)))),
    "pptp_ack_pfc": lambda ip: _eth_ip(
        pc.underlay(47, pc.pptp(pc.ppp(ip, acfc=True, pfc=True), seq=9, ack=8))
    ),
    "pppoe": lambda ip: pc.ether(pc.pppoe(pc.ppp(ip, acfc=True)), 0x8864),
    "ah_tunnel": lambda ip: _eth_ip(pc.underlay(51, pc.ah(ip, 4 if ip[0] >> 4 == 4 else 41))),
    "gtpu_ext": lambda ip: _eth_ip(pc.underlay(17, pc.gtpu(ip))),
    "gtpu6": lambda ip: _eth_ip(pc.underlay(17, pc.gtpu(ip, ext=False), v6=True)),
}


def _tunnel_capture(tmp_path: Path, linktype_sll2: bool = False):
    """One pcap: for every encapsulation, an IPv4 and an IPv6 request/reply pair, plus
    tunnel noise (ARP inside VXLAN, an echo to another host inside GRE). Returns (path,
    truth) where truth is [(epoch ns, family, kind, seq)] of the echoes to/from the target."""
    packets, truth = [], []
    t = T0
    seq = 0
    for build in ENCAPS.values():
        for v6 in (False, True):
            for kind in (0, 1):
                t += 1_000_000
                seq += 1
                packets.append((t, build(pc.echo(kind, 0x4D46, seq, v6))))
                truth.append((t, 6 if v6 else 4, kind, seq))
    arp = pc.ether(b"\x00\x01\x08\x00\x06\x04\x00\x01" + b"\0" * 20, 0x0806)
    packets.append((t + 1_000_000, pc.ether(pc.underlay(17, pc.vxlan(arp)))))
    other = pc.icmp4(pc.PROBER4, "10.231.0.99", 8, 0x4D46, 999)
    packets.append((t + 2_000_000, pc.ether(pc.underlay(47, pc.gre(other, IP4)))))
    return pc.write_pcap(tmp_path / "tunnels.pcap", packets, nano=True), truth


def _ours(path: Path) -> list[tuple[int, int, int, int]]:
    rows = []
    for fam, target in ((4, pc.TARGET4), (6, pc.TARGET6)):
        e = read_echoes(path, target)
        rows += [
            (ts, fam, k, s)
            for ts, k, s in zip(e.ts_ns.tolist(), e.kind.tolist(), e.seq.tolist(), strict=True)
        ]
    return sorted(rows)


def _echo_series(frame, count: int = 8) -> tuple[list, list]:
    """`count` echoes (IPv4 then IPv6, request/reply alternating), each framed by
    `frame(ip, i)`: the (time, frame) packets and the truth `_ours` must give."""
    truth, packets = [], []
    for i in range(count):
        v6, kind = i >= count // 2, i % 2
        t = T0 + i * 1_000_000
        packets.append((t, frame(pc.echo(kind, 0x4D46, i, v6), i)))
        truth.append((t, 6 if v6 else 4, kind, i))
    return truth, packets


def _tshark(path: Path) -> list[tuple[int, int, int, int, str]]:
    """(epoch ns, family, kind, seq, checksum status) of echoes to/from the target, by
    tshark (the innermost ICMP header; -Y on the inner addresses)."""
    flt = (
        f"(icmp.type==8 && ip.dst=={pc.TARGET4}) || (icmp.type==0 && ip.src=={pc.TARGET4})"
        f" || (icmpv6.type==128 && ipv6.dst=={pc.TARGET6})"
        f" || (icmpv6.type==129 && ipv6.src=={pc.TARGET6})"
    )
    res = subprocess.run(
        ["tshark", "-n", "-r", str(path), "-Y", flt, "-T", "fields", "-E", "occurrence=l",
         "-e", "frame.time_epoch", "-e", "icmp.type", "-e", "icmpv6.type", "-e", "icmp.seq",
         "-e", "icmpv6.echo.sequence_number", "-e", "icmp.checksum.status",
         "-e", "icmpv6.checksum.status"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    out = []
    for line in res.stdout.splitlines():
        t, ty4, ty6, s4, s6, c4, c6 = line.split("\t")
        kind = {"8": 0, "0": 1, "128": 0, "129": 1}[ty4 or ty6]
        out.append((int(t.replace(".", "")), 4 if ty4 else 6, kind, int(s4 or s6), c4 or c6))
    return out


def test_echoes_inside_tunnels_match_truth_and_tshark(tmp_path):
    path, truth = _tunnel_capture(tmp_path)
    assert _ours(path) == sorted(truth)
    dests = echo_destinations(path)
    assert dests == {pc.TARGET4: len(ENCAPS), pc.TARGET6: len(ENCAPS), "10.231.0.99": 1}
    if not shutil.which("tshark"):
        pytest.skip("tshark absent")
    theirs = _tshark(path)
    assert all(c == "1" for *_, c in theirs)  # tshark found valid inner checksums
    assert sorted(r[:4] for r in theirs) == sorted(truth)


@pytest.mark.parametrize("name", sorted(ENCAPS))
def test_each_tunnel_alone_and_in_pcapng_and_sll2(tmp_path, name):
    """Every encapsulation on its own, in a pcapng, and (without the outer Ethernet) on
    Linux cooked v2 (`tcpdump -i any`): the same echoes."""
    frames = [(T0 + i * 1000, ENCAPS[name](pc.echo(i % 2, 5, i, v6=i >= 2))) for i in range(4)]
    sec = pc.Section(ifaces=[pc.Iface(1, tsresol=9), pc.Iface(276, tsresol=9)])
    sec.packets = [(0, t, f, "epb") for t, f in frames]
    # SLL2: protocol (the Ethernet frame's EtherType) at 0, payload at 20.
    # (A tagged frame keeps its tag after the protocol 0x8100, as libpcap re-inserts it.)
    sll2 = b"\0\0" + b"\0\0\0\x03" + b"\0\x01\0\x06"  # reserved, ifindex, ARPHRD, type, alen
    sec.packets += [(1, t + 500, f[12:14] + sll2 + f[6:12] + b"\0\0" + f[14:], "epb")
                    for t, f in frames]  # fmt: skip
    path = pc.write_pcapng(tmp_path / f"{name}.pcapng", [sec])
    e4, e6 = read_echoes(path, pc.TARGET4), read_echoes(path, pc.TARGET6)
    assert sorted(e4.seq.tolist()) == [0, 0, 1, 1]
    assert sorted(e6.seq.tolist()) == [2, 2, 3, 3]
    assert e4.other_packets == 0 and e4.cut_packets == 0


def test_truncated_tunnel_headers_are_skipped_and_counted(tmp_path):
    """Every prefix of every tunnelled frame (a snaplen cutting anywhere): no crash; an echo
    only when the whole ICMP header is there, else a packet counted as cut."""
    for name, build in ENCAPS.items():
        for v6 in (False, True):
            inner = pc.echo(0, 5, 77, v6)
            frame = build(inner)
            icmp_end = len(frame) - len(inner) + (40 if v6 else 20) + 8
            recs = [(T0 + i, frame[:i]) for i in range(len(frame) + 1)]
            path = pc.write_pcap(tmp_path / "cut.pcap", recs, nano=True)
            e = read_echoes(path, pc.TARGET6 if v6 else pc.TARGET4)
            assert e.ts_ns.tolist() == [T0 + i for i in range(icmp_end, len(frame) + 1)], name
            assert e.cut_packets == icmp_end, name
            assert e.other_packets == icmp_end, name


def test_cut_tunnels_explain_an_empty_result(tmp_path):
    """A snaplen too small for the tunnel: the one-line error says so instead of only
    'no ICMP echo requests'."""
    frame = ENCAPS["vxlan4"](pc.echo(0, 5, 1))
    path = pc.write_pcap(tmp_path / "small-snaplen.pcap", [(T0, frame[:64]), (T0 + 1, frame[:64])])
    for target in (None, pc.TARGET4):
        with pytest.raises(MigfwError) as exc:
            analyse_capture(path, target, 0.01)
        msg = str(exc.value)
        assert "no ICMP echo requests" in msg and "2 of 2 packets were cut by the snaplen" in msg


def test_not_walked_payloads(tmp_path):
    """GRE version 1 only acknowledging, unknown GRE payload types,
    ERSPAN III of another frame type, PPP control protocols, a GTP-U message that is not a
    G-PDU, MPLS with a non-IP payload, UDP to other ports and a Geneve version 1 header are
    not decapsulated: no echo, not 'cut'."""
    ip = pc.echo(0, 5, 1)
    frames = [
        pc.ether(pc.underlay(47, b"\x20\x81\x88\x0b\0\0\0\x01\0\0\0\x05")),  # v1 ack
        pc.ether(pc.underlay(47, pc.gre(ip, 0x8909))),  # Cisco metadata: not read
        pc.ether(pc.underlay(47, pc.erspan(pc.ether(ip), 3, frame_type=7))),
        pc.ether(pc.pppoe(b"\xc0\x21\x01\x01\x00\x04"), 0x8864),  # LCP
        pc.ether(pc.underlay(17, pc.udp(2152, 2152, b"\x32\x01\x00\x04" + b"\0" * 8))),
        pc.ether(pc.mpls(b"\x00\x00\x00\x00" + pc.ether(ip)), MPLS),  # PW control word
        pc.ether(pc.underlay(17, pc.udp(1, 4790, b"\x08" + b"\0" * 7 + pc.ether(ip)))),
        pc.ether(pc.underlay(17, pc.udp(1, 6081, b"\x40\x00\x65\x58" + b"\0" * 4 + ip))),
    ]
    path = pc.write_pcap(tmp_path / "opaque.pcap", [(T0 + i, f) for i, f in enumerate(frames)])
    e = read_echoes(path, pc.TARGET4)
    assert len(e) == 0 and e.other_packets == len(frames) and e.cut_packets == 0
    if shutil.which("tshark"):
        assert _tshark(path) == []


def test_hostile_nesting_is_bounded(tmp_path):
    """A frame of 200 nested IP-in-IP headers: read, not an echo (depth is bounded)."""
    ip = pc.echo(0, 5, 1)
    for _ in range(200):
        ip = pc.underlay(4, ip)
    deep = pc.ether(ip)
    path = pc.write_pcap(tmp_path / "deep.pcap", [(T0, deep), (T0 + 1, pc.ether(pc.echo(0, 5, 2)))])
    e = read_echoes(path, pc.TARGET4)
    assert e.seq.tolist() == [2] and e.packets == 2


# ------------------------------------------------------------------ issue 9: misleading errors


def _refused(path: Path, *words: str) -> str:
    with pytest.raises(MigfwError) as exc:
        read_echoes(path, pc.TARGET4)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(str(path))
    for w in words:
        assert w in msg, msg
    return msg


def test_record_longer_than_snaplen_read_whole(tmp_path):
    """A record longer than the file's snaplen but not than its wire length is read, as
    libpcap and Wireshark do (dpkt's writer keeps snaplen 1500 for bigger frames)."""
    ok = pc.frame(1, pc.echo(0, 5, 1))  # 14 + 20 + 8 + 28 = 70 bytes
    big = pc.frame(1, pc.echo(0, 5, 2, payload=b"x" * 100))  # 142 bytes
    data = bytearray(pc.pcap_bytes([(T0, ok), (T0 + 1000, big), (T0 + 2000, ok)]))
    data[16:20] = (100).to_bytes(4, "little")  # the file header's snaplen
    f = tmp_path / "snaplen.pcap"
    f.write_bytes(bytes(data))
    ech = read_echoes(f, pc.TARGET4)
    assert ech.seq.tolist() == [1, 2, 1] and ech.ts_ns.tolist() == [T0, T0 + 1000, T0 + 2000]
    sec = pc.Section(ifaces=[pc.Iface(1, snaplen=128)])
    sec.packets = [(0, T0, ok, "epb"), (0, T0 + 1000, big, "epb")]
    ech = read_echoes(pc.write_pcapng(tmp_path / "snaplen.pcapng", [sec]), pc.TARGET4)
    assert ech.seq.tolist() == [1, 2]


def test_corrupt_record_length_named_at_its_own_offset(tmp_path):
    """Longer than the snaplen AND than its own wire length: a corrupt length, refused at
    its own record (not further on, where the records it swallowed stop making sense)."""
    ok = pc.frame(1, pc.echo(0, 5, 1))
    big = pc.frame(1, pc.echo(0, 5, 2, payload=b"x" * 100))  # 142 bytes
    data = bytearray(pc.pcap_bytes([(T0, ok), (T0 + 1, ok), (T0 + 2, big), (T0 + 3, ok)]))
    data[16:20] = (100).to_bytes(4, "little")  # the file header's snaplen
    at = 24 + 2 * (16 + len(ok))
    data[at + 12 : at + 16] = (120).to_bytes(4, "little")  # wire length < captured 142
    f = tmp_path / "snaplen.pcap"
    f.write_bytes(bytes(data))
    _refused(f, "record 3 claims 142 captured bytes, more than the file's snaplen 100 "
             "and than its wire length 120", f"at byte {at}")  # fmt: skip
    # A corrupt length that swallows later records is caught at the record itself.
    data[16:20] = (65535).to_bytes(4, "little")
    data[at + 8 : at + 12] = (70000).to_bytes(4, "little")
    f.write_bytes(bytes(data))
    _refused(f, "record 3 claims 70000 captured bytes, more than the file's snaplen 65535",
             f"at byte {at}")  # fmt: skip
    # pcapng: an EPB longer than its interface's snaplen and than its wire length.
    sec = pc.Section(ifaces=[pc.Iface(1), pc.Iface(1, snaplen=128)])
    sec.packets = [(0, T0, big, "epb"), (1, T0 + 1000, ok, "epb"), (1, T0 + 2000, big, "epb")]
    raw = bytearray(pc.pcapng_bytes([sec]))
    last = len(raw) - int.from_bytes(raw[-4:], "little")  # the last block starts here
    raw[last + 24 : last + 28] = (100).to_bytes(4, "little")  # its wire length
    f2 = tmp_path / "snaplen.pcapng"
    f2.write_bytes(bytes(raw))
    msg = _refused(f2, "record 3 claims 142 captured bytes, more than interface 1's snaplen "
                   "128 and than its wire length 100")  # fmt: skip
    assert msg.endswith(f"at byte {last}")


def test_unsupported_linktype_is_named(tmp_path):
    ip = pc.echo(0, 5, 1)
    f = pc.write_pcap(tmp_path / "user0.pcap", [(T0, ip)], linktype=147)
    _refused(f, "link type 147 (USER0) not supported", "at byte 20")
    with pytest.raises(MigfwError, match=r"link type 147 \(USER0\) not supported"):
        analyse_capture(f, None, 0.01)  # not "no ICMP echo requests"
    f = pc.write_pcap(tmp_path / "lt999.pcap", [], linktype=999)
    _refused(f, "link type 999 not supported")
    # pcapng: an idle interface of another type is fine; a packet on it is refused.
    sec = pc.Section(ifaces=[pc.Iface(1), pc.Iface(127)])
    sec.packets = [(0, T0, pc.frame(1, ip), "epb")]
    f = pc.write_pcapng(tmp_path / "idle.pcapng", [sec])
    assert len(read_echoes(f, pc.TARGET4)) == 1
    sec.packets.append((1, T0 + 1000, b"\0" * 40, "epb"))
    f = pc.write_pcapng(tmp_path / "radiotap.pcapng", [sec])
    msg = _refused(f, "record 2: interface 1 has link type 127 (IEEE802_11_RADIOTAP): "
                      "not supported")  # fmt: skip
    raw = f.read_bytes()
    assert msg.endswith(f"at byte {len(raw) - int.from_bytes(raw[-4:], 'little')}")


def test_fuzzed_tunnel_frames_read_cleanly(tmp_path):
    """Random bytes changed inside tunnelled frames (lengths, flags, option counts, label
    stacks): every file is read or refused in one line, never a crash or another exception
    (the kernels do no bounds checks: every length they follow is checked first)."""
    import random

    path, truth = _tunnel_capture(tmp_path)
    good = path.read_bytes()
    rng = random.Random(20131107)
    f = tmp_path / "fuzz.pcap"
    outcomes = {"read": 0, "refused": 0}
    for _ in range(300):
        data = bytearray(good)
        for _ in range(rng.choice((1, 4, 16))):
            data[rng.randrange(24, len(data))] = rng.randrange(256)
        f.write_bytes(bytes(data))
        try:
            read_echoes(f, pc.TARGET4)
            echo_destinations(f)
            outcomes["read"] += 1
        except MigfwError as exc:
            assert "\n" not in str(exc) and str(exc).startswith(str(f))
            outcomes["refused"] += 1
    assert outcomes["read"] > 100 and outcomes["refused"] > 10, outcomes


def test_ppp_link_types(tmp_path):
    """PPP link types: 9 (with and without address/control, 1- and 2-byte protocol), 50
    (HDLC-like framing; Cisco PPP framing read like C_HDLC) and 51 (PPPoE without
    Ethernet): the same echoes as the truth and as tshark."""
    cases = {
        9: lambda ip, i: pc.ppp(ip, acfc=i % 2 == 1, pfc=i % 3 == 0),
        50: lambda ip, i: (
            pc.ppp(ip) if i % 2 else b"\x0f\x00" + pc.ETH_TYPES[ip[0] >> 4].to_bytes(2, "big") + ip
        ),
        51: lambda ip, i: pc.pppoe(pc.ppp(ip, acfc=True)),
    }
    for lt, build in cases.items():
        truth, packets = _echo_series(build)
        lcp = b"\xc0\x21\x01\x01\x00\x04"  # a PPP control packet: not IP
        packets.append((T0 + 9_000_000, pc.pppoe(lcp) if lt == 51 else b"\xff\x03" + lcp))
        path = pc.write_pcap(tmp_path / f"ppp{lt}.pcap", packets, nano=True, linktype=lt)
        assert _ours(path) == truth, lt
        if shutil.which("tshark"):
            assert sorted(r[:4] for r in _tshark(path)) == truth, lt


def _nflog(ip: bytes, be: bool = False) -> bytes:
    """An NFLOG record (`tcpdump -i nflog:N`): family, version, resource id, then TLVs in
    the logging host's byte order: packet header (1), prefix (10), the packet (9)."""
    e = ">" if be else "<"

    def tlv(kind: int, value: bytes) -> bytes:
        body = struct.pack(e + "HH", 4 + len(value), kind) + value
        return body + b"\0" * (-len(body) % 4)

    fam = 2 if ip[0] >> 4 == 4 else 10
    hw = pc.ETH_TYPES[ip[0] >> 4]
    return (
        struct.pack("!BBH", fam, 0, 5)
        + tlv(1, struct.pack("!HBB", hw, 3, 0))
        + tlv(10, b"fw-drop\0")
        + tlv(9, ip)
    )


def test_nflog_link_type(tmp_path):
    """NFLOG (link type 239, what a firewall's log group captures): the packet TLV found
    after the others, in either byte order; cut before it: counted as cut."""
    truth, packets = _echo_series(lambda ip, i: _nflog(ip, be=i in (2, 3, 6, 7)))
    cut = _nflog(pc.echo(0, 0x4D46, 99))[:20]
    path = pc.write_pcap(tmp_path / "nflog.pcap", packets + [(T0 + 9_000_000, cut)], linktype=239)
    assert _ours(path) == truth
    e = read_echoes(path, pc.TARGET4)
    assert e.cut_packets == 1
    if shutil.which("tshark"):  # (tshark reads the little-endian records)
        le = pc.write_pcap(tmp_path / "le.pcap", [packets[i] for i in (0, 1, 4, 5)], linktype=239)
        assert sorted(r[:4] for r in _tshark(le)) == [truth[i] for i in (0, 1, 4, 5)]


def test_frame_relay_link_type(tmp_path):
    """Frame Relay (107): Q.922 address, then UI + NLPID (RFC 2427: IPv4 0xCC, IPv6 0x8E,
    SNAP 0x80 with an EtherType) or Cisco's EtherType right after the address."""

    def fr(ip: bytes, i: int) -> bytes:
        et = pc.ETH_TYPES[ip[0] >> 4].to_bytes(2, "big")
        if i % 4 == 0:
            return b"\x18\x41\x03" + (b"\xcc" if ip[0] >> 4 == 4 else b"\x8e") + ip
        if i % 4 == 1:
            return b"\x18\x41\x03\x00\x80\x00\x00\x00" + et + ip  # pad, SNAP
        if i % 4 == 2:
            return b"\x18\x40\x00\x41\x03" + (b"\xcc" if ip[0] >> 4 == 4 else b"\x8e") + ip
        return b"\x18\x41" + et + ip  # Cisco encapsulation

    truth, packets = _echo_series(fr)
    packets.append((T0 + 9_000_000, b"\x18\x41\x03\x08" + b"\0" * 8))  # Q.933 signalling
    path = pc.write_pcap(tmp_path / "fr.pcap", packets, linktype=107)
    assert _ours(path) == truth
    e = read_echoes(path, pc.TARGET4)
    assert e.echo_packets == 8 and e.other_packets == 1 and e.cut_packets == 0
    if shutil.which("tshark"):  # RFC 2427 framing (tshark decodes Cisco's differently)
        rfc = [packets[i] for i in (0, 4)]
        le = pc.write_pcap(tmp_path / "rfc.pcap", rfc, linktype=107)
        assert sorted(r[:4] for r in _tshark(le)) == [truth[0], truth[4]]


def test_ipoib_link_type(tmp_path):
    """IP over InfiniBand (242): 44-byte header (two 20-byte link addresses, EtherType,
    reserved), then IPv4/IPv6; a frame shorter than the header is cut."""
    gid = b"\x80\x00\x05\x50\xfe\x80" + b"\0" * 6 + b"\x00\x10\xe0\x00\x66\x4a\xb4\x51"
    truth, packets = [], []
    for i in range(4):
        v6, kind = i >= 2, i % 2
        ip = pc.echo(kind, 0x4D46, i, v6)
        t = T0 + i * 1_000_000
        hdr = b"\0" * 20 + gid + pc.ETH_TYPES[ip[0] >> 4].to_bytes(2, "big") + b"\0\0"
        packets.append((t, hdr + ip))
        truth.append((t, 6 if v6 else 4, kind, i))
    path = pc.write_pcap(tmp_path / "ipoib.pcap", packets + [(T0 + 9_000_000, b"\0" * 30)],
                         linktype=242)  # fmt: skip
    assert _ours(path) == truth
    assert read_echoes(path, pc.TARGET4).cut_packets == 1
    if shutil.which("tshark"):
        assert sorted(r[:4] for r in _tshark(pc.write_pcap(tmp_path / "ok.pcap", packets,
                                                           linktype=242))) == truth  # fmt: skip
