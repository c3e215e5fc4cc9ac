"""Bad input stops with an error that names the problem and the fix, and never leaves a partial output."""

from __future__ import annotations

import importlib
import json
import logging
import pkgutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import diga
from conftest import REPO, TINY_CONFIG, run_snakemake
from diga import cli
from diga.atomic import atomic_path, write_json
from diga.data.datasets import MissingDatasetError, load_label
from diga.errors import DatasetError, DigaError
from diga.report import run_info
from diga.runtime.datasets import source_train
from diga.train.stop import INTERRUPTED_EXIT_CODE, TrainingInterrupted


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
    with pytest.raises(DatasetError, match=r"bad_labelTrainIds.png: label ids \[40\] are outside the 19 trainIds"):
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


def test_every_package_error_is_a_diga_error():
    errors = set()
    modules = [m.name for m in pkgutil.walk_packages(diga.__path__, "diga.") if m.name != "diga.__main__"]
    for name in modules:
        for value in vars(importlib.import_module(name)).values():
            if isinstance(value, type) and issubclass(value, Exception) and value.__module__.startswith("diga."):
                errors.add(value)
    internal = {cls for cls in errors if cls.__name__.startswith("_")}  # caught where raised, never shown
    assert {cls.__name__ for cls in errors - internal if not issubclass(cls, DigaError)} == set()
    assert len(errors - internal) >= 14


def run_info_raising(monkeypatch, tmp_path, error: BaseException) -> int:
    """`diga run-info` with its stage function raising `error`."""
    def fail(settings, out):
        raise error

    monkeypatch.setattr(run_info, "write_run_info", fail)
    return cli.main(["run-info", "--config", str(TINY_CONFIG), "--out", str(tmp_path / "run_info.md")])


def test_a_diga_error_is_one_line_and_exit_1(monkeypatch, tmp_path, capsys):
    assert run_info_raising(monkeypatch, tmp_path, DatasetError("lists/train.txt:3: fix this line")) == 1
    assert capsys.readouterr().err.splitlines() == ["diga run-info: error: lists/train.txt:3: fix this line"]


def test_messages_of_the_package_go_to_stderr_with_the_command(monkeypatch, tmp_path, capsys):
    def write(settings, out):
        logging.getLogger("diga.report.run_info").info("[run-info] wrote %s", out)

    monkeypatch.setattr(run_info, "write_run_info", write)
    assert cli.main(["run-info", "--config", str(TINY_CONFIG), "--out", "x.md"]) == 0
    assert capsys.readouterr().err.splitlines() == ["diga run-info: [run-info] wrote x.md"]


def test_training_interrupted_and_ctrl_c_keep_their_exit_codes(monkeypatch, tmp_path, capsys):
    stopped = TrainingInterrupted("warmup: stopped by SIGTERM after iteration 3/10; run the stage again to resume")
    assert run_info_raising(monkeypatch, tmp_path, stopped) == INTERRUPTED_EXIT_CODE
    assert capsys.readouterr().err.splitlines() == [f"diga run-info: {stopped}"]
    assert run_info_raising(monkeypatch, tmp_path, KeyboardInterrupt()) == 130
    assert "interrupted (Ctrl-C)" in capsys.readouterr().err


@pytest.mark.parametrize("bug", [KeyError("stages"), ValueError("a bug"), FileNotFoundError("results/x.json")])
def test_an_unexpected_error_keeps_its_traceback(monkeypatch, tmp_path, capsys, bug):
    with pytest.raises(type(bug)) as raised:  # not turned into a one-line message: Python prints the traceback
        run_info_raising(monkeypatch, tmp_path, bug)
    assert raised.value is bug
    assert "error:" not in capsys.readouterr().err


def test_the_traceback_reaches_the_terminal(tmp_path):
    script = ("import sys; from diga import cli; from diga.report import run_info\n"
              "def fail(settings, out): raise KeyError('stages')\n"
              "run_info.write_run_info = fail\n"
              f"sys.exit(cli.main(['run-info', '--config', {str(TINY_CONFIG)!r}, '--out', 'x.md']))")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr and "KeyError: 'stages'" in result.stderr


def test_out_of_gpu_memory_gets_a_hint_and_keeps_its_traceback(monkeypatch, tmp_path, capsys):
    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    with pytest.raises(torch.OutOfMemoryError):
        run_info_raising(monkeypatch, tmp_path, oom)
    hint = capsys.readouterr().err
    assert "CUDA ran out of memory" in hint and "config/gpu_24gb.yaml" in hint and "batch" in hint
    assert (REPO / "config" / "gpu_24gb.yaml").is_file()  # the overlay the hint names
