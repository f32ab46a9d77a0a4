# SLR branch: exports -> import -> linked clusters -> screening -> Tables 3, 6, 10, PRISMA.

SLR_DIR = "results/slr"
SLR_TABLES = [
    "records",
    "clusters",
    "links",
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
SLR_OUTPUTS = [f"{SLR_DIR}/{name}.csv" for name in SLR_TABLES] + [
    f"{SLR_DIR}/{name}.png" for name in SLR_FIGURES
]
SLR_REPORTED = {
    "table3": "SLR (Tables 3, 6, 10)",
    "table6": "SLR (Tables 3, 6, 10)",
    "table10": "SLR (Tables 3, 6, 10)",
    "audit": "SLR (Tables 3, 6, 10)",
    "prisma": "SLR PRISMA 2020",
    "prisma_checks": "SLR PRISMA 2020",
}


def slr_inputs(wildcards):
    slr = config["slr"]
    keys = ["sources", "keyterms", "decisions", "other_sources", "quality", "quasi_gold", "printed"]
    files = [slr[k] for k in keys if k in slr]
    sources = slr.get("sources")
    if sources and Path(sources).exists():
        # Every export listed in the sources sheet is an input too.
        import csv

        with open(sources, newline="") as handle:
            rows = [r for r in csv.DictReader(l for l in handle if not l.startswith("#"))]
        base = Path(sources).parent
        files += [str(base / r["file"]) for r in rows if r.get("file")]
    return files


rule slr_review:
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
        db_overlap=report(
            f"{SLR_DIR}/db_overlap.png",
            caption="../report/slr_db_overlap.rst",
            category="SLR (Tables 3, 6, 10)",
        ),
    params:
        config=CONFIGFILE,
    log:
        f"{LOGS}/slr_review.log",
    benchmark:
        f"{BENCH}/slr_review.tsv"
    shell:
        "migfw slr review --config {params.config} --out {SLR_DIR} 2>&1 | tee {log}"
