# Shared set-up: config validation, the trial list, and what `all` builds.

import json
import os
import re
import shutil
import sys
from pathlib import Path

from snakemake.utils import validate

from migfw.trials.contract import (
    KNOWN_FACTORS,
    TRIAL_WILDCARD,
    discover_trials,
    experiment_problems,
    trial_dir,
    trial_id_of,
)
from migfw.trials.design import design_text, expand_design, trial_cells
from migfw.config import coerce_config, config_problems
from migfw.testbed.ruleset import enforcement_problems
from migfw.testbed.placements import wildcard as placement_wildcard
from migfw.jobs import Stage, process_argv, run_job
from migfw.provenance import code_version, folder_digest

# Nested --config values arrive as text; then a readable one-line-per-problem message
# comes first, and Snakemake's own validation after it.
_SCHEMA = workflow.source_path("../schemas/config.schema.yaml")
config.update(coerce_config(config, _SCHEMA))
_problems = (
    config_problems(config, _SCHEMA)
    or experiment_problems(config.get("experiments"))
    or enforcement_problems(config)
)
if _problems:
    raise WorkflowError("invalid configuration:\n  " + "\n  ".join(_problems))
# The schema's defaults fill every key a config leaves out: rules read config[...] plainly.
validate(config, schema="../schemas/config.schema.yaml", set_default=True)

TRIALS_DIR = config["trials_dir"].rstrip("/")
# `{placement}`: every registered placement (src/migfw/testbed/placements/).
PLACEMENT_WILDCARD = placement_wildcard()
SOURCE = config["trials_source"]
LOGS = "results/logs"
DESIGN_SHEET = "results/design.tsv"


def effective_config(log):
    """Write the config in force (files plus --config overrides) beside a rule's log.

    Rules that hand a whole config to the migfw CLI pass this file, so command-line
    overrides reach it too.
    """
    import yaml

    path = Path(str(log)).with_suffix(".config.yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(json.loads(json.dumps(config)), sort_keys=False))
    return path


BENCH = "results/benchmarks"
# Trials carrying any of these flags are left out of the statistics (summary, attack window,
# sweeps); each table row says how many flagged trials it includes and how many were left out.
EXCLUDE_FLAGS = list(config["analysis"]["exclude_flags"])
# trials.csv columns the sweep table and figure look at (those an experiment varies).
SWEEP_FACTORS = list(KNOWN_FACTORS)

TESTBED_OWNER = []


def job(log, function, **kwargs):
    """Run the stage function `function(**kwargs)` as this job: inside Snakemake's own process
    (the profile's force-use-threads runs `run:` blocks in threads), its output to `log`, so
    start-up and imports are paid once per run, not once per job (migfw.jobs.run_job). A
    MigfwError stops the job with its one line."""
    problem = run_job(str(log), function, **kwargs)
    if problem:
        raise WorkflowError(problem)


def testbed_job(log, function, **kwargs):
    """Run `function(**kwargs)` in a process of its own (it boots VMs and holds namespaces:
    Snakemake kills it with the run), its output to `log` and the console."""
    import shlex
    import subprocess

    command = shlex.join(process_argv(function, kwargs))
    # shell() formats its command: the JSON's braces are escaped.
    escaped = command.replace("{", "{{").replace("}", "}}")
    try:
        shell(f"{escaped} 2>&1 | tee {shlex.quote(str(log))}")
    except subprocess.CalledProcessError:
        lines = Path(str(log)).read_text().strip().splitlines()
        raise WorkflowError(
            lines[-1] if lines else f"{function.name} failed; see {log}"
        ) from None


def own_testbed():
    """Take the testbed lock for this run (see migfw.testbed.owner): refuse in one line
    if another run owns the prefix; clean a dead owner's leftovers first."""
    from migfw.errors import MigfwError
    from migfw.testbed.owner import acquire
    from migfw.testbed.pairs import all_pair_configs

    try:
        for pair_config in all_pair_configs(config):  # every host pair's prefix
            TESTBED_OWNER.append(acquire(pair_config, f"snakemake (pid {os.getpid()})"))
    except MigfwError as exc:
        # Before any job: nothing of ours to clean, nothing of theirs touched.
        raise WorkflowError(str(exc)) from None


def release_testbed():
    shell(
        f"migfw testbed down --config {effective_config(f'{LOGS}/testbed_down')} || true"
    )
    for owner in TESTBED_OWNER:
        if owner is not None:
            owner.release()


def pair_count():
    """Host pairs of the testbed (testbed.pairs / testbed.external.pairs)."""
    if SOURCE != "testbed":
        return 1
    from migfw.testbed.pairs import pair_count as count

    return count(config)


N_PAIRS = pair_count()
# The design sheet (results/design.tsv, made by design_sheet): every planned trial's typed spec,
# its host pair included, expanded once here (migfw.trials.design); trial id -> spec.
DESIGN = (
    {}
    if SOURCE == "directory"
    else {s.trial_id: s for s in expand_design(config["experiments"], N_PAIRS)}
)


def all_trials():
    """Trial ids: the design sheet's (planned order), or the folders on disk."""
    if SOURCE == "directory":
        found = (
            [trial_id_of(p, TRIALS_DIR) for p in discover_trials(TRIALS_DIR)]
            if Path(TRIALS_DIR).is_dir()
            else []
        )
        if not found:
            raise WorkflowError(
                f"trials_source is 'directory' but {TRIALS_DIR} has no"
                " <experiment>/<trial>/trial.json"
            )
        return found
    return list(DESIGN)


TRIALS = all_trials()
# Cells: an experiment's factor combination, all its repetitions. The per-trial analysis runs
# one job per cell: Snakemake's own per-job cost (~0.2 s) would dwarf a trial's (~8 ms).
CELLS = trial_cells(TRIALS)


# Ids are <experiment>/<slug>-rNN, cells <experiment>/<slug>: exactly one slash each.
wildcard_constraints:
    trial=TRIAL_WILDCARD,
    cell=TRIAL_WILDCARD,


def spread(items, k):
    """At most k of items, evenly spaced, first and last included (all when len <= k)."""
    if len(items) <= k:
        return list(items)
    if k <= 1:
        return list(items[:k])
    return [items[round(i * (len(items) - 1) / (k - 1))] for i in range(k)]


# Timeline figures cost ~0.3 s each: a 1,000-trial archive draws a spread subset.
TIMELINE_TRIALS = spread(TRIALS, config["analysis"]["timelines"])


def trial_pair(trial):
    """The host pair the design sheet gives the trial (pair 0 if it is not planned)."""
    spec = DESIGN.get(trial)
    return spec.pair if spec is not None else 0


def trial_placement(trial):
    """The placement the design sheet gives the trial (`vm` if it is not planned)."""
    spec = DESIGN.get(trial)
    return spec.placement if spec is not None else "vm"


def design_digest():
    """The sheet's content hash: a changed design (config, --config) rewrites the sheet."""
    import hashlib

    return hashlib.sha256(design_text(DESIGN.values()).encode()).hexdigest()[:16]


# One Snakemake resource per pair (profiles/default caps each at 1): a trial holds its
# pair's, so pairs migrate at the same time and no pair ever migrates twice at once.
PAIR_RESOURCES = {
    f"pair{k}": (lambda wildcards, k=k: int(trial_pair(wildcards.trial) == k))
    for k in range(N_PAIRS)
}
# Provisioning and placement deployment act on the testbed as a whole: they hold every
# pair's resource, so none of them ever runs beside a migration.
ALL_PAIRS = {f"pair{k}": 1 for k in range(N_PAIRS)}


def finished(trial):
    """A finished trial: its folder (renamed into place only when complete) has trial.json."""
    return (trial_dir(TRIALS_DIR, trial) / "trial.json").exists()


def unfinished_pattern():
    """The trial rule's wildcard: planned trials without a finished folder only.

    A finished trial is then a plain input file that no rule produces, so nothing (config,
    params, code, the number of trials, --forcerun) can make Snakemake rerun or delete it.
    """
    import re

    done = [re.escape(t) for t in TRIALS if finished(t)]
    if not done:
        return TRIAL_WILDCARD
    return f"(?!(?:{'|'.join(done)})/){TRIAL_WILDCARD}"


TRIALS_PENDING = SOURCE == "testbed" and not all(finished(t) for t in TRIALS)
# Every trial finished: the testbed's evidence as the run recorded it (trials_manifest keeps
# the testbed rules in the DAG for the report's graph).
EVIDENCE = {
    str(path): path.read_bytes()
    for pattern in (
        "preflight.txt",
        "guest/manifest.json",
        "hosts.json",
        "placements/*.json",
    )
    for path in Path("results/testbed").glob(pattern)
    if SOURCE == "testbed" and not TRIALS_PENDING
}


def kept_evidence(output, log):
    """A testbed rule's job once every trial is finished (Snakemake plans one only when its
    rule's code changed since the run): put back the evidence the run recorded (Snakemake
    removed it before the job) and touch no VM. False: do the real work."""
    if TRIALS_PENDING or not all(str(f) in EVIDENCE for f in output):
        return False
    for f in output:
        Path(f).write_bytes(EVIDENCE[str(f)])
    Path(str(log)).parent.mkdir(parents=True, exist_ok=True)
    Path(str(log)).write_text(
        "every planned trial is finished: evidence kept, no VM touched\n"
    )
    return True


def manifest_inputs(wildcards):
    """trials_manifest's inputs: the testbed, guest image and each planned placement's
    evidence (ancient: they order the DAG, never rerun it), and every trial.json."""
    placements = sorted({trial_placement(t) for t in TRIALS})
    chain = ["results/testbed/preflight.txt", "results/testbed/guest/manifest.json"]
    testbed = {
        "hosts": "results/testbed/hosts.json",
        "image": chain[1],
        "placements": [f"results/testbed/placements/{p}.json" for p in placements],
    }
    if not TRIALS_PENDING:
        # Every trial finished: name only the evidence on disk (a tree copied without
        # results/testbed/ must not provision a testbed just to draw the graph).
        if not all(Path(f).exists() for f in [*chain, testbed["hosts"]]):
            testbed = {"placements": []}
        testbed["placements"] = [f for f in testbed["placements"] if Path(f).exists()]
    return {
        **{k: ancient(v) for k, v in testbed.items() if k != "placements"},
        "placements": [ancient(f) for f in testbed["placements"]],
        "trials": [f"{trial_dir(TRIALS_DIR, t)}/trial.json" for t in TRIALS],
    }


def trial_folder(wildcards):
    return str(trial_dir(TRIALS_DIR, wildcards.trial))


def ovn_first(wildcards):
    """A placement's `priority` (ovn: its deployment, then its trials, before the others:
    its VM has an OVS port, the others' a Linux-bridge one, and every switch between them
    boots the VM anew (docs/placements.md), so one block of ovn jobs costs two switches).
    """
    from migfw.testbed.placements import get

    if "placement" in wildcards.keys():
        return get(wildcards.placement).priority
    return get(trial_placement(wildcards.trial)).priority


def trial_deployment(wildcards):
    """A trial's provisioning and placement evidence: they order the DAG (testbed_up ->
    deploy_placement -> trial). Plain inputs, not ancient: a trial job exists only while its
    folder is missing (unfinished_pattern), so nothing re-triggers a finished trial, and an
    ancient edge would hide the trial from Snakemake's plan whenever a job upstream (a
    rebuilt guest image) must run (snakemake/snakemake#4166: it stopped after the image).
    """
    placement = trial_placement(wildcards.trial)
    return {
        "hosts": "results/testbed/hosts.json",
        "placement": f"results/testbed/placements/{placement}.json",
    }


def trial_inputs(wildcards):
    return inputs_of_trial(wildcards.trial)


def inputs_of_trial(trial):
    folder = str(trial_dir(TRIALS_DIR, trial))
    if SOURCE == "directory":
        # Folders analysed as found: the folder itself is the one input (`snakemake
        # --archive` carries it whole, subfolders too), and trial_digest, a param, reruns
        # its jobs when a file inside changes. Declaring each file cost Snakemake ~1.7 KB a
        # file: 50 MiB of a 10,000-trial run's peak (docs/scale.md).
        return {"folder": folder}
    inputs = {"meta": f"{folder}/trial.json"}
    # A failed trial found on disk may have no capture; one we produce always has one.
    if not finished(trial) or Path(f"{folder}/probe.pcap").exists():
        inputs["pcap"] = f"{folder}/probe.pcap"
    # The other files a trial may hold (attack.pcap, attack_sendlog.csv, flows.csv, ...) are
    # known only once it ran. Trials this run makes declare just the two files above, or the
    # input set would change after the first run and rerun their analysis; a finished folder
    # never changes, so nothing is missed.
    return inputs


def cell_inputs(wildcards):
    """Every input of every trial in the cell (a plain list: a name per input costs more)."""
    return [p for t in CELLS[wildcards.cell] for p in inputs_of_trial(t).values()]


def cell_folders(wildcards):
    return [str(trial_dir(TRIALS_DIR, trial)) for trial in CELLS[wildcards.cell]]


def cell_digest(wildcards):
    """Names, sizes and mtimes of every file in the cell's folders (folders as found)."""
    return folder_digest(*cell_folders(wildcards)) if SOURCE == "directory" else ""


def trial_digest(wildcards):
    return folder_digest(trial_folder(wildcards)) if SOURCE == "directory" else ""


def slr_output(name):
    """The declared output for `name`: in the report with its caption, or a plain file."""
    if name not in SLR_REPORTED:
        return SLR_FILES[name]
    category, caption = SLR_REPORTED[name]
    return report(
        SLR_FILES[name], caption=f"../report/{caption}.rst", category=category
    )


def slr_inputs(wildcards):
    slr = config["slr"]
    keys = [
        "sources",
        "keyterms",
        "decisions",
        "other_sources",
        "quality",
        "quasi_gold",
        "printed",
        "dedupe_decisions",
    ]
    files = [slr[k] for k in keys if k in slr]
    sources = slr.get("sources")
    if sources and Path(sources).exists():
        # Every export listed in the sources sheet is an input too.
        import csv

        with open(sources, newline="") as handle:
            rows = [
                r for r in csv.DictReader(l for l in handle if not l.startswith("#"))
            ]
        base = Path(sources).parent
        files += [str(base / r["file"]) for r in rows if r.get("file")]
    return files


def flatten(items):
    for item in items:
        if isinstance(item, (list, tuple)):
            yield from flatten(item)
        else:
            yield item


def all_outputs():
    outputs = [
        "results/paper/table11.csv",
        "results/paper/audit.csv",
        "results/figures/paper_uptime.png",
        "results/analysis/trials.csv",
        "results/analysis/summary.csv",
        "results/figures/uptime.png",
        "results/figures/dt_estimators.png",
        "results/analysis/attack_window.csv",
        "results/analysis/flow_survival.csv",
        "results/figures/attack_window.png",
        "results/analysis/sweeps.csv",
        "results/analysis/power.csv",
        "results/analysis/power_difference.csv",
        "results/figures/sweeps.png",
        expand("results/figures/timelines/{trial}.png", trial=TIMELINE_TRIALS),
        "results/paper_vs_reproduction.md",
        "results/run_info.md",
    ]
    if SOURCE != "directory":
        outputs.append(DESIGN_SHEET)
    if SOURCE == "testbed":
        outputs += ["results/testbed/ruleset.nft", "results/testbed/pf.conf"]
    if config["slr"]["enabled"]:
        outputs += SLR_OUTPUTS
    return outputs
