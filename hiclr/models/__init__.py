"""Encoders built from config through a registry (timm-style), and their checkpoints.

encoder = build_encoder({"name": "stgcn", "width": 16, "dropout": 0.5, "edge_importance": True})
encoder = build_encoder({"name": "dsta"})            # the release's transformer (DSTA-Net)
encoder = build_encoder(cfg["model"])     # its `init` (model.init) re-initialises the weights
"""

from __future__ import annotations

import difflib
import inspect

from torch import nn

from hiclr.common.errors import UserError
from hiclr.models.dsta import DSTA
from hiclr.models.init import INIT_SCHEMES, check_init, init_weights
from hiclr.models.raw import RawInput
from hiclr.models.stgcn import STGCN
from hiclr.registry import Registry

#: name -> encoder class (or factory) taking the config's keys as keyword arguments.
ENCODERS = Registry("encoder", config_key="model.name")
register_encoder = ENCODERS.register


register_encoder("stgcn")(STGCN)
register_encoder("dsta")(DSTA)


def build_encoder(cfg: dict) -> nn.Module:
    """The encoder named by `cfg["name"]` (default "stgcn"), built with the other keys of `cfg`.

    `cfg["init"]` (`model.init`: reference | torch, see `hiclr.models.init`) is not an encoder
    argument: when present, the built encoder is re-initialised by that scheme from torch's global
    RNG; without it (e.g. the encoder cfg of an older checkpoint) it keeps PyTorch's default.
    An unknown name or key raises `UserError` naming it and the closest known one.
    """
    cfg = dict(cfg or {})
    scheme = cfg.pop("init", None)
    if scheme is not None:
        check_init(scheme)
    cfg.pop("sync_bn", None)  # model.sync_bn: how the engine trains it, not an argument
    name = cfg.pop("name", "stgcn")
    if name not in ENCODERS:
        raise UserError(ENCODERS.unknown(name))
    factory = ENCODERS[name]
    params = inspect.signature(factory).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        for key in cfg:
            if key not in params:
                raise UserError(
                    f"unknown key model.{key} for encoder {name!r}"
                    f"{_suggest(key, params)}; known keys: {', '.join(params)}"
                )
    try:
        encoder = factory(**cfg)
    except ValueError as err:  # a value the constructor refuses (e.g. a bad block plan)
        raise UserError(f"model section of encoder {name!r}: {err}") from None
    return encoder if scheme is None else init_weights(encoder, scheme)


def _suggest(word: str, known) -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


from hiclr.models.encoder_files import (  # noqa: E402  (checkpoint uses build_encoder)
    infer_encoder_cfg,
    load_encoder,
    load_encoder_state,
    save_encoder,
)

__all__ = [
    "ENCODERS",
    "STGCN",
    "DSTA",
    "RawInput",
    "build_encoder",
    "register_encoder",
    "save_encoder",
    "load_encoder_state",
    "load_encoder",
    "infer_encoder_cfg",
    "INIT_SCHEMES",
    "init_weights",
    "check_init",
]
