# Stages 3-4: offline pseudo-labels and class centroids from a stage's model, then self-training rounds
# (a fixed {round} chain: round r starts from round r-1 and learns from its pseudo-labels).


rule pseudolabels:
    input:
        model=f"{RUN}/{{stage}}/{CONTINUE_FROM}",
    output:
        labels=directory(f"{RUN}/{{stage}}/pseudolabels"),
        summary=f"{RUN}/{{stage}}/pseudolabels.json",
    params:
        settings=job_settings("pseudolabels"),
    threads: 1
    resources:
        gpu=stage_gpus("pseudolabels"),
    log:
        f"{LOGS}/pseudolabels_{{stage}}.log",
    benchmark:
        f"{BENCHMARKS}/pseudolabels_{{stage}}.tsv"
    conda:
        "../../environment.yml"
    shell:
        "diga --threads {threads} pseudolabels --config {params.settings:q} --checkpoint {input.model}"
        " --out-dir {output.labels} --summary {output.summary} > {log} 2>&1"


rule centroids:
    input:
        model=f"{RUN}/{{stage}}/{CONTINUE_FROM}",
    output:
        centroids=f"{RUN}/{{stage}}/centroids.pt",
    params:
        settings=job_settings("centroids"),
    threads: 1
    resources:
        gpu=stage_gpus("centroids"),
    log:
        f"{LOGS}/centroids_{{stage}}.log",
    benchmark:
        f"{BENCHMARKS}/centroids_{{stage}}.tsv"
    conda:
        "../../environment.yml"
    shell:
        "diga --threads {threads} centroids --config {params.settings:q} --checkpoint {input.model} --out {output.centroids} > {log} 2>&1"


rule selftrain:
    input:
        unpack(selftrain_inputs),
    output:
        model=f"{RUN}/selftrain{{round}}/model.pt",
        log_csv=f"{RUN}/selftrain{{round}}/train_log.csv",
        best=best_output("selftrain{round}"),
    params:
        settings=job_settings("selftrain"),
        out_dir=f"{RUN}/selftrain{{round}}",
    threads: TRAIN_THREADS
    resources:
        gpu=stage_gpus("selftrain"),
    log:
        f"{LOGS}/selftrain{{round}}.log",
    benchmark:
        f"{BENCHMARKS}/selftrain{{round}}.tsv"
    conda:
        "../../environment.yml"
    shell:
        "diga --threads {threads} selftrain --config {params.settings:q} --seed {wildcards.seed} --round {wildcards.round}"
        " --init {input.init} --translator {input.translator} --pseudolabels {input.pseudolabels}"
        " --centroids {input.centroids} --out-dir {params.out_dir} > {log} 2>&1"
