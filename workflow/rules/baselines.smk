# Reference points: the source-only baseline (CE on source, the warm-up schedule) and, where target-train
# labels exist (ToyCity), the target oracle.


rule source_only:
    input:
        manifest=MANIFEST,
        weights=WEIGHTS_CHECK,
    output:
        model=f"{RUN}/source_only/model.pt",
        log_csv=f"{RUN}/source_only/train_log.csv",
        best=best_output("source_only"),
    params:
        settings=job_settings("source_only"),
        out_dir=f"{RUN}/source_only",
    threads: TRAIN_THREADS
    resources:
        gpu=stage_gpus("source_only"),
    log:
        f"{LOGS}/source_only.log",
    benchmark:
        f"{BENCHMARKS}/source_only.tsv"
    conda:
        "../../environment.yml"
    shell:
        "diga --threads {threads} source-only --config {params.settings:q} --seed {wildcards.seed} --out-dir {params.out_dir} > {log} 2>&1"


rule oracle:
    input:
        manifest=MANIFEST,
        weights=WEIGHTS_CHECK,
    output:
        model=f"{RUN}/oracle/model.pt",
        log_csv=f"{RUN}/oracle/train_log.csv",
        best=best_output("oracle"),
    params:
        settings=job_settings("oracle"),
        out_dir=f"{RUN}/oracle",
    threads: TRAIN_THREADS
    resources:
        gpu=stage_gpus("oracle"),
    log:
        f"{LOGS}/oracle.log",
    benchmark:
        f"{BENCHMARKS}/oracle.tsv"
    conda:
        "../../environment.yml"
    shell:
        "diga --threads {threads} oracle --config {params.settings:q} --seed {wildcards.seed} --out-dir {params.out_dir} > {log} 2>&1"
