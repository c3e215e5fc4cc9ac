"""Tables from hand-made metrics files with known values: exact cells in Markdown, CSV and LaTeX."""

from __future__ import annotations

import csv
import json

import pytest

from diga.report.tables import write_ablation_table, write_dg_table, write_main_table, write_pseudolabel_table

NAMES_16 = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
            "vegetation", "sky", "person", "rider", "car", "bus", "motorcycle", "bicycle"]
PROVENANCE = {"config_hash": "abc", "git_commit": "c0ffee", "versions": {}}


def write_metrics(folder, stage, seed, ious, variant="main", **extra):
    path = folder / f"{variant}_{stage}_{seed}.json"
    miou = sum(v for v in ious.values() if v is not None) / sum(v is not None for v in ious.values())
    path.write_text(json.dumps({"stage": stage, "seed": seed, "variant": variant, "checkpoint": "last",
                                "per_class_iou": ious, "miou": miou, "provenance": PROVENANCE,
                                "training_provenance": PROVENANCE, **extra}))
    return path


def test_main_table_means_stds_and_published_rows(tmp_path):
    ious = lambda value: {"road": value, "sidewalk": 2 * value, "building": None}  # noqa: E731
    paths = [write_metrics(tmp_path, "warmup", 0, ious(10.0)), write_metrics(tmp_path, "warmup", 1, ious(20.0)),
             write_metrics(tmp_path, "source_only", 0, ious(4.0))]
    references = tmp_path / "references.yaml"
    references.write_text("toy:\n  - {method: Paper, backbone: R101, per_class: [1.0, 2.0, 3.0], miou: 2.0,\n"
                          "     source: 'Table 1', verified: true}\n")
    write_main_table(paths, tmp_path / "table", "toy", references)
    markdown = (tmp_path / "table.md").read_text()
    # warm-up: road mean(10, 20) = 15, sample std = 7.07; sidewalk 30 ± 14.14; mIoU = mean(15, 30) ± std(15, 30)
    assert "| source-only | 1 | 4.0 ± 0.0 | 8.0 ± 0.0 | – | **6.0 ± 0.0** |" in markdown
    assert "| warm-up | 2 | 15.0 ± 7.1 | 30.0 ± 14.1 | – | **22.5 ± 10.6** |" in markdown
    assert "| Paper [published, verified] |  | 1.0 | 2.0 | 3.0 | **2.0** |" in markdown
    assert markdown.index("source-only") < markdown.index("warm-up") < markdown.index("Paper")
    rows = list(csv.DictReader((tmp_path / "table.csv").open()))
    assert rows[1]["key"] == "warmup" and rows[1]["stage"] == "warm-up" and float(rows[1]["road"]) == 15.0
    assert float(rows[1]["road_std"]) == pytest.approx(7.0711, abs=1e-4)
    assert rows[2]["verified"] == "true" and rows[2]["source"] == "Table 1" and rows[2]["mIoU_std"] == ""
    latex = (tmp_path / "table.tex").read_text()
    assert r"\toprule" in latex and r"\bottomrule" in latex
    assert r"warm-up & 2 & 15.0$\pm$7.1 & 30.0$\pm$14.1 & -- & 22.5$\pm$10.6 \\" in latex


def test_sixteen_classes_add_the_13_class_miou(tmp_path):
    ious = {name: float(index) for index, name in enumerate(NAMES_16)}  # 0..15; wall 3, fence 4, pole 5
    path = write_metrics(tmp_path, "warmup", 0, ious, miou13=(120 - 3 - 4 - 5) / 13)
    write_main_table([path], tmp_path / "table", "synthia", None)
    row = next(csv.DictReader((tmp_path / "table.csv").open()))
    assert float(row["mIoU"]) == pytest.approx(7.5)  # mean of 0..15
    assert float(row["mIoU13"]) == pytest.approx((120 - 3 - 4 - 5) / 13)  # without wall, fence, pole
    assert "mIoU13" in (tmp_path / "table.md").read_text().splitlines()[2]


def test_ablation_table_keeps_the_rows_that_ran(tmp_path):
    ious = lambda value: {"road": value}  # noqa: E731
    paths = [write_metrics(tmp_path, "source_only", 0, ious(5.0)), write_metrics(tmp_path, "warmup", 0, ious(9.0)),
             write_metrics(tmp_path, "selftrain2", 0, ious(12.0)),
             write_metrics(tmp_path, "selftrain2", 0, ious(11.0), variant="fixed_threshold")]
    write_ablation_table(paths, tmp_path / "ablations", "toy", "selftrain2",
                         {"fixed_threshold": "fixed confidence threshold", "skd_only": "SKD only"})
    lines = [line for line in (tmp_path / "ablations.md").read_text().splitlines() if line.startswith("| ")][1:]
    assert [line.split(" | ")[0].removeprefix("| ") for line in lines] == [
        "source-only", "warm-up: SKD + cross-domain mixture", "full DiGA: threshold-free consensus",
        "full DiGA: fixed confidence threshold"]  # no skd_only metrics: its row is left out
    assert "| **11.0 ± 0.0** | fixed_threshold | selftrain2 |" in lines[3]


def test_pseudolabel_table_averages_over_iterations_then_seeds(tmp_path):
    logs, summaries = [], []
    for seed, kept in ((0, (0.5, 0.7)), (1, (0.7, 0.9))):
        run = tmp_path / f"seed{seed}"
        (run / "selftrain1").mkdir(parents=True)
        (run / "warmup").mkdir()
        (run / "selftrain1" / "train_log.csv").write_text(
            "iteration,kept_fraction,pl_acc_kept,pl_acc_all\n"
            f"1,{kept[0]},0.8,0.6\n2,{kept[1]},0.9,0.7\n")
        (run / "warmup" / "pseudolabels.json").write_text(json.dumps({"pixel_accuracy": 50.0 + seed}))
        logs.append(run / "selftrain1" / "train_log.csv")
        summaries.append(run / "warmup" / "pseudolabels.json")
    write_pseudolabel_table(logs, summaries, tmp_path / "pl", "toy")
    # kept: seed 0 mean 60 %, seed 1 mean 80 % -> 70 ± 14.1; kept accuracy 85 in both; offline 50.5 ± 0.7
    row = next(line for line in (tmp_path / "pl.md").read_text().splitlines() if "round 1" in line)
    assert row == ("| self-training round 1 (labels from warm-up) | 2 | 50.5 ± 0.7 | 70.0 ± 14.1 | 85.0 ± 0.0 "
                   "| 65.0 ± 0.0 |")


def test_dg_table_means_over_targets_per_seed_then_over_seeds(tmp_path):
    def dg_metrics(stage, seed, target, road, variant="main"):
        path = write_metrics(tmp_path, f"{stage}_{target}", seed, {"road": road, "sky": None}, variant,
                             dg_target=target)
        record = json.loads(path.read_text())
        path.write_text(json.dumps({**record, "stage": stage}))
        return path

    # DG warm-up: seed 0 (10 on a, 20 on b) -> mean 15; seed 1 (14, 26) -> 20; over seeds 17.5 +- 3.54.
    paths = [dg_metrics("dg_warmup", 0, "a", 10.0), dg_metrics("dg_warmup", 0, "b", 20.0),
             dg_metrics("dg_warmup", 1, "a", 14.0), dg_metrics("dg_warmup", 1, "b", 26.0),
             dg_metrics("source_only", 0, "a", 4.0), dg_metrics("source_only", 0, "b", 6.0),
             dg_metrics("dg_warmup", 0, "a", 11.0, variant="clean"), dg_metrics("dg_warmup", 0, "b", 13.0, "clean")]
    references = tmp_path / "references.yaml"
    references.write_text("toy:\n  - {method: Paper DG, targets: {a: 40.0, b: 50.0}, source: 'Table 3'}\n")
    write_dg_table(paths, tmp_path / "dg_table", "toy", ["a", "b"], references, {"clean": "clean protocol"})
    markdown = (tmp_path / "dg_table.md").read_text()
    assert "| source-only | 1 | 4.0 ± 0.0 | 6.0 ± 0.0 | **5.0 ± 0.0** |" in markdown
    assert "| DG: SKD on source only | 2 | 12.0 ± 2.8 | 23.0 ± 4.2 | **17.5 ± 3.5** |" in markdown
    assert "| DG: SKD on source only [clean protocol] | 1 | 11.0 ± 0.0 | 13.0 ± 0.0 | **12.0 ± 0.0** |" in markdown
    assert "| Paper DG [published, unverified] |  | 40.0 | 50.0 | – |" in markdown  # no published mean: none made
    assert markdown.index("| source-only |") < markdown.index("| DG: SKD on source only |") < \
        markdown.index("[clean protocol]") < markdown.index("Paper DG")
    rows = {row["key"]: row for row in csv.DictReader((tmp_path / "dg_table.csv").open())}
    assert float(rows["main:dg_warmup:last"]["mean_std"]) == pytest.approx(3.5355, abs=1e-4)
    per_class = {row["key"]: row for row in csv.DictReader((tmp_path / "dg_table_per_class.csv").open())}
    assert float(per_class["main:dg_warmup:last:b"]["road"]) == 23.0 and per_class["main:dg_warmup:last:b"]["sky"] == ""
    with pytest.raises(ValueError, match=r"no metrics for the DG target\(s\) \['c'\]"):
        write_dg_table(paths, tmp_path / "dg_table", "toy", ["a", "b", "c"])
