"""Optimizer groups, the poly LR schedule, and the training loop's NaN guard and CSV log."""

from __future__ import annotations

import csv

import pytest
import torch
from torch import nn

from diga.train.loop import NonFiniteLossError, build_optimizer, poly_factor, run_training, set_poly_lr

OPTIM = {"lr": 0.01, "head_lr_mult": 10, "momentum": 0.9, "weight_decay": 5e-4}


def two_group_optimizer():
    backbone, head = nn.Linear(2, 2), nn.Linear(2, 1)
    return build_optimizer(list(backbone.parameters()), list(head.parameters()), OPTIM)


@pytest.mark.parametrize(("iteration", "total", "power", "expected"), [
    (0, 100, 0.9, 1.0),
    (50, 100, 1.0, 0.5),
    (75, 100, 2.0, 0.0625),          # (1/4)^2
    (50, 100, 0.9, 0.5358867313),    # 2^-0.9 = exp(-0.9 * 0.693147) = exp(-0.623832)
    (100, 100, 0.9, 0.0),
])
def test_poly_factor(iteration, total, power, expected):
    assert poly_factor(iteration, total, power) == pytest.approx(expected)


def test_build_optimizer_head_at_ten_times_the_backbone_lr():
    optimizer = two_group_optimizer()
    backbone, head = optimizer.param_groups
    assert (backbone["name"], head["name"]) == ("backbone", "head")
    assert backbone["lr"] == pytest.approx(0.01) and backbone["initial_lr"] == pytest.approx(0.01)
    assert head["lr"] == pytest.approx(0.1) and head["initial_lr"] == pytest.approx(0.1)
    assert len(backbone["params"]) == 2 and len(head["params"]) == 2  # weight + bias each
    for group in optimizer.param_groups:
        assert group["momentum"] == pytest.approx(0.9)
        assert group["weight_decay"] == pytest.approx(5e-4)


def test_set_poly_lr_scales_both_groups():
    optimizer = two_group_optimizer()
    # t = 50, T = 100, power 0.9: factor 0.5^0.9 = 0.535887
    # backbone 0.01 * 0.535887 = 0.00535887; head 0.1 * 0.535887 = 0.0535887
    returned = set_poly_lr(optimizer, 50, 100, 0.9)
    assert returned == pytest.approx(0.00535887, rel=1e-6)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.00535887, rel=1e-6)
    assert optimizer.param_groups[1]["lr"] == pytest.approx(0.0535887, rel=1e-6)
    # it always starts from initial_lr, not from the current lr: t = 0 restores the base values
    set_poly_lr(optimizer, 0, 100, 0.9)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01)
    assert optimizer.param_groups[1]["lr"] == pytest.approx(0.1)
    assert optimizer.param_groups[1]["initial_lr"] == pytest.approx(0.1)


def one_parameter_setup():
    weight = nn.Parameter(torch.tensor(1.0))
    optimizer = torch.optim.SGD([{"params": [weight], "lr": 0.1, "initial_lr": 0.1}], lr=0.1)
    return weight, optimizer


def test_run_training_logs_every_term_lr_and_stats(tmp_path):
    weight, optimizer = one_parameter_setup()

    def step(iteration):
        return {"a": 3 * weight, "b": torch.tensor(0.5)}, {"frac": iteration / 10}

    log = tmp_path / "logs" / "train_log.csv"
    rows = run_training("toy", step, optimizer, iterations=3, power=1.0, log_every=1, log_csv=log)
    # plain SGD, grad of 3w is 3, lr = 0.1 * (1 - t/3):
    # it 1: lr 0.1,    a = 3*1.0 = 3.0, loss 3.5; w <- 1.0 - 0.1*3    = 0.7
    # it 2: lr 0.0667, a = 3*0.7 = 2.1, loss 2.6; w <- 0.7 - 0.0667*3 = 0.5
    # it 3: lr 0.0333, a = 3*0.5 = 1.5, loss 2.0; w <- 0.5 - 0.0333*3 = 0.4
    assert weight.item() == pytest.approx(0.4)
    with open(log, newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["iteration", "loss", "a", "b", "lr", "frac"]
        logged = list(reader)
    assert [int(row["iteration"]) for row in logged] == [1, 2, 3]
    assert [float(row["loss"]) for row in logged] == pytest.approx([3.5, 2.6, 2.0])
    assert [float(row["a"]) for row in logged] == pytest.approx([3.0, 2.1, 1.5])
    assert [float(row["b"]) for row in logged] == pytest.approx([0.5, 0.5, 0.5])
    assert [float(row["lr"]) for row in logged] == pytest.approx([0.1, 0.2 / 3, 0.1 / 3])
    assert [float(row["frac"]) for row in logged] == pytest.approx([0.0, 0.1, 0.2])
    assert [row["loss"] for row in rows] == pytest.approx([3.5, 2.6, 2.0])


def test_run_training_raises_on_a_nan_term_and_writes_no_log(tmp_path):
    weight, optimizer = one_parameter_setup()

    def step(iteration):
        bad = torch.tensor(float("nan")) if iteration == 1 else torch.tensor(0.0)
        return {"a": 3 * weight, "bad": bad}, {}

    log = tmp_path / "train_log.csv"
    with pytest.raises(NonFiniteLossError) as info:
        run_training("toy", step, optimizer, iterations=3, power=1.0, log_every=1, log_csv=log)
    message = str(info.value)
    assert "not finite" in message
    assert "iteration 2" in message  # the second iteration (iteration index 1), counted from 1
    assert "bad=nan" in message
    # losses are read back (and checked) after the step, every log_every iterations: the NaN step ran, the
    # third did not, and no log was written
    assert not log.exists()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * (1 - 1 / 3))


def test_run_training_raises_on_an_infinite_term(tmp_path):
    weight, optimizer = one_parameter_setup()

    def step(iteration):
        return {"a": weight * float("inf")}, {}

    with pytest.raises(NonFiniteLossError, match="not finite at iteration 1"):
        run_training("toy", step, optimizer, iterations=2, power=0.9, log_every=1,
                     log_csv=tmp_path / "log.csv")
    assert not (tmp_path / "log.csv").exists()


def test_non_finite_check_at_log_interval_names_the_first_bad_iteration(tmp_path):
    weight, optimizer = one_parameter_setup()
    calls = []

    def step(iteration):
        calls.append(iteration)
        bad = torch.tensor(float("nan")) if iteration in (1, 2) else torch.tensor(0.0)
        return {"a": 3 * weight, "bad": bad}, {}

    with pytest.raises(NonFiniteLossError, match="not finite at iteration 2 "):
        run_training("toy", step, optimizer, iterations=8, power=1.0, log_every=4, log_csv=tmp_path / "log.csv")
    assert calls == [0, 1, 2, 3]  # read back at iteration 4, the first log interval
