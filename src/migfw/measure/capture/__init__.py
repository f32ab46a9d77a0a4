"""Streaming reader of ICMP echo packets (and TCP segments) from pcap and pcapng captures.

The file is read in fixed-size chunks; a numba kernel walks the records of each chunk and
fills preallocated columnar arrays, so memory stays flat and no Python object is made per
packet. The format is detected from the magic number, never from the file name.

Public API:
    read_echoes(path, target)  -> Echoes   echo requests TO target and replies FROM it
    echo_destinations(path)    -> dict     echo request destination -> request count
    read_tcp(path, target)     -> TcpSegments  TCP segments to and from target (SYN probes,
                                               SYN-ACK / RST answers) with ports, seq and ack

One module per layer: streams (gzip, pipes, naming what is not a capture), containers (pcap
and pcapng records, the chunked reader), link (link layers, VLAN tags, MPLS labels, PPP(oE),
GRE/ERSPAN/PPTP/VXLAN/Geneve/GTP-U tunnels), l4 (ICMP echo, TCP), records (the returned
columns), jit (numba's cache folder and set-up, the kernels' constants).
"""

from __future__ import annotations

import ipaddress
import os

import numpy as np

from migfw.errors import MigfwError
from migfw.measure.capture.containers import _Reader, _scan_pcap, _scan_pcapng
from migfw.measure.capture.jit import M_TCP, _pick_cache_dir, realise
from migfw.measure.capture.link import LINKTYPE_NAMES, LINKTYPES_READ, linktype_name
from migfw.measure.capture.records import Echoes, TcpSegments, _Out

__all__ = [
    "LINKTYPE_NAMES",
    "LINKTYPES_READ",
    "Echoes",
    "TcpSegments",
    "_pick_cache_dir",
    "echo_destinations",
    "linktype_name",
    "read_echoes",
    "read_tcp",
    "warm_up",
]


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
    realise()
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
