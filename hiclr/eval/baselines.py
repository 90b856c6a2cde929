"""The baselines a pre-trained encoder is measured against, by name (`--encoder raw | random`).

- ``raw``: no model; the protocol runs on the input coordinates of the stream (joint, bone or
  motion of `data.view`), each clip flattened to one vector (`hiclr.models.RawInput`). Only the
  frozen-feature protocols (linear probe, kNN) have a meaning for it.
- ``random``: the config's architecture (`model.*`) at random initialisation (`model.init`),
  seeded by `run.seed`. For the frozen protocols its BatchNorm statistics are then re-estimated on
  the protocol's training split, in the stream of `data.stream`
  (`hiclr.features.recalibrate_batchnorm`): without that every clip gets nearly the same feature.
  The fine-tune and semi-supervised protocols train it from scratch as built.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hiclr.common.errors import UserError

BASELINES = ("raw", "random")


@dataclass(frozen=True)
class Baseline:
    """A baseline by name, given instead of a checkpoint to `run_linear`, `run_knn`, `run_finetune`,
    `run_semi`; the protocol builds it once its data is loaded (`build_baseline`)."""

    name: str

    def __post_init__(self):
        if self.name not in BASELINES:
            raise UserError(f"unknown baseline {self.name!r}; use one of {', '.join(BASELINES)}")


def check_protocol(name: str, protocol: str, frozen: bool) -> None:
    """Refuse `raw` for a protocol that trains the encoder (`frozen` False: fine-tune, semi), in
    one sentence."""
    if name == "raw" and not frozen:
        raise UserError(
            f"--encoder raw has no network for hiclr {protocol} to train; it is a baseline of "
            "the frozen-feature protocols (hiclr linear, hiclr knn), and --encoder random "
            "trains the architecture from scratch."
        )


def build_baseline(name: str, cfg: dict, train_split=None, device="cpu") -> tuple[nn.Module, str]:
    """(module on `device` in eval mode, its description for the report) of baseline `name`.

    cfg: the resolved config (`data.view`, `data.stream`, `model.*`, `run.seed`). train_split: the
    protocol's training split (`hiclr.data.Split`, `.x` (N, C, T, V, M)); needed by `raw` (its
    shape) and, for `random`, the split its BatchNorm statistics are re-estimated on; None for
    `random` leaves them as built (training from scratch).
    """
    Baseline(name)
    data = cfg["data"]
    stream = data["stream"]
    device = torch.device(device)
    if name == "raw":
        from hiclr.models import RawInput

        if train_split is None:
            raise UserError(
                "the raw-input baseline needs the protocol's training split (for its clip "
                "shape); it is a baseline of hiclr linear and hiclr knn only."
            )
        module = RawInput(tuple(train_split.x.shape[1:])).to(device).eval()
        return module, f"raw input ({data['view']}, {stream})"

    from hiclr.features import recalibrate_batchnorm
    from hiclr.models import build_encoder

    model = dict(cfg["model"])
    scheme = model.setdefault("init", "reference")
    torch.manual_seed(int(cfg["run"]["seed"]))
    module = build_encoder(model)
    if train_split is None:
        return module.to(device).eval(), f"random init ({scheme})"
    recalibrate_batchnorm(module, train_split.x, device=device, stream=stream)
    return module, f"random init ({scheme}), BatchNorm re-estimated"
