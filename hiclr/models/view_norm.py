"""BatchNorm with per-view statistics inside one fused encoder call.

Calling an encoder once on the concatenation of several views launches fewer, larger kernels (it
can be faster on CUDA), but a plain BatchNorm would then normalise all views with one batch statistic, which changes the
results. `ViewBatchNorm*` layers split the batch back into its `views` equal chunks (view-major,
as `torch.cat(views)` lays them out) and normalise each with its own statistics, updating the
running statistics once per view in view order: exactly what separate calls do.

    encoder = convert_to_view_batchnorm(encoder)      # once; same parameters, same state_dict keys
    with views_in_batch(encoder, 3):
        out = encoder(torch.cat([x0, x1, x2]))        # == torch.cat([encoder(x) for x in ...])
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class _ViewSplit:
    """Mixin: while `views` > 1 and batch statistics are used, normalise each view's chunk on its own."""

    views: int = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        uses_batch_statistics = self.training or self.running_mean is None
        if self.views == 1 or not uses_batch_statistics:
            return super().forward(x)
        if x.shape[0] % self.views:
            raise ValueError(f"a batch of {x.shape[0]} does not split into {self.views} equal views")
        return torch.cat([super(_ViewSplit, self).forward(chunk) for chunk in x.chunk(self.views)])


class ViewBatchNorm1d(_ViewSplit, nn.BatchNorm1d):
    """`nn.BatchNorm1d` with per-view statistics while `views` > 1."""


class ViewBatchNorm2d(_ViewSplit, nn.BatchNorm2d):
    """`nn.BatchNorm2d` with per-view statistics while `views` > 1."""


class ViewBatchNorm3d(_ViewSplit, nn.BatchNorm3d):
    """`nn.BatchNorm3d` with per-view statistics while `views` > 1."""


_VIEW_CLASS = {nn.BatchNorm1d: ViewBatchNorm1d, nn.BatchNorm2d: ViewBatchNorm2d, nn.BatchNorm3d: ViewBatchNorm3d}


def convert_to_view_batchnorm(module: nn.Module) -> nn.Module:
    """`module` with every plain BatchNorm1d/2d/3d replaced by its `ViewBatchNorm` twin holding the
    same parameter and buffer objects (as `SyncBatchNorm.convert_sync_batchnorm` does)."""
    twin = _VIEW_CLASS.get(type(module))
    if twin is not None:
        new = twin.__new__(twin)
        new.__dict__.update(module.__dict__)
        new._parameters, new._buffers = dict(module._parameters), dict(module._buffers)
        return new
    for name, child in module.named_children():
        converted = convert_to_view_batchnorm(child)
        if converted is not child:
            setattr(module, name, converted)
    return module


@contextlib.contextmanager
def views_in_batch(module: nn.Module, views: int):
    """Within the block, every `ViewBatchNorm` of `module` treats its batch as `views` equal views."""
    layers = [m for m in module.modules() if isinstance(m, _ViewSplit)]
    for m in layers:
        m.views = int(views)
    try:
        yield
    finally:
        for m in layers:
            m.views = 1


def plain_batchnorm_count(module: nn.Module) -> int:
    """BatchNorm layers of `module` that would share statistics across views in a fused call."""
    return sum(isinstance(m, _BatchNorm) and not isinstance(m, _ViewSplit) for m in module.modules())
