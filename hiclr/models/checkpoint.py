"""Encoder checkpoints: write ours atomically, read ours, our training checkpoints and the reference's.

Accepted by `load_encoder_state` (all through `torch.load(weights_only=True)`):

- ours, `encoder.pt`: ``{"format": "hiclr-encoder/1", "encoder": cfg, "stream": str, "state_dict": ...}``;
- our training checkpoints (`last.pt`, `epoch_XXX.pt`): a dict whose ``"model"`` is the learner's
  state_dict with the query backbone under ``encoder_q.backbone.``; the encoder cfg and stream are
  taken from ``"config"`` (``config["model"]``, ``config["data"]["stream"]``) when present;
- the reference release (AimCLR / HiCLR): a state_dict, bare or wrapped in ``{"state_dict": ...}`` or
  ``{"model": ...}``, with ``encoder_q.data_bn.*``, ``encoder_q.st_gcn_networks.<i>.*`` and
  ``encoder_q.edge_importance.<i>`` (also written ``edge_importance<i>``); everything else
  (``fc``, ``encoder_k``, ``queue``, ``queue_ptr``, ``mask_param``) is ignored, and the buffer ``A``
  is only checked to be a known graph (ours is rebuilt from the graph, never loaded);
- a plain backbone state_dict (`STGCN().state_dict()`), possibly under ``module.``.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from data_prep.errors import UserError
from hiclr.graph import GRAPHS

FORMAT = "hiclr-encoder/1"

# Where the backbone may sit inside a state_dict, most specific first.
_PREFIXES = ("encoder_q.backbone.", "encoder_q.", "backbone.", "")
_BACKBONE_KEYS = ("data_bn.", "st_gcn_networks.", "edge_importance")
_EXPECTED = ("encoder_q.data_bn.*, encoder_q.st_gcn_networks.<i>.*, encoder_q.edge_importance.<i> "
             "(reference release), encoder_q.backbone.* under 'model' (our last.pt), or "
             f"{{'format': '{FORMAT}', 'state_dict': ...}} (our encoder.pt)")


def save_encoder(path, model: nn.Module, cfg: dict, stream: str) -> Path:
    """Write `model`'s weights as `encoder.pt` (temporary file, fsync, rename)."""
    payload = {
        "format": FORMAT,
        "encoder": dict(cfg),
        "stream": str(stream),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    from hiclr.engine.checkpoint import atomic_save
    return atomic_save(payload, path)


def _first_sentence(text: str) -> str:
    text = text.strip().splitlines()[0] if text.strip() else ""
    return text.split(". ")[0].rstrip(".")[:160]


def load_encoder_state(path) -> tuple[dict[str, torch.Tensor], dict | None, str | None]:
    """(backbone state_dict with our key names, encoder cfg or None, stream or None)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"encoder checkpoint {path} does not exist; pass the path of an encoder.pt, "
                        "a training checkpoint or a reference release checkpoint")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        with open(path, "rb") as f:
            head = f.read(8)
        why = (": it is an HDF5 data file from hiclr-prep" if head == b"\x89HDF\r\n\x1a\n"
               else f" with weights_only=True ({type(err).__name__}: {_first_sentence(str(err))})")
        raise UserError(f"{path} cannot be read as a PyTorch checkpoint{why}; pass an encoder.pt, a "
                        "training checkpoint or a reference release checkpoint") from err
    if not isinstance(obj, dict):
        raise UserError(f"{path} holds a {type(obj).__name__}, not a state_dict; expected {_EXPECTED}")
    from hiclr.engine.checkpoint import verify_checksum
    verify_checksum(obj, path)                 # ours carry one; the reference release's do not

    if "format" in obj:
        if obj["format"] != FORMAT:
            raise UserError(f"{path} has checkpoint format {obj['format']!r}, this version reads "
                            f"{FORMAT!r}; re-export the encoder with this version of hiclr")
        state = obj.get("state_dict")
        if not isinstance(state, dict) or not state:
            raise UserError(f"{path} is a {FORMAT} file without weights; re-export the encoder")
        return dict(state), obj.get("encoder"), obj.get("stream")

    cfg = stream = None
    config = obj.get("config")
    if isinstance(config, dict):
        cfg = config.get("model") if isinstance(config.get("model"), dict) else None
        data = config.get("data")
        stream = data.get("stream") if isinstance(data, dict) else None
    inner = obj
    for wrapper in ("state_dict", "model"):
        if isinstance(obj.get(wrapper), dict):
            inner = obj[wrapper]
            break
    return _backbone_state(inner, path), (dict(cfg) if cfg else None), stream


def _backbone_state(state: dict, path: Path) -> dict[str, torch.Tensor]:
    """The backbone's entries of `state`, renamed to `STGCN`'s keys."""
    tensors = {k: v for k, v in state.items() if isinstance(k, str) and torch.is_tensor(v)}
    if tensors and all(k.startswith("module.") for k in tensors):  # saved from DDP
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    for prefix in _PREFIXES:
        if f"{prefix}data_bn.weight" in tensors and \
                any(k.startswith(f"{prefix}st_gcn_networks.") for k in tensors):
            break
    else:
        shown = ", ".join(sorted(tensors)[:6]) or "none"
        raise UserError(f"{path} holds no encoder weights: expected {_EXPECTED}; "
                        f"found keys: {shown}{' ...' if len(tensors) > 6 else ''}")
    sub = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if "A" in sub and not any(_same_graph(sub["A"], build()) for build in GRAPHS.values()):
        raise UserError(f"{path} was trained on a graph (its buffer {prefix}A) that is none of the "
                        f"known graphs ({', '.join(GRAPHS)}); its features cannot be reproduced here")
    out = {k: v for k, v in sub.items() if k.startswith(("data_bn.", "st_gcn_networks."))}
    out.update(_edge_importance(sub))
    return out


def _same_graph(A: torch.Tensor, known) -> bool:
    return tuple(A.shape) == known.shape and torch.allclose(A.float(), torch.from_numpy(known), atol=1e-6)


def _edge_importance(sub: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`edge_importance.<i>` entries; `edge_importance<i>` numbered from 1 is shifted to 0."""
    dotted = {int(m.group(1)): v for k, v in sub.items()
              if (m := re.fullmatch(r"edge_importance\.(\d+)", k))}
    if dotted:
        return {f"edge_importance.{i}": v for i, v in dotted.items()}
    plain = {int(m.group(1)): v for k, v in sub.items()
             if (m := re.fullmatch(r"edge_importance(\d+)", k))}
    if plain and min(plain) == 1 and max(plain) == len(plain):
        plain = {i - 1: v for i, v in plain.items()}
    return {f"edge_importance.{i}": v for i, v in plain.items()}


def infer_encoder_cfg(state: dict[str, torch.Tensor]) -> dict:
    """The `build_encoder` cfg of an ST-GCN backbone state_dict (for checkpoints without one)."""
    first = state["st_gcn_networks.0.gcn.conv.weight"]          # (K * width, in_channels, 1, 1)
    blocks = sorted({int(k.split(".")[1]) for k in state if k.startswith("st_gcn_networks.")})
    last_tcn = state[f"st_gcn_networks.{blocks[-1]}.tcn.2.weight"]  # (D, D, kernel, 1)
    has_importance = "edge_importance.0" in state
    subsets = state["edge_importance.0"].shape[0] if has_importance else 3
    width = first.shape[0] // subsets
    cfg = {"name": "stgcn", "in_channels": int(first.shape[1]), "width": int(width),
           "edge_importance": has_importance, "temporal_kernel": int(last_tcn.shape[2])}
    if last_tcn.shape[0] != 16 * width:
        cfg["feature_dim"] = int(last_tcn.shape[0])
    return cfg


def load_encoder(path, device="cpu") -> tuple[nn.Module, dict, str | None]:
    """(encoder in eval mode on `device` with the checkpoint's weights, its cfg, its stream or None)."""
    from hiclr.models import build_encoder

    state, cfg, stream = load_encoder_state(path)
    if cfg is None:
        try:
            cfg = infer_encoder_cfg(state)
        except KeyError as err:
            raise UserError(f"{path}: the encoder weights lack {err.args[0]!r}; "
                            "the checkpoint is incomplete") from err
    # the weights come from the file: no re-initialisation by the recorded `init`
    model = build_encoder({k: v for k, v in cfg.items() if k != "init"})
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        detail = str(err).strip().splitlines()[1:2] or [str(err)]
        raise UserError(f"{path} does not fit the encoder {cfg}: {detail[0].strip()}; "
                        "the checkpoint's weights and its config disagree") from err
    if missing or unexpected:
        raise UserError(f"{path} does not fit the encoder {cfg}: missing keys "
                        f"{_few(missing)}, unexpected keys {_few(unexpected)}")
    return model.to(device).eval(), cfg, stream


def _few(keys) -> str:
    keys = list(keys)
    return "[" + ", ".join(keys[:5]) + (" ..." if len(keys) > 5 else "") + "]"
