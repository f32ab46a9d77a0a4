"""Guest health in a trial: the trial's step times (monotonic) against its capture.

A trial records, on the monotonic clock, when its lead-in started, when the migrate call was
made and when it returned, and when the settle period ended, plus one (monotonic, epoch)
pair taken together so the steps can be placed on the capture's epoch timestamps. The lead-in
is [lead_in_start, migrate_call], the settle period [migrate_return, settle_end]. In each,
the longest time without an echo reply from the guest (the period's edges count as replies)
is its silence; a silence over `trials.max_silence_s` flags the trial (`guest_silent_lead_in`,
`guest_silent_settle`): the guest or its host stopped answering outside the migration, so its
numbers are not the migration's.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

STEPS = ("lead_in_start", "migrate_call", "migrate_return", "settle_end")
PERIODS = {"lead_in": ("lead_in_start", "migrate_call"),
           "settle": ("migrate_return", "settle_end")}  # fmt: skip
DEFAULT_MAX_SILENCE_S = 2.0


class StepClock:
    """Monotonic step times plus one anchor to the epoch clock (CLOCK_REALTIME)."""

    def __init__(self) -> None:
        self.mono_anchor = time.monotonic()
        self.epoch_anchor = time.time()
        self.steps: dict[str, float] = {}

    def mark(self, step: str) -> float:
        self.steps[step] = time.monotonic()
        return self.steps[step]

    def epoch(self, step: str) -> float | None:
        mono = self.steps.get(step)
        return None if mono is None else mono - self.mono_anchor + self.epoch_anchor

    def to_dict(self) -> dict[str, Any]:
        return {"clock": "monotonic", "steps": dict(self.steps),
                "anchor": {"monotonic": self.mono_anchor, "epoch": self.epoch_anchor}}  # fmt: skip


def longest_silence(reply_ns: np.ndarray, start_ns: int, end_ns: int) -> float:
    """Seconds of the longest stretch of [start, end] without a reply (edges count)."""
    inside = np.sort(reply_ns[(reply_ns >= start_ns) & (reply_ns <= end_ns)])
    edges = np.concatenate(([start_ns], inside, [end_ns])).astype(np.int64)
    return float(np.diff(edges).max()) / 1e9 if len(edges) > 1 else 0.0


def echo_reply_times(pcap: str | Path, target: str, icmp_id: int | None) -> np.ndarray:
    """Epoch ns of echo replies from `target` (with `icmp_id`) in the trial's own capture:
    classic pcap, Ethernet, as tcpdump writes it on the prober's veth (the analysis stage
    reads any capture; the testbed must not import it)."""
    import socket
    import struct

    from migfw.errors import MigfwError

    data = Path(pcap).read_bytes()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise MigfwError(f"{pcap}: not a classic pcap file")
    scale = 1 if magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1000
    src = socket.inet_aton(target)
    out = []
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, incl = struct.unpack_from(endian + "III", data, pos)
        frame = data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 1:
            continue
        l4 = frame[14 + (frame[14] & 0x0F) * 4 :]
        if frame[26:30] != src or len(l4) < 8 or l4[0] != 0:
            continue
        if icmp_id is not None and int.from_bytes(l4[4:6], "big") != icmp_id:
            continue
        out.append(sec * 10**9 + frac * scale)
    return np.array(out, np.int64)


def check_silences(
    pcap: str | Path,
    target: str,
    icmp_id: int | None,
    timeline: dict[str, Any],
    max_silence_s: float,
) -> dict[str, Any]:
    """Per period: its length and longest silence (s); `flags` for each over the limit."""
    reply_ns = echo_reply_times(pcap, target, icmp_id)
    steps, anchor = timeline["steps"], timeline["anchor"]
    out: dict[str, Any] = {"max_silence_s": max_silence_s, "periods": {}, "flags": []}
    for period, (first, last) in PERIODS.items():
        if first not in steps or last not in steps:
            continue  # e.g. no settle when the trial refused to migrate
        offset = anchor["epoch"] - anchor["monotonic"]
        a, b = (int((steps[s] + offset) * 1e9) for s in (first, last))
        silence = longest_silence(reply_ns, a, b)
        out["periods"][period] = {"length_s": round((b - a) / 1e9, 3),
                                  "longest_silence_s": round(silence, 3)}  # fmt: skip
        if silence > max_silence_s:
            out["flags"].append(f"guest_silent_{period}")
    return out
