"""Streaming reader of ICMP echo packets from pcap and pcapng captures.

The file is read in fixed-size chunks; a numba kernel walks the records of each chunk and
fills preallocated columnar arrays, so memory stays flat and no Python object is made per
packet. The format is detected from the magic number, never from the file name.

Public API:
    read_echoes(path, target)  -> Echoes   echo requests TO target and replies FROM it
    echo_destinations(path)    -> dict     echo request destination -> request count
    read_tcp(path, target)     -> TcpSegments  TCP segments to and from target (SYN probes,
                                               SYN-ACK / RST answers) with ports, seq and ack
"""

from __future__ import annotations

import ipaddress
import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from migfw.errors import MigfwError


def _pick_cache_dir(package_dir: Path, home: Path) -> str | None:
    """Where numba should cache compiled kernels, or None to keep its in-tree default.

    numba caches next to the source (__pycache__); when the package is installed read-only
    it falls back to ~/.cache, and raises at import time if that is unwritable too. Choose
    a writable place ourselves so the reader works on any install.
    """
    for candidate in (package_dir / "__pycache__", home / ".cache" / "migfw" / "numba"):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=candidate, prefix=".w", delete=True)
            probe.close()
        except OSError:
            continue
        return None if candidate.parent == package_dir else str(candidate)
    return str(Path(tempfile.gettempdir()) / f"migfw-numba-{os.getuid()}")


if not os.environ.get("NUMBA_CACHE_DIR"):
    _cache = _pick_cache_dir(Path(__file__).resolve().parent, Path.home())
    if _cache is not None:
        os.environ["NUMBA_CACHE_DIR"] = _cache

import numba  # noqa: E402  (after NUMBA_CACHE_DIR is settled)
from numba import njit  # noqa: E402

if os.environ.get("NUMBA_CACHE_DIR") and not numba.config.CACHE_DIR:
    numba.config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]

CHUNK_BYTES = 16 << 20  # read size; one chunk's worth of output arrays is preallocated
MAX_CAPLEN = 262144  # libpcap's largest snapshot length; anything bigger is corrupt
MAX_BLOCK = 64 << 20  # a pcapng block larger than this is treated as corrupt

# Counters filled by the kernels (indices into the `counters` array).
C_PACKETS, C_ECHO, C_OTHER, C_SPB_ECHO, C_CUT = 0, 1, 2, 3, 4
C_TCP = 5  # TCP segments (any address), counted in TCP mode only
# Reader modes: 0 echoes of one target, 1 echo request destinations, 2 TCP of one target.
M_ECHO, M_DEST, M_TCP = 0, 1, 2
# Kernel stop reasons.
ST_NEED_MORE, ST_SHB, ST_IDB = 0, 1, 2
# Kernel error codes (reported with the byte offset of the offending record).
E_OK, E_CAPLEN, E_USEC, E_NSEC, E_BLOCKLEN, E_TRAILER, E_NOIDB, E_BODY = 0, 1, 2, 3, 4, 5, 6, 7
E_TSRANGE, E_SNAPLEN, E_LINKTYPE = 8, 9, 10
INT64_MAX = np.int64(0x7FFFFFFFFFFFFFFF)


# --------------------------------------------------------------------------- numba kernels


@njit(cache=True)
def _u16(b, p, be):
    if be:
        return (np.int64(b[p]) << 8) | np.int64(b[p + 1])
    return (np.int64(b[p + 1]) << 8) | np.int64(b[p])


@njit(cache=True)
def _u32(b, p, be):
    if be:
        return (
            (np.int64(b[p]) << 24)
            | (np.int64(b[p + 1]) << 16)
            | (np.int64(b[p + 2]) << 8)
            | np.int64(b[p + 3])
        )
    return (
        (np.int64(b[p + 3]) << 24)
        | (np.int64(b[p + 2]) << 16)
        | (np.int64(b[p + 1]) << 8)
        | np.int64(b[p])
    )


# EtherType-like payload types the decapsulation walks (GRE and Geneve use EtherTypes too).
ET_BY_NIBBLE = -3  # (no EtherType) raw IP / below an MPLS stack: IPv4 or IPv6 by the first nibble
ET_IPV4, ET_IPV6, ET_TEB = 0x0800, 0x86DD, 0x6558  # TEB: a whole Ethernet frame follows
ET_MPLS_UC, ET_MPLS_MC = 0x8847, 0x8848
ET_VLAN, ET_QINQ, ET_VLAN_OLD = 0x8100, 0x88A8, 0x9100
UDP_VXLAN, UDP_GENEVE = 4789, 6081  # IANA destination ports
MAX_STEPS = 64  # headers walked per frame (tags, labels, tunnels): bounds a hostile frame
# _inner_l4 `proto` values that are not an IP protocol number.
L4_NONE, L4_CUT = -1, -2  # not IP / a later fragment / unknown payload; cut short (snaplen)
# Link types the reader decapsulates; packets on any other link type are refused.
LINKTYPES_READ = (0, 1, 12, 14, 101, 104, 108, 113, 226, 228, 229, 276)
# Names (tcpdump.org's LINKTYPE_ list) of common link types, for error messages.
LINKTYPE_NAMES = {
    0: "NULL", 1: "ETHERNET", 6: "IEEE802_5", 8: "SLIP", 9: "PPP", 10: "FDDI", 12: "RAW",
    14: "RAW", 50: "PPP_HDLC", 51: "PPP_ETHER", 100: "ATM_RFC1483", 101: "RAW",
    104: "C_HDLC", 105: "IEEE802_11", 107: "FRELAY", 108: "LOOP", 113: "LINUX_SLL",
    117: "PFLOG", 119: "IEEE802_11_PRISM", 127: "IEEE802_11_RADIOTAP", 163: "IEEE802_11_AVS",
    187: "BLUETOOTH_HCI_H4", 189: "USB_LINUX", 192: "PPI", 220: "USB_LINUX_MMAPPED",
    226: "IPNET", 227: "CAN_SOCKETCAN", 228: "IPV4", 229: "IPV6", 239: "NFLOG",
    249: "USBPCAP", 253: "NETLINK", 276: "LINUX_SLL2",
    **{147 + i: f"USER{i}" for i in range(16)},
}  # fmt: skip


def linktype_name(lt: int) -> str:
    """'link type 147 (USER0)', for messages."""
    name = LINKTYPE_NAMES.get(lt)
    return f"link type {lt} ({name})" if name else f"link type {lt}"


@njit(cache=True)
def _link_payload(b, p, n, lt):
    """(EtherType, offset) of what follows the link-layer header of a frame of link type `lt`.

    EtherType ET_BY_NIBBLE: IP whose version is in its first nibble; -1: not IP; -2: the
    frame is shorter than its link-layer header.
    """
    if lt == 1:  # Ethernet: EtherType at 12 (tags are walked by _inner_l4)
        if n < 14:
            return -2, p
        return _u16(b, p + 12, True), p + 14
    if lt == 101 or lt == 12 or lt == 14 or lt == 228 or lt == 229:
        return ET_BY_NIBBLE, p
    if lt == 113:  # Linux cooked v1: protocol at 14 (libpcap re-inserts VLAN tags after it)
        if n < 16:
            return -2, p
        return _u16(b, p + 14, True), p + 16
    if lt == 276:  # Linux cooked v2: protocol at 0, payload at 20
        if n < 20:
            return -2, p
        return _u16(b, p, True), p + 20
    if lt == 0 or lt == 108:  # BSD loopback: 4-byte address family
        if n < 4:
            return -2, p
        if lt == 108:
            fam = _u32(b, p, True)
        else:  # host byte order of the capturing machine: accept either
            fam = _u32(b, p, False)
            if fam > 0xFFFF:
                fam = _u32(b, p, True)
        if fam == 2 or fam == 10 or fam == 24 or fam == 28 or fam == 30:
            return ET_BY_NIBBLE, p + 4
        return -1, p
    if lt == 104:  # Cisco HDLC: address, control, protocol
        if n < 4:
            return -2, p
        return _u16(b, p + 2, True), p + 4
    if lt == 226:  # Solaris IPNET: 24-byte header, family at byte 1 (2 / 26)
        if n < 24:
            return -2, p
        if b[p + 1] == 2 or b[p + 1] == 26:
            return ET_BY_NIBBLE, p + 24
        return -1, p
    return -1, p


@njit(cache=True)
def _linktype_read(lt):
    for known in LINKTYPES_READ:
        if lt == known:
            return True
    return False


@njit(cache=True)
def _inner_l4(b, p, n, lt):
    """Decapsulate one frame down to its innermost IP packet: the one step every protocol
    parser (ICMP echo here, TCP next) shares.

    Walks VLAN tags (802.1Q / 802.1ad / 0x9100, stacked), MPLS label stacks (then IPv4/IPv6
    by the first nibble), GRE (checksum / key / sequence / RFC 1701 routing; IPv4, IPv6,
    MPLS or Ethernet 0x6558 inside), VXLAN (UDP 4789), Geneve (UDP 6081, options), IP-in-IP
    (4) and IPv6-in-IP (41), and IPv6 extension headers, over IPv4 or IPv6 outer headers,
    nested in any order.

    Returns (ip, l4, proto, end): offsets of the innermost IP header and of its upper-layer
    header, the upper-layer protocol number, and the end of that IP packet (bounded by every
    enclosing length field and the captured length). proto L4_NONE: not IP, an unknown
    tunnel payload, or a non-first fragment (no upper-layer header in it); L4_CUT: the
    frame was cut (snaplen) inside a header before the upper-layer one.
    """
    end = p + n
    et, off = _link_payload(b, p, n, lt)
    if et == -2:
        return -1, -1, L4_CUT, end
    for _ in range(MAX_STEPS):
        if et != ET_IPV4 and et != ET_IPV6:  # (the common case, plain IP, tested first)
            if et == ET_BY_NIBBLE:
                if off >= end:
                    return -1, -1, L4_CUT, end
                v = b[off] >> 4
                if v == 4:
                    et = ET_IPV4
                elif v == 6:
                    et = ET_IPV6
                else:
                    return -1, -1, L4_NONE, end
                continue
            if et == ET_VLAN or et == ET_QINQ or et == ET_VLAN_OLD:
                if off + 4 > end:
                    return -1, -1, L4_CUT, end
                et = _u16(b, off + 2, True)
                off += 4
                continue
            if et == ET_TEB:  # an Ethernet frame (VXLAN, Geneve, GRE 0x6558)
                if off + 14 > end:
                    return -1, -1, L4_CUT, end
                et = _u16(b, off + 12, True)
                off += 14
                continue
            if et == ET_MPLS_UC or et == ET_MPLS_MC:
                while True:  # label stack entries up to the bottom-of-stack bit
                    if off + 4 > end:
                        return -1, -1, L4_CUT, end
                    bos = b[off + 2] & 1
                    off += 4
                    if bos:
                        break
                et = ET_BY_NIBBLE  # no payload type in MPLS: IPv4/IPv6 by the version nibble
                continue
            return -1, -1, L4_NONE, end  # ARP, LLDP, …: not IP
        ip = off
        if et == ET_IPV4:
            if ip + 20 > end:
                return -1, -1, L4_CUT, end
            ihl = np.int64(b[ip] & 0x0F) * 4
            if (b[ip] >> 4) != 4 or ihl < 20:
                return -1, -1, L4_NONE, end
            tot = _u16(b, ip + 2, True)
            if tot != 0:  # total-length 0 (TSO capture): trust the captured length
                if tot < ihl:
                    return -1, -1, L4_NONE, end
                if ip + tot < end:
                    end = ip + tot
            if ip + ihl > end:
                return -1, -1, L4_CUT, end
            if (_u16(b, ip + 6, True) & 0x1FFF) != 0:
                return ip, -1, L4_NONE, end  # a later fragment: no upper-layer header in it
            proto = np.int64(b[ip + 9])
            l4 = ip + ihl
        else:  # ET_IPV6
            if ip + 40 > end:
                return -1, -1, L4_CUT, end
            if (b[ip] >> 4) != 6:
                return -1, -1, L4_NONE, end
            plen = _u16(b, ip + 4, True)
            if plen != 0 and ip + 40 + plen < end:
                end = ip + 40 + plen
            proto = np.int64(b[ip + 6])
            l4 = ip + 40
            # Extension headers: hop-by-hop, routing, destination options, fragment, AH.
            for _ in range(16):
                if proto == 0 or proto == 43 or proto == 60:
                    if l4 + 8 > end:
                        return -1, -1, L4_CUT, end
                    nxt = np.int64(b[l4])
                    l4 += (np.int64(b[l4 + 1]) + 1) * 8
                    proto = nxt
                elif proto == 44:
                    if l4 + 8 > end:
                        return -1, -1, L4_CUT, end
                    if (_u16(b, l4 + 2, True) >> 3) != 0:
                        return ip, -1, L4_NONE, end  # a later fragment
                    proto = np.int64(b[l4])
                    l4 += 8
                elif proto == 51:
                    if l4 + 8 > end:
                        return -1, -1, L4_CUT, end
                    nxt = np.int64(b[l4])
                    l4 += (np.int64(b[l4 + 1]) + 2) * 4
                    proto = nxt
                else:
                    break
            if l4 > end:
                return -1, -1, L4_CUT, end
        # An IP packet: a tunnel to walk into, or the innermost packet.
        if proto == 47:  # GRE (RFC 2784 / 2890; RFC 1701 routing)
            if l4 + 4 > end:
                return -1, -1, L4_CUT, end
            flags = _u16(b, l4, True)
            if (flags & 7) != 0:
                return ip, l4, proto, end  # version 1 (PPTP) carries PPP: not walked
            off = l4 + 4
            if flags & 0xC000:  # checksum or routing: checksum + offset word
                off += 4
            if flags & 0x2000:  # key
                off += 4
            if flags & 0x1000:  # sequence number
                off += 4
            if flags & 0x4000:  # source route entries, up to a null one
                for _ in range(MAX_STEPS):
                    if off + 4 > end:
                        return -1, -1, L4_CUT, end
                    sre_len = np.int64(b[off + 3])
                    null = _u16(b, off, True) == 0 and sre_len == 0
                    off += 4 + sre_len
                    if null:
                        break
            if off > end:
                return -1, -1, L4_CUT, end
            et = _u16(b, l4 + 2, True)
            continue
        if proto == 17:
            if l4 + 8 > end:
                return -1, -1, L4_CUT, end  # (VXLAN / Geneve or not: the port is cut off)
            dport = _u16(b, l4 + 2, True)
            if dport == UDP_VXLAN:  # 8-byte VXLAN header, then an Ethernet frame
                if l4 + 16 > end:
                    return -1, -1, L4_CUT, end
                et = ET_TEB
                off = l4 + 16
                continue
            if dport == UDP_GENEVE:  # 8-byte header + options, protocol type at 2
                if l4 + 16 > end:
                    return -1, -1, L4_CUT, end
                if (b[l4 + 8] >> 6) != 0:
                    return ip, l4, proto, end  # unknown Geneve version: plain UDP
                et = _u16(b, l4 + 10, True)
                off = l4 + 16 + np.int64(b[l4 + 8] & 0x3F) * 4
                continue
        if proto == 4 or proto == 41:  # IPv4-in-IP, IPv6-in-IP (6in4)
            et = ET_IPV4 if proto == 4 else ET_IPV6
            off = l4
            continue
        return ip, l4, proto, end
    return -1, -1, L4_NONE, end  # deeper than MAX_STEPS headers: hostile, not read


@njit(cache=True)
def _parse_echo(b, p, n, lt):
    """Find an ICMP/ICMPv6 echo in one frame (inside any encapsulation _inner_l4 walks).

    Returns (kind, ident, seq, addr_pos, addr_len): kind 0 request (addr_pos = destination
    address), 1 reply (addr_pos = source address); -1 not an echo; -2 unknown because the
    frame was cut (snaplen) before the end of its ICMP header (counted apart: a snaplen too
    small for a tunnel would otherwise look like a capture without probes).
    """
    ip, l4, proto, end = _inner_l4(b, p, n, lt)
    if proto == 1:
        if (b[ip] >> 4) != 4:
            return -1, 0, 0, 0, 0
        if l4 + 8 > end:
            return -2, 0, 0, 0, 0
        t = b[l4]
        if t == 8:
            return 0, _u16(b, l4 + 4, True), _u16(b, l4 + 6, True), ip + 16, 4
        if t == 0:
            return 1, _u16(b, l4 + 4, True), _u16(b, l4 + 6, True), ip + 12, 4
        return -1, 0, 0, 0, 0
    if proto == 58:
        if (b[ip] >> 4) != 6:
            return -1, 0, 0, 0, 0
        if l4 + 8 > end:
            return -2, 0, 0, 0, 0
        t = b[l4]
        if t == 128:
            return 0, _u16(b, l4 + 4, True), _u16(b, l4 + 6, True), ip + 24, 16
        if t == 129:
            return 1, _u16(b, l4 + 4, True), _u16(b, l4 + 6, True), ip + 8, 16
        return -1, 0, 0, 0, 0
    if proto == L4_CUT:
        return -2, 0, 0, 0, 0
    return -1, 0, 0, 0, 0


@njit(cache=True)
def _parse_tcp(b, p, n, lt):
    """Find a TCP header in one frame (inside any encapsulation _inner_l4 walks).

    Returns (flags, sport, dport, seq, ack, src_pos, dst_pos, alen); flags -1 if not TCP,
    -2 if the frame was cut (snaplen) before the end of the TCP flags.
    """
    ip, l4, proto, end = _inner_l4(b, p, n, lt)
    if proto == 6:
        if l4 + 14 > end:  # ports, seq, ack and flags must be captured
            return -2, 0, 0, 0, 0, 0, 0, 0
        if (b[ip] >> 4) == 4:
            src, dst, alen = ip + 12, ip + 16, 4
        else:
            src, dst, alen = ip + 8, ip + 24, 16
        return (
            np.int64(b[l4 + 13]),
            _u16(b, l4, True),
            _u16(b, l4 + 2, True),
            _u32(b, l4 + 4, True),
            _u32(b, l4 + 8, True),
            src,
            dst,
            alen,
        )
    if proto == L4_CUT:
        return -2, 0, 0, 0, 0, 0, 0, 0
    return -1, 0, 0, 0, 0, 0, 0, 0


@njit(cache=True)
def _emit_tcp(b, p, n, lt, ts, tgt, tgt_len, o_ts, o_kind, o_id, o_seq, o_addr, o_alen, k, cnt):
    """TCP mode of _emit: keep segments to (direction 0) or from (1) the target.

    Packing (no extra kernel arguments): kind = TCP flags, ident = source port, seq =
    destination port, addr[0:4] = sequence number, addr[4:8] = acknowledgement number
    (big-endian), alen = direction.
    """
    flags, sport, dport, sq, ak, src, dst, alen = _parse_tcp(b, p, n, lt)
    if flags < 0:
        cnt[C_OTHER] += 1
        if flags == -2:
            cnt[C_CUT] += 1
        return k
    cnt[C_TCP] += 1
    if alen != tgt_len:
        return k
    direction = -1
    for d in range(2):
        ap = dst if d == 0 else src
        same = True
        for i in range(alen):
            if b[ap + i] != tgt[i]:
                same = False
                break
        if same:
            direction = d
            break
    if direction < 0:
        return k
    o_ts[k] = ts
    o_kind[k] = flags
    o_id[k] = sport
    o_seq[k] = dport
    for i in range(4):
        o_addr[k, i] = (sq >> (24 - 8 * i)) & 0xFF
        o_addr[k, 4 + i] = (ak >> (24 - 8 * i)) & 0xFF
    o_alen[k] = direction
    return k + 1


@njit(cache=True)
def _emit(b, p, n, lt, ts, mode, tgt, tgt_len, o_ts, o_kind, o_id, o_seq, o_addr, o_alen, k, cnt):
    """Classify one frame and append it to the outputs; returns the new output count."""
    cnt[C_PACKETS] += 1
    if mode == M_TCP:
        return _emit_tcp(
            b, p, n, lt, ts, tgt, tgt_len, o_ts, o_kind, o_id, o_seq, o_addr, o_alen, k, cnt
        )
    kind, ident, seq, ap, alen = _parse_echo(b, p, n, lt)
    if kind < 0:
        cnt[C_OTHER] += 1
        if kind == -2:
            cnt[C_CUT] += 1
        return k
    cnt[C_ECHO] += 1
    if mode == 0:  # keep echoes that involve the target
        if alen != tgt_len:
            return k
        for i in range(alen):
            if b[ap + i] != tgt[i]:
                return k
        o_ts[k] = ts
        o_kind[k] = kind
        o_id[k] = ident
        o_seq[k] = seq
        return k + 1
    if kind != 0:  # listing mode: only request destinations
        return k
    for i in range(alen):
        o_addr[k, i] = b[ap + i]
    o_alen[k] = alen
    return k + 1


@njit(cache=True)
def _scan_pcap(
    b, pos, end, be, nano, lt, snap, mode, tgt, tgt_len,
    o_ts, o_kind, o_id, o_seq, o_addr, o_alen, cnt,
):  # fmt: skip
    """Walk classic pcap records in b[pos:end]. Returns (pos, n_out, err, err_pos)."""
    k = 0
    ltc = lt
    while pos + 16 <= end:
        caplen = _u32(b, pos + 8, be)
        if caplen > MAX_CAPLEN:
            return pos, k, E_CAPLEN, pos
        if snap > 0 and caplen > snap:  # refused here, at its own record, not further on
            return pos, k, E_SNAPLEN, pos
        if pos + 16 + caplen > end:
            break  # the rest of the record is in the next chunk
        sec = _u32(b, pos, be)
        frac = _u32(b, pos + 4, be)
        if nano:
            if frac >= 1_000_000_000:
                return pos, k, E_NSEC, pos
            ts = sec * 1_000_000_000 + frac
        else:
            if frac >= 1_000_000:
                return pos, k, E_USEC, pos
            ts = sec * 1_000_000_000 + frac * 1000
        k = _emit(
            b, pos + 16, caplen, ltc, ts, mode, tgt, tgt_len,
            o_ts, o_kind, o_id, o_seq, o_addr, o_alen, k, cnt,
        )  # fmt: skip
        pos += 16 + caplen
    return pos, k, E_OK, pos


@njit(cache=True)
def _scan_pcapng(
    b, pos, end, be, if_lt, if_snap, if_mode, if_fac, if_off, n_if, lt_cnt,
    mode, tgt, tgt_len, o_ts, o_kind, o_id, o_seq, o_addr, o_alen, cnt,
):  # fmt: skip
    """Walk pcapng blocks of one section in b[pos:end].

    Returns (pos, n_out, stop, err, err_pos, extra); stops at SHB/IDB (parsed in Python) or
    at a block not wholly in the buffer (extra = its total length, to read enough).
    """
    k = 0
    while pos + 12 <= end:
        btype = _u32(b, pos, be)
        if btype == 0x0A0D0D0A:
            return pos, k, ST_SHB, E_OK, pos, 0
        blen = _u32(b, pos + 4, be)
        if blen < 12 or (blen & 3) != 0 or blen > MAX_BLOCK:
            return pos, k, ST_NEED_MORE, E_BLOCKLEN, pos, blen
        if pos + blen > end:
            return pos, k, ST_NEED_MORE, E_OK, pos, blen
        if _u32(b, pos + blen - 4, be) != blen:
            return pos, k, ST_NEED_MORE, E_TRAILER, pos, blen
        if btype == 1:
            return pos, k, ST_IDB, E_OK, pos, 0
        if btype == 6 or btype == 2:  # enhanced / obsolete packet block
            if blen < 32:
                return pos, k, ST_NEED_MORE, E_BLOCKLEN, pos, blen
            if btype == 6:
                ifid = _u32(b, pos + 8, be)
            else:
                ifid = _u16(b, pos + 8, be)
            if ifid >= n_if:
                return pos, k, ST_NEED_MORE, E_NOIDB, pos, ifid
            if lt_cnt[ifid] == 0 and not _linktype_read(if_lt[ifid]):
                return pos, k, ST_NEED_MORE, E_LINKTYPE, pos, ifid
            caplen = _u32(b, pos + 20, be)
            if caplen > blen - 32:
                return pos, k, ST_NEED_MORE, E_BODY, pos, caplen
            if if_snap[ifid] > 0 and caplen > if_snap[ifid]:
                return pos, k, ST_NEED_MORE, E_SNAPLEN, pos, ifid
            raw = (_u32(b, pos + 12, be) << 32) | _u32(b, pos + 16, be)
            m = if_mode[ifid]
            f = if_fac[ifid]
            # A corrupt timestamp must not wrap around silently: refuse what int64 ns can't hold.
            if (
                raw < 0
                or (m == 0 and raw > INT64_MAX // f)
                or (m == 2 and (raw >> f) > INT64_MAX // 1_000_000_000 - 1)
            ):
                return pos, k, ST_NEED_MORE, E_TSRANGE, pos, 0
            if m == 0:
                ts = raw * f
            elif m == 1:
                ts = raw // f
            else:  # resolution 2^-f seconds
                # frac * 10^9 / 2^f, exact: 10^9 = 5^9 * 2^9, and frac * 5^9 fits for f <= 42
                whole = raw >> f
                frac = raw & ((np.int64(1) << f) - 1)
                e = f
                if e > 42:
                    frac >>= e - 42
                    e = 42
                frac *= 1953125
                frac = frac >> (e - 9) if e >= 9 else frac << (9 - e)
                ts = whole * 1_000_000_000 + frac
            ts += if_off[ifid]
            lt = if_lt[ifid]
            lt_cnt[ifid] += 1
            k = _emit(
                b, pos + 28, caplen, lt, ts, mode, tgt, tgt_len,
                o_ts, o_kind, o_id, o_seq, o_addr, o_alen, k, cnt,
            )  # fmt: skip
        elif btype == 3:  # simple packet block: interface 0, no timestamp
            if blen < 16:
                return pos, k, ST_NEED_MORE, E_BLOCKLEN, pos, blen
            if n_if < 1:
                return pos, k, ST_NEED_MORE, E_NOIDB, pos, 0
            if lt_cnt[0] == 0 and not _linktype_read(if_lt[0]):
                return pos, k, ST_NEED_MORE, E_LINKTYPE, pos, 0
            caplen = _u32(b, pos + 8, be)
            room = blen - 16
            if if_snap[0] > 0 and caplen > if_snap[0]:
                caplen = if_snap[0]
            if caplen > room:
                caplen = room
            lt_cnt[0] += 1
            before = k
            k = _emit(
                b, pos + 12, caplen, if_lt[0], np.int64(-1), mode, tgt, tgt_len,
                o_ts, o_kind, o_id, o_seq, o_addr, o_alen, k, cnt,
            )  # fmt: skip
            if mode != M_DEST and k > before:
                cnt[C_SPB_ECHO] += 1
        pos += blen
    return pos, k, ST_NEED_MORE, E_OK, pos, 0


# --------------------------------------------------------------------------- Python side


@dataclass
class Echoes:
    """Columnar echo packets (capture order) plus what else the capture held."""

    ts_ns: np.ndarray  # int64 absolute epoch nanoseconds
    kind: np.ndarray  # uint8: 0 request, 1 reply
    ident: np.ndarray  # uint16
    seq: np.ndarray  # uint16
    packets: int = 0  # every packet record read
    echo_packets: int = 0  # ICMP/ICMPv6 echo request/reply packets (any address)
    other_packets: int = 0  # everything that is not an echo
    cut_packets: int = 0  # of those: cut (snaplen) before the end of their ICMP/IP headers
    linktypes: dict[int, int] = field(default_factory=dict)  # link type -> packets
    fmt: str = ""

    def __len__(self) -> int:
        return len(self.ts_ns)


@dataclass
class TcpSegments:
    """Columnar TCP segments to or from one address (capture order)."""

    ts_ns: np.ndarray  # int64 absolute epoch nanoseconds
    flags: np.ndarray  # uint8 TCP flags (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10)
    sport: np.ndarray  # uint16
    dport: np.ndarray  # uint16
    seq: np.ndarray  # uint32 sequence number
    ack: np.ndarray  # uint32 acknowledgement number
    to_target: np.ndarray  # bool: True = sent to the address, False = sent by it
    packets: int = 0  # every packet record read
    tcp_packets: int = 0  # TCP segments (any address)
    other_packets: int = 0  # everything that is not TCP
    cut_packets: int = 0  # of those: cut (snaplen) before the end of their TCP flags
    linktypes: dict[int, int] = field(default_factory=dict)  # link type -> packets
    fmt: str = ""

    def __len__(self) -> int:
        return len(self.ts_ns)


class _Out:
    """Preallocated per-chunk output arrays, reused for every kernel call."""

    def __init__(self, cap: int, mode: int) -> None:
        self.ts = np.empty(cap, np.int64)
        self.kind = np.empty(cap, np.uint8)
        self.ident = np.empty(cap, np.uint16)
        self.seq = np.empty(cap, np.uint16)
        rows = cap if mode != M_ECHO else 1
        self.addr = np.zeros((rows, 16), np.uint8)
        self.alen = np.zeros(rows, np.uint8)
        self.parts: list[tuple[np.ndarray, ...]] = []

    def keep(self, n: int, mode: int) -> None:
        if n == 0:
            return
        if mode == M_ECHO:
            self.parts.append(
                (
                    self.ts[:n].copy(),
                    self.kind[:n].copy(),
                    self.ident[:n].copy(),
                    self.seq[:n].copy(),
                )
            )
        elif mode == M_TCP:
            self.parts.append(
                (
                    self.ts[:n].copy(),
                    self.kind[:n].copy(),
                    self.ident[:n].copy(),
                    self.seq[:n].copy(),
                    self.addr[:n, :8].copy(),
                    self.alen[:n].copy(),
                )
            )
        else:
            self.parts.append((self.addr[:n].copy(), self.alen[:n].copy()))


def _describe_start(head: bytes) -> str:
    if not head:
        return "empty file"
    sample = head[:64]
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\r\n\t" for c in text):
        shown = text.strip().splitlines()[0][:40] if text.strip() else ""
        return f"looks like text ({shown!r}), not a pcap/pcapng capture"
    return f"unknown magic number 0x{head[:4].hex()} (not a pcap/pcapng capture)"


def _target_bytes(target: str) -> np.ndarray:
    try:
        packed = ipaddress.ip_address(target).packed
    except ValueError as exc:
        raise MigfwError(f"--target {target!r}: not an IPv4/IPv6 address") from exc
    out = np.zeros(16, np.uint8)
    out[: len(packed)] = np.frombuffer(packed, np.uint8)
    return out


class _Reader:
    """Drives the kernels over a file in chunks; keeps the carried-over partial record."""

    def __init__(self, path: str | os.PathLike, mode: int, target: str | None) -> None:
        self.path = Path(path)
        self.name = str(path)
        self.mode = mode
        self.tgt = _target_bytes(target) if target else np.zeros(16, np.uint8)
        self.tgt_len = (4 if len(ipaddress.ip_address(target).packed) == 4 else 16) if target else 0
        self.cnt = np.zeros(8, np.int64)
        self.linktypes: dict[int, int] = {}
        self.out = _Out(1, mode)  # sized to the read buffer once it exists

    def fail(self, problem: str, offset: int) -> MigfwError:
        return MigfwError(f"{self.name}: {problem} at byte {offset}")

    def run(self) -> Echoes:
        try:
            handle = open(self.path, "rb")
        except OSError as exc:
            raise MigfwError(f"{self.name}: cannot open ({exc.strerror})") from exc
        with handle:
            self.fh = handle
            head = handle.read(4)
            handle.seek(0)
            if len(head) < 4:
                raise self.fail(_describe_start(head), 0)
            magic_le = struct.unpack("<I", head)[0]
            if magic_le in (0xA1B2C3D4, 0xD4C3B2A1, 0xA1B23C4D, 0x4D3CB2A1):
                fmt = self._pcap(magic_le)
            elif magic_le == 0x0A0D0D0A:
                fmt = self._pcapng()
            else:
                raise self.fail(_describe_start(handle.read(64)), 0)
        return self._result(fmt)

    def _result(self, fmt: str) -> Echoes | TcpSegments:
        parts = self.out.parts
        if self.mode == M_TCP:
            return self._tcp_result(fmt)
        if self.mode == 0 and parts:
            cols = [np.concatenate([p[i] for p in parts]) for i in range(4)]
        else:
            cols = [np.empty(0, t) for t in (np.int64, np.uint8, np.uint16, np.uint16)]
        ech = Echoes(*cols, fmt=fmt)
        ech.packets, ech.echo_packets, ech.other_packets = (int(x) for x in self.cnt[:3])
        ech.cut_packets = int(self.cnt[C_CUT])
        ech.linktypes = dict(sorted(self.linktypes.items()))
        return ech

    def _tcp_result(self, fmt: str) -> TcpSegments:
        parts = self.out.parts
        if parts:
            ts, flags, sport, dport, words, direction = (
                np.concatenate([p[i] for p in parts]) for i in range(6)
            )
            words = np.ascontiguousarray(words).view(">u4")  # (n, 2): seq, ack
            seq, ack = words[:, 0].astype(np.uint32), words[:, 1].astype(np.uint32)
        else:
            ts = np.empty(0, np.int64)
            flags, direction = np.empty(0, np.uint8), np.empty(0, np.uint8)
            sport, dport = np.empty(0, np.uint16), np.empty(0, np.uint16)
            seq, ack = np.empty(0, np.uint32), np.empty(0, np.uint32)
        seg = TcpSegments(ts, flags, sport, dport, seq, ack, direction == 0, fmt=fmt)
        seg.packets, seg.tcp_packets = int(self.cnt[C_PACKETS]), int(self.cnt[C_TCP])
        seg.other_packets = int(self.cnt[C_OTHER])
        seg.cut_packets = int(self.cnt[C_CUT])
        seg.linktypes = dict(sorted(self.linktypes.items()))
        return seg

    # -- buffer handling: one buffer, refilled in place, partial record carried to its front
    def _fill(self, buf: np.ndarray, keep_from: int, keep_to: int) -> tuple[np.ndarray, int, bool]:
        """Move buf[keep_from:keep_to] to the front and read more. Returns (buf, end, eof)."""
        n = keep_to - keep_from
        if n:
            buf[:n] = buf[keep_from:keep_to].copy()
        got = self.fh.readinto(memoryview(buf)[n:])
        return buf, n + got, got == 0

    def _pcap(self, magic_le: int) -> str:
        hdr = self.fh.read(24)
        if len(hdr) < 24:
            raise self.fail(f"truncated pcap file header ({len(hdr)} of 24 bytes)", len(hdr))
        be = magic_le in (0xD4C3B2A1, 0x4D3CB2A1)
        nano = magic_le in (0xA1B23C4D, 0x4D3CB2A1)
        e = ">" if be else "<"
        major, minor, _zone, _sig, snap, ltf = struct.unpack(e + "HHiIII", hdr[4:])
        if major < 2:
            raise self.fail(f"archaic pcap version {major}.{minor} (only 2.x is read)", 4)
        if major != 2 or minor > 4:
            raise self.fail(f"unsupported pcap version {major}.{minor}", 4)
        if ltf & 0x03FF0000:
            raise self.fail(f"link-type field 0x{ltf:08x} has reserved bits set", 20)
        lt = ltf & 0xFFFF
        if lt not in LINKTYPES_READ:
            raise self.fail(f"{linktype_name(lt)} not supported", 20)
        self.snap = snap if snap <= MAX_CAPLEN else 0  # 0: no limit but MAX_CAPLEN
        buf = np.empty(CHUNK_BYTES + 16 + MAX_CAPLEN, np.uint8)
        # Every record is >= 16 bytes: one output slot per 16 buffer bytes never overflows.
        self.out = _Out(len(buf) // 16 + 1, self.mode)
        base, end, pos = 24, 0, 0
        while True:
            buf, end, eof = self._fill(buf, pos, end)
            base += pos
            pos, k, err, epos = _scan_pcap(
                buf, 0, end, be, nano, lt, self.snap, self.mode, self.tgt, self.tgt_len,
                self.out.ts, self.out.kind, self.out.ident, self.out.seq,
                self.out.addr, self.out.alen, self.cnt,
            )  # fmt: skip
            self.out.keep(k, self.mode)
            if err:
                self._pcap_error(buf, err, epos, base, be)
            if eof:
                if pos < end:
                    self._pcap_truncated(buf, pos, end, base, be)
                break
        self.linktypes[lt] = int(self.cnt[C_PACKETS])
        return f"pcap-{'be' if be else 'le'}-{'ns' if nano else 'us'}"

    def _pcap_error(self, buf: np.ndarray, err: int, epos: int, base: int, be: bool) -> None:
        e = ">" if be else "<"
        sec, frac, caplen = struct.unpack(e + "III", bytes(buf[epos : epos + 12]))
        at = base + epos
        rec = f"record {int(self.cnt[C_PACKETS]) + 1}"
        if err == E_CAPLEN:
            raise self.fail(f"{rec} claims {caplen} captured bytes (max {MAX_CAPLEN})", at)
        if err == E_SNAPLEN:
            raise self.fail(
                f"{rec} claims {caplen} captured bytes, more than the file's snaplen {self.snap}",
                at,
            )
        if err == E_USEC:
            raise self.fail(f"{rec}: corrupt timestamp: microsecond field {frac} >= 10^6", at)
        raise self.fail(f"{rec}: corrupt timestamp: nanosecond field {frac} >= 10^9", at)

    def _pcap_truncated(self, buf: np.ndarray, pos: int, end: int, base: int, be: bool) -> None:
        left = end - pos
        if left < 16:
            raise self.fail(f"file ends inside a record header ({left} of 16 bytes)", base + pos)
        caplen = struct.unpack(">I" if be else "<I", bytes(buf[pos + 8 : pos + 12]))[0]
        raise self.fail(
            f"file ends inside a record: record {int(self.cnt[C_PACKETS]) + 1} claims {caplen} "
            f"captured bytes, only {left - 16} remain",
            base + pos,
        )

    def _pcapng(self) -> str:
        self.buf = np.empty(CHUNK_BYTES, np.uint8)
        self.out = _Out(len(self.buf) // 16 + 1, self.mode)  # blocks are >= 16 bytes
        self.base, self.end, self.pos, self.eof = 0, 0, 0, False
        be = False
        n_if = 0
        cap_if = 64
        if_lt = np.zeros(cap_if, np.int64)
        if_snap = np.zeros(cap_if, np.int64)
        if_mode = np.zeros(cap_if, np.int64)
        if_fac = np.ones(cap_if, np.int64)
        if_off = np.zeros(cap_if, np.int64)
        lt_cnt = np.zeros(cap_if, np.int64)
        sections = 0
        self._refill(0)
        while True:
            out = self.out
            pos, k, stop, err, epos, extra = _scan_pcapng(
                self.buf, self.pos, self.end, be, if_lt, if_snap, if_mode, if_fac, if_off, n_if,
                lt_cnt, self.mode, self.tgt, self.tgt_len,
                out.ts, out.kind, out.ident, out.seq, out.addr, out.alen, self.cnt,
            )  # fmt: skip
            self.pos = pos
            out.keep(k, self.mode)
            if err:
                self._pcapng_error(err, epos, extra, be, if_lt, if_snap)
            if stop in (ST_SHB, ST_IDB):
                if sections == 0 and stop == ST_IDB:
                    raise self.fail("interface block before any section header", self.base + pos)
                blk, blen, be_new = self._whole_block(stop == ST_SHB, be)
                if blk is None:  # not all in the buffer yet
                    if self.eof:
                        self._pcapng_truncated(blen)
                    self._refill(blen)
                    continue
                at = self.base + pos
                if stop == ST_SHB:
                    be = be_new
                    sections += 1
                    self._flush_lt(if_lt, lt_cnt, n_if)
                    n_if = 0
                    self._parse_shb(blk, be, at)
                else:
                    if n_if == cap_if:
                        cap_if *= 2
                        if_lt, if_snap, if_mode, if_fac, if_off, lt_cnt = (
                            np.resize(a, cap_if)
                            for a in (if_lt, if_snap, if_mode, if_fac, if_off, lt_cnt)
                        )
                    self._parse_idb(blk, be, at, n_if, if_lt, if_snap, if_mode, if_fac, if_off)
                    lt_cnt[n_if] = 0
                    n_if += 1
                self.pos += blen
                continue
            if self.eof:  # ran out of whole blocks and there is nothing more to read
                if self.pos < self.end:
                    self._pcapng_truncated(extra)
                break
            self._refill(extra)
        self._flush_lt(if_lt, lt_cnt, n_if)
        if int(self.cnt[C_SPB_ECHO]):
            raise MigfwError(
                f"{self.name}: {int(self.cnt[C_SPB_ECHO])} "
                f"{'TCP segments' if self.mode == M_TCP else 'echo packets'} are in Simple Packet "
                "Blocks, which carry no timestamp; timing metrics are impossible"
            )
        return f"pcapng ({sections} section{'s' if sections != 1 else ''})"

    def _refill(self, needed: int) -> None:
        """Move the unread tail to the front, grow the buffer if a block needs it, read more."""
        left = self.end - self.pos
        if left:
            self.buf[:left] = self.buf[self.pos : self.end].copy()
        self.base += self.pos
        self.pos, self.end = 0, left
        if len(self.buf) < max(needed, left + 1):
            bigger = np.empty(max(needed, left + 1) + CHUNK_BYTES, np.uint8)
            bigger[:left] = self.buf[:left]
            self.buf = bigger
            parts = self.out.parts
            self.out = _Out(len(bigger) // 16 + 1, self.mode)  # room for every record
            self.out.parts = parts
        got = self.fh.readinto(memoryview(self.buf)[left:])
        self.end += got
        self.eof = got == 0

    def _flush_lt(self, if_lt: np.ndarray, lt_cnt: np.ndarray, n_if: int) -> None:
        for i in range(n_if):
            lt = int(if_lt[i])
            self.linktypes[lt] = self.linktypes.get(lt, 0) + int(lt_cnt[i])
            lt_cnt[i] = 0

    def _whole_block(self, shb: bool, be: bool) -> tuple[bytes | None, int, bool]:
        buf, pos, end, base = self.buf, self.pos, self.end, self.base
        if shb:
            if end - pos < 12:
                return None, 12, be
            bom = bytes(buf[pos + 8 : pos + 12])
            if bom == b"\x1a\x2b\x3c\x4d":
                be = True
            elif bom == b"\x4d\x3c\x2b\x1a":
                be = False
            else:
                raise self.fail(
                    f"section header with bad byte-order magic 0x{bom.hex()}", base + pos
                )
        if end - pos < 8:
            return None, 8, be
        blen = struct.unpack(">I" if be else "<I", bytes(buf[pos + 4 : pos + 8]))[0]
        if blen < (28 if shb else 20) or blen % 4 or blen > MAX_BLOCK:
            what = "section header" if shb else "interface description"
            raise self.fail(f"{what} block has bad length {blen}", base + pos)
        if end - pos < blen:
            return None, blen, be
        blk = bytes(buf[pos : pos + blen])
        trailer = struct.unpack(">I" if be else "<I", blk[-4:])[0]
        if trailer != blen:
            raise self.fail(
                f"block length {blen} in header and {trailer} in trailer don't match", base + pos
            )
        return blk, blen, be

    def _options(self, blk: bytes, start: int, be: bool, at: int) -> dict[int, bytes]:
        e = ">" if be else "<"
        opts: dict[int, bytes] = {}
        p, stop = start, len(blk) - 4
        while p + 4 <= stop:
            code, olen = struct.unpack(e + "HH", blk[p : p + 4])
            if code == 0:
                break
            if p + 4 + olen > stop:
                raise self.fail(
                    f"option {code} of length {olen} runs past the end of its block", at + p
                )
            opts.setdefault(code, blk[p + 4 : p + 4 + olen])
            p += 4 + ((olen + 3) & ~3)
        return opts

    def _parse_shb(self, blk: bytes, be: bool, at: int) -> None:
        major, minor = struct.unpack(">HH" if be else "<HH", blk[12:16])
        if (major, minor) not in ((1, 0), (1, 2)):
            raise self.fail(f"unsupported pcapng version {major}.{minor}", at + 12)
        self._options(blk, 24, be, at)

    def _parse_idb(self, blk, be, at, i, if_lt, if_snap, if_mode, if_fac, if_off) -> None:
        e = ">" if be else "<"
        lt, _res, snap = struct.unpack(e + "HHI", blk[8:16])
        opts = self._options(blk, 16, be, at)
        if_lt[i], if_snap[i] = lt, snap
        mode, fac = 0, 1000  # default resolution: microseconds
        if 9 in opts and opts[9]:
            r = opts[9][0]
            if r & 0x80:
                exp = r & 0x7F
                if exp > 62:
                    raise self.fail(f"if_tsresol 2^-{exp} is out of range", at)
                mode, fac = (2, exp) if exp else (0, 1_000_000_000)
            elif r <= 9:
                mode, fac = 0, 10 ** (9 - r)
            elif r <= 18:
                mode, fac = 1, 10 ** (r - 9)
            else:
                raise self.fail(f"if_tsresol 10^-{r} is out of range", at)
        if_mode[i], if_fac[i] = mode, fac
        off = 0
        if 14 in opts and len(opts[14]) >= 8:
            off = struct.unpack(e + "q", opts[14][:8])[0]
            if abs(off) > 1 << 32:  # > 136 years: corrupt, and ns would overflow int64
                raise self.fail(f"if_tsoffset {off} s is out of range", at)
        if_off[i] = off * 1_000_000_000

    def _pcapng_error(
        self, err: int, epos: int, extra: int, be: bool, if_lt: np.ndarray, if_snap: np.ndarray
    ) -> None:
        at = self.base + epos
        rec = f"record {int(self.cnt[C_PACKETS]) + 1}"  # packet blocks, counted from 1
        if err == E_LINKTYPE:
            lt = int(if_lt[extra])
            raise self.fail(f"{rec}: interface {extra} has {linktype_name(lt)}: not supported", at)
        if err == E_SNAPLEN:  # EPB and PB both hold the captured length at byte 20
            caplen = struct.unpack(">I" if be else "<I", bytes(self.buf[epos + 20 : epos + 24]))
            raise self.fail(
                f"{rec} claims {caplen[0]} captured bytes, more than interface {extra}'s "
                f"snaplen {int(if_snap[extra])}",
                at,
            )
        if err == E_BLOCKLEN:
            raise self.fail(f"block has bad total length {extra}", at)
        if err == E_TRAILER:
            raise self.fail("block length in header and trailer don't match", at)
        if err == E_TSRANGE:
            raise self.fail("packet timestamp out of range (corrupt block?)", at)
        if err == E_NOIDB:
            raise self.fail(f"packet on interface {extra}, which has no interface block", at)
        raise self.fail(f"packet block claims {extra} captured bytes, more than the block", at)

    def _pcapng_truncated(self, need: int) -> None:
        pos, base, left = self.pos, self.base, self.end - self.pos
        if left < 12:
            raise self.fail(f"file ends inside a block header ({left} bytes left)", base + pos)
        raise self.fail(f"file ends inside a block of {need} bytes ({left} bytes left)", base + pos)


def read_echoes(path: str | os.PathLike, target: str) -> Echoes:
    """Read echo requests sent TO `target` and echo replies FROM it, in capture order.

    Raises MigfwError (one line naming the file, the problem and the byte offset) for a file
    that is not a capture, an unsupported version, or a corrupt/truncated record.
    """
    if not target:
        raise MigfwError(f"{path}: no target address given (see echo_destinations)")
    return _Reader(path, 0, target).run()


def read_tcp(path: str | os.PathLike, target: str) -> TcpSegments:
    """Read TCP segments sent TO `target` and FROM it, in capture order (any link type the
    echo reader handles). Errors as read_echoes."""
    if not target:
        raise MigfwError(f"{path}: no target address given")
    return _Reader(path, M_TCP, target).run()


def echo_destinations(path: str | os.PathLike, counts: dict | None = None) -> dict[str, int]:
    """Every echo request destination in the capture with its request count (most first).

    `counts`, if given, receives the packet counters (`packets`, `other_packets`,
    `cut_packets`, …) of Echoes, e.g. to explain an empty result.
    """
    reader = _Reader(path, 1, None)
    ech = reader.run()
    if counts is not None:
        counts.update(
            packets=ech.packets,
            echo_packets=ech.echo_packets,
            other_packets=ech.other_packets,
            cut_packets=ech.cut_packets,
            linktypes=ech.linktypes,
        )
    if not reader.out.parts:
        return {}
    addr = np.ascontiguousarray(np.concatenate([p[0] for p in reader.out.parts]))
    alen = np.concatenate([p[1] for p in reader.out.parts]).astype(np.uint64)
    # Distinct (length, address) pairs: sort three integer keys (np.unique(axis=0) on the
    # byte rows is ~20x slower), then count the runs.
    words = addr.view(np.uint64)  # (n, 2): the 16 address bytes as two integers
    order = np.lexsort((words[:, 1], words[:, 0], alen))
    keys = np.column_stack((alen[order], words[order, 0], words[order, 1]))
    starts = np.flatnonzero(np.r_[True, np.any(keys[1:] != keys[:-1], axis=1)])
    counts = np.diff(np.r_[starts, len(keys)])
    out = {}
    for i in np.argsort(-counts, kind="stable"):
        row = order[starts[i]]
        n = int(alen[row])
        out[str(ipaddress.ip_address(bytes(addr[row, :n])))] = int(counts[i])
    return out


def warm_up() -> float:
    """Compile (or load from cache) every kernel on a tiny input; returns seconds spent."""
    import time

    t0 = time.perf_counter()
    b = np.zeros(64, np.uint8)
    out = _Out(8, 0)
    cnt = np.zeros(8, np.int64)
    z = np.zeros(1, np.int64)
    _scan_pcap(b, 0, 0, False, False, 1, 0, 0, b[:16], 4, out.ts, out.kind, out.ident, out.seq,
               out.addr, out.alen, cnt)  # fmt: skip
    _scan_pcapng(b, 0, 0, False, z, z, z, z, z, 0, z, 0, b[:16], 4, out.ts, out.kind,
                 out.ident, out.seq, out.addr, out.alen, cnt)  # fmt: skip
    tcp = _Out(8, M_TCP)
    _scan_pcap(b, 0, 0, False, False, 1, 0, M_TCP, b[:16], 4, tcp.ts, tcp.kind, tcp.ident,
               tcp.seq, tcp.addr, tcp.alen, cnt)  # fmt: skip
    return time.perf_counter() - t0
