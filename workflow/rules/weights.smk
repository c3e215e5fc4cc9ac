# Initial weights (the DeepLab init for model.init, VGG19 for the translator's perceptual loss): found and hashed
# before any training job, so a missing file stops the run with where to get it instead of a random init.
# Only in the DAG when the config names weights (model.init not random, or stages.translator.perceptual_weight > 0).


rule check_weights:
    output:
        record=f"{RESULTS}/initial_weights.json",
    params:
        settings=weights_settings(),
    threads: 1
    log:
        f"{RESULTS}/logs/check_weights.log",
    conda:
        "../../environment.yml"
    shell:
        "diga check-weights --config {params.settings:q} --out {output.record} > {log} 2>&1"
