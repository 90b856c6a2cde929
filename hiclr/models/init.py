"""Weight initialisation schemes (`INIT_SCHEMES`), named by the config key `model.init`.

``reference`` (the default) is the HiCLR / AimCLR release's ``weights_init``; ``torch`` leaves the
modules as their constructors made them. Draws come from `generator` when one is given, else from
torch's global RNG (seeded by `run.seed` in every command), so a run is deterministic. What each scheme
draws and which parts of a model get it: docs/internals.md, 'Models'.
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
