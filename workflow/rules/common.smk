# Shared helpers: output paths, stage lists, config variants, and the per-job settings handed to the diga CLI.
# The workflow reads the package's table of stages and config checks: install the package first (README).
import copy
import hashlib
import json
import os

from diga.config import check_batches, check_official_switches, pick
from diga.stages import STAGES, parse_folder
from diga.stages import gpus as stage_gpus_of

BENCH = config["benchmark"]
SEEDS = config["seeds"]
ROUNDS = config["stages"]["selftrain"]["rounds"]
TRAIN_THREADS = config["train"]["threads"]  # the training rules' `threads:` (a cluster profile's set-threads wins)
RESULTS = f"results/{BENCH}"
# {variant} is empty for the main run and "ablations/<name>/" for a config variant (see `ablations` below).
RUN = f"{RESULTS}/{{variant}}seed{{seed}}"
LOGS = f"{RESULTS}/logs/{{variant}}seed{{seed}}"
BENCHMARKS = f"{RESULTS}/benchmarks/{{variant}}seed{{seed}}"
DATA_ROOT = os.path.normpath(config["data"]["root"])
# Real datasets (datasets.source/target set): fetch + prepare build data.{source,target}.root under
# data.root; otherwise (ToyCity) make_toy generates data.root.
REAL_DATA = config["datasets"]["source"] is not None or config["datasets"]["target"] is not None
PREPARED = {}  # prepared folder name -> dataset name
PREPARED_DOMAIN = {}  # prepared folder name -> "source" or "target"
if REAL_DATA:
    for _domain in ("source", "target"):
        _root = os.path.normpath(config["data"][_domain]["root"])
        if config["datasets"][_domain] is None or os.path.dirname(_root) != DATA_ROOT:
            raise ValueError(
                f"with real datasets, datasets.source and datasets.target must both be set and data.{_domain}.root "
                f"({_root}) must be a folder directly under data.root ({DATA_ROOT})"
            )
        PREPARED[os.path.basename(_root)] = config["datasets"][_domain]
        PREPARED_DOMAIN[os.path.basename(_root)] = _domain
    MANIFEST = [f"{DATA_ROOT}/{name}/manifest.json" for name in PREPARED]
else:
    MANIFEST = f"{DATA_ROOT}/manifest.json"
    for _domain in ("source", "target"):
        if config["data"][_domain]["streams"]:
            raise ValueError(f"data.{_domain}.streams needs a prepared real dataset (datasets.source/target); "
                             "ToyCity has no resized copies: remove the streams")
check_batches(config, "the config")  # the batch compositions against the streams
check_official_switches(config, "the config")
# Initial weights named by the config are found (and hashed) by check_weights before any training job.
NEEDS_WEIGHTS = config["model"]["init"] != "random" or config["stages"]["translator"]["perceptual_weight"] > 0
WEIGHTS_CHECK = [f"{RESULTS}/initial_weights.json"] if NEEDS_WEIGHTS else []
# "Best on val" checkpoints (evaluate.val_every > 0): each training stage also writes model_best.pt, evaluated
# into metrics_best.json beside the last-iteration model; the training jobs then read the evaluate section too.
BEST = config["evaluate"]["val_every"] > 0
TRAIN_EVAL = ["evaluate"] if BEST else []
# The model each later stage (pseudo-labels, centroids, the next round) continues from: the last iteration's, or
# the best-on-val checkpoint (evaluate.continue_from: best, as the official code, which only ever saves that one).
CONTINUE_FROM = "model_best.pt" if config["evaluate"]["continue_from"] == "best" else "model.pt"
if CONTINUE_FROM == "model_best.pt" and not BEST:
    raise ValueError("evaluate.continue_from is 'best' but evaluate.val_every is 0, so no best-on-val checkpoint is "
                     "kept: set evaluate.val_every (the official code: 1000) or evaluate.continue_from: last")
# Repository files named in the config resolve against the working directory first, then the repository.
REFERENCES = next((p for p in (config["references"], os.path.join(workflow.basedir, config["references"]))
                   if os.path.exists(p)), config["references"])
SELFTRAIN_STAGES = [f"selftrain{r}" for r in range(1, ROUNDS + 1)]
FINAL_STAGE = SELFTRAIN_STAGES[-1]
ORACLE = config["stages"]["oracle"]["enabled"] and config["data"]["target"]["train_has_labels"]
EVALUATED_STAGES = ["source_only", "warmup", *SELFTRAIN_STAGES] + (["oracle"] if ORACLE else [])
VARIANTS = config["ablations"]["variants"]
for _name in config["ablations"]["run"]:
    if _name not in VARIANTS:
        raise ValueError(f"ablations.run names {_name!r}, which is not in ablations.variants ({', '.join(VARIANTS)})")

# The config sections each job reads: a stage's from its record (diga/stages.py), the other jobs' here. They are all
# a job gets, so Snakemake's params trigger reruns exactly the jobs whose settings changed, and a variant reuses
# every stage it does not change.
RULE_SECTIONS = {
    **{name: list(stage.sections(config)) for name, stage in STAGES.items()},
    "make_toy": ["toycity"],
    "check_weights": ["model.init", "stages.translator.perceptual_weight", "stages.translator.vgg_weights"],
    "table": [],
    "pseudolabel_table": [],
    "ablation_table": ["ablations.descriptions"],
    "figures": ["data", "evaluate", "train.device"],  # the qualitative grid runs inference
}


def stage_gpus(name):
    """The GPUs a stage's job asks Slurm for (its record says whether stages.<name>.gpus sets them)."""
    return stage_gpus_of(name, config)


def variant_name(variant):
    """'' -> '' (the main run); 'ablations/skd_only/' -> 'skd_only'."""
    return variant.removeprefix("ablations/").rstrip("/")


def merged(base, overrides):
    result = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def variant_config(variant):
    name = variant_name(variant)
    return merged(config, VARIANTS[name]) if name else config


def changed_sections(variant):
    """The sections a variant overrides: top-level keys, or 'stages.<stage>'."""
    name = variant_name(variant)
    if not name:
        return set()
    overrides = VARIANTS[name]
    keys = {k for k in overrides if k != "stages"}
    return keys | {f"stages.{stage}" for stage in overrides.get("stages", {})}


def previous_stage(round_index):
    """Round 1 starts from the warm-up model; round r from round r-1."""
    return "warmup" if int(round_index) == 1 else f"selftrain{int(round_index) - 1}"


def centroid_stage(round_index, cfg=config):
    """The official code reuses the warm-up centroids in every round; 'previous' recomputes them."""
    if cfg["stages"]["selftrain"]["centroids_from"] == "warmup":
        return "warmup"
    return previous_stage(round_index)


def stage_reads(stage):
    """Every config section that a stage's model depends on, upstream stages included."""
    record, round_index = parse_folder(stage)
    if record.rounds:
        previous = previous_stage(round_index)
        return ({*RULE_SECTIONS[record.name], *RULE_SECTIONS["pseudolabels"], *RULE_SECTIONS["centroids"]}
                | stage_reads(previous) | stage_reads(centroid_stage(round_index)))
    reads = set(RULE_SECTIONS[stage])
    return reads | stage_reads("translator") if stage == "warmup" else reads


def overlap(changed, reads):
    """Whether changed sections and read sections meet: the same, or one inside the other (train and
    train.device, evaluate.val_every and evaluate)."""
    return any(c == r or r.startswith(f"{c}.") or c.startswith(f"{r}.") for c in changed for r in reads)


def run_of(variant, stage):
    """The run folder prefix holding `stage` for this variant: the main run's where the variant changes nothing
    that the stage depends on."""
    return variant if overlap(changed_sections(variant), stage_reads(stage)) else ""


def stage_file(stage, filename):
    """An input function: `filename` of `stage` for the job's seed and variant."""

    def for_job(wildcards):
        return f"{RESULTS}/{run_of(wildcards.variant, stage)}seed{wildcards.seed}/{stage}/{filename}"

    return for_job


def slice_settings(sections, cfg=config, seeds=None):
    """A job's config slice as JSON for `diga --config`: the benchmark, the seeds and exactly `sections`; the job
    fills defaults only inside them and reads nothing else."""
    return json.dumps(pick(cfg, sections, seeds), sort_keys=True)


def settings(rule_name, seed=None, variant=""):
    """The slice of the (variant's) config one job reads (RULE_SECTIONS), as JSON for `diga --config`."""
    # A job reads the seed it trains with, or (tables, figures) all of them; the dataset generator none, so adding
    # seeds never regenerates ToyCity (and retrains the seeds already done).
    seeds = [int(seed)] if seed is not None else [0] if rule_name == "make_toy" else SEEDS
    return slice_settings(RULE_SECTIONS[rule_name], variant_config(variant), seeds)


def job_settings(rule_name):
    """An input function: the settings of one job (its seed and variant)."""

    def for_job(wildcards):
        return settings(rule_name, seed=wildcards.seed, variant=wildcards.get("variant", ""))

    return for_job


def variant_label(wildcards):
    """The variant's name as recorded in metrics ('main' for the main run)."""
    return variant_name(wildcards.variant) or "main"


def dataset_root(wildcards, output):
    """The dataset folder is the one holding the manifest."""
    return os.path.dirname(output.manifest)


def selftrain_inputs(wildcards):
    round_index = int(wildcards.round)
    previous = previous_stage(round_index)
    cfg = variant_config(wildcards.variant)
    return {
        "init": stage_file(previous, CONTINUE_FROM)(wildcards),
        "pseudolabels": stage_file(previous, "pseudolabels")(wildcards),
        "centroids": stage_file(centroid_stage(round_index, cfg), "centroids.pt")(wildcards),
        "translator": stage_file("translator", "translator.pt")(wildcards),
    }


def metrics_files(variant="", stages=None):
    return expand(f"{RESULTS}/{variant}seed{{seed}}/{{stage}}/metrics.json", seed=SEEDS,
                  stage=stages or EVALUATED_STAGES)


def table_metrics():
    """Every evaluated stage's metrics, plus the best-on-val checkpoints' when they are on."""
    files = metrics_files()
    if BEST:
        files += expand(f"{RESULTS}/seed{{seed}}/{{stage}}/metrics_best.json", seed=SEEDS, stage=EVALUATED_STAGES)
    return files


def best_output(stage):
    """model_best.pt of a training stage when best-on-val checkpoints are on, else nothing."""
    return [f"{RUN}/{stage}/model_best.pt"] if BEST else []


FIGURES = ["training_curves", "per_class_iou", "qualitative", "confusion_final"]


def final_outputs():
    """What `all` builds: the main table, the figures, the run info and, where target-train labels
    exist, the pseudo-label quality table. Ablations are their own target (`snakemake ablations`)."""
    outputs = [f"{RESULTS}/table.{ext}" for ext in ("md", "csv", "tex")]
    outputs += [f"{RESULTS}/figures/{name}.{ext}" for name in FIGURES for ext in ("png", "pdf")]
    outputs.append(f"{RESULTS}/run_info.md")
    if config["data"]["target"]["train_has_labels"]:
        outputs += [f"{RESULTS}/tables/pseudolabels.{ext}" for ext in ("md", "csv", "tex")]
    return outputs


def ablation_metrics():
    """The main run's rows and, per selected variant, the stage its ablation row reports."""
    files = metrics_files(stages=["source_only", "warmup", FINAL_STAGE])
    for name in config["ablations"]["run"]:
        # A variant reports the warm-up if it changes it, and the final round if it changes what self-training
        # itself reads (or nothing earlier): skd_only -> warm-up, fixed_threshold -> final, official_code -> both.
        changed = changed_sections(f"ablations/{name}/")
        stages = ["warmup"] if overlap(changed, stage_reads("warmup")) else []
        if overlap(changed, RULE_SECTIONS["selftrain"]) or not stages:
            stages.append(FINAL_STAGE)
        files += metrics_files(f"ablations/{name}/", stages)
    return files


def pseudolabel_table_inputs(wildcards):
    """Each main-run round's training log, and the pseudo-label summary of the stage it learned from."""
    logs, summaries = [], []
    for seed in SEEDS:
        for round_index in range(1, ROUNDS + 1):
            logs.append(f"{RESULTS}/seed{seed}/selftrain{round_index}/train_log.csv")
            summaries.append(f"{RESULTS}/seed{seed}/{previous_stage(round_index)}/pseudolabels.json")
    return {"logs": logs, "summaries": summaries}


def figure_inputs(wildcards):
    """Metrics of every stage and seed; the first seed's training logs and the models of the qualitative grid."""
    return {"metrics": metrics_files(), **{kind: list(pairs.values()) for kind, pairs in figure_pairs().items()}}


# The stages of the figures: training curves of every trained stage, the qualitative grid of three models.
CURVE_STAGES = ["translator", *EVALUATED_STAGES]
GRID_STAGES = ["source_only", "warmup", FINAL_STAGE]


def figure_pairs():
    """The first seed's training logs and grid models, by stage."""
    run = f"{RESULTS}/seed{SEEDS[0]}"
    return {"logs": {stage: f"{run}/{stage}/train_log.csv" for stage in CURVE_STAGES},
            "models": {stage: f"{run}/{stage}/model.pt" for stage in GRID_STAGES}}


def stage_pairs(wildcards, input):
    """STAGE=PATH arguments of the figures job."""
    return {kind: " ".join(f"{stage}={path}" for stage, path in pairs.items()) for kind, pairs in figure_pairs().items()}


def output_stem(wildcards, output):
    """A table's outputs differ only by suffix: pass the common stem."""
    return os.path.splitext(output.md)[0]


def output_folder(wildcards, output):
    return os.path.dirname(output.png[0])


def fetch_settings():
    """The fetch job's settings, as a function of the output: Snakemake leaves such params out of its rerun check,
    so pinning checksums, changing the url or retries, or moving archive_dir to where the same files are reruns
    nothing. What does change the acquired data is compared through archive_identity."""

    def for_job(wildcards, output):
        return slice_settings(["datasets.strict_counts", f"datasets.{wildcards.dataset}", "data.root"], seeds=[0])

    return for_job


def archive_identity(dataset):
    """A token for the state of a dataset's archives (or extracted folder); a param of its fetch job, so a new
    token reruns it.

    An archive is identified by its name, size and modification time (whole seconds), not by its sha256, which would
    mean reading tens of GB each time the workflow starts; the fetch job then reads it and checks the sha256. The
    receipt of the last fetch records the archives it ingested and the token it was given. While the way, the
    archive names and (way: folder) the folder are the same, the acquired tree exists, and every archive still in
    archive_dir has the recorded size and time (deleted ones count as unchanged: the extracted tree stands for them),
    the token is the recorded one and nothing reruns; otherwise it is a new one.
    """
    spec = config["datasets"][dataset]
    try:
        with open(f"{DATA_ROOT}/raw/{dataset}.json") as handle:
            receipt = json.load(handle)
    except (OSError, ValueError):
        return "new"  # no receipt: the fetch runs anyway
    current = {"way": spec["way"], "archive_names": spec["archive_names"]}
    if spec["way"] == "folder":
        current["folder"] = os.path.realpath(spec["folder"]) if spec["folder"] else None
    changed = any(receipt.get(key) != value for key, value in current.items())
    changed = changed or not os.path.isdir(receipt.get("tree", ""))  # the acquired tree was deleted
    archive_dir = spec["archive_dir"] or f"{DATA_ROOT}/downloads/{dataset}"
    for name, entry in receipt.get("archives", {}).items():
        path = os.path.join(archive_dir, name)
        if os.path.isfile(path):
            stat = os.stat(path)
            current[name] = {"size": stat.st_size, "mtime": int(stat.st_mtime)}
            changed = changed or current[name] != {"size": entry.get("size"), "mtime": entry.get("mtime")}
    if receipt.get("identity") and not changed:
        return receipt["identity"]
    digest = hashlib.sha256(json.dumps(current, sort_keys=True).encode()).hexdigest()[:16]
    return f"changed-{digest}"


def prepare_settings(wildcards):
    """The data job's settings plus its domain's training list and resize streams (`diga prepare --domain`); not
    the acquisition settings (the receipt, an input, stands for what was acquired)."""
    domain = PREPARED_DOMAIN[wildcards.prepared]
    return slice_settings(["data.num_classes", "datasets.strict_counts", f"data.{domain}.train_list",
                           f"data.{domain}.streams"], seeds=[0])


def prepared_domain(wildcards):
    return PREPARED_DOMAIN[wildcards.prepared]


def prepare_receipt(wildcards):
    return f"{DATA_ROOT}/raw/{PREPARED[wildcards.prepared]}.json"


def prepared_dataset(wildcards):
    return PREPARED[wildcards.prepared]


def weights_settings():
    """What check_weights reads: model.init and the translator's perceptual-loss weights."""
    return slice_settings(RULE_SECTIONS["check_weights"], seeds=[0])
