"""The whole DAG, for real, on a reduced ToyCity config; and what reruns when a stage is forced."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, TINY_CONFIG, job_counts, job_threads, run_snakemake
from diga.data.labels import CLASS_NAMES

STAGES = ["source_only", "warmup", "selftrain1", "selftrain2", "oracle"]
STAGE_RULES = {"make_toy", "translator", "source_only", "oracle", "warmup", "pseudolabels", "centroids",
               "selftrain", "evaluate", "table", "pseudolabel_table", "figures", "run_info"}
TRAINING_RULES = {"make_toy", "translator", "source_only", "oracle", "warmup", "pseudolabels", "centroids",
                  "selftrain", "evaluate"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tiny_run")
    run_snakemake("--configfile", str(TINY_CONFIG), "--cores", "2", "all", "ablations", "dg", "semisup", cwd=workdir)
    return workdir


def test_default_dry_run_lists_every_stage(tmp_path):
    shutil.copytree(REPO / "config", tmp_path / "config")
    result = run_snakemake("-n", "all", cwd=tmp_path)
    counts = job_counts(result.stdout)
    assert STAGE_RULES <= set(counts), f"missing rules: {STAGE_RULES - set(counts)}"
    assert counts["selftrain"] == 2 and counts["evaluate"] == 5 and counts["pseudolabels"] == 2


def test_training_jobs_take_the_configured_threads(tmp_path):
    shutil.copytree(REPO / "config", tmp_path / "config")
    (tmp_path / "three_threads.yaml").write_text("train: {threads: 3}\n")
    training = ("translator", "source_only", "oracle", "warmup", "selftrain")
    default = job_threads(run_snakemake("-n", "all", "--cores", "4", cwd=tmp_path).stdout)
    three = job_threads(run_snakemake("-n", "all", "--cores", "4", "--configfile", "config/config.yaml",
                                       "three_threads.yaml", cwd=tmp_path).stdout)
    assert {rule: default[rule] for rule in training} == dict.fromkeys(training, 1)  # ToyCity's config: one each
    assert {rule: three[rule] for rule in training} == dict.fromkeys(training, 3)
    assert default["evaluate"] == three["evaluate"] == 1


def test_lint_is_clean():
    result = run_snakemake("--lint", cwd=REPO, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr, result.stdout


def test_every_stage_writes_real_outputs(tiny_run):
    run = tiny_run / "results" / "tiny" / "seed0"
    for stage in STAGES:
        metrics = json.loads((run / stage / "metrics.json").read_text())
        assert metrics["stage"] == stage and metrics["seed"] == 0
        assert 0.0 <= metrics["miou"] <= 100.0 and math.isfinite(metrics["miou"])
        assert list(metrics["per_class_iou"]) == list(CLASS_NAMES)
        assert all(v is None or 0.0 <= v <= 100.0 for v in metrics["per_class_iou"].values())
        confusion = np.array(metrics["confusion"])
        assert confusion.shape == (19, 19) and confusion.sum() == 6 * 32 * 64  # 6 val images, no ignore
        provenance = metrics["training_provenance"]
        assert len(provenance["config_hash"]) == 16 and provenance["git_commit"]
        assert provenance["versions"]["torch"] == torch.__version__
        assert provenance["versions"]["torch_cpu_kernels"] == torch.backends.cpu.get_cpu_capability()
        with open(run / stage / "train_log.csv") as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == 6 and all(math.isfinite(float(r["loss"])) for r in rows)
        assert float(rows[0]["lr"]) > float(rows[-1]["lr"]) > 0  # poly decay


def test_selftrain_log_has_selection_statistics(tiny_run):
    with open(tiny_run / "results" / "tiny" / "seed0" / "selftrain1" / "train_log.csv") as handle:
        rows = list(csv.DictReader(handle))
    for column in ("ce", "ce_mix", "skd", "kept_fraction", "pl_acc_all", "pl_acc_kept"):
        assert column in rows[0], column
    assert all(0.0 <= float(r["kept_fraction"]) <= 1.0 for r in rows)


def test_pseudolabels_are_palette_pngs_of_train_ids(tiny_run):
    for stage in ("warmup", "selftrain1"):
        folder = tiny_run / "results" / "tiny" / "seed0" / stage / "pseudolabels"
        files = sorted(folder.glob("*.png"))
        assert len(files) == 8  # n_target_train
        for path in files:
            with Image.open(path) as image:
                assert image.mode == "P" and image.size == (64, 32)
                assert np.asarray(image).max() < 19
        summary = json.loads((folder.parent / "pseudolabels.json").read_text())
        assert summary["images"] == 8 and 0.0 <= summary["pixel_accuracy"] <= 100.0


def test_centroids_hold_one_vector_per_class(tiny_run):
    bank = torch.load(tiny_run / "results" / "tiny" / "seed0" / "warmup" / "centroids.pt", weights_only=False)
    assert bank["centroids"].shape == (19, 16)  # head_channels 16 in the tiny config
    assert bank["valid"].any() and torch.isfinite(bank["centroids"]).all()


def test_table_has_a_row_per_stage(tiny_run):
    table = (tiny_run / "results" / "tiny" / "table.md").read_text()
    for label in ("source-only", "warm-up", "self-training round 1", "self-training round 2", "oracle (target labels)"):
        assert f"| {label} | 1 |" in table
    with open(tiny_run / "results" / "tiny" / "table.csv") as handle:
        rows = list(csv.DictReader(handle))
    measured = [r for r in rows if r["seeds"]]  # published rows have no seed count
    assert [r["key"] for r in measured] == ["source_only", "warmup", "selftrain1", "selftrain2", "oracle"]
    for row in measured:
        metrics = json.loads((tiny_run / "results" / "tiny" / "seed0" / row["key"] / "metrics.json").read_text())
        assert float(row["mIoU"]) == pytest.approx(metrics["miou"], abs=1e-3)


def test_dg_evaluates_both_models_on_every_unseen_target_and_tabulates_them(tiny_run):
    results = tiny_run / "results" / "tiny"
    dusk_list = (tiny_run / "resources" / "tiny_dg" / "dusk" / "lists" / "val.txt").read_text().splitlines()
    assert len(dusk_list) == 6 and all("/dusk/" in line for line in dusk_list)  # n_target_val images of that style
    miou = {}
    for stage in ("source_only", "dg_warmup"):
        for target in ("target", "dusk"):
            metrics = json.loads((results / "seed0" / stage / "dg" / target / "metrics.json").read_text())
            assert metrics["dg_target"] == target and metrics["stage"] == stage and metrics["eval_size"] is None
            assert np.array(metrics["confusion"]).sum() == 6 * 32 * 64
            miou[stage, target] = metrics["miou"]
    # The same model on the same images as the main evaluation: the same number.
    main = json.loads((results / "seed0" / "source_only" / "metrics.json").read_text())
    assert miou["source_only", "target"] == main["miou"]
    with open(results / "seed0" / "dg_warmup" / "train_log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and {"ce", "skd"} <= set(rows[0])
    with open(results / "dg_table.csv") as handle:
        table = {row["key"]: row for row in csv.DictReader(handle)}
    for stage in ("source_only", "dg_warmup"):
        row = table[f"main:{stage}:last"]
        assert float(row["target"]) == pytest.approx(miou[stage, "target"], abs=1e-3)
        assert float(row["dusk"]) == pytest.approx(miou[stage, "dusk"], abs=1e-3)
        assert float(row["mean"]) == pytest.approx((miou[stage, "target"] + miou[stage, "dusk"]) / 2, abs=1e-3)
    markdown = (results / "dg_table.md").read_text()
    assert "| DG: SKD on source only | 1 |" in markdown and "| source-only on dusk | 1 |" in markdown
    assert (results / "dg_table_per_class.csv").is_file() and (results / "dg_table.tex").is_file()


def test_nothing_reruns_after_a_complete_run(tiny_run):
    result = run_snakemake("--configfile", str(TINY_CONFIG), "-n", "all", "ablations", "dg", cwd=tiny_run)
    assert "Nothing to be done" in result.stdout + result.stderr


def test_forcerun_warmup_reruns_warmup_and_what_follows_only(tiny_run):
    result = run_snakemake("--configfile", str(TINY_CONFIG), "-n", "--forcerun", "warmup", "all", cwd=tiny_run)
    counts = job_counts(result.stdout)
    assert counts["warmup"] == 1 and counts["selftrain"] == 2 and counts["pseudolabels"] == 2
    assert counts["centroids"] == 1 and counts["evaluate"] == 3 and counts["table"] == 1
    assert counts["figures"] == 1 and counts["pseudolabel_table"] == 1
    assert not {"make_toy", "translator", "source_only", "oracle", "run_info"} & set(counts)


def test_until_warmup_runs_only_up_to_warmup(tmp_path):
    result = run_snakemake("--configfile", str(TINY_CONFIG), "-n", "--until", "warmup", cwd=tmp_path)
    assert job_counts(result.stdout) == {"make_toy": 1, "translator": 1, "warmup": 1}


def test_ablations_reuse_the_stages_they_do_not_change(tiny_run):
    ablations = tiny_run / "results" / "tiny" / "ablations"
    # skd_only changes the warm-up only; fixed_threshold changes self-training only
    assert sorted(p.name for p in (ablations / "skd_only" / "seed0").iterdir()) == ["warmup"]
    assert sorted(p.name for p in (ablations / "fixed_threshold" / "seed0").iterdir()) == ["selftrain1", "selftrain2"]
    skd_only = json.loads((ablations / "skd_only" / "seed0" / "warmup" / "metrics.json").read_text())
    assert skd_only["variant"] == "skd_only"
    assert skd_only["training_provenance"]["config"]["stages"]["warmup"]["mixture"] is False
    # official_code changes the translator and every stage after it, and reports the warm-up and the last round
    assert sorted(p.name for p in (ablations / "official_code" / "seed0").iterdir()) == [
        "selftrain1", "selftrain2", "translator", "warmup"]
    official = json.loads((ablations / "official_code" / "seed0" / "selftrain2" / "metrics.json").read_text())
    assert official["training_provenance"]["config"]["optim"]["backbone_params"] == "official_walk"
    table = (tiny_run / "results" / "tiny" / "tables" / "ablations.md").read_text()
    for label in ("SKD only", "SKD + cross-domain mixture", "fixed confidence threshold", "full DiGA",
                  "warm-up: the official code's behaviours", "full DiGA: the official code's behaviours"):
        assert label in table


def test_adding_a_seed_runs_only_the_new_seed(tiny_run):
    (tiny_run / "two_seeds.yaml").write_text("seeds: [0, 1]\n")
    result = run_snakemake("--configfile", str(TINY_CONFIG), "two_seeds.yaml", "-n", "all", cwd=tiny_run)
    counts = job_counts(result.stdout)
    assert "make_toy" not in counts                     # the dataset does not depend on the seeds
    assert counts["translator"] == 1 and counts["warmup"] == 1 and counts["selftrain"] == 2


def test_figures_and_report(tiny_run):
    figures = tiny_run / "results" / "tiny" / "figures"
    for name in ("training_curves", "per_class_iou", "qualitative", "confusion_final"):
        with Image.open(figures / f"{name}.png") as image:
            assert image.size[0] > 300 and np.asarray(image.convert("L")).std() > 5  # drawn, not blank
        assert (figures / f"{name}.pdf").read_bytes().startswith(b"%PDF")
    run_snakemake("--configfile", str(TINY_CONFIG), "--report", "results/report.html", cwd=tiny_run)
    report = (tiny_run / "results" / "report.html").read_text(errors="replace")
    assert len(report) > 100_000 and "qualitative.png" in report and "table.md" in report


def test_editing_references_reruns_tables_only(tiny_run):
    local = tiny_run / "config" / "references.yaml"  # takes precedence over the repository's copy
    local.parent.mkdir(exist_ok=True)
    local.write_text((REPO / "config" / "references.yaml").read_text() + "tiny: []\n")
    try:
        result = run_snakemake("--configfile", str(TINY_CONFIG), "-n", "all", cwd=tiny_run)
        counts = job_counts(result.stdout)
        assert counts.get("table") == 1 and not TRAINING_RULES & set(counts), counts
    finally:
        local.unlink()


def test_semisup_runs_each_split_on_its_labelled_and_unlabelled_images_and_tabulates_them(tiny_run):
    results, target = tiny_run / "results" / "tiny", tiny_run / "resources" / "tiny" / "target"
    train = (target / "lists" / "train.txt").read_text().splitlines()
    labelled = {}
    for split, count in (("1-4", 2), ("1-2", 4)):  # of the 8 target-train images
        record = json.loads((results / "semisup" / split / "split.json").read_text())
        assert (record["labelled"], record["unlabelled"]) == (count, 8 - count)
        labelled[split] = (target / f"lists/semisup/{split}/labelled.txt").read_text().splitlines()
        unlabelled = (target / f"lists/semisup/{split}/unlabelled.txt").read_text().splitlines()
        assert len(labelled[split]) == count and sorted(labelled[split] + unlabelled) == sorted(train)
        # The warm-up's pseudo-labels cover exactly the unlabelled images.
        run = results / "semisup" / split / "seed0"
        pseudo = sorted(p.stem for p in (run / "semisup_warmup" / "pseudolabels").glob("*.png"))
        assert pseudo == sorted(Path(line.split()[0]).stem for line in unlabelled)
        for stage in ("semisup_supervised", "semisup_warmup", "semisup_selftrain1", "semisup_selftrain2"):
            assert torch.load(run / stage / "model.pt", weights_only=False)["split"] == split
            assert json.loads((run / stage / "metrics.json").read_text())["semisup_split"] == split
    assert set(labelled["1-4"]) < set(labelled["1-2"])  # seeded splits are nested
    with open(results / "semisup_table.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["model"] for row in rows] == ["supervised-only", "warm-up", "self-training round 1",
                                              "self-training round 2"]
    miou = json.loads((results / "semisup/1-4/seed0/semisup_warmup/metrics.json").read_text())["miou"]
    assert float(rows[1]["1/4 labelled"]) == pytest.approx(miou, abs=1e-4)  # one seed: the table holds its mIoU
    assert rows[1]["seeds"] == "1/1"
