"""The MoCo key queue: a FIFO of L2-normalised momentum keys that also remembers each key's sample id.

Sample ids let later objectives (transitive mining, variant B) recognise queue entries
that hold an older key of the anchor's own sample. Under DDP every rank enqueues the keys of all
ranks (in rank order), so the queues stay identical across ranks.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def world_size() -> int:
    """Number of processes of the initialised default group (1 without torch.distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


@torch.no_grad()
def gather_from_all_ranks(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` (same shape on every rank) of all ranks along dim 0, in rank order; no grad."""
    if world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


class KeyQueue(nn.Module):
    """FIFO of `size` keys (size, dim), their sample ids (size,) (-1 = empty) and the write pointer.

    `snapshot()` hands out the current contents without copying them (a step's loss keeps them for
    its backward): the queue is double-buffered, and `enqueue` writes the new state into the other
    buffer (the previous step's rows, then this step's: 2 B rows instead of a copy of the
    whole queue) and swaps, so a snapshot stays intact until the enqueue after next. `keys` and `ids`
    are always the current state (the state_dict holds them); a write to them from outside (a
    loaded state_dict, a broadcast) is noticed and the spare buffer is then copied whole once.

    Unlike the reference (which asserts that the queue size is a multiple of the batch size) a
    batch that runs past the end wraps around to the start. Under DDP every rank must pass the same
    number of keys per call (the engine drops the last incomplete batch); the first enqueue under
    DDP also copies rank 0's queue to all ranks, so their random initial keys agree whatever the
    seeds and whether or not DDP broadcasts buffers.
    """

    def __init__(self, size: int, dim: int):
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"KeyQueue needs size >= 1 and dim >= 1, got size={size}, dim={dim}")
        self.register_buffer("keys", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("ids", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("_spare_keys", self.keys.clone(), persistent=False)
        self.register_buffer("_spare_ids", self.ids.clone(), persistent=False)
        self._spare_lags: tuple | None = None  # (slots, keys, ids) the spare buffer lacks
        self._stamp = self._current_stamp()  # of the current buffers when the spare was in step
        self._synced_across_ranks = False

    def _current_stamp(self) -> tuple:
        return (self.keys.data_ptr(), self.keys._version, self.ids.data_ptr(), self.ids._version)

    def snapshot(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(keys (size, dim), ids (size,)) as they are now, not copied; unchanged by the next
        `enqueue` (it writes the other buffer), overwritten by the one after."""
        return self.keys, self.ids

    @torch.no_grad()
    def sync_across_ranks(self) -> None:
        """Copy rank 0's keys, ids and pointer to every rank (no-op without torch.distributed)."""
        if world_size() > 1:
            for buffer in (self.keys, self.ids, self.ptr):
                dist.broadcast(buffer, src=0)
            self._stamp = None  # collectives do not bump the version counters
        self._synced_across_ranks = True

    @property
    def size(self) -> int:
        return self.keys.shape[0]

    @torch.compiler.disable  # swaps buffers and reads version counters: eager, outside any graph
    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, ids: torch.Tensor) -> None:
        """Write `keys` (B, dim) and `ids` (B,) of this rank (and of all ranks under DDP) at the pointer.
        Keeps copies of them, never the tensors passed in."""
        if keys.ndim != 2 or keys.shape[1] != self.keys.shape[1] or ids.shape != keys.shape[:1]:
            raise ValueError(
                f"enqueue expects keys (B, {self.keys.shape[1]}) and ids (B,), "
                f"got {tuple(keys.shape)} and {tuple(ids.shape)}"
            )
        if not self._synced_across_ranks:
            self.sync_across_ranks()
        # copies: what the queue keeps until the next step must not be a step's output, which a
        # CUDA graph replay (engine.compile: reduce-overhead) overwrites in place
        keys = gather_from_all_ranks(keys.detach().to(self.keys.dtype, copy=True))
        ids = gather_from_all_ranks(ids.to(device=self.ids.device, dtype=torch.long, copy=True))
        n, size = keys.shape[0], self.size
        start = self.ptr
        if n > size:  # only the newest `size` keys survive a batch larger than the queue
            start = start + (n - size)
            keys, ids = keys[n - size :], ids[n - size :]
        # index arithmetic stays on the device: no host sync in the training step
        slots = (start + torch.arange(keys.shape[0], device=self.keys.device)) % size
        spare_keys, spare_ids = self._spare_keys, self._spare_ids
        if self._stamp != self._current_stamp() or spare_keys.device != self.keys.device:
            spare_keys.copy_(self.keys)  # written from outside since the last enqueue
            spare_ids.copy_(self.ids)
        elif self._spare_lags is not None:  # bring the spare to the current state ...
            lag_slots, lag_keys, lag_ids = self._spare_lags
            spare_keys.index_copy_(0, lag_slots, lag_keys)
            spare_ids.index_copy_(0, lag_slots, lag_ids)
        spare_keys.index_copy_(0, slots, keys)  # ... then add this step's keys, and swap
        spare_ids.index_copy_(0, slots, ids)
        self._buffers["_spare_keys"], self._buffers["keys"] = self.keys, spare_keys
        self._buffers["_spare_ids"], self._buffers["ids"] = self.ids, spare_ids
        self._spare_lags = (slots, keys, ids)
        self._stamp = self._current_stamp()
        self.ptr.copy_((self.ptr + n) % size)
