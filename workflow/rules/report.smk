# The paper companion: the thesis's headline numbers next to this run's.


rule paper_vs_reproduction:
    input:
        paper_summary="results/paper/table11_summary.csv",
        paper_table="results/paper/table11.csv",
        trials="results/analysis/trials.csv",
        summary="results/analysis/summary.csv",
        slr=SLR_OUTPUTS if config["slr"]["enabled"] else [],
    output:
        report(
            "results/paper_vs_reproduction.md",
            caption="../report/paper_vs_reproduction.rst",
            category="Paper vs reproduction",
        ),
    log:
        f"{LOGS}/paper_vs_reproduction.log",
    conda:
        "../envs/migfw.yaml"
    params:
        slr_dir="results/slr" if config["slr"]["enabled"] else "",
    shell:
        "migfw compare --paper-dir results/paper --analysis-dir results/analysis"
        " --slr-dir '{params.slr_dir}' --out {output} > {log} 2>&1"
