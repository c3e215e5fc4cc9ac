"""SGD over parameter lists that may name a tensor several times, as the official DiGA training did.

The official optimiser lists the backbone by walking every module of conv1, bn1, layer1..layer4 and, for each,
all its (recursive) parameters (`diga.models.deeplabv2.official_backbone_listing`), so a tensor is listed once per
enclosing module of that walk: a block's conv 3 times (stage, block, conv), a shortcut conv 4 times. The SGD of
PyTorch 1.7 looped over that list and updated a listed tensor at each appearance, with weight decay and its one
momentum buffer, so such a tensor takes several momentum steps per iteration. Current PyTorch warns on duplicates
and treats them differently; `ListedSGD` reproduces the 1.7 loop. Updates of different tensors are independent,
so only each tensor's count matters.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def listing_counts(params: Iterable[nn.Parameter]) -> tuple[list[nn.Parameter], list[int]]:
    """(each tensor once, in order of first appearance; how many times it is listed)."""
    unique: dict[int, nn.Parameter] = {}
    counts: dict[int, int] = {}
    for p in params:
        unique.setdefault(id(p), p)
        counts[id(p)] = counts.get(id(p), 0) + 1
    return list(unique.values()), [counts[key] for key in unique]


class ListedSGD(torch.optim.Optimizer):
    """SGD (momentum, weight decay, no dampening or Nesterov) in which a tensor listed n times is updated n times
    in sequence per step, sharing one momentum buffer: PyTorch 1.7's loop over a list with repeats.

    Each group holds every tensor once with its count in `group["repeats"]`, so the state (and a resumed run)
    stays one entry per tensor.
    """

    def __init__(self, groups: list[dict], lr: float, momentum: float, weight_decay: float):
        groups = [dict(group) for group in groups]
        for group in groups:
            group["params"], group["repeats"] = listing_counts(group["params"])
        super().__init__(groups, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
            for p, repeats in zip(group["params"], group["repeats"], strict=True):
                if p.grad is None:
                    continue
                state = self.state[p]
                for _ in range(repeats):
                    d_p = p.grad.add(p, alpha=weight_decay) if weight_decay != 0 else p.grad
                    if momentum != 0:
                        if "momentum_buffer" not in state:
                            state["momentum_buffer"] = torch.clone(d_p).detach()
                        else:
                            state["momentum_buffer"].mul_(momentum).add_(d_p)
                        d_p = state["momentum_buffer"]
                    p.add_(d_p, alpha=-lr)
        return None
