# The paper companion: the thesis's headline numbers next to this run's.


rule paper_vs_reproduction:
    """Thesis headlines beside recomputed and measured numbers, with the placement verdict."""
    input:
        paper_summary="results/paper/table11_summary.csv",
        paper_table="results/paper/table11.csv",
        trials="results/analysis/trials.csv",
        summary="results/analysis/summary.csv",
        attack_window="results/analysis/attack_window.csv",
        flows="results/analysis/flow_survival.csv",
        slr=(
            [SLR_FILES[name] for name in SLR_COMPARED]
            if config["slr"]["enabled"]
            else []
        ),
    output:
        table=report(
            "results/paper_vs_reproduction.md",
            caption="../report/paper_vs_reproduction.rst",
            category="Paper vs reproduction",
        ),
        # The verdict in words, also on the report's landing page (workflow/report/workflow.rst);
        # marked for the report, so a report without it stops with one line, not a traceback.
        verdict=report(
            "results/verdict.rst",
            caption="../report/verdict.rst",
            category="Paper vs reproduction",
        ),
    log:
        f"{LOGS}/paper_vs_reproduction.log",
    params:
        code=code_version("migfw.paper.compare"),
    run:
        run_migfw(log, compare_argv(input, output))


rule run_info:
    """Run parameters, versions, locked environment and per-rule times, for the report."""

    # Last step: everything else is done, so every benchmark file exists.
    input:
        done=[f for f in flatten(all_outputs()) if not f.startswith("results/run_info")],
        trials="results/analysis/trials.csv",
    output:
        info=report(
            "results/run_info.md",
            caption="../report/run_info.rst",
            category="Run parameters",
        ),
        bench=report(
            "results/benchmarks.csv",
            caption="../report/benchmarks.rst",
            category="Run parameters",
        ),
    log:
        f"{LOGS}/run_info.log",
    run:
        cfg = effective_config(log)
        run_migfw(
            log,
            [
                "run-info",
                "--config",
                cfg,
                "--trials",
                input.trials,
                "--benchmarks",
                BENCH,
            ],
            ["--out", output.info, "--out-benchmarks", output.bench],
        )
