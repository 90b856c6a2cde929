"""Learning-rate schedules as a per-step factor of the base lr (for `torch.optim.lr_scheduler.LambdaLR`).

`step` (reference): lr * gamma ** (number of milestones <= the current epoch), i.e. "x0.1 after epoch
250" is `milestones: [250]`; `cosine`: half a cosine from the base lr down to `min_lr` over the steps
after warm-up; `constant`. A linear warm-up over `warmup_epochs` (per step, from lr / warm-up steps
to lr) precedes any of them. `release`: the HiCLR release's fine-tune rule, constant within an
epoch and written with its 1-based epoch E = epoch + 1: lr * E / warmup_epochs while E <
warmup_epochs, then lr * gamma ** (number of milestones <= E). The factor is a pure function of
the global step, so a resumed run recomputes exactly the same lr.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def lr_factor_fn(optim: dict, steps_per_epoch: int) -> Callable[[int], float]:
    """The factor applied to the base lr at optimizer step `step` (0-based), from the `optim` section."""
    total = optim["epochs"] * steps_per_epoch
    warm = int(round(optim["warmup_epochs"] * steps_per_epoch))
    milestones = sorted(int(m) for m in optim["milestones"])
    gamma = float(optim["gamma"])
    floor = float(optim["min_lr"]) / float(optim["lr"]) if optim["lr"] else 0.0
    schedule = optim["schedule"]

    def factor(step: int) -> float:
        if schedule == "release":
            return release_factor(step // steps_per_epoch + 1, optim["warmup_epochs"], milestones, gamma)
        if step < warm:
            return (step + 1) / warm
        if schedule == "step":
            epoch = step // steps_per_epoch
            return gamma ** sum(epoch >= m for m in milestones)
        if schedule == "cosine":
            progress = min(1.0, (step - warm) / max(1, total - warm))
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return factor


def release_factor(epoch_1based: int, warmup_epochs: int, milestones, gamma: float) -> float:
    """The release's fine-tune lr factor at its 1-based epoch (its `adjust_lr`): E / warm-up while
    E < warm-up, else gamma ** #(milestones <= E)."""
    if epoch_1based < warmup_epochs:
        return epoch_1based / warmup_epochs
    return gamma ** sum(epoch_1based >= m for m in milestones)


def build_scheduler(optimizer: torch.optim.Optimizer, optim: dict, steps_per_epoch: int):
    """Per-step `LambdaLR`: call `scheduler.step()` after every `optimizer.step()`."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor_fn(optim, steps_per_epoch))


def _sgd(params, optim: dict) -> torch.optim.Optimizer:
    """The reference's: SGD with momentum, weight decay on every parameter."""
    return torch.optim.SGD(
        params,
        lr=optim["lr"],
        momentum=optim["momentum"],
        weight_decay=optim["weight_decay"],
        nesterov=bool(optim["nesterov"]),
    )


def _adamw(params, optim: dict) -> torch.optim.Optimizer:
    """AdamW (decoupled weight decay); `momentum` is its beta1, beta2 0.999."""
    return torch.optim.AdamW(
        params, lr=optim["lr"], betas=(optim["momentum"], 0.999), weight_decay=optim["weight_decay"]
    )


OPTIMIZERS = {"sgd": _sgd, "adamw": _adamw}


def build_optimizer(params, optim: dict) -> torch.optim.Optimizer:
    """The optimizer named by `optim.name` (OPTIMIZERS); `params` may be param groups."""
    return OPTIMIZERS[optim["name"]](params, optim)
