"""The destination's link-layer announcements of a migrated VM, read from the probe capture.

After the destination resumes the guest, QEMU "self-announces" its NIC so the switches learn
the VM's new port: a few broadcast RARP frames (ethertype 0x8035, opcode 3, sender and target
hardware address = the VM's MAC, no IP addresses), and with virtio-net's GUEST_ANNOUNCE the
guest sends gratuitous ARPs (sender IP = target IP = its address) too. The prober's capture
keeps both (migfw.testbed.prober.capture_filter); the timeline draws them above the probes.

Only the few non-IP frames are looked at: scapy's raw reader walks the records without
dissecting them, and pcap (µs or ns) and pcapng timestamps are both converted to epoch ns.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from pathlib import Path

from migfw.errors import MigfwError

ET_ARP, ET_RARP, ET_VLAN, ET_QINQ = 0x0806, 0x8035, 0x8100, 0x88A8
LINKTYPE_ETHERNET = 1
RARP_OPS = (3, 4)  # reverse request (QEMU sends these), reverse reply
ARP_OPS = (1, 2)


@dataclass(frozen=True)
class Announcement:
    """One announcement frame: capture time (epoch ns), `rarp` or `garp`, the announced MAC."""

    t_ns: int
    kind: str
    mac: str


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _epoch_ns(reader, meta) -> int:
    if hasattr(meta, "tshigh"):  # pcapng: ticks of the interface's resolution
        ticks = (int(meta.tshigh) << 32) | int(meta.tslow)
        return ticks * 1_000_000_000 // int(meta.tsresol)
    fraction = int(meta.usec)
    return int(meta.sec) * 1_000_000_000 + (fraction if reader.nano else fraction * 1000)


def classify(frame: bytes, target: bytes | None) -> tuple[str, str] | None:
    """(kind, mac) if an Ethernet frame is a RARP announcement, or a gratuitous ARP for
    `target` (packed IPv4; any address if None); else None. 802.1Q/802.1ad tags skipped."""
    offset = 12
    while len(frame) >= offset + 2:
        (ethertype,) = struct.unpack_from("!H", frame, offset)
        if ethertype in (ET_VLAN, ET_QINQ):
            offset += 4
            continue
        break
    else:
        return None
    body = frame[offset + 2 :]
    if ethertype not in (ET_ARP, ET_RARP) or len(body) < 28:
        return None
    htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", body, 0)
    if htype != 1 or ptype != 0x0800 or hlen != 6 or plen != 4:
        return None
    sha, spa, tpa = body[8:14], body[14:18], body[24:28]
    if ethertype == ET_RARP:
        return ("rarp", _mac(sha)) if op in RARP_OPS else None
    if op in ARP_OPS and spa == tpa and (target is None or spa == target):
        return "garp", _mac(sha)
    return None


def read_announcements(path: str | Path, target: str | None = None) -> list[Announcement]:
    """Every RARP announcement and gratuitous ARP (for `target`, if given) in a capture, in
    file order. A capture whose link type is not Ethernet has none."""
    from scapy.error import Scapy_Exception
    from scapy.utils import RawPcapReader

    packed = ipaddress.IPv4Address(target).packed if target else None
    out: list[Announcement] = []
    try:
        reader = RawPcapReader(str(path))
    except (OSError, Scapy_Exception) as exc:
        raise MigfwError(f"{path}: cannot read capture ({exc})") from None
    with reader:
        if getattr(reader, "linktype", LINKTYPE_ETHERNET) != LINKTYPE_ETHERNET:
            return out
        for frame, meta in reader:
            if getattr(meta, "linktype", LINKTYPE_ETHERNET) != LINKTYPE_ETHERNET:
                continue
            found = classify(frame, packed)
            if found:
                out.append(Announcement(_epoch_ns(reader, meta), *found))
    return out
