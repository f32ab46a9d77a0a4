"""Guest health check: step times against a crafted capture with a known freeze."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pcapcraft import TARGET4, echo, frame, write_pcap

from migfw.testbed.health import check_silences, longest_silence

T0 = 1_700_000_000 * 10**9  # epoch ns of the lead-in start
MS = 10**6


def _capture(path: Path, silent: list[tuple[int, int]], ident: int = 7) -> Path:
    """Requests every 10 ms for 9 s, replies 1 ms later except inside `silent` (ms ranges);
    a stranger's replies (ICMP id 999) keep coming during the silence."""
    packets = []
    for seq in range(900):
        t = T0 + seq * 10 * MS
        packets.append((t, frame(1, echo(0, ident, seq))))
        in_gap = any(a * MS <= t - T0 < b * MS for a, b in silent)
        packets.append((t + MS, frame(1, echo(1, 999 if in_gap else ident, seq))))
    return write_pcap(path, packets, nano=True)


def _timeline() -> dict:
    # Monotonic 100.0 is epoch T0; lead-in 0-5 s, migrate call 5-6 s, settle 6-9 s.
    steps = {"lead_in_start": 100.0, "migrate_call": 105.0, "migrate_return": 106.0,
             "settle_end": 108.995}  # fmt: skip
    return {"clock": "monotonic", "steps": steps,
            "anchor": {"monotonic": 100.0, "epoch": T0 / 1e9}}  # fmt: skip


def test_freeze_in_lead_in_flagged_by_our_replies_only(tmp_path: Path) -> None:
    pcap = _capture(tmp_path / "p.pcap", [(2000, 4500)])
    got = check_silences(pcap, TARGET4, 7, _timeline(), max_silence_s=1.0)
    # Last reply before the freeze at 1.991 s, first after at 4.501 s: 2.51 s of silence.
    assert got["periods"]["lead_in"]["longest_silence_s"] == pytest.approx(2.51, abs=2e-3)
    assert got["periods"]["settle"]["longest_silence_s"] == pytest.approx(0.01, abs=2e-3)
    assert got["flags"] == ["guest_silent_lead_in"]
    assert check_silences(pcap, TARGET4, 7, _timeline(), max_silence_s=3.0)["flags"] == []
    # Without the id filter the stranger's replies hide the freeze: why the id matters.
    assert check_silences(pcap, TARGET4, None, _timeline(), 1.0)["flags"] == []


def test_silence_at_the_end_of_settle_counts(tmp_path: Path) -> None:
    pcap = _capture(tmp_path / "p.pcap", [(7000, 9000)])
    got = check_silences(pcap, TARGET4, 7, _timeline(), max_silence_s=1.0)
    # Last reply at 6.991 s, settle ends at 8.995 s: the period's edge closes the silence.
    assert got["periods"]["settle"]["longest_silence_s"] == pytest.approx(2.004, abs=2e-3)
    assert got["flags"] == ["guest_silent_settle"]


def test_no_step_no_period() -> None:
    assert longest_silence(np.array([], np.int64), 0, 3 * 10**9) == 3.0
