"""Bad input that used to pass silently, crash or mislead (issue 19, item 5; the SLR cases are
in tests/test_slr_dedupe.py): each is now one line naming the file or key, or a correct
result. Run through `migfw.cli.main` as a user runs the commands."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest
import yaml

from migfw.cli import main as _main
from migfw.config import config_problems

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def main(argv: list) -> int:
    return _main([str(a) for a in argv])


def _one_line(capsys, argv: list) -> str:
    """Run `migfw ARGV`; it must fail with status 2 and exactly one line on stderr."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    return err


def _craft(folder: Path, trial: str, *extra: str) -> Path:
    assert main(["craft", "--out", str(folder), "--trial", trial, *extra]) == 0
    return folder


# ------------------------------------------------------------------ duplicate trial ids


def test_two_folders_with_one_trial_id_are_refused_naming_both(tmp_path, capsys) -> None:
    trials = tmp_path / "trials" / "placement"
    first = _craft(trials / "vm-r01", "placement/vm-r01", "--placement", "vm",
                   "--intervals", "0.001")  # fmt: skip
    _craft(trials / "vm-r02", "placement/vm-r02", "--placement", "vm", "--intervals", "0.001")
    copy = trials / "vm-r03"
    shutil.copytree(first, copy)  # a copied folder: its trial.json still says vm-r01
    capsys.readouterr()
    err = _one_line(capsys, ["trial-metrics", first, trials / "vm-r02", copy,
                             "--out", tmp_path / "m.json"])  # fmt: skip
    assert f"trial id placement/vm-r01 appears in {first} and {copy}" in err
    assert not (tmp_path / "m.json").exists()
    # In two cells (two metrics files) the table step refuses it the same way.
    assert main(["trial-metrics", first, "--out", tmp_path / "a.json"]) == 0
    assert main(["trial-metrics", copy, "--out", tmp_path / "b.json"]) == 0
    capsys.readouterr()
    err = _one_line(capsys, ["collect", tmp_path / "a.json", tmp_path / "b.json",
                             "--out", tmp_path / "trials.csv"])  # fmt: skip
    assert f"appears in {first} and {copy}" in err and not (tmp_path / "trials.csv").exists()
    err = _one_line(capsys, ["collect", "--trials-dir", tmp_path / "trials",
                             "--out", tmp_path / "trials.csv"])  # fmt: skip
    assert "trial id placement/vm-r01 appears in" in err
    # Without the copy: one row per trial, and no folder column leaks into trials.csv.
    shutil.rmtree(copy)
    assert main(["collect", "--trials-dir", tmp_path / "trials", "--out",
                 tmp_path / "trials.csv"]) == 0  # fmt: skip
    header = (tmp_path / "trials.csv").read_text().splitlines()[0]
    assert "_folder" not in header
    assert len((tmp_path / "trials.csv").read_text().splitlines()) == 3


# ------------------------------------------------------------------ attacker ports


def _config(**enforcement) -> dict:
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["ruleset"] = str(REPO / "config" / "ruleset.yaml")
    cfg["trials"]["enforcement"].update(enforcement)
    return cfg


@pytest.mark.parametrize(
    ("ports", "message"),
    [
        ({"blocked_port": 22, "allowed_port": 22},
         "trials.enforcement.blocked_port: 22 is also allowed_port"),
        # tcp/21 is passed by rule F1 (FTP from the prober), tcp/80 blocked by S2.
        ({"blocked_port": 21}, "trials.enforcement.blocked_port: .*ruleset.yaml does not block "
         r"tcp/21 from the prober \(10.231.0.2 -> 10.231.0.10: pass by rule F1\)"),
        ({"allowed_port": 80}, "trials.enforcement.allowed_port: .*ruleset.yaml does not pass "
         r"tcp/80 from the prober \(10.231.0.2 -> 10.231.0.10: block by rule S2\)"),
    ],
)  # fmt: skip
def test_attacker_ports_are_checked_against_each_other_and_the_ruleset(
    tmp_path, ports, message
) -> None:
    import re

    from migfw.errors import MigfwError
    from migfw.testbed.base import load_config
    from migfw.testbed.ruleset import enforcement_problems

    assert config_problems(_config(**ports), SCHEMA) == []  # the schema's part is fine
    problems = enforcement_problems(_config(**ports))
    assert len(problems) == 1 and re.search(message, problems[0]), problems
    # Every `migfw testbed` command refuses it too, in one line naming the file.
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_config(**ports)))
    with pytest.raises(MigfwError, match=message) as info:
        load_config(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert enforcement_problems(_config()) == []  # the defaults (23 blocked, 22 allowed)


def test_watchdog_thresholds_are_checked_at_config_time() -> None:
    cfg = _config()
    cfg["migration"].update(stall_timeout_s=5, slow_stall_s=5)
    assert config_problems(cfg, SCHEMA) == [
        "migration.slow_stall_s: 5 s must be below stall_timeout_s (5 s)"
    ]


# ------------------------------------------------------------------ migfw probes


def test_probes_reads_a_fifo_like_the_file(tmp_path, capsys) -> None:
    trial = _craft(tmp_path / "t", "thesis/i0.01-r01")
    pcap = trial / "probe.pcap"
    assert main(["probes", pcap, "--interval", "0.01", "--json"]) == 0
    direct = json.loads(capsys.readouterr().out.splitlines()[-1])
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(pcap.read_bytes()))
    writer.start()
    assert main(["probes", fifo, "--interval", "0.01", "--json"]) == 0
    writer.join(10)
    via_fifo = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert via_fifo.pop("file") == str(fifo) and direct.pop("file") == str(pcap)
    assert via_fifo == direct and direct["pl"] > 0


def test_probes_window_the_wrong_way_round_is_one_line(tmp_path, capsys) -> None:
    pcap = _craft(tmp_path / "t", "thesis/i0.01-r01") / "probe.pcap"
    capsys.readouterr()
    err = _one_line(capsys, ["probes", pcap, "--interval", "0.01", "--window", "1700001012",
                             "1700000912"])  # fmt: skip
    assert err == "migfw probes: --window 1700001012.0 1700000912.0: END is before START"


def test_a_trial_whose_migration_ends_before_it_starts_names_the_trial(tmp_path, capsys) -> None:
    trial = _craft(tmp_path / "t", "thesis/i0.5-r02")
    meta = json.loads((trial / "trial.json").read_text())
    meta["migration"]["end"] = meta["migration"]["start"] - 100.0
    (trial / "trial.json").write_text(json.dumps(meta))
    capsys.readouterr()
    err = _one_line(capsys, ["trial-metrics", trial, "--out", tmp_path / "m.json"])
    assert f"{trial / 'trial.json'}: trial thesis/i0.5-r02: migration.end" in err
    assert "is 100.000 s before migration.start" in err


# ------------------------------------------------------------------ migfw craft


def test_craft_one_trial_takes_its_interval_from_intervals_or_says_what_is_missing(
    tmp_path, capsys
) -> None:
    # placement/vm-r01 carries no interval (its experiment fixes it): --intervals gives it.
    out = _craft(tmp_path / "a", "placement/vm-r01", "--placement", "vm", "--intervals", "0.001")
    meta = json.loads((out / "trial.json").read_text())
    assert meta["interval_s"] == 0.001 and meta["factors"]["placement"] == "vm"
    capsys.readouterr()
    err = _one_line(capsys, ["craft", "--out", tmp_path / "b", "--trial", "placement/vm-r01"])
    assert "trial placement/vm-r01: its id gives no interval_s" in err and "--config" in err
    err = _one_line(capsys, ["craft", "--out", tmp_path / "c", "--trial", "placement/vm-r01",
                             "--intervals", "0.5", "0.01"])  # fmt: skip
    assert "--intervals: one trial (placement/vm-r01) takes one interval, got 2" in err


def test_crafted_trials_record_their_repetition_not_their_seed(tmp_path) -> None:
    meta = json.loads((_craft(tmp_path / "t", "thesis/i0.5-r03") / "trial.json").read_text())
    assert meta["repetition"] == 3
    assert main(["craft", "--out", tmp_path / "demo", "--intervals", "0.5",
                 "--repetitions", "2"]) == 0  # fmt: skip
    reps = {
        json.loads(p.read_text())["repetition"] for p in (tmp_path / "demo").rglob("trial.json")
    }
    assert reps == {1, 2}


def test_craft_demo_set_honours_experiment_and_placement(tmp_path, capsys) -> None:
    assert main(["craft", "--out", tmp_path, "--experiment", "lab", "--placement", "vmm-agent",
                 "--intervals", "0.01", "--repetitions", "2"]) == 0  # fmt: skip
    assert capsys.readouterr().out.strip() == f"crafted 2 trials in {tmp_path / 'lab'}"
    folders = sorted(p.name for p in (tmp_path / "lab").iterdir())
    assert folders == ["vmm-agent-d200-i0.01-r01", "vmm-agent-d200-i0.01-r02"]
    meta = json.loads((tmp_path / "lab" / folders[1] / "trial.json").read_text())
    assert meta["experiment"] == "lab" and meta["trial_id"] == f"lab/{folders[1]}"
    assert meta["factors"]["placement"] == "vmm-agent" and meta["repetition"] == 2
    assert (tmp_path / "lab" / folders[1] / "attack.pcap").stat().st_size > 24
    err = _one_line(capsys, ["craft", "--out", tmp_path / "x", "--experiment", "Bad-Name"])
    assert err == "migfw craft: --experiment 'Bad-Name': must match ^[a-z][a-z0-9_]{0,31}$"
