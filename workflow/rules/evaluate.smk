# Evaluation of every stage's model on target val.


rule evaluate:
    input:
        model=f"{RUN}/{{stage}}/model.pt",
    output:
        metrics=f"{RUN}/{{stage}}/metrics.json",
    params:
        settings=job_settings("evaluate"),
        variant=variant_label,
    threads: 1
    resources:
        gpu=1,
    log:
        f"{LOGS}/evaluate_{{stage}}.log",
    benchmark:
        f"{BENCHMARKS}/evaluate_{{stage}}.tsv"
    conda:
        "../../environment.yml"
    shell:
        "diga --threads {threads} evaluate --config {params.settings:q} --seed {wildcards.seed} --stage {wildcards.stage}"
        " --variant {params.variant} --checkpoint {input.model} --out {output.metrics} > {log} 2>&1"


rule evaluate_best:
    input:
        model=f"{RUN}/{{stage}}/model_best.pt",
    output:
        metrics=f"{RUN}/{{stage}}/metrics_best.json",
    params:
        settings=job_settings("evaluate"),
        variant=variant_label,
    threads: 1
    resources:
        gpu=1,
    log:
        f"{LOGS}/evaluate_{{stage}}_best.log",
    benchmark:
        f"{BENCHMARKS}/evaluate_{{stage}}_best.tsv"
    conda:
        "../../environment.yml"
    shell:
        "diga --threads {threads} evaluate --config {params.settings:q} --seed {wildcards.seed} --stage {wildcards.stage}"
        " --variant {params.variant} --kind best --checkpoint {input.model} --out {output.metrics} > {log} 2>&1"
