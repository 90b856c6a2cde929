"""What the engine trains (`Task`), on what (`TrainData`, `Batch`), and what it returns (`TrainResult`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn


@dataclass
class TrainData:
    """The training split as CPU tensors; the engine puts `x` on the device when it fits."""

    x: torch.Tensor  # (N, C, T, V, M) float32
    labels: torch.Tensor | None = None  # (N,) int64
    ids: torch.Tensor | None = None  # (N,) int64 sample ids
    epoch_length: int | None = None  # samples an epoch draws, position i taking sample i % N; None: N

    def __post_init__(self):
        if self.epoch_length is not None and self.epoch_length < 1:
            raise ValueError(f"epoch_length must be at least 1, got {self.epoch_length}")
        if self.ids is None:
            self.ids = torch.arange(len(self.x))
        if self.labels is None:
            self.labels = torch.full((len(self.x),), -1, dtype=torch.long)


@dataclass
class Batch:
    x: torch.Tensor  # (B, C, T, V, M) on the device
    labels: torch.Tensor  # (B,)
    ids: torch.Tensor  # (B,) sample ids


@dataclass
class TrainResult:
    run_dir: Path | None
    epoch: int  # completed epochs
    step: int  # optimizer steps done
    metrics: dict = field(default_factory=dict)  # the last epoch's record
    outputs: dict = field(default_factory=dict)  # what `Task.finish` returned


@runtime_checkable
class Task(Protocol):
    """What `hiclr.engine.train` trains: a model and one forward pass. Pre-training
    (`hiclr.pretrain.PretrainTask`) and fine-tuning (`hiclr.eval.finetune`) are tasks.

    The engine does everything else: device, DDP, compile, autocast, backward, clipping, the
    optimizer step and schedule, metrics, checkpoints. A task may also define any of

        param_groups() -> Iterable        what the optimizer updates (default: parameters with grad)
        end_epoch(epoch, means) -> dict   after each epoch (0-based), given the epoch's means of the
                                          step metrics; extra values to log with it (e.g. a test
                                          accuracy)
        postfix_keys: dict                {epoch metric: label} of `end_epoch` values for the
                                          progress bar
        state_dict() -> dict              extra state to checkpoint (tensors, plain types) ...
        load_state_dict(state)            ... and to restore on resume
        finish(run_dir) -> dict           once at the end, on rank 0 (pre-training writes encoder.pt)
    """

    model: nn.Module  # everything trained and checkpointed; the engine moves it to the device

    def step(
        self, model: nn.Module, batch: Batch, generator: torch.Generator, epoch: int
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """One forward pass on `batch`: (scalar loss, {name: scalar metric (tensor or float)}).

        `model` is `self.model` as the engine wrapped it (DDP and/or compiled): call it, not
        `self.model`. `generator` is the epoch's augmentation generator on the device, seeded by
        (seed, epoch, rank) and checkpointed, so a resumed run draws the same augmentations.
        `epoch` is 0-based. Runs under bf16 autocast when the run's precision is bf16. Metrics
        stay on the device: the engine reads them at log points only."""
        ...


def optional(task: Task, name: str):
    """The task's optional method or attribute `name` (see `Task`), or None."""
    return getattr(task, name, None)


def parameters_of(task: Task) -> Iterable:
    groups = optional(task, "param_groups")
    return groups() if groups is not None else [p for p in task.model.parameters() if p.requires_grad]
