"""BatchNorm with per-view statistics inside one fused encoder call.

Calling an encoder once on the concatenation of several views launches fewer, larger kernels (it
can be faster on CUDA), but a plain BatchNorm would then normalise all views with one batch statistic, which changes the
results. `ViewBatchNorm*` layers split the batch back into its `views` equal chunks (view-major,
as `torch.cat(views)` lays them out) and normalise each with its own statistics, updating the
running statistics once per view in view order: exactly what separate calls do.

    encoder = convert_to_view_batchnorm(encoder)      # once; same parameters, same state_dict keys
    with views_in_batch(encoder, 3):
        out = encoder(torch.cat([x0, x1, x2]))        # == torch.cat([encoder(x) for x in ...])

`call_views` runs a learner's query views through its encoder in the `ssl.fused_views` mode.
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


#: How several views go through one encoder (`ssl.fused_views`): one call per view (the reference),
#: one call for all with BatchNorm statistics per view (the same results), one call with statistics
#: shared by all views (changes the results), or "auto": per_view on CUDA, separate on CPU.
FUSED_VIEWS = ("auto", "separate", "per_view", "shared")


def fused_views_mode(value) -> str:
    """`value` if it names a `FUSED_VIEWS` mode, else a ValueError listing them."""
    if not isinstance(value, str) or value not in FUSED_VIEWS:
        raise ValueError(f"fused_views must be one of {', '.join(FUSED_VIEWS)}, got {value!r}")
    return value


def resolve_fused_views(mode: str, device: torch.device) -> str:
    """The mode a step runs: "auto" is per_view on CUDA and separate elsewhere."""
    if mode != "auto":
        return mode
    return "per_view" if device.type == "cuda" else "separate"


def call_views(encoder: nn.Module, inputs, edges, call, mode: str) -> list[tuple]:
    """`call(x, edges)` (a tuple of per-sample tensors) for every input, in input order.

    `encoder`: the (unwrapped) module `call` runs, converted by `convert_to_view_batchnorm`;
    `edges`: per input None or its view's graph perturbation. Unless `mode` resolves to separate,
    the inputs without a perturbation share one call (per-view statistics unless `mode` is shared);
    an input with one gets a call of its own, since a perturbation holds for its whole call."""
    edges = [None] * len(inputs) if edges is None else list(edges)
    outputs: list[tuple | None] = [None] * len(inputs)
    plain = [i for i, e in enumerate(edges) if e is None]
    if len(plain) > 1 and resolve_fused_views(mode, inputs[0].device) != "separate":
        group = [inputs[i] for i in plain]
        if mode == "shared":
            context = contextlib.nullcontext()
        elif len({x.shape[0] for x in group}) > 1:
            raise ValueError(f"fused_views per_view needs views of one batch size, got {[x.shape[0] for x in group]}")
        else:
            context = views_in_batch(encoder, len(group))
        with context:
            fused = call(torch.cat(group, dim=0), None)
        sizes = [x.shape[0] for x in group]
        for i, parts in zip(plain, zip(*(t.split(sizes) for t in fused))):
            outputs[i] = parts
    for i, x in enumerate(inputs):
        if outputs[i] is None:
            outputs[i] = call(x, edges[i])
    return outputs  # type: ignore[return-value]
