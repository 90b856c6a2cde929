"""A non-finite loss stops the run, found without a host-device sync per step and named by its step."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from hiclr.common.errors import UserError
from hiclr.engine.checkpoint import load_checkpoint
from hiclr.engine.distributed import DistInfo, any_rank


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite; nothing was saved after the last good checkpoint."""


class FiniteWatch:
    """The first step whose loss is not finite, remembered on the device.

    `record` runs every step without a host-device synchronisation; `check` (one sync) runs every
    `run.log_every` steps, at the end of each epoch and before a save on a signal, so a bad loss
    is found before anything is saved after it and named by its epoch and step (the optimizer has
    taken up to `log_every` steps with it by then; nothing of them is kept).
    """

    def __init__(self, device: torch.device):
        self.step = torch.full((), -1, dtype=torch.long, device=device)
        self.value = torch.zeros((), device=device)
        self.bad_inputs = torch.zeros((), dtype=torch.long, device=device)  # at that step

    def record(self, loss_value: torch.Tensor, step: int, x: torch.Tensor | None = None) -> None:
        first = ~torch.isfinite(loss_value) & (self.step < 0)
        self.step.masked_fill_(first, step)
        self.value = torch.where(first, loss_value, self.value)
        if x is not None:
            self.bad_inputs = torch.where(first, (~torch.isfinite(x)).sum(), self.bad_inputs)

    def check(
        self,
        dist: DistInfo,
        device: torch.device,
        steps_per_epoch: int,
        last_path,
        model: nn.Module | None = None,
        bf16: bool = False,
    ) -> None:
        """Raise `NonFiniteLoss` (on every rank) if any rank has seen a non-finite loss, naming the
        cause (`non_finite_cause`)."""
        step = int(self.step)
        if not any_rank(step >= 0, dist, device):
            return
        if step < 0:
            raise NonFiniteLoss(
                f"the loss is not finite on another rank; stopped without saving, the "
                f"last good checkpoint is {describe_last(last_path)}"
            )
        epoch, batch = divmod(step - 1, steps_per_epoch)
        raise NonFiniteLoss(
            f"the loss is {float(self.value)} at epoch {epoch + 1}, step {step} (batch {batch + 1} of "
            f"{steps_per_epoch}); stopped without saving, the last good checkpoint is "
            f"{describe_last(last_path)}; {non_finite_cause(int(self.bad_inputs), model, bf16)}"
        )


def describe_last(path: Path | None) -> str:
    if path is None or not path.exists():
        return "none (no epoch finished yet)"
    try:
        ckpt = load_checkpoint(path)
    except UserError:
        return f"{path} (unreadable)"
    return f"{path} (epoch {ckpt['epoch']}, step {ckpt['step']})"


def non_finite_cause(bad_inputs: int, model: nn.Module | None, bf16: bool) -> str:
    """What to do about a non-finite loss: bad input, bad weights, or the numerics (lr, bf16).
    bad_inputs: the number of non-finite input values of the step whose loss was not finite."""
    if bad_inputs:
        return (
            f"that step's batch itself holds {bad_inputs} non-finite input values: the data is bad, "
            f"check it with `hiclr-prep verify` and re-create it"
        )
    if model is not None and any(not bool(torch.isfinite(p).all()) for p in model.parameters()):
        return "the weights are already non-finite: lower optim.lr (or set optim.grad_clip)"
    if bf16:
        return "the input and weights are finite: lower optim.lr or use engine.precision=fp32 (this run is bf16)"
    return "the input and weights are finite and this run is fp32: lower optim.lr or set optim.grad_clip"
