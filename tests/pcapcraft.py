"""Test-only writers of pcap/pcapng files with known contents, built with struct.

Independent of migfw.measure.capture on purpose: the reader is checked against files whose every
byte was written here, from the documented formats, never by the reader's own code.
"""

from __future__ import annotations

import ipaddress
import random
import struct
from dataclasses import dataclass, field
from pathlib import Path

PROBER4, TARGET4 = "10.231.0.1", "10.231.0.10"
PROBER6, TARGET6 = "fd00:231::1", "fd00:231::10"


# ------------------------------------------------------------------ network layer


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def icmp4(
    src: str,
    dst: str,
    icmp_type: int,
    ident: int,
    seq: int,
    payload: bytes = b"migfw-probe-0123456789abcdef",
    frag_offset: int = 0,
    total_length: int | None = None,
    proto: int = 1,
    code: int = 0,
) -> bytes:
    """An IPv4 packet carrying an ICMP echo (type 8 request / 0 reply)."""
    icmp = struct.pack("!BBHHH", icmp_type, code, 0, ident, seq) + payload
    icmp = icmp[:2] + struct.pack("!H", _csum(icmp)) + icmp[4:]
    tot = 20 + len(icmp) if total_length is None else total_length
    hdr = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        tot,
        0x1234,
        frag_offset & 0x1FFF,
        64,
        proto,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    hdr = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:]
    return hdr + icmp


def icmp6(
    src: str,
    dst: str,
    icmp_type: int,
    ident: int,
    seq: int,
    payload: bytes = b"migfw-probe-0123456789abcdef",
    ext: tuple[int, ...] = (),
    frag_offset: int | None = None,
) -> bytes:
    """An IPv6 packet carrying an ICMPv6 echo (128 request / 129 reply).

    `ext`: extension headers before ICMPv6 (0 hop-by-hop, 43 routing, 60 dest-opts), each
    16 bytes long; `frag_offset`: add a fragment header with this offset (8-byte units).
    """
    body = struct.pack("!BBHHH", icmp_type, 0, 0, ident, seq) + payload
    s_, d_ = ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed
    pseudo = s_ + d_ + struct.pack("!I3xB", len(body), 58)
    body = body[:2] + struct.pack("!H", _csum(pseudo + body)) + body[4:]
    nh = 58
    if frag_offset is not None:
        body = struct.pack("!BBHI", nh, 0, (frag_offset << 3) | 1, 0xABCD) + body
        nh = 44
    for code in reversed(ext):
        body = struct.pack("!BB", nh, 1) + b"\x01\x0c" + b"\0" * 12 + body  # 16-byte header
        nh = code
    return (
        struct.pack("!IHBB", 0x60000000, len(body), nh, 64)
        + ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + body
    )


def echo(kind: int, ident: int, seq: int, v6: bool = False, **kw) -> bytes:
    """Request (kind 0, prober -> target) or reply (kind 1, target -> prober)."""
    if v6:
        src, dst = (PROBER6, TARGET6) if kind == 0 else (TARGET6, PROBER6)
        return icmp6(src, dst, 128 if kind == 0 else 129, ident, seq, **kw)
    src, dst = (PROBER4, TARGET4) if kind == 0 else (TARGET4, PROBER4)
    return icmp4(src, dst, 8 if kind == 0 else 0, ident, seq, **kw)


# ------------------------------------------------------------------ link layer

ETH_TYPES = {4: 0x0800, 6: 0x86DD}
# Link types the writer can frame, with the families each accepts.
LINKTYPES = [0, 1, 12, 14, 101, 104, 108, 113, 226, 228, 229, 276]


def frame(linktype: int, ip: bytes, vlans: tuple[int, ...] = (), be: bool = False) -> bytes:
    """Wrap an IP packet in the link-layer header of `linktype`.

    `vlans`: TPIDs (0x8100, 0x88a8, 0x9100) of stacked tags, outermost first (Ethernet, SLL).
    `be`: byte order of the NULL (0) header, which is the capturing host's.
    """
    ver = ip[0] >> 4
    et = ETH_TYPES[ver]
    if linktype == 1:
        tags = b"".join(struct.pack("!HH", tpid, 100 + i) for i, tpid in enumerate(vlans))
        return b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + tags + struct.pack("!H", et) + ip
    if linktype in (12, 14, 101) or (linktype, ver) in ((228, 4), (229, 6)):
        return ip
    if linktype == 113:
        tags = b"".join(struct.pack("!HH", tpid, 100 + i) for i, tpid in enumerate(vlans))
        hdr = struct.pack("!HHH8s", 0, 1, 6, b"\x02\0\0\0\0\x01\0\0")
        return hdr + tags + struct.pack("!H", et) + ip
    if linktype == 276:
        return struct.pack("!HHIHBB8s", et, 0, 3, 1, 0, 6, b"\x02\0\0\0\0\x01\0\0") + ip
    if linktype in (0, 108):
        fam = 2 if ver == 4 else 30
        order = "!" if (linktype == 108 or be) else "<"
        return struct.pack(order + "I", fam) + ip
    if linktype == 104:
        return struct.pack("!BBH", 0x0F, 0, et) + ip
    if linktype == 226:
        return struct.pack("!BBHIIIII", 1, 2 if ver == 4 else 26, 0, len(ip), 1, 0, 0, 0) + ip
    raise ValueError(f"cannot frame IPv{ver} in link type {linktype}")


# ------------------------------------------------------------------ encapsulation (tunnels)

UNDERLAY4 = ("192.0.2.1", "192.0.2.2")  # documentation addresses: file bytes only, never sent
UNDERLAY6 = ("2001:db8::1", "2001:db8::2")


def ipv4(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    """An IPv4 header (with checksum) carrying `payload` as protocol `proto`."""
    hdr = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0x4242, 0x4000, 64, proto, 0,
        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed,
    )  # fmt: skip
    return hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:] + payload


def ipv6(src: str, dst: str, nh: int, payload: bytes) -> bytes:
    return (
        struct.pack("!IHBB", 0x60000000, len(payload), nh, 64)
        + ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + payload
    )


def underlay(proto: int, payload: bytes, v6: bool = False) -> bytes:
    """An outer (underlay) IP packet between two tunnel endpoints."""
    if v6:
        return ipv6(*UNDERLAY6, proto, payload)
    return ipv4(*UNDERLAY4, proto, payload)


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    """A UDP header with checksum 0 (allowed for tunnels, RFC 6935) and `payload`."""
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def ether(payload: bytes, ethertype: int | None = None, vlans: tuple[int, ...] = ()) -> bytes:
    """An Ethernet frame; EtherType from the IP version nibble unless given; `vlans`: TPIDs
    of stacked tags, outermost first."""
    et = ETH_TYPES[payload[0] >> 4] if ethertype is None else ethertype
    tags = b"".join(struct.pack("!HH", tpid, 200 + i) for i, tpid in enumerate(vlans))
    return b"\x02\0\0\0\0\x04" + b"\x02\0\0\0\0\x03" + tags + struct.pack("!H", et) + payload


def mpls(payload: bytes, labels: tuple[int, ...] = (1000,)) -> bytes:
    """An MPLS label stack (bottom-of-stack bit on the last entry), then `payload`."""
    out = b""
    for i, label in enumerate(labels):
        bos = 1 if i == len(labels) - 1 else 0
        out += struct.pack("!I", (label << 12) | (bos << 8) | 64)
    return out + payload


def gre(payload: bytes, proto: int, key: int | None = None, seq: int | None = None,
        csum: bool = False) -> bytes:  # fmt: skip
    """A GRE header (RFC 2784 / 2890: optional checksum, key, sequence number)."""
    flags = (0x8000 if csum else 0) | (0x2000 if key is not None else 0)
    flags |= 0x1000 if seq is not None else 0
    opts = b""
    if key is not None:
        opts += struct.pack("!I", key)
    if seq is not None:
        opts += struct.pack("!I", seq)
    if csum:
        body = struct.pack("!HH", flags, proto) + b"\0\0\0\0" + opts + payload
        return body[:4] + struct.pack("!H", _csum(body)) + body[6:]
    return struct.pack("!HH", flags, proto) + opts + payload


def erspan(frame: bytes, kind: int, platform: bool = False, frame_type: int = 0) -> bytes:
    """GRE around a mirrored Ethernet frame: ERSPAN type I (no sequence number, no header),
    II (8-byte header) or III (12-byte header, + 8-byte platform subheader if `platform`)."""
    if kind == 1:
        return gre(frame, 0x88BE)
    if kind == 2:  # version 1, VLAN 7; COS, En, T, session 3; reserved, index 0
        return gre(struct.pack("!HHI", 0x1000 | 7, 3, 0) + frame, 0x88BE, seq=11)
    # version 2, VLAN 7, session 3; timestamp; SGT, P/FT/HwID/D/Gra/O
    word = (frame_type << 10) | (1 if platform else 0)
    hdr = struct.pack("!HHIHH", 0x2000 | 7, 3, 123456, 0, word)
    return gre(hdr + (b"\x08" + b"\0" * 7 if platform else b"") + frame, 0x22EB, seq=12)


def ppp(ip: bytes, acfc: bool = False, pfc: bool = False) -> bytes:
    """A PPP frame carrying an IP packet: [0xFF 0x03] protocol (1 byte if `pfc`)."""
    proto = 0x21 if ip[0] >> 4 == 4 else 0x57
    head = b"" if acfc else b"\xff\x03"
    return head + (bytes([proto]) if pfc else struct.pack("!H", proto)) + ip


def pptp(frame: bytes, seq: int | None = 5, ack: int | None = None) -> bytes:
    """Enhanced GRE (version 1, RFC 2637) around a PPP frame: key = payload length + call
    id, optional sequence and acknowledgement numbers."""
    flags = 0x2001 | (0x1000 if seq is not None else 0) | (0x0080 if ack is not None else 0)
    out = struct.pack("!HHHH", flags, 0x880B, len(frame), 0x4242)
    out += struct.pack("!I", seq) if seq is not None else b""
    return out + (struct.pack("!I", ack) if ack is not None else b"") + frame


def pppoe(frame: bytes, session: int = 0x1234) -> bytes:
    """A PPPoE session-stage header (RFC 2516) before a PPP frame without address/control."""
    return struct.pack("!BBHH", 0x11, 0, session, len(frame)) + frame


def ah(payload: bytes, next_header: int, icv: int = 12) -> bytes:
    """An IPsec AH header (RFC 4302): next header, length in 4-byte words minus 2, SPI,
    sequence number, `icv` bytes of integrity check value."""
    return (
        struct.pack("!BBHII", next_header, (12 + icv) // 4 - 2, 0, 0x100, 1)
        + b"\xaa" * icv
        + payload
    )


def gtpu(ip: bytes, ext: bool = True, teid: int = 0x1F) -> bytes:
    """UDP to 2152 with a GTPv1-U G-PDU header around an IP packet; `ext`: the E flag with
    one PDU session container extension header (4 bytes), as 5G N3 traffic carries."""
    if not ext:
        return udp(2152, 2152, struct.pack("!BBHI", 0x30, 0xFF, len(ip), teid) + ip)
    body = struct.pack("!HBB", 0, 0, 0x85) + b"\x01\x00\x09\x00" + ip  # seq, N-PDU, next
    return udp(2152, 2152, struct.pack("!BBHI", 0x34, 0xFF, len(body), teid) + body)


def vxlan(frame: bytes, vni: int = 5001, sport: int = 49320) -> bytes:
    """UDP to 4789 with a VXLAN header (I flag, VNI) around an Ethernet frame."""
    return udp(sport, 4789, struct.pack("!II", 0x08000000, vni << 8) + frame)


def geneve(payload: bytes, proto: int = 0x6558, vni: int = 7001, options: bytes = b"",
           sport: int = 50123) -> bytes:  # fmt: skip
    """UDP to 6081 with a Geneve header (version 0, options of 4-byte multiples)."""
    assert len(options) % 4 == 0
    hdr = struct.pack("!BBHI", len(options) // 4, 0, proto, vni << 8)
    return udp(sport, 6081, hdr + options + payload)


def geneve_option(cls: int, typ: int, data: bytes) -> bytes:
    assert len(data) % 4 == 0
    return struct.pack("!HBB", cls, typ, len(data) // 4) + data


# ------------------------------------------------------------------ file writers


def pcap_bytes(
    packets: list[tuple[int, bytes]],
    linktype: int = 1,
    nano: bool = False,
    be: bool = False,
    version: tuple[int, int] = (2, 4),
    linktype_field: int | None = None,
) -> bytes:
    """Classic pcap: `packets` are (epoch ns, frame bytes); µs files truncate to µs."""
    e = ">" if be else "<"
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    lt = linktype if linktype_field is None else linktype_field
    out = [struct.pack(e + "IHHiIII", magic, version[0], version[1], 0, 0, 262144, lt)]
    for ts, data in packets:
        sec, sub = divmod(ts, 10**9)
        frac = sub if nano else sub // 1000
        out.append(struct.pack(e + "IIII", sec, frac, len(data), len(data)) + data)
    return b"".join(out)


def write_pcap(path: Path, packets: list[tuple[int, bytes]], **kw) -> Path:
    path.write_bytes(pcap_bytes(packets, **kw))
    return path


@dataclass
class Iface:
    linktype: int = 1
    tsresol: int | None = None  # raw if_tsresol byte: None = default µs; 0x88 = 2^-8 s
    tsoffset: int = 0  # seconds
    snaplen: int = 0


def ticks(ts_ns: int, iface: Iface) -> int:
    """Timestamp units of `iface` for an epoch-ns time (exact only when representable)."""
    t = ts_ns - iface.tsoffset * 10**9
    r = 6 if iface.tsresol is None else iface.tsresol
    if r & 0x80:
        return (t << (r & 0x7F)) // 10**9
    return t * 10**r // 10**9


@dataclass
class Section:
    be: bool = False
    ifaces: list[Iface] = field(default_factory=lambda: [Iface()])
    # (interface index, epoch ns, frame bytes, block kind "epb" | "pb" | "spb")
    packets: list[tuple[int, int, bytes, str]] = field(default_factory=list)
    version: tuple[int, int] = (1, 0)
    extra_blocks: list[tuple[int, bytes]] = field(default_factory=list)  # (type, body)


def _opt(e: str, code: int, value: bytes) -> bytes:
    pad = (-len(value)) % 4
    return struct.pack(e + "HH", code, len(value)) + value + b"\0" * pad


def block(e: str, btype: int, body: bytes) -> bytes:
    body += b"\0" * ((-len(body)) % 4)
    n = len(body) + 12
    return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)


def pcapng_bytes(sections: list[Section]) -> bytes:
    out = []
    for sec in sections:
        e = ">" if sec.be else "<"
        shb = struct.pack(e + "IHHq", 0x1A2B3C4D, *sec.version, -1)
        shb += _opt(e, 4, b"pcapcraft") + _opt(e, 0, b"")
        out.append(block(e, 0x0A0D0D0A, shb))
        for iface in sec.ifaces:
            body = struct.pack(e + "HHI", iface.linktype, 0, iface.snaplen)
            body += _opt(e, 2, b"eth0")
            if iface.tsresol is not None:
                body += _opt(e, 9, bytes([iface.tsresol]))
            if iface.tsoffset:
                body += _opt(e, 14, struct.pack(e + "q", iface.tsoffset))
            body += _opt(e, 0, b"")
            out.append(block(e, 1, body))
        for btype, body in sec.extra_blocks:
            out.append(block(e, btype, body))
        for idx, ts, data, kind in sec.packets:
            t = ticks(ts, sec.ifaces[idx]) if idx < len(sec.ifaces) else ts // 1000
            hi, lo = t >> 32, t & 0xFFFFFFFF
            if kind == "epb":
                body = struct.pack(e + "IIIII", idx, hi, lo, len(data), len(data)) + data
                body += b"\0" * ((-len(body)) % 4) + _opt(e, 1, b"c") + _opt(e, 0, b"")
                out.append(block(e, 6, body))
            elif kind == "pb":
                body = struct.pack(e + "HHIIII", idx, 0, hi, lo, len(data), len(data)) + data
                out.append(block(e, 2, body))
            else:
                out.append(block(e, 3, struct.pack(e + "I", len(data)) + data))
    return b"".join(out)


def write_pcapng(path: Path, sections: list[Section]) -> Path:
    path.write_bytes(pcapng_bytes(sections))
    return path


# ------------------------------------------------------------------ trial generator


@dataclass
class Trial:
    """A probe trial with known truth; `packets` are (epoch ns, IP packet) in capture order."""

    packets: list[tuple[int, bytes]]
    send_ns: list[int]  # send time of every distinct request, in send order
    answered: list[bool]
    rtt_ns: list[int | None]
    dup_requests: int
    dup_replies: int
    orphan_replies: int


def make_trial(
    n: int,
    interval_s: float,
    lost: set[int] = frozenset(),
    late: dict[int, int] | None = None,
    dup_requests: set[int] = frozenset(),
    dup_replies: set[int] = frozenset(),
    orphans: int = 0,
    start_ns: int = 1_700_000_000 * 10**9,
    start_seq: int = 1,
    ident: int = 0x4D46,
    rtt_ns: int = 300_000,
    jitter_ns: int = 0,
    v6: bool = False,
    seed: int = 7,
    noise_every: int = 0,
) -> Trial:
    """`n` requests every `interval_s` (plus uniform jitter), seq starting at `start_seq`
    and wrapping at 65536; requests whose index is in `lost` get no reply; `late` maps an
    index to its (long) RTT; `dup_*` indices are captured twice; `orphans` replies with
    sequence numbers never requested; `noise_every` adds an echo to another host.
    """
    rng = random.Random(seed)
    late = late or {}
    step = round(interval_s * 1e9)
    events: list[tuple[int, int, bytes]] = []  # (time, order, packet)
    send, answered, rtts = [], [], []
    for i in range(n):
        t = start_ns + i * step + (rng.randrange(jitter_ns) if jitter_ns else 0)
        seq = (start_seq + i) % 65536
        req = echo(0, ident, seq, v6)
        events.append((t, 0, req))
        if i in dup_requests:
            events.append((t + 1_000, 0, req))
        send.append(t)
        if i in lost:
            answered.append(False)
            rtts.append(None)
        else:
            rtt = late.get(i, rtt_ns)
            rep = echo(1, ident, seq, v6)
            events.append((t + rtt, 1, rep))
            if i in dup_replies:
                events.append((t + rtt + 2_000, 1, rep))
            answered.append(True)
            rtts.append(rtt)
        if noise_every and i % noise_every == 0:
            other = icmp4(PROBER4, "10.231.0.99", 8, ident, seq)
            events.append((t + 5, 0, other))
    for j in range(orphans):
        events.append((start_ns + j * step + step // 2, 1, echo(1, ident + 1, 40000 + j, v6)))
    events.sort(key=lambda ev: (ev[0], ev[1]))
    return Trial(
        packets=[(t, p) for t, _, p in events],
        send_ns=send,
        answered=answered,
        rtt_ns=rtts,
        dup_requests=len(dup_requests),
        dup_replies=len(dup_replies - set(lost)),
        orphan_replies=orphans,
    )


def gap_truth(send_ns: list[int], answered: list[bool]) -> dict[str, float | int]:
    """The longest unanswered run and its DT_gap estimate/bounds, by plain loops."""
    best = {"max_run": 0, "dt_gap_s": 0.0, "dt_gap_lo_s": 0.0, "dt_gap_hi_s": 0.0}
    outages = 0
    i, m = 0, len(send_ns)
    while i < m:
        if answered[i]:
            i += 1
            continue
        j = i
        while j + 1 < m and not answered[j + 1]:
            j += 1
        outages += 1
        before = send_ns[i - 1] if i > 0 else send_ns[i]
        after = send_ns[j + 1] if j + 1 < m else send_ns[j]
        est = ((send_ns[j] + after) - (before + send_ns[i])) / 2e9  # exact ints, then float
        run = j - i + 1
        if (run, est) > (best["max_run"], best["dt_gap_s"]):
            best = {
                "max_run": run,
                "dt_gap_s": est,
                "dt_gap_lo_s": (send_ns[j] - send_ns[i]) / 1e9,
                "dt_gap_hi_s": (after - before) / 1e9,
            }
        i = j + 1
    best["outages"] = outages
    return best
