"""The pipeline as a user runs it: a crafted run, reruns, analysis-only mode, archive round trip.

Runs Snakemake for real on a copy of the repository (crafted trials, no VM, no network) and
reads its dry-run job lists to prove what reruns and what does not.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO

pytestmark = pytest.mark.slow

IGNORE = shutil.ignore_patterns(
    "results",
    ".snakemake",
    ".venv",
    ".git",
    "__pycache__",
    "*.egg-info",
    ".pytest_cache",
    ".ruff_cache",
    "report.html",
)


def snakemake(workdir: Path, *args: str, pythonpath: Path | None = None) -> str:
    env = dict(os.environ)
    # The copy's own package, so edits in the copy are the code that runs.
    env["PYTHONPATH"] = os.pathsep.join(
        [str(p) for p in ([pythonpath] if pythonpath else []) + [workdir / "src"]]
    )
    done = subprocess.run(
        ["snakemake", "--cores", "2", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    return output


def planned_jobs(dry_run_output: str) -> dict[str, int]:
    """Rule -> job count from a dry run's 'Job stats' table."""
    if "Nothing to be done" in dry_run_output:
        return {}
    stats = dry_run_output.split("Job stats:", 1)[1]
    return {
        m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M) if m[1] != "total"
    }


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    if shutil.which("snakemake") is None:
        pytest.skip("snakemake is not installed")
    work = tmp_path_factory.mktemp("wf") / "migfw"
    shutil.copytree(REPO, work, ignore=IGNORE)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
    subprocess.run([*git, "init", "-q"], cwd=work, check=True)
    subprocess.run([*git, "add", "-A"], cwd=work, check=True)
    subprocess.run([*git, "commit", "-qm", "copy"], cwd=work, check=True)
    snakemake(work, "--configfile", "config/test.yaml")
    return work


def test_full_run_then_nothing_to_do(work):
    trials = pd.read_csv(work / "results/analysis/trials.csv")
    # thesis: 2 intervals x 3 repetitions; placement: vm, none, vmm-state x 1 (config/test.yaml).
    assert len(trials) == 9 and set(trials["status"]) == {"ok"}
    assert trials["experiment"].value_counts().to_dict() == {"thesis": 6, "placement": 3}
    assert set(trials["trial_id"]) >= {"thesis/i0.5-r01", "placement/vm-r01", "placement/none-r01",
                                       "placement/vmm-state-d200-r01"}  # fmt: skip
    # vmm-state's crafted trial carries every issue-22 file: each attacker side has its row.
    sides = pd.read_csv(work / "results/analysis/attack_window.csv")
    assert set(sides[sides["placement"] == "vmm-state"]["side"]) == {
        "switch", "dst_cotenant", "src_cotenant", "egress"}  # fmt: skip
    flows = pd.read_csv(work / "results/analysis/flow_survival.csv")
    assert "guest_first" in set(flows["flow"])
    verdict = (work / "results/verdict.rst").read_text()
    assert "From the default run (experiment `placement`)" in verdict
    for name in ("uptime.png", "uptime.svg", "dt_estimators.png", "paper_uptime.png"):
        assert (work / "results/figures" / name).stat().st_size > 1000
    assert (work / "results/slr/table6.csv").exists()
    assert "Nothing to be done" in snakemake(work, "-n", "--configfile", "config/test.yaml")


def test_analysis_only_needs_no_testbed_packages(work, tmp_path):
    # Packages the testbed needs are made unimportable: analysis-only must not touch them.
    blocker = tmp_path / "block"
    blocker.mkdir()
    for name in ("libvirt", "fabric", "scapy", "paramiko"):
        (blocker / f"{name}.py").write_text(f"raise ImportError('{name} is blocked')\n")
    before = pd.read_csv(work / "results/analysis/trials.csv")
    args = ["--configfile", "config/test.yaml", "--config", "trials_source=directory"]
    dry = planned_jobs(
        snakemake(work, "-n", *args, "--forcerun", "trial_metrics", pythonpath=blocker)
    )
    assert dry["trial_metrics"] == 5 and "crafted_trial" not in dry
    snakemake(work, *args, "--forcerun", "trial_metrics", pythonpath=blocker)
    after = pd.read_csv(work / "results/analysis/trials.csv")
    pd.testing.assert_frame_equal(before, after)


def test_analysis_setting_reruns_only_what_depends_on_it(work, tmp_path):
    # Settle first: the test before analysed the folders as found (trials_source: directory),
    # which declares every file of a trial, so going back re-analyses the trials once.
    snakemake(work, "--configfile", "config/test.yaml")
    config = (work / "config/test.yaml").read_text()
    changed = tmp_path / "changed.yaml"
    changed.write_text(config.replace("bootstrap_resamples: 2000", "bootstrap_resamples: 3000"))
    jobs = planned_jobs(snakemake(work, "-n", "--configfile", str(changed)))
    assert "summary_table" in jobs and "paper_table11" in jobs
    for untouched in ("crafted_trial", "trial_metrics", "timeline_figure", "slr_review"):
        assert untouched not in jobs, jobs


def test_analysis_code_change_reruns_analysis_never_trials(work):
    probes = work / "src/migfw/measure/probes.py"
    original = probes.read_text()
    try:
        probes.write_text(original + "\n# an edit to the analysis code\n")
        jobs = planned_jobs(snakemake(work, "-n", "--configfile", "config/test.yaml"))
        assert jobs.get("trial_metrics") == 5 and "crafted_trial" not in jobs
        # The same holds for real trials: in testbed mode the trial folders exist, so the
        # edited analysis reruns and the trials (protected captures) do not.
        manifest = work / "results/testbed/guest/manifest.json"
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text("{}")
        shutil.copytree(
            work / "results/crafted_trials", work / "results/trials", dirs_exist_ok=True
        )
        args = [
            "--configfile",
            "config/test.yaml",
            "--config",
            "trials_source=testbed",
            "trials_dir=results/trials",
        ]
        jobs = planned_jobs(snakemake(work, "-n", *args))
        assert "trial" not in jobs and "guest_image" not in jobs, jobs
        assert jobs.get("trial_metrics") == 5
    finally:
        probes.write_text(original)
        shutil.rmtree(work / "results/trials", ignore_errors=True)
        shutil.rmtree(work / "results/testbed", ignore_errors=True)


def test_finished_testbed_run_draws_the_chain_and_runs_no_testbed_job(work):
    """A finished testbed run (every trial folder done, the testbed's evidence on disk): a
    rerun plans no testbed, image, placement or trial job, yet the workflow graph (the
    report's) still runs testbed -> placements -> trials manifest -> analysis (issue 17)."""
    testbed = work / "results/testbed"
    try:
        shutil.copytree(
            work / "results/crafted_trials", work / "results/trials", dirs_exist_ok=True
        )
        for name in ("preflight.txt", "guest/manifest.json", "hosts.json",
                     *(f"placements/{p}.json" for p in ("vm", "none", "vmm-state"))):  # fmt: skip
            (testbed / name).parent.mkdir(parents=True, exist_ok=True)
            (testbed / name).write_text("{}")
        # The guest's sources are newer than its image: once every trial is done, no matter.
        os.utime(work / "resources/domain.xml")
        args = ["--configfile", "config/test.yaml", "--config", "trials_source=testbed",
                "trials_dir=results/trials"]  # fmt: skip
        jobs = planned_jobs(snakemake(work, "-n", *args))
        testbed_rules = {"testbed_preflight", "guest_image", "testbed_up", "deploy_placement",
                         "trial"}  # fmt: skip
        assert not testbed_rules & set(jobs), jobs
        assert jobs.get("trials_manifest") == 1 and "trials_table" in jobs, jobs
        graph = snakemake(work, "--rulegraph", *args)
        edges = {
            tuple(names[n] for n in edge)
            for names in [dict(re.findall(r'^\s*(\d+)\[label = "(\w+)"', graph, re.M))]
            for edge in re.findall(r"^\s*(\d+) -> (\d+)", graph, re.M)
        }
        for edge in [("testbed_preflight", "guest_image"), ("guest_image", "testbed_up"),
                     ("testbed_up", "deploy_placement"), ("deploy_placement", "trials_manifest"),
                     ("trials_manifest", "trials_table")]:  # fmt: skip
            assert edge in edges, (edge, graph)
        # A testbed job run anyway (Snakemake plans one when its rule's code changed since
        # the run; forced here) puts the recorded evidence back and touches no VM. A prefix
        # of its own: the run's end calls `migfw testbed down` for it.
        (testbed / "hosts.json").write_text('{"recorded": true}')
        own = work / "own_prefix.yaml"
        own.write_text("testbed: {local: {prefix: mwt, subnet: 10.238.0.0/24,"
                       " migration_subnet: 10.238.1.0/30}}\n")  # fmt: skip
        forced = ["results/testbed/hosts.json", "--forcerun", "testbed_up", "--configfile",
                  "config/test.yaml", str(own), *args[2:]]  # fmt: skip
        assert planned_jobs(snakemake(work, "-n", *forced)) == {"testbed_up": 1}  # first
        snakemake(work, *forced)
        assert (testbed / "hosts.json").read_text() == '{"recorded": true}'
        assert "no VM touched" in (work / "results/logs/testbed_up.log").read_text()
    finally:
        shutil.rmtree(work / "results/trials", ignore_errors=True)
        shutil.rmtree(testbed, ignore_errors=True)


def test_stale_guest_image_is_rebuilt_and_the_pending_trials_still_run(work):
    """Trials pending and the guest's sources newer than its image (a `git pull` that
    changed resources/): one run rebuilds the image AND runs every pending trial. With
    ancient edges into the trial rule Snakemake planned only the image and exited 0
    (snakemake/snakemake#4166); the same plan with an up-to-date image is the truth."""
    testbed = work / "results/testbed"
    try:
        for name in ("preflight.txt", "guest/manifest.json", "hosts.json",
                     *(f"placements/{p}.json" for p in ("vm", "none", "vmm-state"))):  # fmt: skip
            (testbed / name).parent.mkdir(parents=True, exist_ok=True)
            (testbed / name).write_text("{}")
        args = ["-n", "--configfile", "config/test.yaml", "--config", "trials_source=testbed",
                "trials_dir=results/pending_trials"]  # fmt: skip
        fresh = planned_jobs(snakemake(work, *args))
        old = (work / "resources/domain.xml").stat().st_mtime - 3600
        os.utime(testbed / "guest/manifest.json", (old, old))
        stale = planned_jobs(snakemake(work, *args))
        assert "guest_image" not in fresh and stale.get("guest_image") == 1, (fresh, stale)
        assert fresh.get("trial", 0) > 0, fresh
        assert stale.get("trial") == fresh["trial"], (fresh, stale)
        assert stale.get("trials_table") == 1, stale
    finally:
        shutil.rmtree(testbed, ignore_errors=True)


def test_one_changed_trial_reruns_only_its_own_jobs(work, tmp_path):
    args = ["--configfile", "config/test.yaml", "--config", "trials_source=directory"]
    meta = work / "results/crafted_trials/thesis/i0.5-r02/trial.json"
    # A trial folder is one directory input (its own mtime changes only when an entry is
    # added or removed) with a digest of every file under it as a param.
    nested = meta.parent / "notes" / "extra.txt"
    nested.parent.mkdir(exist_ok=True)
    nested.write_text("a\n")
    snakemake(work, *args)  # directory mode over the crafted trials: up to date after this
    original = meta.read_text()
    try:
        nested.write_text("b\n")  # a file in a subfolder, rewritten in place
        jobs = planned_jobs(snakemake(work, "-n", *args))
        assert jobs.get("trial_metrics") == 1 and jobs.get("timeline_figure") == 1, jobs
        meta.write_text(original + "\n")  # newer than its outputs
        jobs = planned_jobs(snakemake(work, "-n", *args))
        assert jobs.get("trial_metrics") == 1 and jobs.get("timeline_figure") == 1, jobs
        assert "summary_table" in jobs and "slr_review" not in jobs
        # Bad input in a trial folder: the run stops with the one-line message naming it.
        meta.write_text("{")
        done = subprocess.run(
            ["snakemake", "--cores", "1", *args],
            cwd=work,
            env={**os.environ, "PYTHONPATH": str(work / "src")},
            capture_output=True,
            text=True,
        )
        assert done.returncode != 0
        assert "thesis/i0.5-r02/trial.json: not valid JSON" in done.stdout + done.stderr
    finally:
        meta.write_text(original)
        shutil.rmtree(nested.parent)
        snakemake(work, *args)


def test_archive_round_trip_reproduces_the_analysis(work, tmp_path):
    archive = tmp_path / "migfw-paper.tar.gz"
    args = ["--configfile", "config/test.yaml", "--config", "trials_source=directory"]
    snakemake(work, "--archive", str(archive), *args)
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        assert "Snakefile" in names and "src/migfw/measure/probes.py" in names
        # The captured trials travel with the workflow as its external inputs.
        assert sum(n.endswith("probe.pcap") for n in names) == 9
        unpacked = tmp_path / "elsewhere"
        tar.extractall(unpacked, filter="data")
    snakemake(unpacked, *args)
    original = pd.read_csv(work / "results/analysis/trials.csv")
    rerun = pd.read_csv(unpacked / "results/analysis/trials.csv")
    pd.testing.assert_frame_equal(original, rerun)


def test_report_renders_in_headless_chromium(work):
    """The HTML report opens in Chromium with every figure; its screenshot is kept."""
    if not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")):
        pytest.skip("no headless Chromium installed")
    snakemake(work, "--report", "report.html", "--configfile", "config/test.yaml")
    figures = sorted(str(p.relative_to(work)) for p in (work / "results").rglob("*.png"))
    assert len(figures) >= 10  # 4 measurement/thesis figures, 6 timelines, 2 SLR figures
    artifact = REPO / "test-artifacts" / "report.png"
    env = dict(os.environ, PYTHONPATH=str(work / "src"))
    done = subprocess.run(
        ["migfw", "report-check", "report.html", "--expect", *figures,
         "--category", "Thesis (Table 11)", "Measurement", "SLR PRISMA 2020",
         "Paper vs reproduction", "Run parameters", "--screenshot", str(artifact)],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert artifact.stat().st_size > 5000
