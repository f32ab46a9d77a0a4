"""Link-layer and tunnel decoding (numba kernels): from a frame of any link type the reader
accepts, through VLAN/QinQ tags, MPLS labels, PPP(oE) and GRE/ERSPAN/PPTP/VXLAN/Geneve/GTP-U
tunnels, to the innermost IPv4/IPv6 header and its transport payload."""

from __future__ import annotations

import numpy as np

from migfw.measure.capture.jit import njit


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
ET_ERSPAN2, ET_ERSPAN3 = 0x88BE, 0x22EB  # GRE types: ERSPAN type I/II, type III
ET_PPP, ET_PPPOE = 0x880B, 0x8864  # PPP (GRE version 1, PPTP), PPPoE session stage
UDP_VXLAN, UDP_GENEVE, UDP_GTPU = 4789, 6081, 2152  # IANA destination ports
MAX_STEPS = 64  # headers walked per frame (tags, labels, tunnels): bounds a hostile frame
# _inner_l4 `proto` values that are not an IP protocol number.
L4_NONE, L4_CUT = -1, -2  # not IP / a later fragment / unknown payload; cut short (snaplen)
# Link types the reader decapsulates; packets on any other link type are refused.
LINKTYPES_READ = (0, 1, 9, 12, 14, 50, 51, 101, 104, 107, 108, 113, 226, 228, 229, 239, 242, 276)
# Names (tcpdump.org's LINKTYPE_ list) of common link types, for error messages.
LINKTYPE_NAMES = {
    0: "NULL", 1: "ETHERNET", 6: "IEEE802_5", 8: "SLIP", 9: "PPP", 10: "FDDI", 12: "RAW",
    14: "RAW", 50: "PPP_HDLC", 51: "PPP_ETHER", 100: "ATM_RFC1483", 101: "RAW",
    104: "C_HDLC", 105: "IEEE802_11", 107: "FRELAY", 108: "LOOP", 113: "LINUX_SLL",
    117: "PFLOG", 119: "IEEE802_11_PRISM", 127: "IEEE802_11_RADIOTAP", 163: "IEEE802_11_AVS",
    187: "BLUETOOTH_HCI_H4", 189: "USB_LINUX", 192: "PPI", 220: "USB_LINUX_MMAPPED",
    226: "IPNET", 227: "CAN_SOCKETCAN", 228: "IPV4", 229: "IPV6", 239: "NFLOG",
    242: "IPOIB", 249: "USBPCAP", 253: "NETLINK", 276: "LINUX_SLL2",
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
    if lt == 9 or lt == 50:  # PPP, PPP in HDLC-like framing: the PPP frame itself
        if lt == 50 and n >= 4 and (b[p] == 0x0F or b[p] == 0x8F):  # Cisco PPP: as C_HDLC
            return _u16(b, p + 2, True), p + 4
        return ET_PPP, p
    if lt == 51:  # PPPoE without its Ethernet header: 6-byte PPPoE header, then PPP
        return ET_PPPOE, p
    if lt == 107:  # Frame Relay: Q.922 address (2-4 bytes, EA bit ends it), then either
        off, end = p, p + n  # UI control 0x03 + [pad] + NLPID (RFC 2427), or an EtherType (Cisco)
        for _ in range(4):
            if off >= end:
                return -2, p
            off += 1
            if b[off - 1] & 1:
                break
        if off + 2 > end:
            return -2, p
        if b[off] != 0x03:
            return _u16(b, off, True), off + 2
        off += 2 if b[off + 1] == 0 else 1  # (a pad byte before the NLPID)
        if off >= end:
            return -2, p
        nlpid = b[off]
        if nlpid == 0xCC or nlpid == 0x8E:  # IPv4, IPv6
            return ET_BY_NIBBLE, off + 1
        if nlpid == 0x80:  # SNAP: OUI, then an EtherType
            if off + 6 > end:
                return -2, p
            return _u16(b, off + 4, True), off + 6
        return -1, p
    if lt == 242:  # IP over InfiniBand: two 20-byte link addresses, EtherType, reserved
        if n < 44:
            return -2, p
        return _u16(b, p + 40, True), p + 44
    if lt == 239:  # NFLOG (tcpdump -i nflog:N): 4-byte header, then TLVs, the packet in type 9
        if n < 8:
            return -2, p
        # TLV lengths and types are in the logging host's byte order: types are small,
        # so the first TLV's type tells it.
        be = _u16(b, p + 6, False) > 0xFF
        off, end = p + 4, p + n
        for _ in range(MAX_STEPS):
            if off + 4 > end:
                return -2, p  # (the packet TLV comes last: cut before it)
            tlen = _u16(b, off, be)
            if tlen < 4:
                return -1, p
            if (_u16(b, off + 2, be) & 0x7FFF) == 9:
                return ET_BY_NIBBLE, off + 4
            off += (tlen + 3) & ~3
        return -1, p
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
    MPLS or Ethernet 0x6558 inside), ERSPAN I/II/III, PPTP (GRE version 1) and PPP/PPPoE,
    VXLAN (UDP 4789), Geneve (UDP 6081, options), GTP-U (UDP 2152), IP-in-IP (4) and
    IPv6-in-IP (41), AH and IPv6 extension headers, over IPv4 or IPv6 outer headers, nested
    in any order.

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
            if et == ET_PPPOE:  # version/type, code, session id, length: then PPP
                if off + 6 > end:
                    return -1, -1, L4_CUT, end
                et = ET_PPP
                off += 6
                continue
            if et == ET_PPP:  # [address 0xFF, control 0x03], protocol in 1 (odd) or 2 bytes
                if off < end and b[off] == 0xFF:  # (never a protocol's first byte)
                    if off + 2 > end:
                        return -1, -1, L4_CUT, end
                    if b[off + 1] == 0x03:
                        off += 2
                if off >= end:
                    return -1, -1, L4_CUT, end
                if b[off] & 1:
                    ppp = np.int64(b[off])
                    off += 1
                else:
                    if off + 2 > end:
                        return -1, -1, L4_CUT, end
                    ppp = _u16(b, off, True)
                    off += 2
                if ppp == 0x21:
                    et = ET_IPV4
                elif ppp == 0x57:
                    et = ET_IPV6
                elif ppp == 0x281 or ppp == 0x283:
                    et = ET_MPLS_UC
                else:
                    return -1, -1, L4_NONE, end  # LCP, IPCP, CCP, …: not IP
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
            if proto == 51:  # AH (RFC 4302), as in IPv6: length in 4-byte words minus 2
                if l4 + 8 > end:
                    return -1, -1, L4_CUT, end
                proto = np.int64(b[l4])
                l4 += (np.int64(b[l4 + 1]) + 2) * 4
                if l4 > end:
                    return -1, -1, L4_CUT, end
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
            if (flags & 7) == 1:  # enhanced GRE (PPTP, RFC 2637): key always, ack flag 0x80
                if l4 + 8 > end:
                    return -1, -1, L4_CUT, end
                if _u16(b, l4 + 2, True) != ET_PPP or _u16(b, l4 + 4, True) == 0:
                    return ip, l4, proto, end  # not PPP, or an acknowledgement alone
                off = l4 + 8
                if flags & 0x1000:  # sequence number
                    off += 4
                if flags & 0x0080:  # acknowledgement number
                    off += 4
                if off > end:
                    return -1, -1, L4_CUT, end
                et = ET_PPP
                continue
            if (flags & 7) != 0:
                return ip, l4, proto, end  # an unknown GRE version: not walked
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
            if et == ET_ERSPAN2:  # type II has an 8-byte header (and a GRE sequence number)
                if flags & 0x1000:
                    off += 8
                et = ET_TEB  # type I (no sequence number): the mirrored frame at once
            elif et == ET_ERSPAN3:  # 12-byte header, 8 more if its O flag is set
                if off + 12 > end:
                    return -1, -1, L4_CUT, end
                frame_type = (b[off + 10] >> 2) & 0x1F
                off += 20 if b[off + 11] & 1 else 12
                if frame_type == 0:
                    et = ET_TEB
                elif frame_type == 2:
                    et = ET_BY_NIBBLE
                else:
                    return ip, l4, proto, end  # another frame type: not walked
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
            if dport == UDP_GTPU:  # GTPv1-U G-PDU: 8 bytes, 4 more if E/S/PN, extensions
                if l4 + 16 > end:
                    return -1, -1, L4_CUT, end
                gflags = b[l4 + 8]
                if (gflags >> 5) != 1 or (gflags & 0x10) == 0 or b[l4 + 9] != 0xFF:
                    return ip, l4, proto, end  # not a version-1 G-PDU: plain UDP
                off = l4 + 16
                if gflags & 0x07:
                    if off + 4 > end:
                        return -1, -1, L4_CUT, end
                    nxt = np.int64(b[off + 3]) if gflags & 0x04 else 0
                    off += 4
                    for _ in range(MAX_STEPS):  # extension headers: length in 4-byte units
                        if nxt == 0:
                            break
                        if off + 4 > end:
                            return -1, -1, L4_CUT, end
                        elen = np.int64(b[off]) * 4
                        if elen == 0 or off + elen > end:
                            return -1, -1, L4_CUT if elen else L4_NONE, end
                        nxt = np.int64(b[off + elen - 1])
                        off += elen
                et = ET_BY_NIBBLE
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
