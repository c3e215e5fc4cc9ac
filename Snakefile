# DiGA reproducibility pipeline: data -> translator -> warm-up -> pseudo-labels -> centroids ->
# self-training rounds -> evaluation -> result table. Stage rules call the `diga` CLI.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "diga/schema/config.schema.yaml")


include: "workflow/rules/common.smk"
wildcard_constraints:
    seed=r"\d+",
    round=r"\d+",
    split=r"1-[1-9]\d*",
    stage="|".join(f"{name}\\d+" if stage.rounds else name for name, stage in STAGES.items() if stage.label),
    variant="(ablations/(" + "|".join(VARIANTS) + ")/)?",


include: "workflow/rules/data.smk"
include: "workflow/rules/weights.smk"
include: "workflow/rules/translator.smk"
include: "workflow/rules/baselines.smk"
include: "workflow/rules/warmup.smk"
include: "workflow/rules/selftrain.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/dg.smk"
include: "workflow/rules/semisup.smk"
include: "workflow/rules/report.smk"


report: "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        final_outputs(),
