"""Guest health in a trial: the trial's step times (monotonic) against its capture.

A trial records, on the monotonic clock, when its lead-in started, when the migrate call was
made and when it returned, and when the settle period ended, plus one (monotonic, epoch)
pair taken together so the steps can be placed on the capture's epoch timestamps. The lead-in
is [lead_in_start, migrate_call], the settle period [migrate_return, settle_end]. In each,
the longest time without an echo reply from the guest (the period's edges count as replies)
is its silence; a silence over `trials.max_silence_s` flags the trial (`guest_silent_lead_in`,
`guest_silent_settle`): the guest or its host stopped answering outside the migration, so its
numbers are not the migration's.

A stepped wall clock (set back or forward during the trial: by hand, by an NTP step) is found
two ways (`check_clock`): the trial process's own clock, by a second (monotonic, epoch) pair
taken at the end - the epoch time elapsed must equal the monotonic time elapsed; and the
capture's clock, by the probes - the prober sends request k at t0 + k·I on the monotonic
clock, so capture time minus k·I is level, and a lasting change of that level (not a late
request, which comes back) is a step of the clock that stamped the capture. Over
CLOCK_STEP_TOLERANCE_S either way flags the trial `clock_step`: its epoch times (capture,
events, job statistics) do not share one clock any more.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

STEPS = ("lead_in_start", "migrate_call", "migrate_return", "settle_end")
PERIODS = {"lead_in": ("lead_in_start", "migrate_call"),
           "settle": ("migrate_return", "settle_end")}  # fmt: skip
CLOCK_STEP_TOLERANCE_S = 0.5  # NTP slews at most 0.5 ms/s: 15 ms over a 30 s trial


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
        """The steps, the anchor and a second anchor taken now (check_clock compares them)."""
        end_mono, end_epoch = time.monotonic(), time.time()
        return {"clock": "monotonic", "steps": dict(self.steps),
                "anchor": {"monotonic": self.mono_anchor, "epoch": self.epoch_anchor},
                "anchor_end": {"monotonic": end_mono, "epoch": end_epoch}}  # fmt: skip


def longest_silence(reply_ns: np.ndarray, start_ns: int, end_ns: int) -> float:
    """Seconds of the longest stretch of [start, end] without a reply (edges count)."""
    inside = np.sort(reply_ns[(reply_ns >= start_ns) & (reply_ns <= end_ns)])
    edges = np.concatenate(([start_ns], inside, [end_ns])).astype(np.int64)
    return float(np.diff(edges).max()) / 1e9 if len(edges) > 1 else 0.0


def echo_reply_times(pcap: str | Path, target: str, icmp_id: int | None) -> np.ndarray:
    """Epoch ns of echo replies from `target` (with `icmp_id`) in the trial's own capture."""
    return _echoes(pcap, target, icmp_id)[2]


def _echoes(
    pcap: str | Path, target: str, icmp_id: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Echo requests to `target` (epoch ns, ICMP seq) and replies from it (epoch ns) with
    `icmp_id`, from the trial's own capture: classic pcap, Ethernet, as tcpdump writes it on
    the prober's veth (the analysis stage reads any capture; the testbed must not import it)."""
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
    addr = socket.inet_aton(target)
    requests, seqs, replies = [], [], []
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, incl = struct.unpack_from(endian + "III", data, pos)
        frame = data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 1:
            continue
        l4 = frame[14 + (frame[14] & 0x0F) * 4 :]
        if len(l4) < 8 or l4[0] not in (0, 8):
            continue
        if icmp_id is not None and int.from_bytes(l4[4:6], "big") != icmp_id:
            continue
        t = sec * 10**9 + frac * scale
        if l4[0] == 0 and frame[26:30] == addr:
            replies.append(t)
        elif l4[0] == 8 and frame[30:34] == addr:
            requests.append(t)
            seqs.append(int.from_bytes(l4[6:8], "big"))
    return (np.array(requests, np.int64), np.array(seqs, np.int64),
            np.array(replies, np.int64))  # fmt: skip


def capture_clock_steps(
    send_ns: np.ndarray, seq: np.ndarray, tolerance_s: float = CLOCK_STEP_TOLERANCE_S
) -> list[dict[str, Any]]:
    """Lasting jumps of (capture time - k·I) over the requests of one constant-rate prober:
    each `{"at": epoch s of the first request after it, "step_s": signed size}`.

    The series is cut where consecutive requests' levels differ by more than the tolerance;
    a step is a cut between two stretches whose median levels differ by more than it. A
    prober that stalled sends its overdue requests at once and is back on schedule: that
    stretch's median stays level, so no step."""
    if len(send_ns) < 8:
        return []
    k = np.concatenate(([0], np.cumsum((np.diff(seq) + 65536) % 65536)))  # seq unwrapped
    interval_ns = float(np.median(np.diff(send_ns) / np.maximum(np.diff(k), 1)))
    level = send_ns - k * interval_ns
    cuts = np.flatnonzero(np.abs(np.diff(level)) > tolerance_s * 1e9) + 1
    edges = [0, *cuts.tolist(), len(level)]
    stretches = [(a, b) for a, b in zip(edges, edges[1:], strict=False) if b - a >= 3]
    found = []
    for (a0, b0), (a1, b1) in zip(stretches, stretches[1:], strict=False):
        step = float(np.median(level[a1:b1]) - np.median(level[a0:b0])) / 1e9
        if abs(step) > tolerance_s:
            found.append({"at": int(send_ns[a1]) / 1e9, "step_s": round(step, 3)})
    return found


def check_clock(
    timeline: dict[str, Any],
    send_ns: np.ndarray,
    seq: np.ndarray,
    tolerance_s: float = CLOCK_STEP_TOLERANCE_S,
) -> dict[str, Any]:
    """The trial's wall clock against its monotonic timeline, and the capture's against the
    probes' schedule (module doc); `flags` is ["clock_step"] if either stepped."""
    out: dict[str, Any] = {"tolerance_s": tolerance_s, "process_step_s": None,
                           "capture_steps": capture_clock_steps(send_ns, seq, tolerance_s),
                           "flags": []}  # fmt: skip
    start, end = timeline.get("anchor"), timeline.get("anchor_end")
    if start and end:
        drift = (end["epoch"] - start["epoch"]) - (end["monotonic"] - start["monotonic"])
        out["process_step_s"] = round(drift, 3)
    if (out["process_step_s"] is not None and abs(out["process_step_s"]) > tolerance_s) or out[
        "capture_steps"
    ]:
        out["flags"] = ["clock_step"]
    return out


def check_silences(
    pcap: str | Path,
    target: str,
    icmp_id: int | None,
    timeline: dict[str, Any],
    max_silence_s: float,
) -> dict[str, Any]:
    """Per period: its length and longest silence (s); `flags` for each over the limit; and
    the clock check (`clock`, its flag `clock_step` among the flags)."""
    send_ns, seq, reply_ns = _echoes(pcap, target, icmp_id)
    steps, anchor = timeline["steps"], timeline["anchor"]
    clock = check_clock(timeline, send_ns, seq)
    out: dict[str, Any] = {"max_silence_s": max_silence_s, "periods": {}, "flags": [],
                           "clock": clock}  # fmt: skip
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
    out["flags"] += clock["flags"]
    return out


def trial_health(pcap: Path, vm: str, icmp_id: int | None, timeline: dict[str, Any],
                 max_silence: float) -> dict[str, Any]:  # fmt: skip
    """check_silences, or what a trial without a usable capture records (no health)."""
    from migfw.errors import MigfwError

    try:
        return check_silences(pcap, vm, icmp_id, timeline, max_silence)
    except MigfwError as exc:  # e.g. an empty capture: the trial says so, no health
        return {"max_silence_s": max_silence, "error": str(exc), "flags": []}
