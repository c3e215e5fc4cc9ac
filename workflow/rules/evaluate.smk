# Evaluation of every stage's model on target val: the last iteration's (metrics.json) and, when best-on-val
# checkpoints are on, the best one (model_best.pt -> metrics_best.json).


rule evaluate:
    input:
        model=f"{RUN}/{{stage}}/model{{best}}.pt",
    output:
        metrics=f"{RUN}/{{stage}}/metrics{{best}}.json",
    params:
        settings=job_settings("evaluate"),
        variant=variant_label,
        kind=lambda wildcards: "best" if wildcards.best else "last",
    wildcard_constraints:
        best="(_best)?",
    threads: 1
    resources:
        gpu=stage_gpus("evaluate"),
    log:
        f"{LOGS}/evaluate_{{stage}}{{best}}.log",
    benchmark:
        f"{BENCHMARKS}/evaluate_{{stage}}{{best}}.tsv"
    conda:
        "../../environment.yml"
    shell:
        "diga --threads {threads} evaluate --config {params.settings:q} --seed {wildcards.seed} --stage {wildcards.stage}"
        " --variant {params.variant} --kind {params.kind} --checkpoint {input.model} --out {output.metrics} > {log} 2>&1"
