"""profiles/slurm: analysis and SLR on a Slurm cluster, trials on the controller.

Checked here without a cluster: the profile parses, Snakemake accepts it with the Slurm
executor plugin in a dry run, and exactly the trial and testbed rules are `localrules`."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
LOCAL = {"all", "design_sheet", "testbed_preflight", "guest_image", "render_ruleset",
         "testbed_up", "deploy_placement", "trial", "trials_manifest"}  # fmt: skip
CLUSTER = {"trial_metrics", "trials_table", "summary_table", "uptime_figure",
           "estimators_figure", "timeline_figure", "paper_table11", "paper_uptime_figure",
           "slr_review", "paper_vs_reproduction", "run_info"}  # fmt: skip


def test_profile_parses_and_leaves_the_pair_limits_to_the_workflow_profile() -> None:
    profile = yaml.safe_load(PROFILE.read_text())
    assert profile["executor"] == "slurm"
    assert profile["jobs"] >= 1 and profile["default-resources"]["runtime"] > 0
    # Overriding `resources` here would drop the per-pair limits of profiles/default.
    assert "resources" not in profile and "cores" not in profile


@pytest.mark.parametrize("source", ["testbed", "crafted"])
def test_trials_are_local_rules_and_analysis_and_slr_are_not(tmp_path: Path, source) -> None:
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(
                config={"trials_source": source, "trials_dir": str(tmp_path)}
            ),
            snakefile=REPO / "Snakefile",
            workdir=REPO,
        )._workflow
        names = {rule.name for rule in workflow.rules}
        local = set(workflow._localrules)  # what Workflow.is_local reads
    expected = LOCAL if source == "testbed" else {"all", "design_sheet", "crafted_trial"}
    assert local == expected
    assert CLUSTER <= names and not (CLUSTER & local)


@pytest.mark.skipif(
    importlib.util.find_spec("snakemake_executor_plugin_slurm") is None,
    reason="snakemake-executor-plugin-slurm not installed (bash scripts/install.sh --test)",
)
def test_dry_run_with_the_slurm_executor(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--nolock", "--profile", "profiles/slurm",
         "--config", f"trials_dir={tmp_path}", "trials_source=crafted"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout + proc.stderr
    assert "crafted_trial" in out and "trial_metrics" in out
