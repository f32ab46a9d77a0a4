"""Host pairs (testbed.pairs): each pair's config, and two local pairs run by Snakemake with
--cores 2 - both used, never two migrations on one pair at once (from the trials' own
timestamps), always one per pair's resource; two lab-in-a-box pairs under profiles/slurm with
the analysis on the one-node Slurm (scripts/slurm-local.sh)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from slurmlocal import local_slurm
from slurmlocal import skip_reason as slurm_skip_reason
from testbedcfg import skip_reason

from migfw.errors import MigfwError
from migfw.testbed.pairs import all_pair_configs, pair_config, pair_count

REPO = Path(__file__).resolve().parents[1]


def _cfg(**testbed) -> dict:
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["testbed"].update(testbed)
    return cfg


def test_local_pairs_get_their_own_names_networks_and_state(tmp_path: Path) -> None:
    cfg = _cfg(pairs=3, state_dir=str(tmp_path))
    assert pair_count(cfg) == 3
    assert pair_config(cfg, 0) is cfg  # pair 0 is the configured testbed, unchanged
    one, two = pair_config(cfg, 1), pair_config(cfg, 2)
    assert one["testbed"]["local"] == {"prefix": "mfw1", "subnet": "10.231.2.0/24",
                                       "migration_subnet": "10.231.3.0/30"}  # fmt: skip
    assert two["testbed"]["local"]["subnet"] == "10.231.4.0/24"
    assert two["testbed"]["local"]["migration_subnet"] == "10.231.5.0/30"
    assert one["testbed"]["state_dir"] == str(tmp_path / "pair1")
    assert one["testbed"]["guest_dir"] == str(tmp_path / "guest")  # the image is shared
    assert cfg["testbed"]["local"]["prefix"] == "mfw"  # the original is not modified
    assert len(all_pair_configs(cfg)) == 3
    with pytest.raises(MigfwError, match=r"--pair 3: the config has 3 pair\(s\)"):
        pair_config(cfg, 3)


def test_pair_errors() -> None:
    with pytest.raises(MigfwError, match=r"^config testbed.pairs: 0 pairs; allowed 1 to 16$"):
        pair_count(_cfg(pairs=0))
    # Moving the subnets up must not leave private space (one line naming the pair).
    far = _cfg(pairs=2, local={"prefix": "mfw", "subnet": "10.255.254.0/24",
                               "migration_subnet": "10.255.255.0/30"})  # fmt: skip
    with pytest.raises(MigfwError, match=r"^config testbed.pairs: pair 1: .*private"):
        all_pair_configs(far)
    # A migration subnet far above the subnet runs into a later pair's subnet.
    clash = _cfg(pairs=3, local={"prefix": "mfw", "subnet": "10.231.0.0/24",
                                 "migration_subnet": "10.231.4.0/30"})  # fmt: skip
    with pytest.raises(MigfwError, match="pair 2's subnet 10.231.4.0/24 overlaps pair 0"):
        all_pair_configs(clash)


def test_external_pairs_override_the_external_block(tmp_path: Path) -> None:
    cfg = _cfg(provider="external", state_dir=str(tmp_path))
    cfg["testbed"]["external"].update(domain="vm", ssh_key="/k")
    assert pair_count(cfg) == 1
    cfg["testbed"]["external"]["pairs"] = [
        {"source_uri": "qemu+libssh://root@a1/system", "domain": "vm1"},
        {"source_uri": "qemu+libssh://root@a2/system", "domain": "vm2"},
    ]
    assert pair_count(cfg) == 2
    second = pair_config(cfg, 1)["testbed"]["external"]
    assert second["source_uri"] == "qemu+libssh://root@a2/system" and second["domain"] == "vm2"
    assert second["ssh_key"] == "/k" and "pairs" not in second
    assert pair_config(cfg, 1)["testbed"]["state_dir"] == str(tmp_path / "pair1")
    cfg["testbed"]["external"]["pairs"] = []
    with pytest.raises(MigfwError, match="non-empty list"):
        pair_count(cfg)


def _skip_reason() -> str | None:
    if not (REPO / "results" / "testbed" / "guest" / "manifest.json").exists():
        return "guest image not built (migfw testbed image)"
    return skip_reason()


@pytest.mark.testbed
@pytest.mark.slow
def test_two_pairs_run_concurrently_without_overlap(tmp_path: Path) -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["ruleset"] = str(REPO / "config" / "ruleset.yaml")
    cfg["testbed"].update(
        pairs=2, state_dir=str(tmp_path / "state"),
        guest_dir=str(REPO / "results" / "testbed" / "guest"),
        local={"prefix": "mfpr", "subnet": "10.238.0.0/24", "migration_subnet": "10.238.1.0/30"},
    )  # fmt: skip
    cfg["trials"].update(lead_in_s=2.0, settle_s=2.0)
    _run_two_pairs(cfg, tmp_path)


@pytest.mark.testbed
@pytest.mark.slow
def test_two_lab_pairs_through_the_external_provider(tmp_path: Path) -> None:
    """The external provider given a list of 2 pairs, both lab-in-a-box pairs (each with its
    SSH servers, prober host, attacker and flows): the same checks."""
    reason = _skip_reason() or skip_reason(("sshd",))
    if reason:
        pytest.skip(reason)
    from test_lab_in_a_box import lab_config, lab_external

    prefix, net = (os.environ.get("MIGFW_LAB_PAIRS_TEST_NET") or "mfpl,10.237").split(",")
    cfg = lab_config(tmp_path, prefix, net)
    state = Path(cfg["testbed"]["state_dir"])
    cfg["testbed"]["external"]["pairs"] = [{}, lab_external(state, prefix, net, 1)]
    # As config/lab-in-a-box.yaml under profiles/slurm (docs/lab.md): the trials run here, one
    # migration per pair, and their analysis (per-cell metrics, trials.csv) on a real
    # one-node Slurm (scripts/slurm-local.sh), when it can be started.
    if slurm_skip_reason() is None:
        with local_slurm(tmp_path / "slurm") as env:
            metas = _run_two_pairs(cfg, tmp_path, slurm_env=env)
    else:
        metas = _run_two_pairs(cfg, tmp_path)
    assert all(m["provider"] == "external" and m["prober"]["host"] for m in metas)
    assert {m["prober"]["host"] for m in metas} == {f"root@{net}.0.2", f"root@{net}.2.2"}


def _run_two_pairs(cfg: dict, tmp_path: Path, slurm_env: dict | None = None) -> list[dict]:
    """4 trials of 2 pairs by Snakemake with --cores 2: both pairs used, side by side, never
    two migrations on one pair at once (from the trials' own timestamps). With `slurm_env`
    (a running cluster's environment) under profiles/slurm, trials.csv too: its jobs must be
    Slurm jobs, the trials never."""
    from migfw.testbed.cleanup import leftovers

    cfg["trials_dir"] = str(tmp_path / "trials")
    cfg["experiments"] = {
        name: {**spec, "enabled": False} for name, spec in cfg["experiments"].items()
    }
    cfg["experiments"]["pairs"] = {
        "factors": {"interval_s": [0.01], "placement": ["vm"]},
        "repetitions": 4,
    }
    config = tmp_path / "pairs.yaml"
    config.write_text(yaml.safe_dump(cfg))
    from migfw.testbed.pairs import pair_count
    from migfw.trials.design import expand_design

    design = expand_design(cfg["experiments"], pair_count(cfg))
    trials = [s.trial_id for s in design]
    assert [s.pair for s in design] == [0, 1, 0, 1]
    targets = [f"{cfg['trials_dir']}/{t}/trial.json" for t in trials]
    # Snakemake runs in the repository: what it adds to results/ (the testbed's evidence
    # files, logs) is removed afterwards, so later tests see the repository as it was.
    results = REPO / "results"
    analysis, kept = results / "analysis", tmp_path / "analysis.before"
    wanted = [*targets, "results/analysis/trials.csv"] if slurm_env is not None else targets
    if slurm_env is not None:
        if analysis.exists():  # this clone's own analysis, put back afterwards
            shutil.move(analysis, kept)
    before = {f for f in results.rglob("*") if f.is_file()} if results.is_dir() else set()
    profile = ["--profile", "profiles/slurm"] if slurm_env is not None else []
    try:
        proc = subprocess.run(
            # Targets first: --configfile takes every value after it.
            [sys.executable, "-m", "snakemake", *wanted, *profile, "--cores", "2", "--nolock",
             "--configfile", str(config)],
            cwd=REPO, capture_output=True, text=True, timeout=1200, env=slurm_env,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        if slurm_env is not None:
            out = proc.stdout + proc.stderr
            ids = re.findall(r"submitted with SLURM jobid (\d+)", out)
            comments = subprocess.run(
                ["sacct", "-X", "-n", "-P", "-j", ",".join(ids), "--format=Comment,State"],
                env=slurm_env, capture_output=True, text=True, check=True,
            ).stdout.split()  # fmt: skip
            # The metrics group and the analysis group (trials_table), nothing else.
            assert len(ids) == 2 and all(c.endswith("|COMPLETED") for c in comments), comments
            assert not [c for c in comments if "trial_" in c.replace("trial_metrics", "")]
            table = pd.read_csv(analysis / "trials.csv")
            assert sorted(table["trial_id"]) == sorted(trials)
        metas = [json.loads(Path(t).read_text()) for t in targets]
        assert all(m["status"] == "ok" for m in metas), [m["failure"] for m in metas]
        assert sorted(m["pair"] for m in metas) == [0, 0, 1, 1]
        spans = {p: sorted((m["migration"]["start"], m["migration"]["end"]) for m in metas
                           if m["pair"] == p) for p in (0, 1)}  # fmt: skip
        for pair, (first, second) in spans.items():
            assert first[1] <= second[0], f"pair {pair}: migrations overlap {first} {second}"
        # The two pairs did run side by side: some migration of pair 1 overlapped pair 0's
        # trials (probing included), i.e. --cores 2 was used for two testbeds at once.
        walls = {}
        for t, m in zip(trials, metas, strict=True):
            events = [
                json.loads(ln)
                for ln in (Path(cfg["trials_dir"]) / t / "events.jsonl").read_text().splitlines()
            ]
            walls[t] = (m["pair"], events[0]["t"], events[-1]["t"])
        overlap = any(a[0] != b[0] and a[1] < b[2] and b[1] < a[2]
                      for a in walls.values() for b in walls.values())  # fmt: skip
        assert overlap, walls
    finally:
        subprocess.run([sys.executable, "-m", "migfw", "testbed", "down", "--config",
                        str(config)], cwd=REPO, capture_output=True)  # fmt: skip
        for made in sorted(results.rglob("*")) if results.is_dir() else []:
            ours = {"guest", "cache"} & set(made.relative_to(results).parts[:2])
            if made.is_file() and made not in before and not ours:
                made.unlink()
        if kept.exists():
            shutil.rmtree(analysis, ignore_errors=True)
            shutil.move(kept, analysis)
    assert not any(leftovers(cfg).values())
    for pair in (0, 1):  # and nothing of either pair's box
        from migfw.testbed.pairs import pair_config

        assert not any(leftovers(pair_config(cfg, pair)).values())
    return metas
