"""migfw.measure.phases: the hypervisor's phases joined to the probes, on crafted timelines.

Every trial here is crafted (tests/pcapcraft.py) with a known probe schedule and known losses,
and its phase events are placed at known offsets from the probes, so each joined value is
known exactly by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pcapcraft as pc  # noqa: E402

from migfw.measure.phases import PHASE_COLUMNS, join_phases  # noqa: E402

IVL = 0.01
T0_NS = 1_700_000_000 * 10**9
T0 = T0_NS / 1e9
RTT_NS = 300_000  # every reply 0.3 ms after its request


def _trial(lost: range, late: dict[int, int] | None = None) -> pc.Trial:
    return pc.make_trial(600, IVL, lost=set(lost), late=late, start_ns=T0_NS, rtt_ns=RTT_NS)


def _arrays(trial: pc.Trial):
    import numpy as np

    send = np.array(trial.send_ns, dtype=np.int64)
    answered = np.array(trial.answered)
    reply = np.array(
        [s + r if r is not None else -1 for s, r in zip(trial.send_ns, trial.rtt_ns, strict=True)],
        dtype=np.int64,
    )
    return send, answered, reply


def _phases(suspended: float, resumed: float, **extra) -> dict:
    return {"suspended": suspended, "resumed": resumed, "postcopy_switch": None,
            "finished": resumed + 1.0, **extra}  # fmt: skip


def test_join_on_a_crafted_timeline_gives_hand_computed_values() -> None:
    # Probes 300..349 lost: the first lost probe is sent at T0+3.000 s, the first answered one
    # after the run (350) at T0+3.500 s and answered 0.3 ms later. The hypervisor paused from
    # T0+2.997 s to T0+3.490 s.
    trial = _trial(range(300, 350))
    row = join_phases(_phases(T0 + 2.997, T0 + 3.490), *_arrays(trial))
    assert set(row) == set(PHASE_COLUMNS)
    assert row["hv_pause_ms"] == pytest.approx(493.0, abs=1e-3)
    assert row["probe_outage_ms"] == pytest.approx(500.0, abs=1e-3)
    assert row["outage_start_minus_suspend_ms"] == pytest.approx(3.0, abs=1e-3)
    assert row["outage_end_minus_resume_ms"] == pytest.approx(10.0, abs=1e-3)
    assert row["resume_to_first_reply_ms"] == pytest.approx(10.3, abs=1e-3)
    assert row["postcopy_switch_s"] is None and row["hv_iterations"] is None


@pytest.mark.parametrize("offset_ms", [-40.0, -7.5, 0.0, 12.25, 80.0])
def test_a_known_clock_offset_shifts_every_edge_by_exactly_that_much(offset_ms: float) -> None:
    """Events stamped `offset_ms` late (delivery delay): the pause is unchanged, both edge
    differences move by -offset, and resume→first reply by the whole step to the next reply."""
    trial = _trial(range(300, 350))
    base = join_phases(_phases(T0 + 2.997, T0 + 3.490), *_arrays(trial))
    d = offset_ms / 1000
    row = join_phases(_phases(T0 + 2.997 + d, T0 + 3.490 + d), *_arrays(trial))
    assert row["hv_pause_ms"] == pytest.approx(base["hv_pause_ms"], abs=1e-3)
    assert row["probe_outage_ms"] == pytest.approx(500.0, abs=1e-3)
    assert row["outage_start_minus_suspend_ms"] == pytest.approx(3.0 - offset_ms, abs=1e-3)
    assert row["outage_end_minus_resume_ms"] == pytest.approx(10.0 - offset_ms, abs=1e-3)
    # The first reply at or after the (shifted) resume: replies arrive at k*10 ms + 0.3 ms.
    resumed_ms = 3490.0 + offset_ms
    candidates = [k * 10 + 0.3 for k in range(350, 600)]
    expected = min(c for c in candidates if c >= resumed_ms) - resumed_ms
    assert row["resume_to_first_reply_ms"] == pytest.approx(expected, abs=1e-3)


def test_a_late_reply_after_resume_counts_and_the_run_overlapping_the_pause_is_chosen() -> None:
    # A longer unrelated outage (probes 50..149, 1 s) before the migration must not be taken
    # for the pause's outage; the run is 300..350.
    # Probe 351 (first answered after the run) is answered 200 ms late.
    trial = _trial(list(range(50, 150)) + list(range(300, 351)), late={351: 200_000_000})
    row = join_phases(_phases(T0 + 2.997, T0 + 3.490), *_arrays(trial))
    assert row["probe_outage_ms"] == pytest.approx(510.0, abs=1e-3)  # 300..350, ended by 351
    assert row["outage_end_minus_resume_ms"] == pytest.approx(20.0, abs=1e-3)
    # Replies after 3.490: 351's at 3.710 s; 352's at 3.5203 s comes first.
    assert row["resume_to_first_reply_ms"] == pytest.approx(30.3, abs=1e-3)
    no_pause = join_phases({}, *_arrays(trial))  # without phases: the longest run
    assert no_pause["probe_outage_ms"] == pytest.approx(1000.0, abs=1e-3)
    assert no_pause["hv_pause_ms"] is None and no_pause["resume_to_first_reply_ms"] is None


def test_jobstats_give_passes_and_the_dirty_rate_of_passes_two_on() -> None:
    trial = _trial(range(300, 350))
    jobstats = pd.DataFrame(
        {
            "t": [T0 + 1, T0 + 2, T0 + 2.5, T0 + 2.9],
            "memory_iteration": [1, 2, 3, 3],
            "dirty_rate_mibps": [None, 10.0, 30.0, 20.0],
        }
    )
    call = {"start": T0 + 0.5, "end": T0 + 4.5}
    phases = _phases(T0 + 2.997, T0 + 3.490, migrate_call=call, delivery={"typical_ms": 0.4})
    phases["postcopy_switch"] = T0 + 2.75
    row = join_phases(phases, *_arrays(trial), jobstats)
    assert row["hv_iterations"] == 3
    assert row["hv_dirty_rate_mibps"] == 20.0  # median of 10, 30, 20
    assert row["postcopy_switch_s"] == pytest.approx(2.25, abs=1e-6)
    assert row["event_delay_ms"] == 0.4
    # QEMU's 0 before its first window and after completion is no rate: not in the median
    # (as in a real sweep trial: 6.64 three times, then 0.0 three times after the switchover).
    zeros = jobstats.assign(dirty_rate_mibps=[None, 6.64, 6.64, 0.0])
    zeros = pd.concat([zeros, zeros.tail(1), zeros.tail(1)], ignore_index=True)
    assert join_phases(phases, *_arrays(trial), zeros)["hv_dirty_rate_mibps"] == 6.64
    none = jobstats.assign(dirty_rate_mibps=[None, 0.0, 0.0, 0.0])
    assert join_phases(phases, *_arrays(trial), none)["hv_dirty_rate_mibps"] is None


def test_trial_metrics_and_timeline_use_phases_from_the_trial_folder(tmp_path: Path) -> None:
    """End to end through the folder contract: trial.json phases + jobstats.csv + pcap."""
    from migfw.measure.figures import timeline_figure
    from migfw.measure.metrics import trial_metrics

    trial = _trial(range(300, 350))
    folder = tmp_path / "t"
    folder.mkdir()
    pc.write_pcap(folder / "probe.pcap", [(t, pc.frame(1, p)) for t, p in trial.packets],
                  nano=True)  # fmt: skip
    meta = {
        "trial_id": "t",
        "interval_s": IVL,
        "target": pc.TARGET4,
        "status": "ok",
        "failure": None,
        "migration": {
            "start": T0 + 1.0,
            "end": T0 + 4.0,
            "source": "A",
            "destination": "B",
            "algorithm": "precopy",
        },  # fmt: skip
        "phases": _phases(T0 + 2.997, T0 + 3.490, migrate_call={"start": T0 + 1, "end": T0 + 4}),
    }
    (folder / "trial.json").write_text(json.dumps(meta))
    pd.DataFrame(
        {"t": [T0 + 1.5, T0 + 2.5], "memory_iteration": [1, 2], "dirty_rate_mibps": [None, 4.0]}
    ).to_csv(folder / "jobstats.csv", index=False)
    row = trial_metrics(folder)
    assert row["hv_pause_ms"] == pytest.approx(493.0, abs=1e-3)
    assert row["resume_to_first_reply_ms"] == pytest.approx(10.3, abs=1e-3)
    assert row["hv_dirty_rate_mibps"] == 4.0 and row["algorithm"] == "precopy"
    timeline_figure(folder, tmp_path / "fig.png")
    assert (tmp_path / "fig.png").stat().st_size > 10_000
    assert (tmp_path / "fig.svg").exists()
