"""Per-trial overhead (issue 22 item 7): a trial's wall time minus its lead-in, migrate call
and settle, as trials.csv's `overhead_s`, and run_info's table and benchmarks.csv rows of it
(checked against values worked out by hand)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from migfw.measure.metrics import trial_overhead_s
from migfw.paper.runinfo import emulator_versions, overhead_table, write_run_info


def test_overhead_is_wall_minus_lead_in_migration_and_settle() -> None:
    meta = {"wall_s": 13.29, "lead_in_s": 2.0, "settle_s": 2.0,
            "migration": {"start": 1000.25, "end": 1005.33}}  # fmt: skip
    assert trial_overhead_s(meta) == 4.21  # 13.29 - 2 - 2 - 5.08
    assert trial_overhead_s({**meta, "wall_s": None}) is None  # a crafted trial
    assert trial_overhead_s({**meta, "migration": {"start": 1000.0}}) is None


def test_run_info_prints_the_overhead_per_experiment_and_trial(tmp_path: Path) -> None:
    trials = pd.DataFrame({
        "trial_id": ["placement/vm-r01", "placement/vm-r02", "placement/vmm-r01",
                     "thesis/i0.5-r01", "crafted/x"],
        "experiment": ["placement", "placement", "placement", "thesis", "crafted"],
        "accelerator": ["tcg"] * 4 + ["crafted"],
        "qemu": ["QEMU emulator version 10.0.2"] * 4 + [None],
        "wall_s": [11.0, 12.5, 15.0, 10.0, None],
        "overhead_s": [3.0, 3.5, 4.25, 2.5, None],
    })  # fmt: skip
    trials.to_csv(tmp_path / "trials.csv", index=False)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"testbed": {"guest": {"emulator": "system"}}}))
    (tmp_path / "bench").mkdir()
    write_run_info(config, tmp_path / "trials.csv", tmp_path / "bench",
                   tmp_path / "run_info.md", tmp_path / "benchmarks.csv")  # fmt: skip
    text = (tmp_path / "run_info.md").read_text()
    assert "| placement | 3 | 3.50 | 4.25 |" in text  # median of 3.0, 3.5, 4.25
    assert "| thesis | 1 | 2.50 | 2.50 |" in text and "crafted" not in text.split("overhead")[1]
    assert "| placement/vmm-r01 | 15.00 | 4.25 |" in text
    assert "QEMU used by the trials | QEMU emulator version 10.0.2: 4; not recorded: 1" in text
    bench = pd.read_csv(tmp_path / "benchmarks.csv")
    rows = bench[bench["rule"] == "trial_overhead"]
    assert list(rows["job"]) == list(trials["trial_id"][:4])
    assert list(rows["seconds"]) == [3.0, 3.5, 4.25, 2.5]
    assert len(overhead_table(tmp_path / "missing.csv")) == 0


def test_emulator_versions_name_the_configured_binary() -> None:
    assert list(emulator_versions({}, None)) == ["emulator (.qemu-backports/qemu-system-x86_64)"]
    system = emulator_versions({"testbed": {"guest": {"emulator": "system"}}}, None)
    assert list(system) == ["emulator (/usr/bin/qemu-system-x86_64)"]
