# Stage 2: warm-up on source only: CE + symmetric distillation with the EMA teacher, the second view
# being the cross-domain mixture of augmented source and its translation.


rule warmup:
    input:
        manifest=MANIFEST,
        weights=WEIGHTS_CHECK,
        translator=stage_file("translator", "translator.pt"),
    output:
        model=f"{RUN}/warmup/model.pt",
        log_csv=f"{RUN}/warmup/train_log.csv",
        best=best_output("warmup"),
    params:
        settings=job_settings("warmup"),
        out_dir=f"{RUN}/warmup",
    threads: TRAIN_THREADS
    resources:
        gpu=stage_gpus("warmup"),
    log:
        f"{LOGS}/warmup.log",
    benchmark:
        f"{BENCHMARKS}/warmup.tsv"
    conda:
        "../../environment.yml"
    shell:
        "diga --threads {threads} warmup --config {params.settings:q} --seed {wildcards.seed} --translator {input.translator}"
        " --out-dir {params.out_dir} > {log} 2>&1"
