# The paper's tables and figures from the metrics on disk, and what `snakemake --report` gathers.
# None of these rules trains: editing config/references.yaml or a table option reruns only them.


rule table:
    input:
        metrics=table_metrics(),
        references=REFERENCES,
    output:
        md=report(f"{RESULTS}/table.md", caption="../report/table.rst", category="Tables"),
        csv=f"{RESULTS}/table.csv",
        tex=f"{RESULTS}/table.tex",
    params:
        settings=settings("table"),
        stem=output_stem,
    threads: 1
    log:
        f"{RESULTS}/logs/table.log",
    benchmark:
        f"{RESULTS}/benchmarks/table.tsv"
    conda:
        "../../environment.yml"
    shell:
        "diga --threads {threads} table --config {params.settings:q} --metrics {input.metrics}"
        " --references {input.references} --out-stem {params.stem} > {log} 2>&1"


rule ablation_table:
    input:
        metrics=ablation_metrics(),
    output:
        md=report(f"{RESULTS}/tables/ablations.md", caption="../report/ablations.rst", category="Tables"),
        csv=f"{RESULTS}/tables/ablations.csv",
        tex=f"{RESULTS}/tables/ablations.tex",
    params:
        settings=settings("ablation_table"),
        stem=output_stem,
        final=FINAL_STAGE,
    threads: 1
    log:
        f"{RESULTS}/logs/ablation_table.log",
    benchmark:
        f"{RESULTS}/benchmarks/ablation_table.tsv"
    conda:
        "../../environment.yml"
    shell:
        "diga --threads {threads} ablation-table --config {params.settings:q} --metrics {input.metrics}"
        " --final-stage {params.final} --out-stem {params.stem} > {log} 2>&1"


rule pseudolabel_table:
    input:
        unpack(pseudolabel_table_inputs),
    output:
        md=report(f"{RESULTS}/tables/pseudolabels.md", caption="../report/pseudolabels.rst", category="Tables"),
        csv=f"{RESULTS}/tables/pseudolabels.csv",
        tex=f"{RESULTS}/tables/pseudolabels.tex",
    params:
        settings=settings("pseudolabel_table"),
        stem=output_stem,
    threads: 1
    log:
        f"{RESULTS}/logs/pseudolabel_table.log",
    benchmark:
        f"{RESULTS}/benchmarks/pseudolabel_table.tsv"
    conda:
        "../../environment.yml"
    shell:
        "diga --threads {threads} pseudolabel-table --config {params.settings:q} --train-logs {input.logs}"
        " --summaries {input.summaries} --out-stem {params.stem} > {log} 2>&1"


rule figures:
    input:
        unpack(figure_inputs),
    output:
        png=[
            report(f"{RESULTS}/figures/{name}.png", caption=f"../report/{name}.rst", category="Figures")
            for name in FIGURES
        ],
        pdf=[f"{RESULTS}/figures/{name}.pdf" for name in FIGURES],
    params:
        settings=settings("figures"),
        pairs=stage_pairs,
        final=FINAL_STAGE,
        out_dir=output_folder,
    threads: 1
    log:
        f"{RESULTS}/logs/figures.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures.tsv"
    conda:
        "../../environment.yml"
    shell:
        "diga --threads {threads} figures --config {params.settings:q} --metrics {input.metrics}"
        " --logs {params.pairs[logs]} --models {params.pairs[models]} --final-stage {params.final}"
        " --out-dir {params.out_dir} > {log} 2>&1"


rule run_info:
    output:
        report(f"{RESULTS}/run_info.md", caption="../report/run_info.rst", category="Run"),
    params:
        settings=json.dumps(config, sort_keys=True),
    threads: 1
    log:
        f"{RESULTS}/logs/run_info.log",
    benchmark:
        f"{RESULTS}/benchmarks/run_info.tsv"
    conda:
        "../../environment.yml"
    shell:
        "diga --threads {threads} run-info --config {params.settings:q} --out {output} > {log} 2>&1"


rule ablations:
    input:
        rules.ablation_table.output,
