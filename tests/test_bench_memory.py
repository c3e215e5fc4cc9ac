"""`diga bench-memory`: live tensor bytes counted by hand-checkable cases, and the crop extrapolation."""

from __future__ import annotations

import csv

import pytest
import torch
import yaml

from conftest import TINY_CONFIG
from diga import config as config_module
from diga.bench.memory import LiveTensorMemory, estimate_memory, fit_line, iteration_peak_bytes
from diga.cli import main


def test_live_memory_counts_each_storage_once_and_releases_it():
    with LiveTensorMemory() as memory:
        a = torch.ones(1000)            # 4,000 bytes
        b = a * 2                       # 8,000 live
        del a                           # 4,000
        c = torch.cat([b, b, b[:10]])   # b counted once, its view adds nothing: 4,000 + 8,040
        view = c[5:]
        del b, c                        # the view keeps c's storage alive
        assert memory.current == 8040
        del view
    assert memory.peak == 4000 + 8000 + 40 and memory.current == 0


def test_peak_of_a_linear_layer_training_step_by_hand():
    torch.manual_seed(0)
    layer = torch.nn.Linear(1000, 1000, bias=False)  # weight 4,000,000 bytes
    x = torch.randn(500, 1000)                         # 2,000,000 bytes, read by the forward

    def step(_):
        layer.weight.grad = None
        layer(x).relu().sum().backward()

    # Peak, in the backward's weight-gradient product: weight 4 MB + input 2 MB + ReLU's input gradient 2 MB +
    # the weight gradient 4 MB, plus the 4-byte loss and its 4-byte seed gradient. The saved ReLU output (2 MB)
    # was freed as soon as ReLU's backward had run.
    assert iteration_peak_bytes(step) == 12_000_008


def test_line_fit_recovers_intercept_and_slope():
    intercept, slope = fit_line([100.0, 400.0, 900.0], [3.0 + 0.5 * a for a in (100.0, 400.0, 900.0)])
    assert intercept == pytest.approx(3.0) and slope == pytest.approx(0.5)


def test_estimate_extrapolates_each_stage_from_two_crops():
    settings = config_module.validate(yaml.safe_load(TINY_CONFIG.read_text()), str(TINY_CONFIG))
    rows = estimate_memory(settings, ["warmup", "evaluate"], ["fp32", "bf16"], [(16, 32), (32, 64)], (64, 128),
                           (64, 128))
    assert [(r["stage"], r["mode"]) for r in rows] == [("warmup", "fp32"), ("warmup", "bf16"),
                                                       ("evaluate", "fp32"), ("evaluate", "bf16")]
    for row in rows:
        small, large = row["peak_gib_16x32"], row["peak_gib_32x64"]
        assert 0 < small < large  # activations grow with the crop
        # The line through the two points, at 64x128 (16x the first area, 4x the second).
        slope = (large - small) / (32 * 64 - 16 * 32)
        assert row["predicted_peak_gib"] == pytest.approx(small + slope * (64 * 128 - 16 * 32), abs=0.006)
    warmup_fp32, warmup_bf16 = rows[0], rows[1]
    assert warmup_bf16["gib_per_megapixel"] < warmup_fp32["gib_per_megapixel"]  # bf16 activations: half the bytes


def test_bench_memory_command_writes_csv_and_refuses_one_area(tmp_path, capsys):
    out = tmp_path / "memory.csv"
    assert main(["bench-memory", "--config", str(TINY_CONFIG), "--stages", "evaluate", "--modes", "fp32",
                 "--crops", "16x32", "32x64", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 1 and rows[0]["at"] == "1024x2048" and rows[0]["device"].startswith("CPU")
    assert main(["bench-memory", "--config", str(TINY_CONFIG), "--crops", "16x32", "32x16", "--out", str(out)]) != 0
    assert "two --crops of different areas" in capsys.readouterr().err
    assert main(["bench-memory", "--config", str(TINY_CONFIG), "--modes", "bf16+cl+compile", "--out", str(out)]) != 0
    assert "bench-memory modes must be among" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench-memory", "--config", str(TINY_CONFIG), "--crops", "16by32", "--out", str(out)])
