"""`engine.compile`: which `torch.compile` call it means, and how long compiling took."""

from __future__ import annotations

import torch
from torch import nn

from hiclr.common.errors import UserError

#: `torch.compile` modes (`engine.compile: MODE`); any other string names a backend (e.g. eager).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_options(value) -> dict | None:
    """`torch.compile` keyword arguments of `engine.compile` (None: no compile). false / true
    (inductor, default mode) | a mode of `COMPILE_MODES` | a backend name."""
    if value is None or value is False or value == "false":
        return None
    if value is True or value == "true":
        return {}
    if not isinstance(value, str) or not value:
        raise UserError(
            f"engine.compile is {value!r}; use false, true, a mode "
            f"({', '.join(COMPILE_MODES)}) or a backend name (inductor, eager, ...)"
        )
    return {"mode": value} if value in COMPILE_MODES else {"backend": value}


def compile_module(module: nn.Module, options: dict, device: torch.device) -> nn.Module:
    """`torch.compile(module, **options)`. On CPU inductor's layout optimisation (convolutions in
    channels-last) is turned off: with this torch its compiled ST-GCN backward crashes in
    `convolution_backward` (segmentation fault / heap corruption) on CPU."""
    if device.type == "cpu" and options.get("backend", "inductor") == "inductor":
        import torch._inductor.config as inductor_config

        inductor_config.layout_optimization = False
    return torch.compile(module, **options)


def captures_cuda_graphs(options: dict | None) -> bool:
    """True for the compile modes that record CUDA graphs (on CUDA): every step must then have the
    same shapes, so the engine drops the last partial batch."""
    return options is not None and options.get("mode") in ("reduce-overhead", "max-autotune")


class CompileClock:
    """Seconds this process has spent compiling (TorchDynamo's own timer of each frame compile,
    which includes the backend's compile) and how many frames it compiled, since `start`."""

    KEY = "_compile.compile_inner"

    def __init__(self):
        self._seconds, self._frames = self._read()

    @classmethod
    def _read(cls) -> tuple[float, int]:
        try:
            from torch._dynamo.utils import compilation_time_metrics

            times = list(compilation_time_metrics.get(cls.KEY, []))
        except (ImportError, AttributeError):  # a torch without this timer: nothing to report
            return 0.0, 0
        return float(sum(times)), len(times)

    def metrics(self) -> dict:
        seconds, frames = self._read()
        return {"compile_s": seconds - self._seconds, "compiled_frames": frames - self._frames}
