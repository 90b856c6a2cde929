"""Where and in which precision a run computes: device, CUDA backend settings, autocast, data placement."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from hiclr.common.errors import UserError
from hiclr.engine.distributed import DistInfo


def device_kind(name: str) -> str:
    """cpu | cuda (`auto`: cuda when available)."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(name).split(":")[0]


def resolve_device(name: str, dist: DistInfo | None = None) -> torch.device:
    """`auto` -> cuda when available else cpu; under DDP each rank takes cuda:LOCAL_RANK."""
    dist = dist if dist is not None else DistInfo()
    kind = device_kind(str(name))
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"engine.device is {name!r} but CUDA is not available; use --device cpu")
        if dist.enabled:
            return torch.device("cuda", dist.local_rank)
        return torch.device(name if ":" in str(name) else "cuda")
    if kind != "cpu":
        raise UserError(f"engine.device is {name!r}; use auto, cpu, cuda or cuda:N")
    return torch.device("cpu")


def resolve_precision(name: str, device: torch.device) -> str:
    """`auto`: bf16 autocast on CUDA (when supported), fp32 on CPU."""
    if name == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return name


def configure_backends(device: torch.device, engine: dict) -> dict:
    """Apply the CUDA settings of the `engine` section and return what is in force (recorded with
    the run): `cudnn_benchmark` (cuDNN picks the fastest convolution algorithm for each input
    shape; off under `deterministic`, whose algorithms it would override), `tf32` (TensorFloat-32
    for the fp32 matmuls and convolutions: the fp32 path at tensor-core speed, 10-bit mantissa
    products), `deterministic`. On CPU none of them applies and all read false."""
    applied = {"cudnn_benchmark": False, "tf32": False, "deterministic": False}
    if device.type != "cuda":
        return applied
    deterministic = bool(engine["deterministic"])
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    benchmark = bool(engine["cudnn_benchmark"]) and not deterministic
    tf32 = bool(engine["tf32"])
    torch.backends.cudnn.benchmark = benchmark
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    return {"cudnn_benchmark": benchmark, "tf32": tf32, "deterministic": deterministic}


def autocast_for(device: torch.device, bf16: bool):
    """A factory of the step's precision context: bf16 autocast, or nothing (fp32)."""
    if bf16:
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def place_data(x: torch.Tensor, device: torch.device, mode: Any = "auto", fraction: float = 0.5):
    """(tensor, resident): the split on the device when asked or when it fits, else pinned CPU memory."""
    if device.type == "cpu":
        return x.contiguous(), True
    if mode == "auto":
        free, _ = torch.cuda.mem_get_info(device)
        mode = x.numel() * x.element_size() < fraction * free
    if mode is True or mode == "true":
        return x.to(device), True
    return x.pin_memory(), False
