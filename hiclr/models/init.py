"""Weight initialisation schemes, named by the config key `model.init`.

- ``reference`` (the default): the HiCLR / AimCLR release's ``weights_init`` (its
  processor/pretrain.py and processor/linear_evaluation.py), applied to every sub-module: each
  Conv1d, Conv2d and Linear weight ~ N(0, 0.02) with bias 0; each BatchNorm weight ~ N(1, 0.02) with
  bias 0. Everything else (e.g. ST-GCN's edge importance, ones) keeps its constructor's value.
- ``torch``: PyTorch's default initialisation, i.e. the modules as their constructors left them
  (nothing is redrawn; the toolkit's behaviour before `model.init` existed).

Draws come from `generator` when one is given, else from torch's global RNG (seeded by `run.seed`
in every command), so a run is deterministic. Where the scheme is applied:

- pre-training (`ContrastiveLearner`): the query and the key encoder, each backbone with its
  projection head; the key encoder gets its own draw (`ssl.key_init: random`, as the reference) or
  is then copied from the query encoder (`copy`). An objective's own heads (the
  equivariant and dense heads, which the reference does not have) keep PyTorch's init.
- `build_encoder(cfg)` when `cfg` holds `init` (as `cfg["model"]` always does): the random-init
  baselines of the evaluation protocols, fine-tuning from scratch.
- the classifier heads of the protocols (`hiclr.eval.linear.new_linear_head`), by the reference's
  rule for each: the linear probe's head ~ N(0, 0.02), bias 0 (the release's linear evaluation
  applies the same ``weights_init`` to the whole model, fc included); the fine-tune's head keeps
  PyTorch's default (the release's fine-tune ``weights_init`` skips Linear layers).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from hiclr.common.errors import UserError


@torch.no_grad()
def _reference(module: nn.Module, generator: torch.Generator | None) -> None:
    def init(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            m.weight.normal_(0.0, 0.02, generator=generator)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            m.weight.normal_(1.0, 0.02, generator=generator)
            m.bias.zero_()

    module.apply(init)  # the reference's `model.apply(weights_init)`: same order of draws


def _torch(module: nn.Module, generator: torch.Generator | None) -> None:
    """PyTorch's default: the constructors already drew it."""


#: scheme name -> function(module, generator or None) re-initialising `module` in place.
INIT_SCHEMES: dict[str, Callable[[nn.Module, torch.Generator | None], None]] = {
    "reference": _reference,
    "torch": _torch,
}


def check_init(scheme) -> str:
    """`scheme` if it is a known `model.init` value, else a `UserError` naming the known ones."""
    if scheme not in INIT_SCHEMES:
        raise UserError(
            f"model.init is {scheme!r}; use one of {', '.join(INIT_SCHEMES)} "
            "(reference: the HiCLR release's N(0, 0.02) init; torch: PyTorch's default)"
        )
    return scheme


def init_weights(module: nn.Module, scheme: str, generator: torch.Generator | None = None) -> nn.Module:
    """Re-initialise `module` in place by the named scheme (`INIT_SCHEMES`); returns `module`."""
    INIT_SCHEMES[check_init(scheme)](module, generator)
    return module
