"""Crafted packets: Ethernet/IPv4/TCP frames and pcap files written with numpy, and one
attacker side's capture and send log from explicit lists. Shared by the crafted trials
(migfw.trials.crafted, migfw.trials.crafted_exposure) and hand-worked tests."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import numpy as np

from migfw.io import atomic_write
from migfw.trials.attack_contract import SENDLOG_HEADER, probe_sport, side_files


def _checksum(words: np.ndarray) -> np.ndarray:
    """Internet checksum of each row of big-endian 16-bit words."""
    total = words.astype(np.uint64).sum(axis=1)
    while np.any(total >> 16):
        total = (total & 0xFFFF) + (total >> 16)
    return (~total & 0xFFFF).astype(np.uint16)


def pcap_bytes(ts_ns: np.ndarray, frames: np.ndarray) -> bytes:
    """A classic little-endian nanosecond pcap (link type Ethernet) of equal-length frames."""
    order = np.argsort(ts_ns, kind="stable")
    ts_ns, frames = ts_ns[order], frames[order]
    n, length = frames.shape
    header = np.zeros((n, 4), dtype="<u4")
    header[:, 0] = ts_ns // 1_000_000_000
    header[:, 1] = ts_ns % 1_000_000_000
    header[:, 2] = length
    header[:, 3] = length
    records = np.concatenate([header.view(np.uint8).reshape(n, 16), frames], axis=1)
    # magic (ns), version 2.4, thiszone, sigfigs, snaplen, link type Ethernet
    file_header = (
        np.array([0xA1B23C4D], "<u4").tobytes()
        + np.array([2, 4], "<u2").tobytes()
        + np.array([0, 0, 65535, 1], "<u4").tobytes()
    )
    return file_header + records.tobytes()


ETH_IP_TCP = 14 + 20 + 20
SYN, RST, ACK = 0x02, 0x04, 0x10
ATTACKER = "10.231.0.66"


def tcp_frames(
    src: str,
    dst: str,
    sport: np.ndarray,
    dport: np.ndarray,
    seq: np.ndarray,
    ack: np.ndarray,
    flags: np.ndarray,
) -> np.ndarray:
    """Ethernet/IPv4/TCP frames (no options, no payload) as an (n, 54) uint8 array, IP and
    TCP checksums filled in."""
    n = len(seq)
    frame = np.zeros((n, ETH_IP_TCP), dtype=np.uint8)
    frame[:, 0:6] = [0x52, 0x54, 0, 0, 0, 0x0A]
    frame[:, 6:12] = [0x52, 0x54, 0, 0, 0, 0x66]
    frame[:, 12:14] = [0x08, 0x00]
    ip = frame[:, 14:34]
    ip[:, 0] = 0x45
    ip[:, 2:4] = [0, 40]
    ip[:, 8] = 64
    ip[:, 9] = 6
    s = np.frombuffer(ipaddress.IPv4Address(src).packed, np.uint8)
    d = np.frombuffer(ipaddress.IPv4Address(dst).packed, np.uint8)
    ip[:, 12:16] = s
    ip[:, 16:20] = d
    ip_sum = _checksum(ip.view(">u2").reshape(n, 10))
    ip[:, 10] = ip_sum >> 8
    ip[:, 11] = ip_sum & 0xFF
    tcp = frame[:, 34:]

    def put(col: int, values: np.ndarray, width: int) -> None:
        v = np.asarray(values, dtype=np.uint64)
        for i in range(width):
            tcp[:, col + i] = (v >> np.uint64(8 * (width - 1 - i))) & np.uint64(0xFF)

    put(0, sport, 2)
    put(2, dport, 2)
    put(4, seq, 4)
    put(8, ack, 4)
    tcp[:, 12] = 5 << 4  # data offset: 5 words
    tcp[:, 13] = np.asarray(flags, dtype=np.uint8)
    tcp[:, 14:16] = [0xFA, 0xF0]  # window 64240
    pseudo = np.zeros((n, 12), np.uint8)
    pseudo[:, 0:4], pseudo[:, 4:8], pseudo[:, 9], pseudo[:, 11] = s, d, 6, 20
    words = np.concatenate([pseudo, tcp], axis=1).view(">u2").reshape(n, 16)
    tcp_sum = _checksum(words)
    tcp[:, 16] = tcp_sum >> 8
    tcp[:, 17] = tcp_sum & 0xFF
    return frame


def _pcap_in_order(ts: np.ndarray, frames: np.ndarray) -> bytes:
    """A pcap with the records in the order given (pcap_bytes sorts them by time)."""
    n, length = frames.shape
    header = np.zeros((n, 4), dtype="<u4")
    header[:, 0], header[:, 1] = ts // 1_000_000_000, ts % 1_000_000_000
    header[:, 2] = header[:, 3] = length
    return (
        pcap_bytes(ts[:0], frames[:0])
        + np.concatenate([header.view(np.uint8).reshape(n, 16), frames], axis=1).tobytes()
    )


def write_side(
    out_dir: str | Path,
    side: str,
    target: str,
    peer: str,
    sends: list[tuple[int, int, int]],
    evidence: list[tuple[int, int, int, int]],
) -> None:
    """One attacker side's capture and send log (migfw.trials.attack_contract.side_files)
    from explicit lists: sends (port, index, t_send_ns) and evidence (t_ns, port, probe
    index, TCP flags), both with the side's probe source port (`probe_sport`).

    Inbound sides: the capture holds the SYN probes (at their send times) from `peer` and the
    VM's answers (evidence) to `peer`, in the order given. `egress`: `sends` is the guest's
    send log (its own clock) and the capture (at the sink `peer`) holds only the SYNs that
    arrived - the evidence, at its times, flags ignored."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    s = np.array(sends, dtype=np.int64).reshape(-1, 3)
    a = np.array(evidence, dtype=np.int64).reshape(-1, 4)
    sport = np.array([probe_sport(side, int(p)) for p in a[:, 1]], dtype=np.int64)
    if side == "egress":
        frames = tcp_frames(target, peer, sport, a[:, 1], a[:, 2], np.zeros(len(a)),
                            np.full(len(a), SYN))  # fmt: skip
        ts = a[:, 0]
    else:
        probe_sports = np.array([probe_sport(side, int(p)) for p in s[:, 0]], dtype=np.int64)
        probes = tcp_frames(peer, target, probe_sports, s[:, 0], s[:, 1], np.zeros(len(s)),
                            np.full(len(s), SYN))  # fmt: skip
        replies = tcp_frames(target, peer, a[:, 1], sport, np.arange(len(a)) * 7919,
                             a[:, 2] + 1, a[:, 3])  # fmt: skip
        frames, ts = np.concatenate([probes, replies]), np.concatenate([s[:, 2], a[:, 0]])
    pcap_name, log_name = side_files(side)
    with atomic_write(out_dir / pcap_name, "wb") as handle:
        handle.write(_pcap_in_order(ts, frames))
    with atomic_write(out_dir / log_name, "w") as handle:
        handle.write(",".join(SENDLOG_HEADER) + "\n")
        handle.writelines(f"{p},{i},{t},{t}\n" for p, i, t in sends)
