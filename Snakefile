# migfw: does a firewall inside a VM keep protecting it during live migration?
# `snakemake --cores 1` regenerates every artifact from config/ (see README.md).

from snakemake.utils import min_version

min_version("8.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/testbed.smk"
include: "workflow/rules/trials.smk"
include: "workflow/rules/measure.smk"
include: "workflow/rules/slr.smk"
include: "workflow/rules/paper.smk"


localrules:
    all,


rule all:
    """Every artifact of the configured run (paper, trials, analysis, figures, SLR, report inputs)."""
    default_target: True
    input:
        all_outputs(),
