"""trials.csv readers that load only the columns they use, and the row-at-a-time collect:
the same outputs, byte for byte, as reading the whole table / building the frame at once."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from migfw.cli import main
from migfw.errors import MigfwError
from migfw.measure import collect as collect_module
from migfw.measure import trialtable
from migfw.measure.attackstats import attack_columns
from migfw.measure.collect import collect_files, metrics_objects
from migfw.measure.metrics import FOLDER, _ordered, collect

MIGFW = [sys.executable, "-m", "migfw"]


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    """A trials.csv with attack sides, flows and conntrack columns (issue-22 crafted trials
    under two placements) beside plain trials at two intervals, and a flagged trial."""
    root = tmp_path_factory.mktemp("trialtable")
    trials = root / "trials"
    for extra in (["--placement", "vm", "--issue22"], ["--placement", "vmm-agent", "--issue22",
                  "--experiment", "attack"], ["--experiment", "thesis"]):  # fmt: skip
        subprocess.run([*MIGFW, "craft", "--out", str(trials), "--intervals", "0.01", "0.5",
                        "--repetitions", "2", *extra], check=True, capture_output=True)  # fmt: skip
    out = root / "trials.csv"
    assert main(["collect", "--trials-dir", str(trials), "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    frame["flags"] = frame["flags"].astype(object)
    frame.loc[frame.index[1], "flags"] = "migration_slow"
    frame.to_csv(out, index=False)
    assert frame["breach_dst_cotenant_sent"].notna().any()  # the table is as rich as promised
    assert frame["stateful_opened"].notna().any()
    return out


@pytest.fixture(scope="module")
def sparse(table) -> Path:
    """The same trials, but no trial sent to the destination co-tenant side or opened the
    stateful flow (their other columns still hold values): those columns go unread."""
    frame = pd.read_csv(table)
    frame["breach_dst_cotenant_sent"] = np.nan
    frame["stateful_opened"] = np.nan
    out = table.with_name("sparse.csv")
    frame.to_csv(out, index=False)
    return out


READERS = {
    "attack-window": (["attack-window", "{t}", "--out", "{o}/aw.csv", "--flows", "{o}/fl.csv",
                       "--resamples", "99", "--exclude-flags", "migration_slow"],
                      ["aw.csv", "fl.csv"]),
    "sweeps": (["sweeps", "{t}", "--factors", "interval_s", "placement", "agent_delay_ms",
                "--table", "{o}/sw.csv", "--power", "{o}/p.csv", "--power-difference",
                "{o}/pd.csv", "--figure", "{o}/sw.png", "--exclude-flags", "migration_slow"],
               ["sw.csv", "p.csv", "pd.csv", "sw.svg"]),
    "fig-uptime": (["fig-uptime", "{t}", "--out", "{o}/up.png"], ["up.svg"]),
    "fig-estimators": (["fig-estimators", "{t}", "--out", "{o}/est.png"], ["est.svg"]),
}  # fmt: skip


@pytest.mark.parametrize("reader", [*sorted(READERS), "attack-window sparse"])
def test_reader_output_is_the_same_as_from_the_whole_table(table, sparse, tmp_path, monkeypatch,
                                                           reader):  # fmt: skip
    argv, files = READERS[reader.split()[0]]
    if reader.endswith("sparse"):
        table = sparse
        used = attack_columns(list(pd.read_csv(table, nrows=0).columns), table)
        assert "breach_dst_cotenant_window_ms" not in used and "stateful_stall_ms" not in used
        assert {"breach_dst_cotenant_sent", "breach_src_cotenant_window_ms"} <= set(used)

    def run(out: Path) -> dict[str, bytes]:
        out.mkdir()
        assert main([a.format(t=table, o=out) for a in argv]) == 0
        return {f: (out / f).read_bytes() for f in files}

    narrow = run(tmp_path / "narrow")
    monkeypatch.setattr(trialtable, "read_trials", lambda path, wanted=None: pd.read_csv(path))
    assert run(tmp_path / "whole") == narrow


def test_attack_window_figure_the_same_and_reads_no_trial_without_cells(table, tmp_path,
                                                                       monkeypatch):  # fmt: skip
    aw = tmp_path / "aw.csv"
    assert main(["attack-window", str(table), "--out", str(aw), "--resamples", "99"]) == 0
    figure = ["fig-attack-window", str(table), "--table", str(aw), "--out"]
    assert main([*figure, str(tmp_path / "narrow.png")]) == 0
    whole = tmp_path / "whole.png"
    with monkeypatch.context() as m:
        m.setattr(trialtable, "read_trials", lambda path, wanted=None: pd.read_csv(path))
        assert main([*figure, str(whole)]) == 0
    assert whole.with_suffix(".svg").read_bytes() == (tmp_path / "narrow.svg").read_bytes()
    empty = tmp_path / "empty.csv"
    empty.write_text(aw.read_text().splitlines()[0] + "\n")

    def refuse(*args, **kwargs):
        raise AssertionError("trials.csv read for a figure without cells")

    monkeypatch.setattr(trialtable, "read_trials", refuse)
    assert main(["fig-attack-window", str(table), "--table", str(empty), "--out",
                 str(tmp_path / "none.png")]) == 0  # fmt: skip


def test_read_trials_keeps_dtypes_and_absent_columns(table):
    whole = pd.read_csv(table)
    narrow = trialtable.read_trials(table, {"trial_id", "dt_s", "no_such_column"})
    assert list(narrow.columns) == ["trial_id", "dt_s"]
    pd.testing.assert_frame_equal(narrow, whole[["trial_id", "dt_s"]])
    flows = attack_columns(list(whole.columns))
    assert "stateful_ct_dst_resume" in flows and "guest_first_opened" in flows
    assert "dt_s" not in flows and "rtt_p99_ms" not in flows


def _rows() -> list[dict]:
    """Rows whose columns pandas types in every way a metrics file can ask for."""
    return [
        {"trial_id": "e/a-r01", "n": 1, "x": 0.5, "ok": True, "s": "a", "mix": 1, FOLDER: "a"},
        {"trial_id": "e/a-r02", "n": None, "x": None, "ok": None, "s": None, "lst": [1, 2],
         FOLDER: "b"},
        {"trial_id": "e/a-r03", "n": 3, "x": 1e-9, "ok": False, "s": "c", "mix": "two",
         "late": 7, FOLDER: "c"},
    ]  # fmt: skip


def test_collect_files_builds_the_frame_collect_builds(tmp_path, monkeypatch):
    rows = _rows()
    cell = tmp_path / "cell.json"
    cell.write_text(json.dumps(rows[:2], indent=2))
    single = tmp_path / "old.json"
    single.write_text(json.dumps(rows[2]))
    monkeypatch.setattr(collect_module, "BLOCK", 5)  # objects split across reads
    frame = collect_files([cell, single])
    expected = collect(json.loads(json.dumps(rows)))
    pd.testing.assert_frame_equal(_ordered(frame), expected)
    a, b = io.StringIO(), io.StringIO()
    _ordered(frame).to_csv(a, index=False)
    expected.to_csv(b, index=False)
    assert a.getvalue() == b.getvalue()
    assert frame["late"].isna().tolist() == [True, True, False]
    assert frame["n"].dtype == np.float64 and frame["ok"].dtype == object


def test_collect_files_refuses_what_collect_refused(tmp_path):
    def write(name: str, text: str) -> Path:
        (tmp_path / name).write_text(text)
        return tmp_path / name

    assert list(metrics_objects(write("empty.json", " [ ]\n"))) == []
    assert collect_files([tmp_path / "empty.json"]) is None
    for text in ('[{"trial_id": "x"}, ', '[{"a": 1} {"b": 2}]', "[1, 2]", "{} {}", ""):
        with pytest.raises(MigfwError, match="cannot read per-trial|expected per-trial"):
            collect_files([write("bad.json", text)])
    twice = write("twice.json", json.dumps([{"trial_id": "t", FOLDER: "a"},
                                            {"trial_id": "t", FOLDER: "b"}]))  # fmt: skip
    with pytest.raises(MigfwError, match="trial id t appears in a and b"):
        collect_files([twice])


def test_compare_survival_line_is_the_same_from_its_columns(table):
    from migfw.paper.compare import _read, _survival

    whole = pd.read_csv(table)
    for experiment, placement in (("attack", "vmm-agent"), ("thesis", "vm")):
        summary = pd.DataFrame({"experiment": [experiment], "placement": [placement]})
        line = _survival(_read(table, {"status", "experiment", "placement"}), summary)
        assert line and line == _survival(whole, summary)
    assert _read(table.with_name("absent.csv"), {"status"}) is None
