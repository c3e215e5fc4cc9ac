# Evaluation of every stage's model on target val, and the result table over stages and seeds.


rule evaluate:
    input:
        model=f"{RUN}/{{stage}}/model.pt",
    output:
        metrics=f"{RUN}/{{stage}}/metrics.json",
    params:
        settings=job_settings("evaluate"),
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
        " --checkpoint {input.model} --out {output.metrics} > {log} 2>&1"


rule table:
    input:
        metrics=expand(f"{RUN}/{{stage}}/metrics.json", seed=SEEDS, stage=EVALUATED_STAGES),
    output:
        md=f"{RESULTS}/table.md",
        csv=f"{RESULTS}/table.csv",
    params:
        settings=settings(),
    threads: 1
    log:
        f"{RESULTS}/logs/table.log",
    benchmark:
        f"{RESULTS}/benchmarks/table.tsv"
    conda:
        "../../environment.yml"
    shell:
        "diga --threads {threads} table --config {params.settings:q} --metrics {input.metrics}"
        " --out-md {output.md} --out-csv {output.csv} > {log} 2>&1"
