# Stage 1: the source-to-target image translator, trained once per seed and frozen afterwards.


rule translator:
    input:
        manifest=MANIFEST,
        weights=WEIGHTS_CHECK,
    output:
        model=f"{RUN}/translator/translator.pt",
        log_csv=f"{RUN}/translator/train_log.csv",
        examples=f"{RUN}/translator/examples.png",
    params:
        settings=job_settings("translator"),
        out_dir=f"{RUN}/translator",
    threads: TRAIN_THREADS
    resources:
        gpu=stage_gpus("translator"),
    log:
        f"{LOGS}/translator.log",
    benchmark:
        f"{BENCHMARKS}/translator.tsv"
    conda:
        "../../environment.yml"
    shell:
        "diga --threads {threads} translator --config {params.settings:q} --seed {wildcards.seed} --out-dir {params.out_dir} > {log} 2>&1"
