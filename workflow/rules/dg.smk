# Domain generalisation (`snakemake dg`): the DG warm-up (the warm-up's loss on source alone, the photometric view
# as the second view) and the source-only baseline, each evaluated on every unseen dataset of dg.targets, and the
# DG table. No target image reaches a loss (unless stages.dg_warmup.target_bn_leak, the official code's BN leak).

if TOY_STYLE_ROOTS:

    rule make_toy_style:
        output:
            manifest="{style_root}/manifest.json",
        params:
            settings=settings("make_toy"),
            style=lambda wildcards: TOY_STYLE_ROOTS[wildcards.style_root],
        wildcard_constraints:
            style_root="|".join(re.escape(root) for root in TOY_STYLE_ROOTS),
        threads: 1
        log:
            f"{RESULTS}/logs/make_toy_style/{{style_root}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/make_toy_style/{{style_root}}.tsv",
        conda:
            "../../environment.yml"
        shell:
            "diga --threads {threads} make-toy --config {params.settings:q} --style {params.style}"
            " --out {wildcards.style_root} > {log} 2>&1"


rule dg_warmup:
    input:
        manifest=MANIFEST,
        weights=WEIGHTS_CHECK,
    output:
        model=f"{RUN}/dg_warmup/model.pt",
        log_csv=f"{RUN}/dg_warmup/train_log.csv",
        best=best_output("dg_warmup"),
    params:
        settings=job_settings("dg_warmup"),
        out_dir=f"{RUN}/dg_warmup",
    threads: TRAIN_THREADS
    resources:
        gpu=stage_gpus("dg_warmup"),
    log:
        f"{LOGS}/dg_warmup.log",
    benchmark:
        f"{BENCHMARKS}/dg_warmup.tsv"
    conda:
        "../../environment.yml"
    shell:
        "diga --threads {threads} dg-warmup --config {params.settings:q} --seed {wildcards.seed}"
        " --out-dir {params.out_dir} > {log} 2>&1"


rule evaluate_dg:
    input:
        model=f"{RUN}/{{stage}}/model{{best}}.pt",
        data=dg_target_data,
    output:
        metrics=f"{RUN}/{{stage}}/dg/{{target}}/metrics{{best}}.json",
    params:
        settings=job_settings("evaluate_dg"),
        variant=variant_label,
        kind=lambda wildcards: "best" if wildcards.best else "last",
    wildcard_constraints:
        best="(_best)?",
        target="|".join(DG_TARGETS) or "no-dg-target",
    threads: 1
    resources:
        gpu=stage_gpus("evaluate_dg"),
    log:
        f"{LOGS}/evaluate_dg_{{stage}}_{{target}}{{best}}.log",
    benchmark:
        f"{BENCHMARKS}/evaluate_dg_{{stage}}_{{target}}{{best}}.tsv"
    conda:
        "../../environment.yml"
    shell:
        "diga --threads {threads} evaluate-dg --config {params.settings:q} --seed {wildcards.seed}"
        " --stage {wildcards.stage} --target {wildcards.target} --variant {params.variant} --kind {params.kind}"
        " --checkpoint {input.model} --out {output.metrics} > {log} 2>&1"


rule dg_table:
    input:
        metrics=dg_metrics,
        references=REFERENCES,
    output:
        md=report(f"{RESULTS}/dg_table.md", caption="../report/dg_table.rst", category="Tables"),
        csv=f"{RESULTS}/dg_table.csv",
        tex=f"{RESULTS}/dg_table.tex",
        per_class=multiext(f"{RESULTS}/dg_table_per_class", ".csv", ".tex"),
    params:
        settings=settings("dg_table"),
        stem=output_stem,
    threads: 1
    log:
        f"{RESULTS}/logs/dg_table.log",
    benchmark:
        f"{RESULTS}/benchmarks/dg_table.tsv"
    conda:
        "../../environment.yml"
    shell:
        "diga --threads {threads} dg-table --config {params.settings:q} --metrics {input.metrics}"
        " --references {input.references} --out-stem {params.stem} > {log} 2>&1"


rule dg:
    input:
        rules.dg_table.output,
