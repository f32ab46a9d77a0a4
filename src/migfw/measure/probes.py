"""Match ICMP echo requests to replies and compute the thesis's per-trial probe metrics.

`migfw probes PCAP --target IP --interval S [--window START END] [--json]` runs the whole
analysis of one capture: read (migfw.measure.capture), match, metrics.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from migfw.errors import MigfwError
from migfw.measure.capture import Echoes, echo_destinations, read_echoes
from migfw.measure.capture.aot import kernel
from migfw.scratch import scratch

_USEQ_BIAS = np.int64(1) << 43  # keeps (ident, unwrapped seq) keys positive
LATE_MARGIN_S = 0.020  # a reply this much slower than the median RTT (and 3x it) is late


@dataclass
class ProbeTable:
    """One row per distinct request, in send order."""

    send_ns: np.ndarray  # int64 epoch ns of the (earliest copy of the) request
    ident: np.ndarray  # uint16
    useq: np.ndarray  # int64 unwrapped sequence number
    answered: np.ndarray  # bool
    rtt_ns: np.ndarray  # int64, -1 when unanswered
    reply_ns: np.ndarray  # int64 epoch ns of the earliest reply, -1 when unanswered
    dup_requests: int = 0
    dup_replies: int = 0
    orphan_replies: int = 0

    def __len__(self) -> int:
        return len(self.send_ns)

    def to_frame(self):  # -> pandas.DataFrame (imported lazily: pandas is slow to import)
        import pandas as pd

        return pd.DataFrame(
            {
                "send_ns": self.send_ns,
                "ident": self.ident,
                "useq": self.useq,
                "answered": self.answered,
                "rtt_ns": self.rtt_ns,
                "reply_ns": self.reply_ns,
            }
        )


def match_probes(echoes: Echoes) -> ProbeTable:
    """Match echo requests to replies by (identifier, unwrapped sequence).

    Sequence numbers are unwrapped per identifier in send order (+65536 per wrap); a reply
    maps to the closest preceding request with the same seq mod 65536, so trials longer
    than 65,536 probes and late replies both match. Duplicate captures of one packet are
    counted once (the earliest copy is kept); replies with no request are counted as
    orphans and otherwise ignored.
    """
    order = np.argsort(echoes.ts_ns, kind="stable")
    send, ident, useq, reply, dup_req, dup_rep, orphan = kernel("match_echoes")(
        echoes.ts_ns[order], echoes.kind[order], echoes.ident[order], echoes.seq[order]
    )
    # The kernel's arrays are sized for every echo; copy so the oversized bases are freed.
    send, ident, useq, reply = (a.copy() for a in (send, ident, useq, reply))
    answered = reply >= 0
    rtt = np.where(answered, reply - send, -1)
    return ProbeTable(send, ident, useq, answered, rtt, reply, dup_req, dup_rep, orphan)


def _runs(lost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (inclusive) indices of each run of True in `lost`."""
    edges = np.diff(np.concatenate(([0], lost.astype(np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1


def probe_metrics(
    table: ProbeTable,
    interval_s: float,
    window: tuple[float, float] | None = None,
    late_after_s: float | None = None,
) -> dict[str, Any]:
    """Per-trial probe metrics.

    Thesis estimators (over requests SENT inside `window`, or all requests without one):
      PS = requests sent, PR = requests answered, PL = PS - PR, TMT = PS*I, DT = PL*I,
      UT = TMT - DT, UT% = 100*UT/TMT.
    Gap estimator: the longest run of consecutive unanswered requests (send order) gives
      `max_run`; its downtime from the real send times is
      midpoint(t[last answered before], t[first lost]) .. midpoint(t[last lost],
      t[first answered after]), bounded below by t[last lost] - t[first lost] and above by
      t[first answered after] - t[last answered before]. A run at the edge of the window
      (or capture) is bounded by its own first/last request.
    `dt_rxgap_s`: the longest silence between consecutive reply arrivals minus I (catches
      replies that came, but late). `late_replies`: answered requests whose RTT exceeds
      `late_after_s` (default: max(3 x median RTT, median RTT + 20 ms), far outside normal
      jitter: e.g. requests queued in the paused guest and answered after it resumed).
    """
    if not interval_s > 0:
        raise MigfwError(f"interval {interval_s!r}: must be a positive number of seconds")
    send = table.send_ns
    if window is not None:
        start, end = window
        if not end >= start:
            raise MigfwError(f"window {start}..{end}: its end is before its start")
        sel = (send >= round(start * 1e9)) & (send <= round(end * 1e9))
    else:
        sel = np.ones(len(send), bool)
    t = send[sel]
    ans = table.answered[sel]
    rtt = table.rtt_ns[sel][ans] / 1e6  # ms
    ps, pr = int(len(t)), int(ans.sum())
    pl = ps - pr
    tmt, dt = ps * interval_s, pl * interval_s
    ut = tmt - dt

    lost = ~ans
    starts, ends = _runs(lost)
    max_run, gap, gap_lo, gap_hi = 0, 0.0, 0.0, 0.0
    gap_start = gap_end = None  # first lost request, first answered after (the outage)
    for a, b in zip(starts, ends, strict=True):
        before = t[a - 1] if a > 0 else t[a]
        after = t[b + 1] if b + 1 < len(t) else t[b]
        # midpoint(t[b], after) - midpoint(before, t[a]), in exact int64 ns differences
        est = (int(t[b] - before) + int(after - t[a])) / 2e9
        length = int(b - a + 1)
        if (length, est) > (max_run, gap):
            max_run, gap = length, est
            gap_lo, gap_hi = int(t[b] - t[a]) / 1e9, int(after - before) / 1e9
            gap_start, gap_end = int(t[a]) / 1e9, int(after) / 1e9

    rx = np.sort(table.reply_ns[sel][ans])
    # A silence shorter than one interval is no downtime: clamp at 0.
    rxgap = max(0.0, float(np.max(np.diff(rx)) / 1e9 - interval_s)) if len(rx) >= 2 else None
    median = float(np.median(rtt)) if len(rtt) else None
    if late_after_s is None:  # far outside normal RTT jitter, whatever the interval
        med_s = (median or 0.0) / 1e3
        late_after_s = max(3 * med_s, med_s + LATE_MARGIN_S)
    pl_total = int((~table.answered).sum())

    def _s(ns: Any) -> float:
        return float(ns) / 1e9

    return {
        "ps": ps,
        "pr": pr,
        "pl": pl,
        "tmt_s": tmt,
        "dt_s": dt,
        "ut_s": ut,
        "ut_pct": 100.0 * ut / tmt if ps else None,
        "dt_gap_s": float(gap),
        "dt_gap_lo_s": float(gap_lo),
        "dt_gap_hi_s": float(gap_hi),
        "dt_gap_start": gap_start,
        "dt_gap_end": gap_end,
        "dt_rxgap_s": rxgap,
        "max_run": max_run,
        "outages": int(len(starts)),
        "rtt_median_ms": median,
        "rtt_p99_ms": float(np.percentile(rtt, 99)) if len(rtt) else None,
        "rtt_max_ms": float(rtt.max()) if len(rtt) else None,
        "late_replies": int((rtt > late_after_s * 1e3).sum()),
        "dup_requests": table.dup_requests,
        "dup_replies": table.dup_replies,
        "orphan_replies": table.orphan_replies,
        "first_send": _s(t[0]) if ps else None,
        "last_send": _s(t[-1]) if ps else None,
        "window_start": float(window[0]) if window else None,
        "window_end": float(window[1]) if window else None,
        "ps_total": int(len(send)),
        "pl_total": pl_total,
        "pl_outside": pl_total - pl,
    }


def _cut_hint(counts: dict) -> str:
    """Why a capture may show no probes: packets cut by the snaplen inside their headers."""
    cut = counts.get("cut_packets", 0)
    if not cut:
        return ""
    return (
        f" ({cut} of {counts.get('packets', 0)} packets were cut by the snaplen before the "
        "end of their headers: capture with a larger snaplen, tunnels need more)"
    )


def choose_target(path: str | Path) -> str:
    """The only echo destination in the capture; MigfwError when there are none or several."""
    counts: dict = {}
    dests = echo_destinations(path, counts)
    if len(dests) == 1:
        return next(iter(dests))
    if not dests:
        raise MigfwError(f"{path}: no ICMP echo requests in the capture{_cut_hint(counts)}")
    listed = ", ".join(f"{a} ({n})" for a, n in list(dests.items())[:5])
    more = ", …" if len(dests) > 5 else ""
    raise MigfwError(
        f"{path}: capture has echo traffic to {len(dests)} addresses: {listed}{more}; pass --target"
    )


def analyse_capture(
    path: str | Path,
    target: str | None,
    interval_s: float,
    window: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """The whole `migfw probes` analysis of one capture: read, match, metrics."""
    return analyse_capture_table(path, target, interval_s, window)[0]


def analyse_capture_table(
    path: str | Path,
    target: str | None,
    interval_s: float,
    window: tuple[float, float] | None = None,
) -> tuple[dict[str, Any], ProbeTable]:
    """`analyse_capture` and the matched probes it computed them from, for callers that join
    more to the probes (the hypervisor's phases) without reading the capture again."""
    if not (isinstance(interval_s, int | float) and math.isfinite(interval_s) and interval_s > 0):
        raise MigfwError(f"--interval {interval_s!r}: must be a positive number of seconds")
    if target is None:
        target = choose_target(path)
    else:
        try:
            target = str(ipaddress.ip_address(target))
        except ValueError as exc:
            raise MigfwError(f"--target {target!r}: not an IPv4/IPv6 address") from exc
    echoes = read_echoes(path, target)
    if not (echoes.kind == 0).any():
        hint = _cut_hint({"cut_packets": echoes.cut_packets, "packets": echoes.packets})
        raise MigfwError(f"{path}: no ICMP echo requests to {target}{hint}")
    table = match_probes(echoes)
    result: dict[str, Any] = {"file": str(path), "target": target, "interval_s": interval_s}
    result.update(probe_metrics(table, interval_s, window))
    if window is not None and result["ps"] == 0:
        first, last = table.send_ns[0] / 1e9, table.send_ns[-1] / 1e9
        raise MigfwError(
            f"{path}: none of the {len(table)} echo requests to {target} (sent "
            f"{first:.3f}..{last:.3f}) falls inside the window {window[0]}..{window[1]}"
        )
    result["packets"] = echoes.packets
    result["format"] = echoes.fmt
    ids, counts = np.unique(echoes.ident[echoes.kind == 0], return_counts=True)
    result["request_ids"] = {int(i): int(c) for i, c in zip(ids, counts, strict=True)}
    return result, table


@contextlib.contextmanager
def _regular_file(path: str) -> Iterator[str]:
    """`path`, or a private copy of it when it is a FIFO, a pipe (/dev/stdin) or a device:
    the capture may be read twice (to find the target, then the probes)."""
    try:
        regular = Path(path).is_file()
    except OSError:
        regular = False
    if regular or not Path(path).exists():
        yield path  # the reader names a missing file itself
        return
    with scratch("probes") as tmp:
        copy = Path(tmp) / "capture"
        try:
            with open(path, "rb") as src, open(copy, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except OSError as exc:
            raise MigfwError(f"{path}: cannot read ({exc.strerror})") from None
        yield str(copy)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _run(args: argparse.Namespace) -> int:
    window = tuple(args.window) if args.window else None
    if window is not None and not window[1] >= window[0]:
        raise MigfwError(f"--window {window[0]} {window[1]}: END is before START")
    with _regular_file(args.pcap) as path:
        result = analyse_capture(path, args.target, args.interval, window)
    result["file"] = str(args.pcap)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['file']}  target {result['target']}  interval {args.interval} s")
    rows = [
        ("PS / PR / PL", f"{result['ps']} / {result['pr']} / {result['pl']}"),
        (
            "TMT / DT / UT (s)",
            f"{result['tmt_s']:.6g} / {result['dt_s']:.6g} / {result['ut_s']:.6g}",
        ),  # fmt: skip
        ("UT %", _fmt(result["ut_pct"])),
        (
            "DT gap (s) [lo, hi]",
            f"{result['dt_gap_s']:.6g} [{result['dt_gap_lo_s']:.6g}, {result['dt_gap_hi_s']:.6g}]",
        ),  # fmt: skip
        ("max run / outages", f"{result['max_run']} / {result['outages']}"),
        ("reply silence - I (s)", _fmt(result["dt_rxgap_s"])),
        (
            "RTT median/p99/max (ms)",
            f"{_fmt(result['rtt_median_ms'])} / "
            f"{_fmt(result['rtt_p99_ms'])} / "
            f"{_fmt(result['rtt_max_ms'])}",
        ),  # fmt: skip
        (
            "late / dup req / dup rep / orphan",
            f"{result['late_replies']} / {result['dup_requests']} / {result['dup_replies']} / "
            f"{result['orphan_replies']}",
        ),  # fmt: skip
        (
            "whole capture PS / PL / PL outside",
            f"{result['ps_total']} / {result['pl_total']} / {result['pl_outside']}",
        ),  # fmt: skip
    ]
    for name, value in rows:
        print(f"  {name:<36} {value}")
    return 0


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from exc
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from exc
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "probes",
        help="loss, downtime and RTT of the ICMP echo probes in one capture",
        description="Match ICMP echo requests to replies in a pcap/pcapng capture and print "
        "the thesis's probe metrics (PS, PR, PL, TMT, DT, UT) and the gap estimate.",
    )
    p.add_argument("pcap", help="pcap or pcapng capture of the probe traffic")
    p.add_argument("--target", help="probed address (optional if only one is pinged)")
    p.add_argument("--interval", type=_positive_float, required=True, help="probe interval (s)")
    p.add_argument(
        "--window",
        nargs=2,
        type=_finite_float,
        metavar=("START", "END"),
        help="count only requests sent in [START, END] (epoch seconds, e.g. the migration)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_run)
