"""bf16 against fp32 on the same random inputs: how far the logits, the loss and the gradient move.

Run by `diga bench-numerics` on CPU and by benchmarks/gpu_check.sh at the paper's network and crop on a GPU.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from diga.bench.harness import FixedBatches, bench_settings
from diga.method.losses import cross_entropy
from diga.runtime.checkpoints import new_segmenter
from diga.runtime.precision import precision_for


def _loss_and_grad(model: torch.nn.Module, precision, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    output = precision.run(model, batch["image"])
    logits = F.interpolate(output.logits, size=batch["label"].shape[-2:], mode="bilinear", align_corners=True)
    loss = cross_entropy(logits, batch["label"])
    loss.backward()
    grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return output.logits.detach(), loss.detach(), grad


def compare_bf16(settings: dict, device: torch.device, batch: int, mode: str = "bf16+cl") -> dict[str, float]:
    """One forward+backward of the segmenter in fp32 and in `mode` from identical weights and inputs."""
    crop, num_classes = tuple(settings["data"]["crop"]), settings["data"]["num_classes"]
    inputs = next(FixedBatches(batch, crop, num_classes, device, seed=0))
    torch.manual_seed(0)
    fp32_settings, other_settings = bench_settings(settings, "fp32"), bench_settings(settings, mode)
    model = new_segmenter(fp32_settings, device).train()
    other = copy.deepcopy(model)
    # Dropout draws must match: the same seed before each pass.
    torch.manual_seed(1)
    logits, loss, grad = _loss_and_grad(model, precision_for(fp32_settings, device), inputs)
    precision = precision_for(other_settings, device)
    precision.place(other)
    torch.manual_seed(1)
    logits_b, loss_b, grad_b = _loss_and_grad(other, precision, inputs)
    precision_for(fp32_settings, device)  # leave the process in IEEE fp32
    return {
        "logits_max_abs_err_over_std": float((logits_b - logits).abs().max() / logits.std()),
        "argmax_agreement": float((logits_b.argmax(1) == logits.argmax(1)).float().mean()),
        "loss_fp32": float(loss),
        "loss_rel_diff": float((loss_b - loss).abs() / loss.abs()),
        "grad_cosine": float(F.cosine_similarity(grad_b, grad, dim=0)),
        "grad_norm_ratio": float(grad_b.norm() / grad.norm()),
    }
