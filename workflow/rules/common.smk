# Shared helpers: output paths, stage lists, and the per-stage settings handed to the diga CLI.
import json
import os

BENCH = config["benchmark"]
SEEDS = config["seeds"]
ROUNDS = config["stages"]["selftrain"]["rounds"]
RESULTS = f"results/{BENCH}"
RUN = f"{RESULTS}/seed{{seed}}"
LOGS = f"{RESULTS}/logs/seed{{seed}}"
BENCHMARKS = f"{RESULTS}/benchmarks/seed{{seed}}"
DATA_ROOT = os.path.normpath(config["data"]["root"])
# Real datasets (datasets.source/target set): fetch_<dataset> + prepare build data.{source,target}.root under
# data.root; otherwise (ToyCity) make_toy generates data.root.
REAL_DATA = config["datasets"]["source"] is not None or config["datasets"]["target"] is not None
PREPARED = {}  # prepared folder name -> dataset name
if REAL_DATA:
    for _domain in ("source", "target"):
        _root = os.path.normpath(config["data"][_domain]["root"])
        if config["datasets"][_domain] is None or os.path.dirname(_root) != DATA_ROOT:
            raise ValueError(
                f"with real datasets, datasets.source and datasets.target must both be set and data.{_domain}.root "
                f"({_root}) must be a folder directly under data.root ({DATA_ROOT})"
            )
        PREPARED[os.path.basename(_root)] = config["datasets"][_domain]
    MANIFEST = [f"{DATA_ROOT}/{name}/manifest.json" for name in PREPARED]
else:
    MANIFEST = f"{DATA_ROOT}/manifest.json"
# Initial weights named by the config are found (and hashed) by check_weights before any training job.
NEEDS_WEIGHTS = config["model"]["init"] != "random" or config["translator"]["perceptual_weight"] > 0
WEIGHTS_CHECK = [f"{RESULTS}/initial_weights.json"] if NEEDS_WEIGHTS else []
# "Best on val" checkpoints (evaluate.val_every > 0): each training stage also writes model_best.pt, evaluated
# into metrics_best.json beside the last-iteration model; the training jobs then read the evaluate section too.
BEST = config["evaluate"]["val_every"] > 0
TRAIN_EVAL = ("evaluate",) if BEST else ()
SELFTRAIN_STAGES = [f"selftrain{r}" for r in range(1, ROUNDS + 1)]
ORACLE = config["stages"]["oracle"]["enabled"] and config["data"]["target"]["train_has_labels"]
EVALUATED_STAGES = ["source_only", "warmup", *SELFTRAIN_STAGES] + (["oracle"] if ORACLE else [])


wildcard_constraints:
    seed=r"\d+",
    round=r"\d+",
    stage="source_only|warmup|oracle|selftrain\\d+",


def settings(*sections, seed=None, stage=None):
    """The slice of the config one job needs, as JSON for `diga --config`.

    Passing only the sections a stage reads makes Snakemake's params trigger rerun exactly the jobs
    whose settings changed (a table option never retrains a model).
    """
    picked = {"benchmark": BENCH, "seeds": [int(seed)] if seed is not None else SEEDS, "data": config["data"]}
    for section in sections:
        picked[section] = config[section]
    if stage is not None:
        picked["stages"] = {stage: config["stages"][stage]}
    return json.dumps(picked, sort_keys=True)


def model_of(stage):
    return f"{RUN}/{stage}/model.pt".replace("{stage}", stage)


def previous_stage(round_index):
    """Round 1 starts from the warm-up model; round r from round r-1."""
    return "warmup" if int(round_index) == 1 else f"selftrain{int(round_index) - 1}"


def centroid_stage(round_index):
    """The official code reuses the warm-up centroids in every round; 'previous' recomputes them."""
    if config["stages"]["selftrain"]["centroids_from"] == "warmup":
        return "warmup"
    return previous_stage(round_index)


def best_output(stage):
    """model_best.pt of a training stage when best-on-val checkpoints are on, else nothing."""
    return [f"{RUN}/{stage}/model_best.pt"] if BEST else []


def table_metrics():
    """Every evaluated stage's metrics, plus the best-on-val checkpoints' when they are on."""
    files = expand(f"{RUN}/{{stage}}/metrics.json", seed=SEEDS, stage=EVALUATED_STAGES)
    if BEST:
        files += expand(f"{RUN}/{{stage}}/metrics_best.json", seed=SEEDS, stage=EVALUATED_STAGES)
    return files


def table_outputs():
    return [f"{RESULTS}/table.md", f"{RESULTS}/table.csv"]


def stage_outputs(stage, filename="model.pt"):
    return expand(f"{RUN}/{stage}/{filename}", seed=SEEDS)


def job_settings(*sections, stage=None):
    """An input function: the settings of one seed's job."""

    def for_job(wildcards):
        return settings(*sections, seed=wildcards.seed, stage=stage)

    return for_job


def dataset_root(wildcards, output):
    """The dataset folder is the one holding the manifest."""
    return os.path.dirname(output.manifest)


def selftrain_inputs(wildcards):
    previous = previous_stage(wildcards.round)
    run = RUN.replace("{seed}", wildcards.seed)
    return {
        "init": f"{run}/{previous}/model.pt",
        "pseudolabels": f"{run}/{previous}/pseudolabels.json",
        "centroids": f"{run}/{centroid_stage(wildcards.round)}/centroids.pt",
        "translator": f"{run}/translator/translator.pt",
    }


def pseudolabel_dir(wildcards):
    """The folder of PNGs beside the summary JSON that selftrain_inputs names."""
    return f"{RUN}/{previous_stage(wildcards.round)}/pseudolabels".replace("{seed}", wildcards.seed)


def data_settings(dataset, with_classes=False):
    """A complete config holding only what a data job reads: data.root, one dataset's acquisition settings and
    (prepare) data.num_classes.

    The list fields are placeholders: leaving the training options and the other datasets out means switching
    benchmark or crop size never re-acquires or re-prepares a dataset.
    """
    root = config["data"]["root"]
    picked = {
        "benchmark": "data",
        "seeds": [0],
        "data": {
            "root": root,
            "num_classes": config["data"]["num_classes"] if with_classes else 19,
            "source": {"root": root, "train_list": "-"},
            "target": {"root": root, "train_list": "-", "val_list": "-"},
        },
        "datasets": {"strict_counts": config["datasets"]["strict_counts"], dataset: config["datasets"][dataset]},
    }
    return json.dumps(picked, sort_keys=True)


def prepare_settings(wildcards):
    return data_settings(PREPARED[wildcards.prepared], with_classes=True)


def prepare_receipt(wildcards):
    return f"{DATA_ROOT}/raw/{PREPARED[wildcards.prepared]}.json"


def prepared_dataset(wildcards):
    return PREPARED[wildcards.prepared]


def weights_settings():
    """What check_weights reads (model.init, the translator's perceptual-loss settings), in a complete config."""
    picked = json.loads(data_settings("cityscapes"))
    picked.pop("datasets")
    picked["model"] = config["model"]
    picked["translator"] = config["translator"]
    return json.dumps(picked, sort_keys=True)
