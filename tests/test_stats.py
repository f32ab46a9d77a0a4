"""Statistics against values worked out by hand."""

import math

import pandas as pd
import pytest

from migfw.errors import MigfwError
from migfw.measure.stats import describe, summarize


def test_describe_matches_hand_computation():
    # DT at I = 0.5 s in the thesis: 1, 0.5, 0.5, 1 -> mean 0.75, var 0.25/3, sd 0.288675
    s = describe([1, 0.5, 0.5, 1], resamples=2000, seed=1)
    assert s["n"] == 4
    assert s["mean"] == pytest.approx(0.75)
    assert s["var"] == pytest.approx(0.25 / 3)
    assert s["sd"] == pytest.approx(math.sqrt(0.25 / 3))
    half_z = 1.959964 * math.sqrt(0.25 / 3) / 2  # z(0.975) * s / sqrt(4)
    assert s["ci_z_low"] == pytest.approx(0.75 - half_z, abs=1e-5)
    half_t = 3.182446 * math.sqrt(0.25 / 3) / 2  # t(0.975, 3) from tables
    assert s["ci_t_high"] == pytest.approx(0.75 + half_t, abs=1e-5)
    # The bootstrap mean of four values in {0.5, 1} lies in [0.5, 1].
    assert 0.5 <= s["ci_boot_low"] <= s["ci_boot_high"] <= 1.0


def test_describe_small_samples():
    assert math.isnan(describe([])["mean"])
    one = describe([3.0])
    assert one["mean"] == 3.0 and math.isnan(one["sd"])
    same = describe([2.0, 2.0, 2.0])
    assert same["sd"] == 0 and same["ci_boot_low"] == same["ci_boot_high"] == 2.0


def test_bootstrap_is_reproducible_with_seed():
    a = describe([1, 2, 3, 7, 9], seed=5)
    b = describe([1, 2, 3, 7, 9], seed=5)
    assert a["ci_boot_low"] == b["ci_boot_low"]


def test_summarize_groups_by_factor_and_names_bad_factor():
    frame = pd.DataFrame({"interval_s": [0.5, 0.5, 0.01, 0.01], "dt_s": [1, 0.5, 0.52, 0.3]})
    out = summarize(frame, ["dt_s"], ["interval_s"], resamples=500)
    by = out.set_index("interval_s")
    assert by.loc[0.01, "mean"] == pytest.approx(0.41)
    assert by.loc[0.5, "n"] == 2
    with pytest.raises(MigfwError, match="no trial has"):
        summarize(frame, ["dt_s"], ["memory_mib"])
