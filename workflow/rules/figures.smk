# Figures: PNG (in the report) with an SVG twin beside each.


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
        run_migfw(log, "fig-uptime", input, "--out", output.png)


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
        run_migfw(log, "fig-estimators", input, "--out", output.png)


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
        run_migfw(log, "fig-timeline", params.folder, "--out", output.png)


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
        run_migfw(
            log,
            ["fig-attack-window", input.trials, "--table", input.table],
            ["--out", output.png],
        )
