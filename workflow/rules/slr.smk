# SLR branch: exports -> import -> linked clusters -> screening -> Tables 3, 6, 10, PRISMA.

SLR_DIR = "results/slr"
SLR_TABLES = [
    "records",
    "merged",
    "clusters",
    "links",
    "dedupe_review",
    "library",
    "screened",
    "table3",
    "table6",
    "table10",
    "quality_summary",
    "sensitivity",
    "audit",
    "prisma",
    "prisma_checks",
]
SLR_FIGURES = ["prisma_flow", "db_overlap"]
SLR_OUTPUTS = (
    [f"{SLR_DIR}/{name}.csv" for name in SLR_TABLES]
    + [f"{SLR_DIR}/{name}.png" for name in SLR_FIGURES]
    + [f"{SLR_DIR}/library.ris"]
)
SLR_REPORTED = {
    "table3": "SLR (Tables 3, 6, 10)",
    "table6": "SLR (Tables 3, 6, 10)",
    "table10": "SLR (Tables 3, 6, 10)",
    "audit": "SLR (Tables 3, 6, 10)",
    "prisma": "SLR PRISMA 2020",
    "prisma_checks": "SLR PRISMA 2020",
}


rule slr_review:
    """SLR exports -> import, dedupe, screening, Tables 3, 6, 10, PRISMA, library export."""
    input:
        slr_inputs,
    output:
        **{
            name: (
                report(
                    f"{SLR_DIR}/{name}.csv",
                    caption=f"../report/slr_{name}.rst",
                    category=SLR_REPORTED[name],
                )
                if name in SLR_REPORTED
                else f"{SLR_DIR}/{name}.csv"
            )
            for name in SLR_TABLES
        },
        prisma_flow=report(
            f"{SLR_DIR}/prisma_flow.png",
            caption="../report/slr_prisma_flow.rst",
            category="SLR PRISMA 2020",
        ),
        library_ris=f"{SLR_DIR}/library.ris",
        db_overlap=report(
            f"{SLR_DIR}/db_overlap.png",
            caption="../report/slr_db_overlap.rst",
            category="SLR (Tables 3, 6, 10)",
        ),
    log:
        f"{LOGS}/slr_review.log",
    benchmark:
        f"{BENCH}/slr_review.tsv"
    params:
        code=code_version("migfw.slr.review"),
        out=lambda w, output: Path(output.table3).parent,
    run:
        cfg = effective_config(log)
        shell("migfw slr review --config {cfg} --out {params.out} 2>&1 | tee {log}")
