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


# ------------------------------------------------------------------ stepped clocks (issue 19)


def _stepped_capture(path: Path, step_ms: int, at_seq: int, stall: tuple[int, int] = (0, 0),
                     ident: int = 7) -> Path:  # fmt: skip
    """The 10 ms prober of _capture, its capture clock stepped by `step_ms` from request
    `at_seq` on; optionally the prober stalled `stall[1]` ms before request `stall[0]` and
    sent the overdue requests at once (absolute schedule), as a loaded machine does."""
    packets = []
    for seq in range(900):
        t = T0 + seq * 10 * MS + (step_ms * MS if seq >= at_seq else 0)
        first, length = stall
        if length and first <= seq < first + length // 10:  # overdue: sent in a burst
            t = T0 + (first * 10 + length) * MS + (seq - first) * 1000
        packets.append((t, frame(1, echo(0, ident, seq))))
        packets.append((t + MS, frame(1, echo(1, ident, seq))))
    return write_pcap(path, packets, nano=True)


@pytest.mark.parametrize("step_ms", [3000, -2000])
def test_a_stepped_capture_clock_is_found_where_and_by_how_much(tmp_path, step_ms) -> None:
    pcap = _stepped_capture(tmp_path / "p.pcap", step_ms, at_seq=600)
    got = check_silences(pcap, TARGET4, 7, _timeline(), max_silence_s=5.0)
    steps = got["clock"]["capture_steps"]
    assert steps == [{"at": pytest.approx((T0 + 6000 * MS + step_ms * MS) / 1e9),
                      "step_s": pytest.approx(step_ms / 1000, abs=1e-3)}]  # fmt: skip
    assert "clock_step" in got["flags"]


def test_a_stalled_prober_or_a_small_slew_is_no_clock_step(tmp_path) -> None:
    # 1.5 s stall (150 overdue requests sent 1 ms apart), then back on schedule.
    pcap = _stepped_capture(tmp_path / "p.pcap", 0, at_seq=900, stall=(300, 1500))
    got = check_silences(pcap, TARGET4, 7, _timeline(), max_silence_s=5.0)
    assert got["clock"]["capture_steps"] == [] and "clock_step" not in got["flags"]
    slewed = _stepped_capture(tmp_path / "s.pcap", 200, at_seq=450)  # below 0.5 s
    assert check_silences(slewed, TARGET4, 7, _timeline(), 5.0)["clock"]["capture_steps"] == []


def test_the_trial_process_clock_is_checked_by_its_two_anchors() -> None:
    from migfw.testbed.health import check_clock

    none = np.array([], np.int64)
    timeline = {**_timeline(), "anchor_end": {"monotonic": 130.0, "epoch": T0 / 1e9 + 35.0}}
    got = check_clock(timeline, none, none)
    assert got["process_step_s"] == pytest.approx(5.0) and got["flags"] == ["clock_step"]
    timeline["anchor_end"]["epoch"] = T0 / 1e9 + 30.01  # 10 ms of NTP slew: fine
    assert check_clock(timeline, none, none)["flags"] == []
    assert check_clock(_timeline(), none, none)["process_step_s"] is None  # older trials
