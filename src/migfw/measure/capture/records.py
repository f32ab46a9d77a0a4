"""What the reader returns: columnar echoes and TCP segments, and the per-chunk output
columns the kernels fill."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from migfw.measure.capture.jit import M_ECHO, M_TCP


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
