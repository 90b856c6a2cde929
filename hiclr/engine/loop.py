"""The one training loop, for pre-training and fine-tuning alike.

    result = train(task, TrainData(x, labels, ids), cfg, run_dir, resume=False)

`task` follows `hiclr.engine.task.Task` (a model and one forward pass); `cfg` is a resolved config
(`hiclr.config.load_config`), saved as `run_dir/config.yaml`. The keys the loop reads, batching,
stopping and non-finite losses: docs/internals.md, 'Engine'; checkpoint contents:
`hiclr/engine/checkpoint.py`.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hiclr.common.atomic import atomic_write_text
from hiclr.common.errors import UserError
from hiclr.config import save_config
from hiclr.engine.checkpoint import FORMAT, atomic_save, capture_rng, rank_entry, restore_rng, to_host
from hiclr.engine.compiling import (
    CompileClock,
    captures_cuda_graphs,  # noqa: F401
    compile_module,
    compile_options,
)
from hiclr.engine.device import (
    autocast_for,
    configure_backends,
    device_kind,  # noqa: F401
    place_data,
    resolve_device,
    resolve_precision,
)
from hiclr.engine.distributed import DistInfo, any_rank, barrier, gather_objects, setup_distributed
from hiclr.engine.finite import FiniteWatch, NonFiniteLoss  # noqa: F401
from hiclr.engine.logging import MetricsLog
from hiclr.engine.resume import (
    complete_last,
    complete_snapshot,
    config_changes,
    data_fingerprint,
    describe_changes,
    find_checkpoint,
    remove_stale_partials,
)
from hiclr.engine.schedule import build_optimizer, build_scheduler
from hiclr.engine.seeding import derive_seed, seed_everything  # noqa: F401
from hiclr.engine.signals import Interrupted, StopRequest, exit_code_of
from hiclr.engine.sync_bn import convert_sync_batchnorm
from hiclr.engine.task import Batch, Task, TrainData, TrainResult, optional, parameters_of  # noqa: F401


@dataclass
class BatchPlan:
    """How an epoch splits into steps: `global_batch` samples a step over all ranks, each rank
    `global_batch // world`; with `drop_last` false a last partial batch is cut to a multiple of
    the world size (at most world - 1 samples of the epoch left out), so every rank's batch has
    the same size, as the queue's all-gather needs."""

    n: int
    global_batch: int
    world: int
    drop_last: bool

    @property
    def last_batch(self) -> int:
        rest = 0 if self.drop_last else self.n % self.global_batch
        return rest - rest % self.world

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.global_batch + (1 if self.last_batch else 0)

    def indices(self, perm: torch.Tensor, i: int, rank: int) -> torch.Tensor:
        """Rank `rank`'s sample indices of step `i` of the epoch whose permutation is `perm`."""
        size = self.global_batch if (i + 1) * self.global_batch <= self.n else self.last_batch
        return perm[i * self.global_batch : i * self.global_batch + size].view(self.world, -1)[rank]


@dataclass
class Progress:
    """Where the run stands: completed epochs, optimizer steps, and what a mid-epoch checkpoint
    carries into the epoch it stopped in (the augmentation state, the metric sums so far)."""

    epoch: int = 0
    step: int = 0
    augment_state: Any = None
    partial: dict | None = None


@dataclass
class Run:
    """Everything the epoch body and the saves share."""

    task: Task
    cfg: dict
    dist: DistInfo
    device: torch.device
    model: nn.Module  # task.model on the device
    wrapped: nn.Module  # what the step calls: DDP and/or compiled
    optimizer: torch.optim.Optimizer
    scheduler: Any
    plan: BatchPlan
    x: torch.Tensor
    labels: torch.Tensor
    ids: torch.Tensor
    run_dir: Path | None
    fingerprint: dict
    bf16: bool
    log: Any = None
    bar: Any = None
    stop: StopRequest | None = None
    finite: FiniteWatch | None = None
    compile_clock: CompileClock | None = None
    postfix: dict = field(default_factory=dict)  # the progress bar's: last logged step + epoch metrics

    @property
    def last_path(self) -> Path | None:
        return self.run_dir / "last.pt" if self.run_dir is not None else None


# --------------------------------------------------------------------------- the loop


def train(
    task: Task,
    data: TrainData,
    cfg: dict,
    run_dir: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    force: bool = False,
) -> TrainResult:
    run, opt, eng = cfg["run"], cfg["optim"], cfg["engine"]
    dist = setup_distributed(device_kind(eng["device"]))
    device = resolve_device(eng["device"], dist)
    backends = configure_backends(device, eng)
    bf16 = resolve_precision(eng["precision"], device) == "bf16"
    run_dir = Path(run_dir) if run_dir is not None else None
    _check_run_dir(run_dir, resume, overwrite, dist)

    plan = _plan_batches(data.epoch_length or len(data.x), opt, eng, dist)
    x, _ = place_data(data.x, device, eng["resident"], eng["resident_fraction"])
    labels, ids = data.labels.to(x.device), data.ids.to(x.device)

    if not resume:
        seed_everything(int(run["seed"]) + dist.rank)
    model: nn.Module = task.model.to(device)
    sync_bn = bool(cfg["model"]["sync_bn"]) and dist.enabled
    if sync_bn:
        convert_sync_batchnorm(model)
    optimizer = build_optimizer(parameters_of(task), opt)
    scheduler = build_scheduler(optimizer, opt, plan.steps_per_epoch)
    r = Run(
        task,
        cfg,
        dist,
        device,
        model,
        model,
        optimizer,
        scheduler,
        plan,
        x,
        labels,
        ids,
        run_dir,
        data_fingerprint(data.ids, data.labels, data.x),
        bf16,
    )
    state, forced = _resume(r, force) if resume else (Progress(), {})
    r.wrapped = _wrap(model, dist, device, eng)

    if run_dir is not None and dist.is_main:
        save_config(cfg, run_dir / "config.yaml")
    r.log = MetricsLog(
        run_dir, resume_step=state.step if resume else None, tensorboard=eng["tensorboard"], enabled=dist.is_main
    )
    if forced:
        if dist.is_main:
            print(f"warning: --force: resuming with changed {describe_changes(forced)}", file=sys.stderr)
        r.log.write(
            {
                "kind": "resume",
                "epoch": state.epoch,
                "step": state.step,
                "forced": True,
                "changed": {k: [str(a), str(b)] for k, (a, b) in forced.items()},
            }
        )
    _write_setup(r, backends, sync_bn)
    r.bar = _progress(plan.steps_per_epoch * opt["epochs"], state.step, enabled=bool(eng["progress"]) and dist.is_main)
    r.finite = FiniteWatch(device)
    r.compile_clock = CompileClock() if compile_options(eng["compile"]) is not None else None
    outputs, record = {}, {}
    with StopRequest() as r.stop:
        try:
            while state.epoch < opt["epochs"]:
                record = _end_epoch(r, state, _run_epoch(r, state))
            finish = optional(task, "finish")
            if dist.is_main and finish is not None:
                outputs = finish(run_dir) or {}
            barrier(dist)
        finally:
            r.bar.close()
            r.log.close()
    return TrainResult(run_dir, state.epoch, state.step, record, outputs)


@dataclass
class EpochSteps:
    """What an epoch's steps leave for its end: the augmentation generator (checkpointed), the
    metric sums on the device and how many steps they sum, the lr of the last step, the time."""

    generator: torch.Generator
    sums: dict
    steps: int
    lr: float
    seconds: float


def _run_epoch(r: Run, state: Progress) -> EpochSteps:
    """Train the rest of epoch `state.epoch` (all of it, or what a mid-epoch checkpoint left)."""
    seed, epoch, plan, dist = int(r.cfg["run"]["seed"]), state.epoch, r.plan, r.dist
    log_every = max(1, int(r.cfg["run"]["log_every"]))
    # one permutation per epoch, the same on every rank; each rank takes its slice
    perm = torch.randperm(plan.n, generator=torch.Generator().manual_seed(derive_seed(seed, epoch, 0)))
    perm = perm.to(r.x.device)
    gen = torch.Generator(device=r.device)
    gen.manual_seed(derive_seed(seed, epoch, 1 + dist.rank))
    if state.augment_state is not None:
        gen.set_state(state.augment_state)
        state.augment_state = None
    sums: dict[str, torch.Tensor] = {}
    steps, t_epoch = 0, time.perf_counter()
    if state.partial is not None:  # resumed inside this epoch: the sums so far
        sums = {k: v.to(r.device) for k, v in state.partial["sums"].items()}
        steps, state.partial = int(state.partial["steps"]), None
    lr = r.optimizer.param_groups[0]["lr"]
    r.model.train()
    t_window, samples_window = time.perf_counter(), 0
    for i in range(state.step - epoch * plan.steps_per_epoch, plan.steps_per_epoch):
        idx = plan.indices(perm, i, dist.rank) % len(r.x)  # a cycled epoch (epoch_length) wraps around
        batch = Batch(r.x[idx].to(r.device, non_blocking=True), r.labels[idx].to(r.device), r.ids[idx].to(r.device))
        lr = r.optimizer.param_groups[0]["lr"]  # the lr this step uses
        loss_value, metrics = _train_step(r, batch, gen, epoch, state.step + 1)
        state.step += 1
        steps += 1
        samples_window += len(idx) * dist.world_size

        values = {"loss": loss_value, **{k: torch.as_tensor(v).detach().float() for k, v in metrics.items()}}
        for key, value in values.items():
            sums[key] = sums.get(key, 0.0) + value
        at_log_point = state.step % log_every == 0
        if at_log_point:
            _check_finite(r)
            rate = samples_window / max(1e-9, time.perf_counter() - t_window)
            r.log.write(
                {
                    "kind": "step",
                    "epoch": epoch,
                    "step": state.step,
                    "lr": lr,
                    "samples_per_s": rate,
                    **{k: float(v) for k, v in values.items()},
                }
            )
            t_window, samples_window = time.perf_counter(), 0
            r.postfix.update(loss=f"{loss_value.item():.4f}", lr=f"{lr:.3g}", samples_s=f"{rate:.0f}")
            r.bar.set_postfix(r.postfix, refresh=False)
        r.bar.update(1)
        # a stop during the epoch's last step is handled after the epoch's checkpoint; under DDP
        # the ranks agree on it at log points only (one all-reduce), alone it costs nothing
        if (
            i + 1 < plan.steps_per_epoch
            and (at_log_point or not dist.enabled)
            and any_rank(r.stop.signal is not None, dist, r.device)
        ):
            _stop_inside_epoch(r, state, gen, sums, steps)
    return EpochSteps(gen, sums, steps, lr, time.perf_counter() - t_epoch)


def _train_step(r: Run, batch: Batch, gen: torch.Generator, epoch: int, step: int):
    """One optimisation step: the task's loss (under the run's autocast), backward, clip, optimizer
    and scheduler. Returns the detached loss and the task's metrics, both still on the device."""
    with autocast_for(r.device, r.bf16)():
        loss, metrics = r.task.step(r.wrapped, batch, gen, epoch)
    loss_value = loss.detach().float()
    r.finite.record(loss_value, step, batch.x)  # on the device: no host sync per step
    r.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if r.cfg["optim"]["grad_clip"]:
        torch.nn.utils.clip_grad_norm_(r.model.parameters(), float(r.cfg["optim"]["grad_clip"]))
    r.optimizer.step()
    r.scheduler.step()
    return loss_value, metrics


def _stop_inside_epoch(r: Run, state: Progress, gen, sums: dict, steps: int):
    _check_finite(r)
    path = _save(r, r.last_path, state, gen, partial={"sums": {k: v.cpu() for k, v in sums.items()}, "steps": steps})
    name = r.stop.signal or "a signal on another rank"
    raise Interrupted(
        f"interrupted by {name} at epoch {state.epoch + 1}, step {state.step}; saved {path}; continue with --resume",
        exit_code=exit_code_of(r.stop.signal),
    )


def _end_epoch(r: Run, state: Progress, done: EpochSteps) -> dict:
    """The epoch's means and the task's own epoch metrics, logged; then the checkpoints."""
    _check_finite(r)
    record = {
        "kind": "epoch",
        "epoch": state.epoch + 1,
        "step": state.step,
        "lr": done.lr,
        "time_s": done.seconds,
        "samples_per_s": done.steps * r.plan.global_batch / max(1e-9, done.seconds),
        **{k: float(v) / max(1, done.steps) for k, v in done.sums.items()},
    }
    if r.compile_clock is not None:
        record.update(r.compile_clock.metrics())
    end_epoch = optional(r.task, "end_epoch")
    if end_epoch is not None:
        record.update(end_epoch(state.epoch, dict(record)) or {})
        shown = {
            label: f"{record[key]:.1f}" for key, label in getattr(r.task, "postfix_keys", {}).items() if key in record
        }
        if shown:
            r.postfix.update(shown)
            r.bar.set_postfix(r.postfix, refresh=False)
    r.log.write(record)
    state.epoch += 1
    run, epochs = r.cfg["run"], r.cfg["optim"]["epochs"]
    stopping = any_rank(r.stop.signal is not None, r.dist, r.device)
    # the snapshot first: a kill between the two saves leaves last.pt behind, and resuming redoes
    # the epochs since (or completes the snapshot), never loses them
    every = int(run["save_every"])
    if every and state.epoch % every == 0 and r.run_dir is not None:
        _save(r, r.run_dir / f"epoch_{state.epoch:03d}.pt", state, done.generator)
    cadence = int(run["checkpoint_every"])
    if stopping or state.epoch == epochs or (cadence and state.epoch % cadence == 0):
        _save(r, r.last_path, state, done.generator)
    if stopping:
        raise Interrupted(
            f"interrupted by {r.stop.signal or 'a signal'} after epoch {state.epoch}; saved "
            f"{r.last_path}; continue with --resume",
            exit_code=exit_code_of(r.stop.signal),
        )
    return record


# --------------------------------------------------------------------------- set-up


def _check_run_dir(run_dir: Path | None, resume: bool, overwrite: bool, dist: DistInfo) -> None:
    if run_dir is not None and not resume and not overwrite and (run_dir / "last.pt").exists():
        raise UserError(
            f"{run_dir} already holds a run (last.pt); pass --resume to continue it, or choose another run name / --out"
        )
    if run_dir is not None and dist.is_main and run_dir.is_dir():
        remove_stale_partials(run_dir)


def _plan_batches(n: int, opt: dict, eng: dict, dist: DistInfo) -> BatchPlan:
    world, asked = dist.world_size, int(opt["batch_size"])
    if asked % world:
        raise UserError(
            f"optim.batch_size {asked} does not split evenly over the {world} DDP ranks; "
            f"use a multiple of {world} (e.g. {asked - asked % world or world})"
        )
    global_batch = min(asked, n - n % world)
    if global_batch < world:
        raise UserError(f"the training split has {n} samples, fewer than the {world} DDP ranks")
    if global_batch < asked and dist.is_main:
        print(
            f"note: {n} training samples < optim.batch_size {asked}; using batches of {global_batch}", file=sys.stderr
        )
    drop_last = bool(opt["drop_last"])
    if not drop_last and captures_cuda_graphs(compile_options(eng["compile"])):
        raise UserError(
            f"engine.compile={eng['compile']} captures CUDA graphs, which need every batch "
            "of one shape; set optim.drop_last=true (the last partial batch is dropped, as "
            "the reference does)"
        )
    return BatchPlan(n, global_batch, world, drop_last)


def _resume(r: Run, force: bool) -> tuple[Progress, dict]:
    """Load the newest good checkpoint into the model, optimizer, schedule, task and this rank's
    RNGs; return where the run stands and the config changes that --force let through."""
    if r.run_dir is None:
        raise UserError("--resume needs a run directory")
    ckpt, found = find_checkpoint(r.run_dir)
    changes = config_changes(ckpt.get("config"), r.cfg)
    if ckpt.get("data") not in (None, r.fingerprint):
        changes["training data"] = (ckpt["data"], r.fingerprint)
    if changes and not force:
        raise UserError(
            f"{found} was written with another config: {describe_changes(changes)}; resume "
            f"with the run's own config ({r.run_dir / 'config.yaml'}) or pass --force to continue "
            f"with the new values (recorded in metrics.jsonl)"
        )
    steps_per_epoch, world = r.plan.steps_per_epoch, r.dist.world_size
    if ckpt["steps_per_epoch"] != steps_per_epoch or ckpt["world_size"] != world:
        raise UserError(
            f"{found} was written with {ckpt['steps_per_epoch']} steps per epoch on "
            f"{ckpt['world_size']} rank(s), this run has {steps_per_epoch} on {world}; "
            "resume with the same data, batch size and number of ranks"
        )
    try:
        r.model.load_state_dict(ckpt["model"])
        r.optimizer.load_state_dict(ckpt["optimizer"])
        r.scheduler.load_state_dict(ckpt["scheduler"])
    except (RuntimeError, ValueError, KeyError) as err:
        detail = next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), str(err)[:160])
        raise UserError(
            f"{found} does not fit this run's model or optimizer ({detail}); the model's "
            f"shape cannot change on resume, even with --force"
        ) from None
    if r.dist.is_main:
        complete_snapshot(r.run_dir, found, ckpt, int(r.cfg["run"]["save_every"]))
        complete_last(r.run_dir, found)
    load_task_state = optional(r.task, "load_state_dict")
    if load_task_state is not None and ckpt.get("task") is not None:
        load_task_state(ckpt["task"])
    state = Progress(ckpt["epoch"], ckpt["step"])
    rng, augment = rank_entry(ckpt, r.dist.rank, world)
    restore_rng(rng)
    if state.step > state.epoch * steps_per_epoch:  # stopped inside an epoch: continue its streams
        state.augment_state = augment
        state.partial = ckpt.get("partial_epoch")  # metric sums of the steps already done
    if r.dist.is_main:
        print(f"resuming {r.run_dir} at epoch {state.epoch}, step {state.step}", file=sys.stderr)
    return state, changes


def _wrap(model: nn.Module, dist: DistInfo, device: torch.device, eng: dict) -> nn.Module:
    """What the step calls: `model` in DDP when there are several ranks, then compiled if asked."""
    wrapped = model
    if dist.enabled:
        wrapped = nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=bool(eng["find_unused_parameters"]),
            broadcast_buffers=False,
        )  # BN statistics per rank (as the reference); the queue syncs itself
    options = compile_options(eng["compile"])
    return compile_module(wrapped, options, device) if options is not None else wrapped


def _write_setup(r: Run, backends: dict, sync_bn: bool) -> None:
    """`run_dir/engine.json`: how this process runs (device, ranks, precision, the CUDA settings in
    force, SyncBatchNorm, compile), rewritten by each start or resume."""
    if r.run_dir is None or not r.dist.is_main:
        return
    eng = r.cfg["engine"]
    atomic_write_text(
        r.run_dir / "engine.json",
        json.dumps(
            {
                "device": str(r.device),
                "world_size": r.dist.world_size,
                "precision": "bf16" if r.bf16 else "fp32",
                **backends,
                "sync_bn": sync_bn,
                "compile": eng["compile"],
                "torch": torch.__version__,
                "global_batch": r.plan.global_batch,
                "steps_per_epoch": r.plan.steps_per_epoch,
            },
            indent=1,
        )
        + "\n",
    )


# --------------------------------------------------------------------------- checks and saves


def _check_finite(r: Run) -> None:
    r.finite.check(r.dist, r.device, r.plan.steps_per_epoch, r.last_path, r.model, r.bf16)


def _save(r: Run, path: Path | None, state: Progress, gen: torch.Generator, partial: dict | None = None):
    """Write a training checkpoint: every rank's RNG states travel to rank 0 (a collective: every
    rank calls this), which alone writes; no rank returns before the file is in place (so that a
    rank may read it at once). Returns the path (None when the run has no folder)."""
    if path is None:
        return path
    ranks = gather_objects({"rng": capture_rng(), "augment": gen.get_state()}, r.dist)
    if r.dist.is_main:
        _write_checkpoint(r, path, state, gen, partial, ranks)
    barrier(r.dist)
    return path


def _write_checkpoint(
    r: Run, path: Path, state: Progress, gen: torch.Generator, partial: dict | None, ranks: list[dict]
) -> None:
    task_state = optional(r.task, "state_dict")
    atomic_save(
        {
            "format": FORMAT,
            **to_host(
                {
                    "model": r.model.state_dict(),
                    "optimizer": r.optimizer.state_dict(),
                    "task": task_state() if task_state is not None else None,
                }
            ),
            "scheduler": r.scheduler.state_dict(),
            "epoch": state.epoch,
            "step": state.step,
            "steps_per_epoch": r.plan.steps_per_epoch,
            "world_size": r.dist.world_size,
            "rng": ranks[0]["rng"],
            "rng_ranks": [entry["rng"] for entry in ranks],
            "generators": {
                "augment": ranks[0]["augment"],
                "augment_ranks": [entry["augment"] for entry in ranks],
                "augment_device": str(gen.device),
            },
            "partial_epoch": partial,
            "config": r.cfg,
            "data": r.fingerprint,
        },
        path,
    )


def _progress(total: int, initial: int, enabled: bool):
    """A bar on a terminal; a line every few seconds (done / total, rate, ETA) in logs."""
    from hiclr.common.progress import progress

    return progress(total, desc="train", unit="step", initial=initial, enabled=enabled)
