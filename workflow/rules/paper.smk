# The thesis's own numbers: Table 11 recomputed from PS/PR, with an audit of every cell.


rule paper_table11:
    """The thesis's printed Table 11 -> recomputed from PS/PR, with an audit of every cell."""
    input:
        table=config["paper"]["table11"],
        summary=config["paper"]["table11_summary"],
    output:
        table=report(
            "results/paper/table11.csv",
            caption="../report/table11.rst",
            category="Thesis (Table 11)",
        ),
        summary="results/paper/table11_summary.csv",
        audit=report(
            "results/paper/audit.csv",
            caption="../report/audit.rst",
            category="Thesis (Table 11)",
        ),
    log:
        f"{LOGS}/paper_table11.log",
    benchmark:
        f"{BENCH}/paper_table11.tsv"
    params:
        code=code_version("migfw.paper.table11"),
        confidence=config["analysis"]["confidence"],
        resamples=config["analysis"]["bootstrap_resamples"],
        seed=config["analysis"]["seed"],
    run:
        run_migfw(
            log,
            ["paper", "--table", input.table, "--summary", input.summary],
            ["--out-table", output.table, "--out-summary", output.summary],
            ["--out-audit", output.audit, "--confidence", params.confidence],
            ["--resamples", params.resamples, "--seed", params.seed],
        )


rule paper_uptime_figure:
    """The recomputed Table 11 -> the thesis's Figure 7 from its own numbers."""
    input:
        "results/paper/table11.csv",
    output:
        png=report(
            "results/figures/paper_uptime.png",
            caption="../report/paper_uptime.rst",
            category="Thesis (Table 11)",
        ),
        svg="results/figures/paper_uptime.svg",
    log:
        f"{LOGS}/paper_uptime_figure.log",
    params:
        code=code_version("migfw.measure.figures"),
    run:
        run_migfw(
            log,
            ["fig-uptime", input, "--paper", "--out", output.png],
            ["--title", "Thesis Table 11, recomputed from its PS and PR"],
        )
