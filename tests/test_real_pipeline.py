"""The real-benchmark DAG: the paper configs dry-run to the full DAG, and the GTA5 -> Cityscapes DAG runs for
real on fake archives (one downloaded from a loopback server, one from the user's folder) to a table."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import yaml
from fakedata import make_bdd100k, make_cityscapes, make_gta5, make_mapillary, serve
from PIL import Image

from conftest import REPO, job_counts, run_snakemake

TINY_GTA5 = REPO / "tests" / "configs" / "tiny_gta5.yaml"
PAPER_RULES = {"translator", "source_only", "warmup", "pseudolabels", "centroids", "selftrain", "evaluate", "table",
               "prepare", "fetch"}


@pytest.mark.parametrize("name, source", [("gta5_to_cityscapes", "gta5"), ("synthia_to_cityscapes", "synthia")])
def test_paper_config_dry_runs_the_full_dag(tmp_path, name, source):
    shutil.copytree(REPO / "config", tmp_path / "config")
    result = run_snakemake("-n", "all", "--configfile", f"config/{name}.yaml", cwd=tmp_path)
    counts = job_counts(result.stdout)
    assert PAPER_RULES <= set(counts), counts
    assert counts["fetch"] == 2 and f"raw/{source}.json" in result.stdout and "raw/cityscapes.json" in result.stdout
    assert "make_toy" not in counts and "oracle" not in counts
    assert counts["prepare"] == 2 and counts["selftrain"] == 2 and counts["pseudolabels"] == 2
    # source-only, warm-up, two rounds; the last iteration's model and the best on val
    assert counts["evaluate"] == 8 and result.stdout.count("metrics_best.json") >= 4
    assert f"resources/{source}/manifest.json" in result.stdout


def test_dg_paper_config_dry_runs_every_job_of_the_dg_table(tmp_path):
    shutil.copytree(REPO / "config", tmp_path / "config")
    result = run_snakemake("-n", "-p", "dg", "--configfile", "config/dg_gta5.yaml", cwd=tmp_path)
    counts = job_counts(result.stdout)
    # Four datasets acquired and prepared; no translator, no adaptation stage; the DG warm-up twice (the official
    # protocol and the clean variant) and source-only, each evaluated (last and best on Cityscapes val) on 3 targets.
    assert counts == {"check_weights": 1, "fetch": 4, "prepare": 4, "dg_warmup": 2, "source_only": 1,
                      "evaluate_dg": 18, "dg_table": 1, "dg": 1}
    for name in ("gta5", "cityscapes", "bdd100k", "mapillary"):
        assert f"resources/raw/{name}.json" in result.stdout and f"resources/{name}/manifest.json" in result.stdout
    for stage in ("source_only", "dg_warmup", "ablations/dg_clean/seed0/dg_warmup"):
        for target in ("cityscapes", "bdd100k", "mapillary"):
            assert re.search(rf"{stage}/dg/{target}/metrics_best\.json", result.stdout), (stage, target)
    commands = re.findall(r"diga (?:--threads \d+ )?(dg-warmup|prepare) --config '(\{.*?\})'", result.stdout)
    leaks = sorted(json.loads(s)["stages"]["dg_warmup"]["target_bn_leak"] for c, s in commands if c == "dg-warmup")
    assert leaks == [False, True]  # the clean variant and the official protocol
    official = next(json.loads(s) for c, s in commands if c == "dg-warmup" and '"target_bn_leak": true' in s)
    assert official["augment"]["sharpness_p"] == 0.0 and official["stages"]["dg_warmup"]["batch"] == [2, 2]
    mapillary = [json.loads(s) for c, s in commands if c == "prepare" and "mapillary_label_map" in s]
    assert len(mapillary) == 1 and "data.target.streams" not in mapillary[0]["sections"]


def test_semisup_paper_config_dry_runs_every_job_of_the_four_splits(tmp_path):
    shutil.copytree(REPO / "config", tmp_path / "config")
    result = run_snakemake("-n", "-p", "semisup", "--configfile", "config/semisup_cityscapes.yaml", cwd=tmp_path)
    counts = job_counts(result.stdout)
    # Cityscapes alone; per split: its lists, supervised-only, warm-up, centroids of the warm-up, two rounds with the
    # pseudo-labels of the stage before, and four models evaluated (the last iteration's and the best on val).
    assert counts == {"check_weights": 1, "fetch": 1, "prepare": 1, "semisup_split": 4, "semisup_supervised": 4,
                      "semisup_warmup": 4, "semisup_centroids": 4, "semisup_pseudolabels": 8, "semisup_selftrain": 8,
                      "semisup_evaluate": 32, "semisup_table": 1, "semisup": 1}
    assert "resources/raw/cityscapes.json" in result.stdout and "gta5" not in result.stdout
    for split in ("1-16", "1-8", "1-4", "1-2"):
        for stage in ("semisup_supervised", "semisup_warmup", "semisup_selftrain1", "semisup_selftrain2"):
            assert f"results/semisup_cityscapes/semisup/{split}/seed0/{stage}/metrics_best.json" in result.stdout
    commands = re.findall(r"diga (?:--threads \d+ )?(semisup-warmup|semisup-selftrain|pseudolabels) --config "
                          r"'(\{.*?\})'", result.stdout)
    warmup = next(json.loads(s) for c, s in commands if c == "semisup-warmup")
    assert warmup["model"]["arch"] == "hrnet_ocr" and warmup["model"]["input_norm"] == "caffe_rgb"
    assert warmup["stages"]["semisup_warmup"]["aux_weight"] == 0.1
    assert warmup["stages"]["semisup_warmup"]["target_bn_leak"] is True
    assert warmup["optim"]["poly_power"] == 1.0 and warmup["optim"]["head_lr_mult"] == 1.0
    assert warmup["augment"]["sharpness_p"] == 0.3
    # Pseudo-labels of the split's unlabelled part only (target train as the split maps it).
    lists = {json.loads(s)["data"]["target"]["train_list"] for c, s in commands if c == "pseudolabels"}
    assert lists == {f"lists/semisup/{split}/unlabelled.txt" for split in ("1-16", "1-8", "1-4", "1-2")}


def test_dg_dag_runs_on_fake_archives_of_the_four_datasets(tmp_path):
    make_gta5(tmp_path / "archives" / "gta5", [1, 2, 3, 4])
    make_cityscapes(tmp_path / "archives" / "cityscapes")
    every_id = np.arange(66, dtype=np.uint8).reshape(6, 11)
    make_mapillary(tmp_path / "archives" / "mapillary", {"m0": every_id, "m1": every_id.T.copy()})
    bdd_label = np.array([[*range(19), 255]] * 4, dtype=np.uint8)
    make_bdd100k(tmp_path / "archives" / "bdd100k", {"b0": bdd_label, "b1": bdd_label[::-1].copy()})
    overlay = {
        "datasets": {"gta5": {"way": "archives", "archive_dir": "archives/gta5"},
                     "bdd100k": {"way": "archives", "archive_dir": "archives/bdd100k"},
                     "mapillary": {"way": "archives", "archive_dir": "archives/mapillary"}},
        "stages": {"dg_warmup": {"iterations": 4, "batch": [1, 2], "target_bn_leak": True}},
        "dg": {"targets": [{"name": "cityscapes", "root": "resources/cityscapes", "dataset": "cityscapes",
                            "size": [16, 32]},
                           {"name": "bdd100k", "root": "resources/bdd100k", "dataset": "bdd100k"},
                           {"name": "mapillary", "root": "resources/mapillary", "dataset": "mapillary",
                            "size": [12, 20]}]},
    }
    (tmp_path / "dg.yaml").write_text(yaml.safe_dump(overlay))
    run_snakemake("--cores", "2", "dg", "--configfile", str(TINY_GTA5), "dg.yaml", cwd=tmp_path)
    results = tmp_path / "results" / "tiny_gta5"
    assert not (results / "seed0" / "translator").exists() and not (results / "seed0" / "warmup").exists()
    def labelled_pixels(root: str, size: tuple[int, int]) -> int:
        """Labelled pixels of the prepared val labels resized (nearest) to `size` [height, width]."""
        total = 0
        for line in (tmp_path / "resources" / root / "lists" / "val.txt").read_text().splitlines():
            with Image.open(tmp_path / "resources" / root / line.split()[1]) as label:
                total += int((np.asarray(label.resize(size[::-1], Image.Resampling.NEAREST)) != 255).sum())
        return total

    pixels = {"cityscapes": labelled_pixels("cityscapes", (16, 32)), "bdd100k": 2 * 4 * 19,
              "mapillary": labelled_pixels("mapillary", (12, 20))}
    assert 0 < pixels["mapillary"] < 2 * 12 * 20  # the 41 unmapped Mapillary ids are ignored
    for stage in ("source_only", "dg_warmup"):
        for target, count in pixels.items():
            for best in ("", "_best"):
                metrics = json.loads((results / "seed0" / stage / "dg" / target / f"metrics{best}.json").read_text())
                assert np.array(metrics["confusion"]).sum() == count, (stage, target)
    table = (results / "dg_table.md").read_text()
    assert "| cityscapes | bdd100k | mapillary | mean |" in table
    assert "| DG: SKD on source only (best on val) | 1 |" in table


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("real_run")
    server = workdir / "server"
    # 00003 has a label of the wrong size, 00004 none: both skipped and reported; 08166 is outside the 18,111 list.
    make_gta5(server, [1, 2, 3, 4, 5, 6, 7, 8166], broken={3: "size", 4: "missing"})
    make_cityscapes(workdir / "archives" / "cityscapes")
    with serve(server, cut={"01_images.zip"}) as (url, log):
        override = workdir / "url.yaml"
        override.write_text(yaml.safe_dump({"datasets": {"gta5": {"url": url}}}))
        run_snakemake("--cores", "2", "all", "--configfile", str(TINY_GTA5), str(override), cwd=workdir)
    return workdir, log


def test_real_dag_runs_end_to_end_on_fake_archives(real_run):
    workdir, log = real_run
    assert any(name == "01_images.zip" and rng for name, rng in log)  # the cut download was resumed
    gta5 = json.loads((workdir / "resources" / "gta5" / "manifest.json").read_text())
    assert gta5["count"] == {"train_full": 6, "train": 5} and gta5["broken"] == 2
    report = (workdir / "resources" / "gta5" / "report.md").read_text()
    assert "images/00003.png" in report and "images/00004.png" in report
    city = json.loads((workdir / "resources" / "cityscapes" / "manifest.json").read_text())
    assert city["count"] == {"train": 6, "val": 4}
    # The resize streams: GTA5's 32x64 stream is its own images, the others are resized copies of train only.
    assert {name: (s["resized"], s["reused"]) for name, s in gta5["streams"].items()} == {"24x48": (5, 0),
                                                                                        "32x64": (0, 5)}
    assert {name: (s["resized"], s["reused"]) for name, s in city["streams"].items()} == {"24x48": (6, 0),
                                                                                       "40x80": (6, 0)}
    for root, name, size in (("gta5", "24x48", (48, 24)), ("cityscapes", "40x80", (80, 40))):
        lines = (workdir / "resources" / root / "streams" / name / "lists" / "train.txt").read_text().split()
        for path in lines:
            with Image.open(workdir / "resources" / root / path) as image:
                assert image.size == size
    assert not (workdir / "resources" / "cityscapes" / "streams" / "24x48" / "leftImg8bit" / "val").exists()
    recorded = json.loads((workdir / "resources" / "raw" / "gta5.sha256.json").read_text())
    assert set(recorded) == {"01_images.zip", "01_labels.zip"}
    table = (workdir / "results" / "tiny_gta5" / "table.md").read_text()
    for label in ("source-only", "warm-up", "self-training round 1"):
        assert f"| {label} (last) | 1 |" in table and f"| {label} (best on val) | 1 |" in table
    best = json.loads((workdir / "results" / "tiny_gta5" / "seed0" / "warmup" / "metrics_best.json").read_text())
    assert best["stage"] == "warmup" and best["checkpoint"] == "best" and best["checkpoint_iteration"] in (2, 4)
    metrics = json.loads((workdir / "results" / "tiny_gta5" / "seed0" / "warmup" / "metrics.json").read_text())
    assert sum(map(sum, metrics["confusion"])) == 4 * 32 * 64 - 4  # 4 val images, one ignore pixel each


def test_nothing_reruns_and_training_options_do_not_refetch(real_run):
    workdir, _ = real_run
    result = run_snakemake("-n", "all", "--configfile", str(TINY_GTA5), str(workdir / "url.yaml"), cwd=workdir)
    assert "Nothing to be done" in result.stdout + result.stderr
    override = workdir / "crop.yaml"
    override.write_text(yaml.safe_dump({"data": {"crop": [16, 32]}}))
    result = run_snakemake("-n", "all", "--configfile", str(TINY_GTA5), str(workdir / "url.yaml"), str(override),
                           cwd=workdir)
    counts = job_counts(result.stdout)
    assert not {"fetch", "prepare"} & set(counts)
    assert counts["warmup"] == 1


def test_missing_initial_weights_stop_before_training(tmp_path):
    shutil.copytree(REPO / "config", tmp_path / "config")
    target = "results/gta5_to_cityscapes/initial_weights.json"
    args = ("--cores", "1", target, "--configfile", "config/gta5_to_cityscapes.yaml")
    result = run_snakemake(*args, cwd=tmp_path, check=False)
    assert result.returncode != 0
    log = (tmp_path / "results" / "gta5_to_cityscapes" / "logs" / "check_weights.log").read_text()
    assert "DeepLab_resnet_pretrained_init-f81d91e8.pth" in log and "model.init: random" in log
    (tmp_path / "weights").mkdir()
    for name in ("DeepLab_resnet_pretrained_init-f81d91e8.pth", "vgg19-dcbb9e9d.pth"):
        (tmp_path / "weights" / name).write_bytes(b"stand-in")
    run_snakemake(*args, cwd=tmp_path)
    record = json.loads((tmp_path / target).read_text())
    assert record["model_init"]["sha256"] == record["vgg_weights"]["sha256"]


def test_synthia_data_rules_on_fake_archives(tmp_path):
    """The SYNTHIA paper config's data steps, only paths changed: its RAR (where bsdtar or unar is installed, as
    .ci/run installs it), 16-bit labels, backslash names, 16 classes, both resize streams."""
    from fakedata import make_synthia

    from diga.data.archives import rar_extractor

    shutil.copytree(REPO / "config", tmp_path / "config")
    rar = rar_extractor() is not None
    archive = make_synthia(tmp_path / "archives" / "synthia", 3, backslash=True, rar=rar)
    make_cityscapes(tmp_path / "archives" / "cityscapes")
    (tmp_path / "paths.yaml").write_text(yaml.safe_dump({"datasets": {
        "synthia": {"way": "archives", "archive_dir": "archives/synthia", "archive_names": [archive.name]},
        "cityscapes": {"archive_dir": "archives/cityscapes"}}}))
    run_snakemake("--cores", "2", "--until", "prepare", "--configfile", "config/synthia_to_cityscapes.yaml",
                  "paths.yaml", cwd=tmp_path)
    synthia = json.loads((tmp_path / "resources" / "synthia" / "manifest.json").read_text())
    city = json.loads((tmp_path / "resources" / "cityscapes16" / "manifest.json").read_text())
    assert synthia["count"] == {"train": 3} and synthia["num_classes"] == 16 and synthia["broken"] == 0
    assert city["count"] == {"train": 6, "val": 4} and city["num_classes"] == 16
    assert not (tmp_path / "results" / "synthia_to_cityscapes" / "seed0").exists()  # no training ran
    from diga.data.datasets import SegmentationList

    labels = SegmentationList(tmp_path / "resources" / "synthia", "lists/train.txt", 16)[0]["label"]
    assert set(labels.unique().tolist()) <= {0, 1, 2, 9, 12, 255}  # road, sidewalk, building, sky, car


# Every official-code switch, as the job that reads it receives it (dotted key -> value).
OFFICIAL_SLICES = {
    "translator": {"stages.translator.space": "caffe_bgr", "stages.translator.norm_affine": False,
                   "stages.translator.disc_bias": False, "stages.translator.keep_iteration": 48000},
    "warmup": {"model.input_norm": "caffe_bgr", "model.head_init": "normal", "optim.ce_normalise": "all_pixels",
               "optim.backbone_params": "official_walk", "ema.teacher_train_mode": True,
               "ema.average_buffers": False, "augment.blur_kernel": 3, "augment.blur_sigma": 2.0,
               "augment.sharpness_mode": "soften", "augment.space": "network",
               "stages.warmup.target_bn_leak": True},
    "selftrain": {"optim.ce_normalise": "all_pixels", "optim.backbone_params": "official_walk",
                  "ema.teacher_train_mode": True, "ema.average_buffers": False, "augment.space": "network",
                  "stages.selftrain.source_centroid_mask": "label_and_prediction", "centroids.unseen": "zero"},
    "centroids": {"centroids.size": [512, 1024], "train.inference_precision": "fp32"},
    "pseudolabels": {"train.inference_precision": "fp32"},
    "evaluate": {"train.inference_precision": "fp32"},
}


@pytest.mark.parametrize("name", ["gta5_to_cityscapes", "synthia_to_cityscapes"])
def test_paper_config_jobs_receive_every_official_value(tmp_path, name):
    shutil.copytree(REPO / "config", tmp_path / "config")
    result = run_snakemake("-n", "-p", "all", "--configfile", f"config/{name}.yaml", cwd=tmp_path)
    commands = re.findall(r"diga --threads \d+ (\w+) --config '(\{.*?\})'(.*)", result.stdout)
    seen = set()
    for command, settings, rest in commands:
        settings = json.loads(settings)
        for key, expected in OFFICIAL_SLICES.get(command, {}).items():
            value = settings
            for part in key.split("."):
                value = value[part]
            assert value == expected, (command, key, value)
        seen.add(command)
        if command == "selftrain":  # later stages continue from the best-on-val checkpoint
            assert re.search(r"--init \S+/model_best\.pt", rest), rest
        if command in ("pseudolabels", "centroids"):
            assert re.search(r"--checkpoint \S+/model_best\.pt", rest), rest
        if command == "warmup" and name.startswith("synthia"):
            assert settings["stages"]["warmup"]["lr_schedule"] == "linear_ramp"
    assert set(OFFICIAL_SLICES) <= seen, seen
