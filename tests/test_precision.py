"""Precision modes: bf16 autocast keeps the numerics (loss curve within tolerance of fp32), outputs come back in
fp32, channels_last changes no number, a failing torch.compile falls back to eager."""

from __future__ import annotations

import copy
import csv
import statistics

import pytest
import torch

from conftest import REPO
from diga import config as config_module
from diga.data.toycity import ToyCitySpec, write_toycity
from diga.models.factory import build_segmenter
from diga.runtime.precision import Compiled, Precision, precision_for
from diga.train.supervised import train_supervised

# Stated tolerance: over the first 40 iterations on ToyCity (version 1's network, batch 4, 64x128 crops) the
# bf16 loss stays within 5 % of the fp32 loss at every iteration and within 1 % on average (measured:
# 1.3 % and 0.27 %). Later iterations drift apart as any two runs of a chaotic optimisation do.
ITERATIONS, MAX_REL, MEAN_REL = 40, 0.05, 0.01
SMALL_NET = {"block": "basic", "layers": [1, 1, 1, 1], "width": 8, "head_channels": 16, "head_rates": [2],
             "gn_groups": 4, "se_reduction": 4, "dropout": 0.1, "freeze_backbone_bn": False, "init": "random"}


def test_auto_is_fp32_on_cpu_and_bf16_channels_last_on_cuda():
    settings = {"train": {"precision": "auto", "channels_last": "auto", "compile": False}}
    cpu = precision_for(settings, torch.device("cpu"))
    assert (cpu.mode, cpu.channels_last) == ("fp32", False)
    gpu = precision_for(settings, torch.device("cuda"))  # only resolves the choice: no GPU needed
    assert (gpu.mode, gpu.channels_last, gpu.compile) == ("bf16", True, False)
    fp32_gpu = precision_for({"train": {"precision": "fp32", "channels_last": "auto", "compile": False}},
                             torch.device("cuda"))
    assert (fp32_gpu.mode, fp32_gpu.channels_last) == ("fp32", False)
    assert torch.backends.cuda.matmul.fp32_precision == "ieee"  # fp32 means IEEE fp32, not TF32
    with pytest.raises(ValueError, match="train.precision"):
        Precision("fp16", False, False, "cpu")


def test_bf16_outputs_are_fp32_and_close_to_fp32():
    torch.manual_seed(0)
    model = build_segmenter(SMALL_NET, 19).eval()
    images = torch.rand(2, 3, 32, 64)
    fp32 = Precision("fp32", False, False, "cpu").run(model, images)
    bf16 = Precision("bf16", False, False, "cpu").run(model, images)
    assert bf16.logits.dtype == torch.float32 and bf16.feat.dtype == torch.float32
    assert not torch.equal(bf16.logits, fp32.logits)  # bf16 really ran
    scale = fp32.logits.abs().max()
    assert (bf16.logits - fp32.logits).abs().max() < 0.05 * scale


def test_channels_last_gives_the_same_numbers():
    torch.manual_seed(0)
    model = build_segmenter(SMALL_NET, 19).eval()
    nhwc = copy.deepcopy(model)
    precision = Precision("fp32", True, False, "cpu")
    precision.place(nhwc)
    assert next(p for p in nhwc.parameters() if p.dim() == 4).is_contiguous(memory_format=torch.channels_last)
    images = torch.rand(2, 3, 32, 64)
    reference = Precision("fp32", False, False, "cpu").run(model, images).logits
    assert torch.allclose(precision.run(nhwc, images).logits, reference, atol=1e-5)


def test_failed_compile_falls_back_to_eager(caplog):
    module = torch.nn.Linear(3, 2)
    compiled = Compiled(module)

    def broken(*args):
        raise RuntimeError("no compiler here")

    compiled.compiled = broken
    x = torch.rand(4, 3)
    assert torch.equal(compiled(x), module(x))
    assert compiled.compiled is None
    assert "torch.compile failed" in caplog.text


def test_bf16_loss_curve_within_tolerance_of_fp32(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # the settings the tolerance was measured on (the default before 2026-12-02)
    settings = config_module.load(str(REPO / "config" / "config.yaml"), str(REPO / "config" / "toycity_v1.yaml"))
    settings["toycity"].update(n_source=40, n_target_train=8, n_target_val=8)
    write_toycity(ToyCitySpec(**settings["toycity"]), settings["data"]["root"], progress=False)
    settings["stages"]["source_only"]["iterations"] = ITERATIONS
    settings["train"]["checkpoint_every"] = 0
    curves = {}
    for mode in ("fp32", "bf16"):
        run = copy.deepcopy(settings)
        run["train"]["precision"] = mode
        train_supervised(run, 0, "source_only", tmp_path / mode)
        with open(tmp_path / mode / "train_log.csv") as log:
            curves[mode] = [float(row["loss"]) for row in csv.DictReader(log)]
    relative = [abs(a - b) / abs(a) for a, b in zip(curves["fp32"], curves["bf16"], strict=True)]
    assert len(relative) == ITERATIONS
    assert 0 < statistics.mean(relative) < MEAN_REL
    assert max(relative) < MAX_REL
    assert curves["fp32"][-1] < 0.6 * curves["fp32"][0]  # it learned, in both modes
    assert curves["bf16"][-1] < 0.6 * curves["bf16"][0]
