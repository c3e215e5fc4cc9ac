"""Gradient accumulation (stages.translator.accumulate): the full batch's losses and gradients, one part in memory."""

from __future__ import annotations

import copy

import pytest
import torch
import yaml

from conftest import TINY_CONFIG
from diga import config as config_module
from diga.bench.harness import FixedBatches
from diga.bench.memory import iteration_peak_bytes
from diga.runtime.precision import Precision
from diga.train.loop import accumulate, split_batch
from diga.train.translator import build_translator_training, translator_step

CPU = torch.device("cpu")


def translator_settings(**overrides) -> dict:
    settings = config_module.validate(yaml.safe_load(TINY_CONFIG.read_text()), str(TINY_CONFIG))
    # VGG perceptual, random weights
    settings["stages"]["translator"].update(batch=4, perceptual_weight=0.1, **overrides)
    return settings


def one_translator_iteration(parts: int, crop=(32, 64)):
    """Losses of iteration 0 and the gradients they leave, from the same initial weights and the same batch."""
    settings = translator_settings(accumulate=parts)
    torch.manual_seed(0)
    nets = build_translator_training(settings, CPU, Precision("fp32", False, False, "cpu"), pretrained_vgg=False)
    source = FixedBatches(4, crop, 5, CPU, seed=1)
    target = FixedBatches(4, crop, 5, CPU, seed=2)
    step = translator_step(settings, nets, source, target, Precision("fp32", False, False, "cpu"))
    nets["opt_gen"].zero_grad(set_to_none=True)
    terms, stats = step(0)
    torch.stack(list(terms.values())).sum().backward()
    grads = {f"{name}.{p}": param.grad.clone() for name in ("s2t", "t2s", "dis_target", "dis_source")
             for p, param in nets[name].named_parameters()}
    return {k: float(v.detach()) for k, v in terms.items()}, float(stats["dis"]), grads


def test_translator_accumulation_matches_the_full_batch():
    full_terms, full_dis, full_grads = one_translator_iteration(1)
    for parts in (2, 4):
        terms, dis, grads = one_translator_iteration(parts)
        assert set(terms) == {"adv", "cycle", "self", "edge", "perceptual"}
        for name, value in full_terms.items():
            assert terms[name] == pytest.approx(value, rel=1e-5), name
        assert dis == pytest.approx(full_dis, rel=1e-5)
        # The discriminators' gradients (kept after their Adam step) and the generators' ones, per network: the
        # same vector up to float rounding (measured: 1e-7 to 7e-6 relative; without the 1/parts scaling it
        # would be 1, twice the gradient).
        for net in ("s2t", "t2s", "dis_target", "dis_source"):
            names = [name for name in full_grads if name.startswith(net + ".")]
            full = torch.cat([full_grads[name].flatten() for name in names])
            accumulated = torch.cat([grads[name].flatten() for name in names])
            assert full.norm() > 0
            assert float((accumulated - full).norm() / full.norm()) < 1e-4, (parts, net)


def test_translator_accumulation_holds_one_part_in_memory():
    def peak(parts: int) -> int:
        settings = translator_settings(accumulate=parts)
        precision = Precision("fp32", False, False, "cpu")
        nets = build_translator_training(settings, CPU, precision, pretrained_vgg=False)
        step = translator_step(settings, nets, FixedBatches(4, (64, 128), 5, CPU, seed=1),
                               FixedBatches(4, (64, 128), 5, CPU, seed=2), precision)

        def iteration(i):
            nets["opt_gen"].zero_grad(set_to_none=True)
            terms, _ = step(i)
            torch.stack(list(terms.values())).sum().backward()
            nets["opt_gen"].step()

        return iteration_peak_bytes(iteration)

    whole, halves = peak(1), peak(2)
    assert halves < 0.7 * whole  # activations dominate: half the images, about half the peak


def test_accumulate_scales_and_backpropagates_each_part():
    weight = torch.tensor([2.0], requires_grad=True)
    data = torch.tensor([1.0, 3.0, 5.0, 7.0])
    chunks = split_batch({"x": data}, 2)
    assert [c["x"].tolist() for c in chunks] == [[1.0, 3.0], [5.0, 7.0]]
    terms = accumulate(2, lambda k: {"mse": ((weight * chunks[k]["x"]) ** 2).mean()})
    terms["mse"].backward()  # the last part's backward, as the loop does
    # mean((2x)^2) over all four = 4 * (1 + 9 + 25 + 49) / 4 = 84; d/dw mean(w^2 x^2) = 2 w mean(x^2) = 84
    assert float(terms["mse"].detach()) == pytest.approx(84.0) and float(weight.grad) == pytest.approx(84.0)
    with pytest.raises(ValueError, match="cannot be split into 3 equal micro-batches"):
        split_batch({"x": data}, 3)


def test_config_refuses_an_accumulation_that_does_not_divide_the_batch():
    settings = yaml.safe_load(TINY_CONFIG.read_text())
    bad = copy.deepcopy(settings)
    bad["stages"]["translator"].update(batch=2, accumulate=3)
    with pytest.raises(config_module.ConfigError,
                       match="stages.translator.accumulate is 3 but stages.translator.batch is 2"):
        config_module.validate(bad, "bad.yaml")


def test_config_files_merge_in_order_like_snakemake_configfiles(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("stages: {translator: {accumulate: 2}}\ntrain: {precision: bf16}\n")
    base = config_module.load(str(TINY_CONFIG))
    merged = config_module.load(str(TINY_CONFIG), str(overlay))
    assert merged["stages"]["translator"]["accumulate"] == 2 and merged["train"]["precision"] == "bf16"
    # Nested keys the overlay does not name are the first file's.
    assert merged["stages"]["translator"]["batch"] == base["stages"]["translator"]["batch"] == 2
    assert merged["stages"]["translator"]["width"] == 4 and merged["train"]["log_every"] == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages: {translator: {accumulate: 3}}\n")
    with pytest.raises(config_module.ConfigError, match=f"{TINY_CONFIG} \\+ {bad}: inconsistent batch"):
        config_module.load(str(TINY_CONFIG), str(bad))
