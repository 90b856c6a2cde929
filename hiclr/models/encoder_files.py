"""Encoder checkpoints: write ours atomically, read ours, our training checkpoints and the reference's.

`load_encoder_state(path) -> (state_dict, encoder_cfg | None, stream | None)` reads, always through
`torch.load(weights_only=True)`, our `encoder.pt`, our training checkpoints, the reference release's
ST-GCN and transformer checkpoints and a plain backbone state_dict. The accepted formats and what is
checked, rebuilt or ignored: docs/internals.md, 'Models'.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from hiclr.common.errors import UserError
from hiclr.models.dsta import DSTA_BLOCKS, spatial_encoding
from hiclr.models.graph import GRAPHS

FORMAT = "hiclr-encoder/1"

# Where the backbone may sit inside a state_dict, most specific first.
_PREFIXES = ("encoder_q.backbone.", "encoder_q.", "backbone.", "")
#: encoder family -> (a key it always has, the prefix of its blocks), as the release names them.
_FAMILIES = {"stgcn": ("data_bn.weight", "st_gcn_networks."), "dsta": ("proj.weight", "graph_layers.")}
_EXPECTED = (
    "encoder_q.data_bn.*, encoder_q.st_gcn_networks.<i>.*, encoder_q.edge_importance.<i> "
    "(reference release, ST-GCN), encoder_q.proj.*, encoder_q.input_map.*, "
    "encoder_q.graph_layers.<i>.* (reference release, transformer), encoder_q.backbone.* "
    f"under 'model' (our last.pt), or {{'format': '{FORMAT}', 'state_dict': ...}} (our encoder.pt)"
)
#: keys of the release's DSTA-Net blocks with temporal attention, which `DSTA` does not implement
_TEMPORAL_ATTENTION = ("in_nett.", "attention0t", "ff_nett.", "downt1.", "pet.", "attt", "alphat")


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
        raise UserError(
            f"encoder checkpoint {path} does not exist; pass the path of an encoder.pt, "
            "a training checkpoint or a reference release checkpoint"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        with open(path, "rb") as f:
            head = f.read(8)
        why = (
            ": it is an HDF5 data file from hiclr-prep"
            if head == b"\x89HDF\r\n\x1a\n"
            else f" with weights_only=True ({type(err).__name__}: {_first_sentence(str(err))})"
        )
        raise UserError(
            f"{path} cannot be read as a PyTorch checkpoint{why}; pass an encoder.pt, a "
            "training checkpoint or a reference release checkpoint"
        ) from err
    if not isinstance(obj, dict):
        raise UserError(f"{path} holds a {type(obj).__name__}, not a state_dict; expected {_EXPECTED}")
    from hiclr.engine.checkpoint import verify_checksum

    verify_checksum(obj, path)  # ours carry one; the reference release's do not

    if "format" in obj:
        if obj["format"] != FORMAT:
            raise UserError(
                f"{path} has checkpoint format {obj['format']!r}, this version reads "
                f"{FORMAT!r}; re-export the encoder with this version of hiclr"
            )
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
    state, inferred = _backbone_state(inner, path)
    return state, (dict(cfg) if cfg else inferred), stream


def _backbone_state(state: dict, path: Path) -> tuple[dict[str, torch.Tensor], dict | None]:
    """(the backbone's entries of `state` with our key names, the encoder cfg they imply when only
    the release's extra buffers say it (a DSTA's strides), else None)."""
    tensors = {k: v for k, v in state.items() if isinstance(k, str) and torch.is_tensor(v)}
    if tensors and all(k.startswith("module.") for k in tensors):  # saved from DDP
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    found = next(
        (
            (family, prefix)
            for prefix in _PREFIXES
            for family, (key, blocks) in _FAMILIES.items()
            if f"{prefix}{key}" in tensors and any(k.startswith(f"{prefix}{blocks}") for k in tensors)
        ),
        None,
    )
    if found is None:
        shown = ", ".join(sorted(tensors)[:6]) or "none"
        raise UserError(
            f"{path} holds no encoder weights: expected {_EXPECTED}; "
            f"found keys: {shown}{' ...' if len(tensors) > 6 else ''}"
        )
    family, prefix = found
    sub = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    if family == "dsta":
        return _dsta_state(sub, prefix, path)
    if "A" in sub and not any(_same_graph(sub["A"], build()) for build in GRAPHS.values()):
        raise UserError(
            f"{path} was trained on a graph (its buffer {prefix}A) that is none of the "
            f"known graphs ({', '.join(GRAPHS)}); its features cannot be reproduced here"
        )
    out = {k: v for k, v in sub.items() if k.startswith(("data_bn.", "st_gcn_networks."))}
    out.update(_edge_importance(sub))
    return out, None


def _dsta_state(sub: dict[str, torch.Tensor], prefix: str, path: Path) -> tuple[dict, dict | None]:
    """A DSTA backbone's entries (ours or the release's `net.dsta.DSTANet`) and, for the release's,
    the cfg its buffers imply: the release's `atts` and `pes.pe` are checked, then left out."""
    temporal = sorted(
        k for k in sub if k.startswith("graph_layers.") and k.split(".", 2)[2].startswith(_TEMPORAL_ATTENTION)
    )
    if temporal:
        raise UserError(
            f"{path} is a DSTA-Net with temporal attention ({prefix}{temporal[0]} ...); "
            "hiclr's dsta encoder has the release's spatial attention with a temporal "
            "convolution only (use_temporal_att: False), so it cannot reproduce these features"
        )
    for key, value in sub.items():
        if key.endswith(".atts") and bool(value.ne(0).any()):
            raise UserError(
                f"{path}: the buffer {prefix}{key} is not zero, unlike the release's "
                "DSTA-Net; its features cannot be reproduced here"
            )
        if key.endswith(".pes.pe"):  # (1, C, T, V), the same for every frame t
            if (
                value.dim() != 4
                or value.shape[2] < 1
                or not torch.allclose(
                    value[0, :, 0].float(), spatial_encoding(value.shape[1], value.shape[3])[0, :, 0], atol=1e-5
                )
            ):
                raise UserError(
                    f"{path}: the positional encoding {prefix}{key} is not the release's "
                    "sinusoidal encoding of the joint index; its features cannot be "
                    "reproduced here"
                )
    encodings = {int(k.split(".")[1]): v for k, v in sub.items() if re.fullmatch(r"graph_layers\.\d+\.pes\.pe", k)}
    out = {
        k: v
        for k, v in sub.items()
        if k.startswith(("proj.", "input_map.", "graph_layers.")) and not k.endswith((".atts", ".pes.pe"))
    }
    if not encodings:
        return out, None
    frames = [encodings[i].shape[2] for i in sorted(encodings)]
    strides = [max(1, round(a / b)) for a, b in zip(frames, frames[1:])] + [1]  # the last: not recorded
    return out, infer_encoder_cfg(out, strides)


def _same_graph(A: torch.Tensor, known) -> bool:
    return tuple(A.shape) == known.shape and torch.allclose(A.float(), torch.from_numpy(known), atol=1e-6)


def _edge_importance(sub: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`edge_importance.<i>` entries; `edge_importance<i>` numbered from 1 is shifted to 0."""
    dotted = {int(m.group(1)): v for k, v in sub.items() if (m := re.fullmatch(r"edge_importance\.(\d+)", k))}
    if dotted:
        return {f"edge_importance.{i}": v for i, v in dotted.items()}
    plain = {int(m.group(1)): v for k, v in sub.items() if (m := re.fullmatch(r"edge_importance(\d+)", k))}
    if plain and min(plain) == 1 and max(plain) == len(plain):
        plain = {i - 1: v for i, v in plain.items()}
    return {f"edge_importance.{i}": v for i, v in plain.items()}


def infer_encoder_cfg(state: dict[str, torch.Tensor], strides: list[int] | None = None) -> dict:
    """The `build_encoder` cfg of an ST-GCN or DSTA backbone state_dict (for checkpoints without one).

    A DSTA's strides are not in its weights: `strides` (one per block) gives them, else the
    release's plan's when the channels are the release's (`DSTA_BLOCKS`), else a `UserError`.
    """
    if "proj.weight" in state:
        return _infer_dsta_cfg(state, strides)
    first = state["st_gcn_networks.0.gcn.conv.weight"]  # (K * width, in_channels, 1, 1)
    blocks = sorted({int(k.split(".")[1]) for k in state if k.startswith("st_gcn_networks.")})
    last_tcn = state[f"st_gcn_networks.{blocks[-1]}.tcn.2.weight"]  # (D, D, kernel, 1)
    has_importance = "edge_importance.0" in state
    subsets = state["edge_importance.0"].shape[0] if has_importance else 3
    width = first.shape[0] // subsets
    cfg = {
        "name": "stgcn",
        "in_channels": int(first.shape[1]),
        "width": int(width),
        "edge_importance": has_importance,
        "temporal_kernel": int(last_tcn.shape[2]),
    }
    if last_tcn.shape[0] != 16 * width:
        cfg["feature_dim"] = int(last_tcn.shape[0])
    return cfg


def _infer_dsta_cfg(state: dict[str, torch.Tensor], strides: list[int] | None) -> dict:
    blocks = sorted({int(k.split(".")[1]) for k in state if k.startswith("graph_layers.")})
    subsets = int(state["graph_layers.0.alphas"].shape[1])
    channels = []
    for i in blocks:
        in_nets = state[f"graph_layers.{i}.in_nets.weight"]  # (2 * S * inter, in, 1, 1)
        out = state[f"graph_layers.{i}.out_nets.0.weight"].shape[0]
        channels.append([int(in_nets.shape[1]), int(out), int(in_nets.shape[0]) // (2 * subsets)])
    if strides is None:
        if channels != [list(b[:3]) for b in DSTA_BLOCKS]:
            raise UserError(
                "a DSTA state_dict without its config records no strides and its channels "
                f"{channels} are not the release's; save it with save_encoder (encoder.pt)"
            )
        strides = [b[3] for b in DSTA_BLOCKS]
    temporal_kernel = int(state[f"graph_layers.{blocks[0]}.out_nett.0.weight"].shape[2])
    return {
        "name": "dsta",
        "in_channels": int(state["proj.weight"].shape[1]),
        "blocks": [c + [int(s)] for c, s in zip(channels, strides)],
        "num_subsets": subsets,
        "num_joints": int(state["graph_layers.0.attention0s"].shape[-1]),
        "temporal_kernel": temporal_kernel,
    }


def load_encoder(path, device="cpu") -> tuple[nn.Module, dict, str | None]:
    """(encoder in eval mode on `device` with the checkpoint's weights, its cfg, its stream or None)."""
    from hiclr.models import build_encoder

    state, cfg, stream = load_encoder_state(path)
    if cfg is None:
        try:
            cfg = infer_encoder_cfg(state)
        except KeyError as err:
            raise UserError(f"{path}: the encoder weights lack {err.args[0]!r}; the checkpoint is incomplete") from err
    # the weights come from the file: no re-initialisation by the recorded `init`
    model = build_encoder({k: v for k, v in cfg.items() if k != "init"})
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        detail = str(err).strip().splitlines()[1:2] or [str(err)]
        raise UserError(
            f"{path} does not fit the encoder {cfg}: {detail[0].strip()}; "
            "the checkpoint's weights and its config disagree"
        ) from err
    if missing or unexpected:
        raise UserError(
            f"{path} does not fit the encoder {cfg}: missing keys {_few(missing)}, unexpected keys {_few(unexpected)}"
        )
    return model.to(device).eval(), cfg, stream


def _few(keys) -> str:
    keys = list(keys)
    return "[" + ", ".join(keys[:5]) + (" ..." if len(keys) > 5 else "") + "]"
