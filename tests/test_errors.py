"""Bad input stops with an error that names the problem and the fix, and never leaves a partial output."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_CONFIG, run_snakemake
from diga import cli
from diga.atomic import atomic_path, write_json
from diga.data.datasets import MissingDatasetError, load_label
from diga.runtime.datasets import source_train


def test_cli_names_the_bad_config_key(capsys):
    bad = {"benchmark": "toy", "seeds": [0], "data": {"root": "r", "source": {"root": "s"},
                                                       "target": {"root": "t", "train_list": "a", "val_list": "b"}},
           "stages": {"warmup": {"iterations": 0}}}
    assert cli.main(["table", "--config", json.dumps(bad), "--metrics", "m.json", "--out-stem", "t"]) == 1
    error = capsys.readouterr().err
    assert "data/source: 'train_list' is a required property" in error
    assert "stages/warmup/iterations: 0 is less than the minimum of 1" in error
    assert "config.schema.yaml" in error  # where to look for the fix


def test_snakemake_refuses_a_config_that_breaks_the_schema(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY_CONFIG.read_text() + "optim: {lr: -1}\n")
    result = run_snakemake("--configfile", str(bad), "-n", cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert "-1 is less than or equal to the minimum of 0" in result.stdout + result.stderr


def test_snakemake_refuses_streams_that_cannot_be_read(tmp_path):
    overlay = tmp_path / "streams.yaml"
    overlay.write_text("stages: {warmup: {batch: [1, 2]}}\n")
    result = run_snakemake("--configfile", str(TINY_CONFIG), str(overlay), "-n", cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert "stages.warmup.batch lists 2 count(s) but data.source.streams is empty" in result.stdout + result.stderr
    overlay.write_text("data: {source: {streams: [[16, 32], [32, 64]]}}\nstages: {warmup: {batch: [1, 2]}}\n")
    result = run_snakemake("--configfile", str(TINY_CONFIG), str(overlay), "-n", cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert "data.source.streams needs a prepared real dataset" in result.stdout + result.stderr


def test_missing_dataset_folder_says_how_to_build_it(tiny_settings, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MissingDatasetError, match="does not exist.*make-toy"):
        source_train(tiny_settings)


def test_unknown_class_id_names_the_file_and_the_ids(tmp_path):
    label = np.zeros((4, 6), dtype=np.uint8)
    label[0, 0], label[1, 1], label[2, 2] = 40, 255, 18
    path = tmp_path / "bad_labelTrainIds.png"
    Image.fromarray(label).save(path)
    with pytest.raises(ValueError, match=r"bad_labelTrainIds.png: label ids \[40\] are outside the 19 trainIds"):
        load_label(path, 19)
    assert load_label(path, 41).max().item() == 255  # the same ids are fine with 41 classes


def test_a_failed_write_leaves_the_finished_file_intact(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"miou": 50.0})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text('{"miou": ')  # a half-written file...
        raise RuntimeError("killed")  # ...and the job dies
    assert json.loads(target.read_text()) == {"miou": 50.0}
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left behind
