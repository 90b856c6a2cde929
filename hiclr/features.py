"""Frozen-encoder features: the input of the linear probe, kNN and `hiclr embed`."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    x: torch.Tensor,
    *,
    batch_size: int = 256,
    device="cpu",
    stream: str = "joint",
    progress: bool = False,
) -> torch.Tensor:
    """(N, C, T, V, M) clips -> (N, D) float32 features on the CPU, in eval mode, without gradients.

    The stream (joint, motion or bone) is derived per batch on `device`, as in pre-training.
    `encoder` is moved to `device`; its train/eval mode is restored afterwards.
    """
    from hiclr.augment.streams import to_stream  # lazily: keeps `features` light to import

    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    device = torch.device(device)
    was_training = encoder.training
    encoder.to(device).eval()
    from hiclr.common.progress import progress as progress_of  # a bar on a terminal, lines in a log

    batches = range(0, len(x), batch_size)
    out = []
    try:
        with progress_of(len(batches), desc="features", unit="batch", enabled=progress) as bar:
            for i in batches:
                out.append(encoder(to_stream(x[i : i + batch_size].to(device, torch.float32), stream)).float().cpu())
                bar.update(1)
    finally:
        encoder.train(was_training)
    if not out:
        return torch.empty(0, getattr(encoder, "feature_dim", 0))
    return torch.cat(out)


@torch.no_grad()
def recalibrate_batchnorm(
    encoder: nn.Module, x: torch.Tensor, *, batch_size: int = 128, device="cpu", stream: str = "joint"
) -> nn.Module:
    """Re-estimate every BatchNorm's running statistics on `x` (cumulative average, dropout off).

    A randomly initialised encoder's BatchNorms hold the default statistics (mean 0, var 1), so in
    eval mode it maps every clip to nearly the same feature; a fair random-init baseline first
    measures the statistics of the data, as training would. Returns the encoder in eval mode.
    """
    from hiclr.augment.streams import to_stream

    device = torch.device(device)
    encoder.to(device)
    for m in encoder.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    encoder.train()
    for m in encoder.modules():
        if isinstance(m, nn.Dropout):
            m.eval()
    for start in range(0, len(x), batch_size):
        encoder(to_stream(x[start : start + batch_size].to(device, torch.float32), stream))
    return encoder.eval()
