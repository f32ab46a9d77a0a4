# SLR branch: exports -> import -> linked clusters -> screening -> Tables 3, 6, 10, PRISMA.
# One rule, one function: migfw.slr.review.write_review (job: common.smk, migfw.jobs).

review = Stage("migfw.slr.review")

SLR_DIR = "results/slr"
# Output name -> file; `migfw slr review` refuses a set that differs from its own
# (migfw.slr.review.OUTPUT_FILES), so a new output cannot go undeclared.
SLR_FILES = {
    **{
        name: f"{SLR_DIR}/{name}.csv"
        for name in [
            "records",
            "clusters",
            "links",
            "merged",
            "dedupe_review",
            "library",
            "screened",
            "studies",
            "table3",
            "table6",
            "table10",
            "quality_summary",
            "sensitivity",
            "sensitivity_detail",
            "audit",
            "prisma",
            "prisma_checks",
        ]
    },
    "library_ris": f"{SLR_DIR}/library.ris",
    "query": f"{SLR_DIR}/query.txt",
    "prisma_flow": f"{SLR_DIR}/prisma_flow.png",
    "db_overlap": f"{SLR_DIR}/db_overlap.png",
}
SLR_SVGS = {
    f"{name}_svg": SLR_FILES[name].replace(".png", ".svg")
    for name in ["prisma_flow", "db_overlap"]
}
# The SLR outputs paper_vs_reproduction reads (migfw.paper.compare.SLR_INPUTS).
SLR_COMPARED = ["audit", "quality_summary", "sensitivity", "table6"]
SLR_OUTPUTS = list(SLR_FILES.values()) + list(SLR_SVGS.values())
SLR_REPORTED = {
    "table3": ("SLR (Tables 3, 6, 10)", "slr_table3"),
    "table6": ("SLR (Tables 3, 6, 10)", "slr_table6"),
    "table10": ("SLR (Tables 3, 6, 10)", "slr_table10"),
    "audit": ("SLR (Tables 3, 6, 10)", "slr_audit"),
    "prisma": ("SLR PRISMA 2020", "slr_prisma"),
    "prisma_checks": ("SLR PRISMA 2020", "slr_prisma_checks"),
    "prisma_flow": ("SLR PRISMA 2020", "slr_prisma_flow"),
    "db_overlap": ("SLR (Tables 3, 6, 10)", "slr_db_overlap"),
}


rule slr_review:
    """SLR exports -> import, dedupe, screening, Tables 3, 6, 10, PRISMA, library export."""
    input:
        slr_inputs,
    output:
        **{name: slr_output(name) for name in SLR_FILES},
        **SLR_SVGS,
    log:
        f"{LOGS}/slr_review.log",
    benchmark:
        f"{BENCH}/slr_review.tsv"
    params:
        code=code_version("migfw.slr.review"),
    run:
        cfg = effective_config(log)
        job(
            log,
            review.write_review,
            config=cfg,
            outputs={name: output[name] for name in SLR_FILES},
        )
