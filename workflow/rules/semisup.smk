# Semi-supervised segmentation (`snakemake semisup`), one run per labelled split of target train ({split}: 1-<n>,
# the labelled 1/n, from semisup.splits): the supervised-only baseline and the warm-up on the labelled part, the
# warm-up's pseudo-labels of the unlabelled part and centroids of all of target train, self-training rounds, each
# model evaluated on target val, and the table over splits and seeds.

SEMI = f"{RESULTS}/semisup/{{split}}/seed{{seed}}"
SEMI_LOGS = f"{RESULTS}/logs/semisup/{{split}}/seed{{seed}}"
SEMI_BENCHMARKS = f"{RESULTS}/benchmarks/semisup/{{split}}/seed{{seed}}"
SPLIT_RECORD = f"{RESULTS}/semisup/{{split}}/split.json"


rule semisup_split:
    input:
        manifest=TARGET_MANIFEST,
    output:
        record=SPLIT_RECORD,
    params:
        settings=settings("semisup_split"),
    threads: 1
    log:
        f"{RESULTS}/logs/semisup/{{split}}/split.log",
    conda:
        "../../environment.yml"
    shell:
        "diga --threads {threads} semisup-split --config {params.settings:q} --split {wildcards.split}"
        " --out {output.record} > {log} 2>&1"


for _stage in ("semisup_supervised", "semisup_warmup"):

    rule:
        name:
            _stage
        input:
            split=SPLIT_RECORD,
            weights=WEIGHTS_CHECK,
        output:
            model=f"{SEMI}/{_stage}/model.pt",
            log_csv=f"{SEMI}/{_stage}/train_log.csv",
            best=[f"{SEMI}/{_stage}/model_best.pt"] if BEST else [],
        params:
            settings=job_settings(_stage),
            out_dir=f"{SEMI}/{_stage}",
            command=STAGES[_stage].command,
        threads: TRAIN_THREADS
        resources:
            gpu=stage_gpus(_stage),
        log:
            f"{SEMI_LOGS}/{_stage}.log",
        benchmark:
            f"{SEMI_BENCHMARKS}/{_stage}.tsv"
        conda:
            "../../environment.yml"
        shell:
            "diga --threads {threads} {params.command} --config {params.settings:q} --seed {wildcards.seed}"
            " --split {wildcards.split} --out-dir {params.out_dir} > {log} 2>&1"


rule semisup_pseudolabels:
    input:
        model=f"{SEMI}/{{stage}}/{CONTINUE_FROM}",
        split=SPLIT_RECORD,
    output:
        labels=directory(f"{SEMI}/{{stage}}/pseudolabels"),
        summary=f"{SEMI}/{{stage}}/pseudolabels.json",
    params:
        # the split's unlabelled images (target train as semisup_settings maps it)
        settings=lambda wildcards: semisup_job_settings("pseudolabels", wildcards),
    threads: 1
    resources:
        gpu=stage_gpus("pseudolabels"),
    log:
        f"{SEMI_LOGS}/pseudolabels_{{stage}}.log",
    conda:
        "../../environment.yml"
    shell:
        "diga --threads {threads} pseudolabels --config {params.settings:q} --checkpoint {input.model}"
        " --out-dir {output.labels} --summary {output.summary} > {log} 2>&1"


rule semisup_centroids:
    input:
        model=f"{SEMI}/{{stage}}/{CONTINUE_FROM}",
    output:
        centroids=f"{SEMI}/{{stage}}/centroids.pt",
    params:
        settings=job_settings("centroids"),  # all of target train, as the official code computes them
    threads: 1
    resources:
        gpu=stage_gpus("centroids"),
    log:
        f"{SEMI_LOGS}/centroids_{{stage}}.log",
    conda:
        "../../environment.yml"
    shell:
        "diga --threads {threads} centroids --config {params.settings:q} --checkpoint {input.model}"
        " --out {output.centroids} > {log} 2>&1"


rule semisup_selftrain:
    input:
        unpack(semisup_selftrain_inputs),
        split=SPLIT_RECORD,
    output:
        model=f"{SEMI}/semisup_selftrain{{round}}/model.pt",
        log_csv=f"{SEMI}/semisup_selftrain{{round}}/train_log.csv",
        best=[f"{SEMI}/semisup_selftrain{{round}}/model_best.pt"] if BEST else [],
    params:
        settings=job_settings("semisup_selftrain"),
        out_dir=f"{SEMI}/semisup_selftrain{{round}}",
    threads: TRAIN_THREADS
    resources:
        gpu=stage_gpus("semisup_selftrain"),
    log:
        f"{SEMI_LOGS}/semisup_selftrain{{round}}.log",
    benchmark:
        f"{SEMI_BENCHMARKS}/semisup_selftrain{{round}}.tsv"
    conda:
        "../../environment.yml"
    shell:
        "diga --threads {threads} semisup-selftrain --config {params.settings:q} --seed {wildcards.seed}"
        " --split {wildcards.split} --round {wildcards.round} --init {input.init}"
        " --pseudolabels {input.pseudolabels} --centroids {input.centroids} --out-dir {params.out_dir} > {log} 2>&1"


rule semisup_evaluate:
    input:
        model=f"{SEMI}/{{stage}}/model{{best}}.pt",
    output:
        metrics=f"{SEMI}/{{stage}}/metrics{{best}}.json",
    params:
        settings=job_settings("evaluate"),
        kind=lambda wildcards: "best" if wildcards.best else "last",
    wildcard_constraints:
        best="(_best)?",
    threads: 1
    resources:
        gpu=stage_gpus("evaluate"),
    log:
        f"{SEMI_LOGS}/evaluate_{{stage}}{{best}}.log",
    conda:
        "../../environment.yml"
    shell:
        "diga --threads {threads} evaluate --config {params.settings:q} --seed {wildcards.seed} --stage {wildcards.stage}"
        " --kind {params.kind} --checkpoint {input.model} --out {output.metrics} > {log} 2>&1"


rule semisup_table:
    input:
        metrics=semisup_metrics,
        references=REFERENCES,
    output:
        md=report(f"{RESULTS}/semisup_table.md", caption="../report/semisup_table.rst", category="Tables"),
        csv=f"{RESULTS}/semisup_table.csv",
        tex=f"{RESULTS}/semisup_table.tex",
    params:
        settings=settings("semisup_table"),
        stem=output_stem,
    threads: 1
    log:
        f"{RESULTS}/logs/semisup_table.log",
    conda:
        "../../environment.yml"
    shell:
        "diga --threads {threads} semisup-table --config {params.settings:q} --metrics {input.metrics}"
        " --references {input.references} --out-stem {params.stem} > {log} 2>&1"


rule semisup:
    input:
        rules.semisup_table.output,
