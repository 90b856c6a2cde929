"""Atomic checkpoints that load with `torch.load(weights_only=True)`, and every RNG state as tensors.

A training checkpoint (`last.pt`, `epoch_XXX.pt`) is a dict of plain types and tensors:

    format "hiclr-checkpoint/1", model (state_dict: for pre-training this includes the EMA key
    encoder, the queue, its ids and pointer, all registered as buffers), optimizer, scheduler,
    epoch (completed epochs), step (optimizer steps done), steps_per_epoch, world_size,
    rng {torch, cuda, numpy, python} (rank 0's), rng_ranks [one such dict per rank],
    generators {augment (rank 0's running augmentation generator), augment_ranks [one state per
    rank], augment_device}, task (the task's own state, if any), config (the resolved config),
    data (a fingerprint of the training split), checksum (sha256 of all the rest, verified on load).

Under DDP each rank draws its own augmentations and dropout, so each rank's states are saved and
a resumed rank r restores entry r (`rank_entry`); a checkpoint without the per-rank lists gives
every rank rank 0's states.
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hiclr.common.atomic import atomic_write
from hiclr.common.errors import UserError

FORMAT = "hiclr-checkpoint/1"
CHECKSUM_KEY = "checksum"  # sha256 of everything else in the payload (`payload_sha256`)


class DamagedCheckpoint(UserError):
    """A checkpoint that cannot be read or whose contents do not match its checksum."""


def payload_sha256(obj: Any) -> str:
    """sha256 over a payload of tensors and plain types, in a fixed order: keys sorted, each tensor as
    dtype, shape and bytes, each plain value by type and repr. Any changed bit changes it."""
    digest = hashlib.sha256()

    def feed(value) -> None:
        if torch.is_tensor(value):
            t = value.detach().cpu().contiguous()
            digest.update(f"t{t.dtype}{tuple(t.shape)}".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(value, dict):
            digest.update(f"d{len(value)}".encode())
            for key in sorted(value, key=repr):
                digest.update(f"k{key!r}".encode())
                feed(value[key])
        elif isinstance(value, (list, tuple)):
            digest.update(f"{'l' if isinstance(value, list) else 'u'}{len(value)}".encode())
            for item in value:
                feed(item)
        else:
            digest.update(f"v{type(value).__name__}:{value!r}".encode())

    feed(obj)
    return digest.hexdigest()


def with_checksum(obj: dict) -> dict:
    """`obj` plus its `payload_sha256` under `CHECKSUM_KEY`."""
    body = {k: v for k, v in obj.items() if k != CHECKSUM_KEY}
    return {**body, CHECKSUM_KEY: payload_sha256(body)}


def verify_checksum(obj: dict, path: str | os.PathLike) -> dict:
    """`obj` if its checksum matches (or it predates checksums), else `DamagedCheckpoint` naming `path`."""
    stored = obj.get(CHECKSUM_KEY) if isinstance(obj, dict) else None
    if stored is not None:
        body = {k: v for k, v in obj.items() if k != CHECKSUM_KEY}
        if payload_sha256(body) != stored:
            raise DamagedCheckpoint(
                f"{path} is damaged: its contents do not match the checksum it was "
                f"saved with (a flipped or overwritten byte); use another checkpoint"
            )
    return obj


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save (with a checksum of the contents) to `<path>.partial`, fsync, then rename over `path`
    (a crash never leaves half a file)."""
    payload = with_checksum(obj) if isinstance(obj, dict) else obj
    return atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a training checkpoint safely (weights only) and verify its checksum; a missing, foreign
    or damaged file is a `UserError` (`DamagedCheckpoint` for an unreadable or mismatching one)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}; start the run without --resume")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets one sentence
        raise DamagedCheckpoint(
            f"cannot read checkpoint {path} ({type(err).__name__}: "
            f"{str(err).strip().splitlines()[0][:100] if str(err).strip() else ''}); "
            "it may be truncated or not a hiclr checkpoint"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path} is not a hiclr training checkpoint (format {FORMAT} expected)")
    return verify_checksum(ckpt, path)


def to_host(tree: Any) -> Any:
    """`tree` (dicts, lists, tuples of tensors and plain values) with every tensor on the CPU, the
    device tensors copied in one transfer per dtype (one concatenation on the device, one copy,
    then host views cloned apart) rather than one small copy per tensor."""
    found: list[torch.Tensor] = []

    def collect(value):
        if torch.is_tensor(value):
            if value.device.type != "cpu":
                found.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                collect(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                collect(item)

    collect(tree)
    if not found:
        return tree
    host: dict[int, torch.Tensor] = {}
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in found:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        flat = torch.cat([t.detach().reshape(-1) for t in group]).cpu()
        for t, piece in zip(group, flat.split([t.numel() for t in group])):
            host[id(t)] = piece.view(t.shape).clone()

    def rebuild(value):
        if torch.is_tensor(value):
            return host.get(id(value), value)
        if isinstance(value, dict):
            return {k: rebuild(v) for k, v in value.items()}
        if isinstance(value, list):
            return [rebuild(v) for v in value]
        if isinstance(value, tuple):
            return tuple(rebuild(v) for v in value)
        return value

    return rebuild(tree)


def rank_entry(ckpt: dict, rank: int, world: int) -> tuple[dict, Any]:
    """(rng states, augmentation generator state) of `rank` in `ckpt`: its own entry when the
    checkpoint holds one per rank of this world size, else rank 0's."""
    rngs = ckpt.get("rng_ranks")
    gens = ckpt.get("generators", {}).get("augment_ranks")
    if isinstance(rngs, list) and len(rngs) == world and isinstance(gens, list) and len(gens) == world:
        return rngs[rank], gens[rank]
    return ckpt["rng"], ckpt.get("generators", {}).get("augment")


def capture_rng() -> dict:
    """torch CPU, every CUDA device, numpy and python `random` states, as tensors and plain types."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        cuda = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda)
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
