"""BatchNorm with statistics over every DDP rank (`model.sync_bn: true`), on any device.

`torch.nn.SyncBatchNorm` refuses CPU tensors (so it cannot run under gloo) and, converted over a
`ViewBatchNorm` layer, would drop its per-view statistics. `convert_sync_batchnorm` instead gives
each BatchNorm layer a twin class whose training forward all-reduces the batch's sum and count,
then its sum of squared deviations from the global mean (two differentiable all-reduces,
`torch.distributed.nn.functional.all_reduce`), so that W ranks of B clips normalise with the
statistics of the W * B clips, the gradients flow across ranks, and the running statistics are
updated as one rank with the whole batch would. Per-view layers keep one statistic per view.
Outside training, or without a process group of more than one rank, the layer is the plain one.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def _group_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _SyncStatistics:
    """Mixin placed before a BatchNorm class: batch statistics over all ranks while training."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or _group_size() == 1:
            return super().forward(x)
        views = getattr(self, "views", 1)  # a ViewBatchNorm inside a fused call
        if views > 1:
            return torch.cat([self._synced(chunk) for chunk in x.chunk(views)])
        return self._synced(x)

    def _synced(self, x: torch.Tensor) -> torch.Tensor:
        from torch.distributed.nn.functional import all_reduce

        self._check_input_dim(x)
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()
        local = torch.cat([xf.sum(dims), xf.new_tensor([x.numel() // x.shape[1]])])
        total = all_reduce(local)
        count = total[-1]
        mean = total[:-1] / count
        centred = xf - mean.view(shape)
        var = all_reduce((centred * centred).sum(dims)) / count
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


_TWINS: dict[type, type] = {}


def _twin(cls: type) -> type:
    if cls not in _TWINS:
        _TWINS[cls] = type(f"Sync{cls.__name__}", (_SyncStatistics, cls), {"__module__": __name__})
    return _TWINS[cls]


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """`module` with every BatchNorm layer turned into its synchronised twin, in place: the same
    parameter and buffer objects, the same `state_dict` keys (checkpoints stay interchangeable)."""
    if isinstance(module, _BatchNorm) and not isinstance(module, _SyncStatistics):
        if isinstance(module, nn.SyncBatchNorm):
            return module
        module.__class__ = _twin(type(module))
        return module
    for child in module.children():
        convert_sync_batchnorm(child)
    return module


def synchronised_count(module: nn.Module) -> int:
    """How many BatchNorm layers of `module` share their statistics across ranks."""
    return sum(isinstance(m, _SyncStatistics) for m in module.modules())
