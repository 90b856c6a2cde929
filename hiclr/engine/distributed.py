"""DDP set-up when launched by `torchrun` (RANK / WORLD_SIZE / LOCAL_RANK in the environment).

One process per device; NCCL on CUDA, gloo on CPU. `optim.batch_size` is the global batch: each of
the W ranks trains on `batch_size // W` samples per step (the reference's 128 on one GPU is 4 x 32
on four), so it must be a multiple of W. Every rank draws the same permutation and takes its own
slice of each global batch; the augmentation generator is seeded per (seed, epoch, rank). The
contrastive learner all-gathers keys so that the queue receives every rank's keys (see
`hiclr/ssl`), which needs the same batch size on every rank: a last partial batch is cut to a
multiple of W. Rank 0 alone logs and saves; each rank's RNG states travel to it (`gather_objects`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def is_main_process() -> bool:
    """Rank 0 of the process group, or the only process when there is none."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup_distributed(device_kind: str) -> DistInfo:
    """Join the process group if torchrun started us (idempotent); otherwise a single process."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) <= 1:
        return DistInfo()
    backend = "nccl" if device_kind == "cuda" else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    store = _restart_store()
    if store is None:
        dist.init_process_group(backend=backend)
    else:
        dist.init_process_group(
            backend=backend, store=store, rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"])
        )
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank)


def _restart_store():
    """Under torchrun's shared rendezvous store (`TORCHELASTIC_USE_AGENT_STORE`), which outlives a
    restart, the store of this attempt under a prefix of its own; None elsewhere. Without the prefix
    the workers of a restarted attempt can read the addresses the dead attempt's workers published
    (the same keys), connect to ports nobody listens on and fail with "Connection refused"."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or "TORCHELASTIC_RESTART_COUNT" not in os.environ:
        return None
    client = dist.TCPStore(
        os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), int(os.environ["WORLD_SIZE"]), is_master=False
    )
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "run")
    return dist.PrefixStore(f"hiclr/{run_id}/attempt_{os.environ['TORCHELASTIC_RESTART_COUNT']}", client)


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank when `flag` is true on at least one (e.g. a stop request, a NaN loss)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def gather_objects(obj, info: DistInfo) -> list:
    """Every rank's `obj` (picklable), in rank order, on every rank; `[obj]` without DDP."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def shutdown_distributed() -> None:
    """Leave the process group, all ranks together: a barrier first, so that no rank tears down its
    connections (or, on rank 0, the rendezvous store) while another still talks to it, then
    `destroy_process_group`, so that no communication thread outlives the interpreter (a process
    exiting with a live gloo group can abort in its C++ destructors). A no-op without a group."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        if dist.get_world_size() > 1:
            dist.barrier()
    finally:
        dist.destroy_process_group()
