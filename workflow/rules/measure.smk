# Measurement: per-trial probe metrics -> trials.csv -> summary, attack window, sweeps, and
# the figures (PNG in the report, an SVG twin beside each). Touches no VM or network.
# Each rule runs one function of its migfw.measure module (job: common.smk, migfw.jobs).

metrics = Stage("migfw.measure.metrics")
attackstats = Stage("migfw.measure.attackstats")
sweeps = Stage("migfw.measure.sweeps")
figures = Stage("migfw.measure.figures")


rule trial_metrics:
    """One cell's trial folders -> their rows of metrics (probe loss, DT estimators, attack window)."""
    input:
        cell_inputs,
    output:
        "results/analysis/metrics/{cell}.json",
    log:
        f"{LOGS}/analysis/{{cell}}.log",
    params:
        code=code_version("migfw.measure.metrics"),
        folders=cell_folders,
        files=cell_digest,
    run:
        job(log, metrics.write_trial_metrics, folders=params.folders, out=output[0])


rule trials_table:
    """Every trial's metrics -> results/analysis/trials.csv (thesis Table 11 rows)."""
    input:
        metrics=expand("results/analysis/metrics/{cell}.json", cell=CELLS),
        # testbed runs: the trials' manifest, so the graph runs testbed -> trials -> here
        manifest=["results/testbed/trials.tsv"] if SOURCE == "testbed" else [],
    output:
        report(
            "results/analysis/trials.csv",
            caption="../report/trials.rst",
            category="Measurement",
        ),
    log:
        f"{LOGS}/trials_table.log",
    benchmark:
        f"{BENCH}/trials_table.tsv"
    params:
        code=code_version("migfw.measure.metrics"),
    run:
        job(log, metrics.write_trials_table, metrics=input.metrics, out=output[0])


rule summary_table:
    """trials.csv -> mean, variance, SD and CIs per experiment and factor (Table 11 summary)."""
    input:
        "results/analysis/trials.csv",
    output:
        report(
            "results/analysis/summary.csv",
            caption="../report/summary.rst",
            category="Measurement",
        ),
    log:
        f"{LOGS}/summary_table.log",
    benchmark:
        f"{BENCH}/summary_table.tsv"
    params:
        code=code_version("migfw.measure.metrics"),
        factors=config["analysis"]["factors"],
        confidence=config["analysis"]["confidence"],
        resamples=config["analysis"]["bootstrap_resamples"],
        seed=config["analysis"]["seed"],
        exclude_flags=EXCLUDE_FLAGS,
    run:
        job(
            log,
            metrics.write_summary,
            trials=input[0],
            out=output[0],
            factors=params.factors,
            confidence=params.confidence,
            resamples=params.resamples,
            seed=params.seed,
            exclude_flags=params.exclude_flags,
        )


rule attack_window_table:
    """trials.csv -> breaches and bounds per placement x factor cell x attacker side; flows."""

    # Per cell and side: breach window CIs and bounds, vs vm; per cell and flow: survival.
    input:
        "results/analysis/trials.csv",
    output:
        table=report(
            "results/analysis/attack_window.csv",
            caption="../report/attack_window_table.rst",
            category="Attack window",
        ),
        flows=report(
            "results/analysis/flow_survival.csv",
            caption="../report/flow_survival.rst",
            category="Attack window",
        ),
    log:
        f"{LOGS}/attack_window_table.log",
    benchmark:
        f"{BENCH}/attack_window_table.tsv"
    params:
        code=code_version("migfw.measure.attackstats"),
        confidence=config["analysis"]["confidence"],
        resamples=config["analysis"]["bootstrap_resamples"],
        seed=config["analysis"]["seed"],
        exclude_flags=EXCLUDE_FLAGS,
    run:
        job(
            log,
            attackstats.write_attack_window,
            trials=input[0],
            out=output.table,
            flows=output.flows,
            confidence=params.confidence,
            resamples=params.resamples,
            seed=params.seed,
            exclude_flags=params.exclude_flags,
        )


rule sweeps:
    """trials.csv -> DT/TMT by each varied factor (CIs), the sweep figure, and the power tables."""
    input:
        "results/analysis/trials.csv",
    output:
        table=report(
            "results/analysis/sweeps.csv",
            caption="../report/sweeps.rst",
            category="Measurement",
        ),
        power=report(
            "results/analysis/power.csv",
            caption="../report/power.rst",
            category="Measurement",
        ),
        power_difference=report(
            "results/analysis/power_difference.csv",
            caption="../report/power_difference.rst",
            category="Measurement",
        ),
        png=report(
            "results/figures/sweeps.png",
            caption="../report/sweeps_figure.rst",
            category="Figures",
        ),
        svg="results/figures/sweeps.svg",
    log:
        f"{LOGS}/sweeps.log",
    benchmark:
        f"{BENCH}/sweeps.tsv"
    params:
        code=code_version("migfw.measure.sweeps"),
        factors=SWEEP_FACTORS,
        exclude_flags=EXCLUDE_FLAGS,
    run:
        job(
            log,
            sweeps.write_sweeps,
            trials=input[0],
            table=output.table,
            power=output.power,
            figure=output.png,
            factors=params.factors,
            power_difference=output.power_difference,
            exclude_flags=params.exclude_flags,
        )


rule uptime_figure:
    """trials.csv -> firewall uptime per interval (thesis Figure 7)."""
    input:
        "results/analysis/trials.csv",
    output:
        png=report(
            "results/figures/uptime.png",
            caption="../report/uptime.rst",
            category="Measurement",
        ),
        svg="results/figures/uptime.svg",
    log:
        f"{LOGS}/uptime_figure.log",
    params:
        code=code_version("migfw.measure.figures"),
    run:
        job(log, figures.write_uptime_figure, trials=input[0], out=output.png)


rule estimators_figure:
    """trials.csv -> downtime by estimator beside the hypervisor's own figure."""
    input:
        "results/analysis/trials.csv",
    output:
        png=report(
            "results/figures/dt_estimators.png",
            caption="../report/dt_estimators.rst",
            category="Measurement",
        ),
        svg="results/figures/dt_estimators.svg",
    log:
        f"{LOGS}/estimators_figure.log",
    params:
        code=code_version("migfw.measure.figures"),
    run:
        job(log, figures.write_estimators_figure, trials=input[0], out=output.png)


rule timeline_figure:
    """One trial -> its probe raster around the outage (thesis Figures 8-9), breaches and flows."""
    input:
        unpack(trial_inputs),
    output:
        png=report(
            "results/figures/timelines/{trial}.png",
            caption="../report/timeline.rst",
            category="Probe timelines",
            labels={"trial": "{trial}"},
        ),
        svg="results/figures/timelines/{trial}.svg",
    log:
        f"{LOGS}/timelines/{{trial}}.log",
    params:
        code=code_version("migfw.measure.figures"),
        folder=trial_folder,
        files=trial_digest,
    run:
        job(log, figures.timeline_figure, trial_dir=params.folder, out_png=output.png)


rule attack_window_figure:
    """trials.csv -> breach window by placement, each trial a point, CIs drawn."""
    input:
        trials="results/analysis/trials.csv",
        table="results/analysis/attack_window.csv",
    output:
        png=report(
            "results/figures/attack_window.png",
            caption="../report/attack_window.rst",
            category="Attack window",
        ),
        svg="results/figures/attack_window.svg",
    log:
        f"{LOGS}/attack_window_figure.log",
    params:
        code=code_version("migfw.measure.figures"),
    run:
        job(
            log,
            figures.write_attack_window_figure,
            trials=input.trials,
            table=input.table,
            out=output.png,
        )
