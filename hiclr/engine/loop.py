"""The one training loop, for pre-training and fine-tuning alike.

API (`from hiclr.engine import train, TrainData, Batch`):

    result = train(task, TrainData(x, labels, ids), cfg, run_dir, resume=False)

- `cfg`: a resolved config (`hiclr.config.load_config`); the loop reads `run` (seed, save_every,
  log_every), `optim` (SGD, batch size, epochs, schedule, warm-up) and `engine` (device, precision,
  compile, resident data, TensorBoard, progress bar). It is saved as `run_dir/config.yaml`.
- `data`: the training split as CPU tensors: `x` (N, C, T, V, M) float32, `labels` (N,) and `ids`
  (N,) (sample ids, e.g. `Split.index`; default 0..N-1). The loop puts `x` on the device when it
  fits (`engine.resident`) and forms each batch by an index gather from a permutation drawn from a
  `torch.Generator` seeded by (seed, epoch).
- `task`: a small object with
    `model: nn.Module` - everything that is trained and checkpointed (moved to the device here);
    `step(model, batch: Batch, generator: torch.Generator, epoch: int) -> (loss, metrics: dict)` -
        one forward pass: `model` is `task.model` as wrapped by the engine (DDP and/or compiled),
        call it rather than `task.model`; `generator` is the epoch's augmentation generator on the
        device (seeded by (seed, epoch, rank), so a resumed run draws the same augmentations);
        `epoch` is 0-based. Runs under bf16 autocast on CUDA. Return the scalar loss and any
        scalar metrics (tensors or floats); the engine does backward, clipping, step and schedule.
  and optionally
    `param_groups() -> iterable` - what the optimizer updates (default: parameters with grad);
    `end_epoch(epoch: int, means: dict) -> dict` - after each epoch, given the epoch's means of the
        step metrics (loss, the task's metrics); returns extra values (e.g. a test accuracy) logged
        with the epoch;
    `postfix_keys: dict` - {epoch metric: label} of `end_epoch` values shown in the progress bar;
    `state_dict()` / `load_state_dict(d)` - extra task state to checkpoint (tensors, plain types);
    `finish(run_dir) -> dict` - once at the end on rank 0 (pre-training writes `encoder.pt`).
- `result`: `TrainResult(run_dir, epoch, step, last_epoch_metrics, outputs)`.

Fine-tuning, for example, is a task whose `model` is encoder + `nn.Linear`, whose `step` augments
(or not) and returns `F.cross_entropy(model(batch.x), batch.labels)`, and whose `end_epoch` measures
test accuracy; its config's `optim` section says nesterov, lr 0.1, 5 warm-up epochs, milestones.

Stopping: SIGINT / SIGTERM finish the current step, save `last.pt` and raise `Interrupted` (a
`UserError` carrying `exit_code` 130 / 143). A non-finite loss raises `NonFiniteLoss` naming epoch
and step, found within `run.log_every` steps (the step itself has no host-device synchronisation:
`FiniteWatch`) and always before the next save, so the last good checkpoint stays untouched.
Checkpoint contents: `hiclr/engine/checkpoint.py`; DDP: `hiclr/engine/distributed.py`.
"""

from __future__ import annotations

import contextlib
import math
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from data_prep.errors import UserError
from hiclr.config import save_config
from hiclr.engine.checkpoint import FORMAT, atomic_save, capture_rng, load_checkpoint, restore_rng
from hiclr.engine.resume import (complete_snapshot, config_changes, data_fingerprint, describe_changes,
                                 find_checkpoint, remove_stale_partials)
from hiclr.engine.distributed import DistInfo, any_rank, barrier, setup_distributed
from hiclr.engine.logging import MetricsLog
from hiclr.engine.schedule import build_optimizer, build_scheduler


@dataclass
class TrainData:
    x: torch.Tensor                         # (N, C, T, V, M) float32
    labels: torch.Tensor | None = None      # (N,) int64
    ids: torch.Tensor | None = None         # (N,) int64 sample ids

    def __post_init__(self):
        if self.ids is None:
            self.ids = torch.arange(len(self.x))
        if self.labels is None:
            self.labels = torch.full((len(self.x),), -1, dtype=torch.long)


@dataclass
class Batch:
    x: torch.Tensor        # (B, C, T, V, M) on the device
    labels: torch.Tensor   # (B,)
    ids: torch.Tensor      # (B,) sample ids


@dataclass
class TrainResult:
    run_dir: Path | None
    epoch: int
    step: int
    metrics: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)


class Interrupted(UserError):
    """Stopped by a signal after saving `last.pt`."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite; nothing was saved after the last good checkpoint."""


# --------------------------------------------------------------------------- the loop

def train(task, data: TrainData, cfg: dict, run_dir: str | Path | None = None, *,
          resume: bool = False, overwrite: bool = False, force: bool = False) -> TrainResult:
    run, opt, eng = cfg["run"], cfg["optim"], cfg["engine"]
    dist = setup_distributed(_device_kind(eng["device"]))
    device = resolve_device(eng["device"], dist)
    bf16 = resolve_precision(eng["precision"], device) == "bf16"
    run_dir = Path(run_dir) if run_dir is not None else None
    last_path = run_dir / "last.pt" if run_dir is not None else None
    if run_dir is not None and not resume and not overwrite and last_path.exists():
        raise UserError(f"{run_dir} already holds a run (last.pt); pass --resume to continue it, "
                        "or choose another run name / --out")
    if run_dir is not None and dist.is_main and run_dir.is_dir():
        remove_stale_partials(run_dir)
    if eng["deterministic"] and device.type == "cuda":
        torch.use_deterministic_algorithms(True, warn_only=True)

    # -- data: resident on the device when it fits, batches by index gather
    n = len(data.x)
    world = dist.world_size
    global_batch = min(int(opt["batch_size"]), n - n % world)
    if global_batch < world:
        raise UserError(f"the training split has {n} samples, fewer than the {world} DDP ranks")
    if global_batch < opt["batch_size"] and dist.is_main:
        print(f"note: {n} training samples < optim.batch_size {opt['batch_size']}; "
              f"using batches of {global_batch}", file=sys.stderr)
    drop_last = bool(opt["drop_last"])
    if not drop_last and captures_cuda_graphs(compile_options(eng["compile"])):
        raise UserError(f"engine.compile={eng['compile']} captures CUDA graphs, which need every batch "
                        "of one shape; set optim.drop_last=true (the last partial batch is dropped, as "
                        "the reference does)")
    steps_per_epoch = n // global_batch if drop_last else math.ceil(n / global_batch)
    total_steps = steps_per_epoch * opt["epochs"]
    x, resident = place_data(data.x, device, eng["resident"], eng["resident_fraction"])
    labels, ids = data.labels.to(x.device), data.ids.to(x.device)

    # -- model, optimizer, schedule
    seed = int(run["seed"])
    if not resume:
        seed_everything(seed + dist.rank)
    model: nn.Module = task.model.to(device)
    params = task.param_groups() if hasattr(task, "param_groups") else \
        [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, opt)
    scheduler = build_scheduler(optimizer, opt, steps_per_epoch)

    epoch, step, aug_state, partial, forced = 0, 0, None, None, {}
    fingerprint = data_fingerprint(data.ids, data.labels, data.x)
    if resume:
        if run_dir is None:
            raise UserError("--resume needs a run directory")
        ckpt, found = find_checkpoint(run_dir)
        changes = config_changes(ckpt.get("config"), cfg)
        if ckpt.get("data") not in (None, fingerprint):
            changes["training data"] = (ckpt["data"], fingerprint)
        if changes and not force:
            raise UserError(f"{found} was written with another config: {describe_changes(changes)}; resume "
                            f"with the run's own config ({run_dir / 'config.yaml'}) or pass --force to continue "
                            f"with the new values (recorded in metrics.jsonl)")
        forced = changes
        if ckpt["steps_per_epoch"] != steps_per_epoch or ckpt["world_size"] != world:
            raise UserError(f"{found} was written with {ckpt['steps_per_epoch']} steps per epoch on "
                            f"{ckpt['world_size']} rank(s), this run has {steps_per_epoch} on {world}; "
                            "resume with the same data, batch size and number of ranks")
        try:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
        except (RuntimeError, ValueError, KeyError) as err:
            detail = next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), str(err)[:160])
            raise UserError(f"{found} does not fit this run's model or optimizer ({detail}); the model's "
                            f"shape cannot change on resume, even with --force") from None
        if dist.is_main:
            complete_snapshot(run_dir, found, ckpt, int(run["save_every"]))
        if hasattr(task, "load_state_dict") and ckpt.get("task") is not None:
            task.load_state_dict(ckpt["task"])
        epoch, step = ckpt["epoch"], ckpt["step"]
        restore_rng(ckpt["rng"])
        if step > epoch * steps_per_epoch:   # stopped inside an epoch: continue its augmentation stream
            aug_state = ckpt["generators"]["augment"]
            partial = ckpt.get("partial_epoch")   # metric sums of the steps already done
        if dist.is_main:
            print(f"resuming {run_dir} at epoch {epoch}, step {step}", file=sys.stderr)

    wrapped = model
    if dist.enabled:
        wrapped = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=bool(eng["find_unused_parameters"]),
            broadcast_buffers=False)  # BN statistics per rank (as the reference); the queue syncs itself
    compile_kwargs = compile_options(eng["compile"])
    if compile_kwargs is not None:
        wrapped = compile_module(wrapped, compile_kwargs, device)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    if run_dir is not None and dist.is_main:
        save_config(cfg, run_dir / "config.yaml")
    log = MetricsLog(run_dir, resume_step=step if resume else None, tensorboard=eng["tensorboard"],
                     enabled=dist.is_main)
    if forced:
        if dist.is_main:
            print(f"warning: --force: resuming with changed {describe_changes(forced)}", file=sys.stderr)
        log.write({"kind": "resume", "epoch": epoch, "step": step, "forced": True,
                   "changed": {k: [str(a), str(b)] for k, (a, b) in forced.items()}})
    bar = _progress(total_steps, step, enabled=bool(eng["progress"]) and dist.is_main)
    log_every = max(1, int(run["log_every"]))
    finite = FiniteWatch(device)
    outputs: dict = {}
    last_epoch_record: dict = {}
    postfix: dict = {}                      # the progress bar's: last logged step + epoch metrics
    with StopRequest() as stop:
        try:
            while epoch < opt["epochs"]:
                # one permutation per epoch, the same on every rank; each rank takes its slice
                perm = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(seed, epoch, 0)))
                perm = perm.to(x.device)
                gen = torch.Generator(device=device)
                gen.manual_seed(derive_seed(seed, epoch, 1 + dist.rank))
                if aug_state is not None:
                    gen.set_state(aug_state)
                    aug_state = None
                model.train()
                sums: dict[str, torch.Tensor] = {}
                epoch_steps, t_epoch = 0, time.perf_counter()
                if partial is not None:
                    sums = {k: v.to(device) for k, v in partial["sums"].items()}
                    epoch_steps, partial = int(partial["steps"]), None
                t_window, samples_window = time.perf_counter(), 0
                for i in range(step - epoch * steps_per_epoch, steps_per_epoch):
                    chunk = perm[i * global_batch:(i + 1) * global_batch]
                    idx = torch.tensor_split(chunk, world)[dist.rank]
                    batch = Batch(x[idx].to(device, non_blocking=True), labels[idx].to(device), ids[idx].to(device))

                    with autocast():
                        loss, metrics = task.step(wrapped, batch, gen, epoch)
                    loss_value = loss.detach().float()
                    finite.record(loss_value, step + 1, batch.x)   # on the device: no host sync per step
                    lr = optimizer.param_groups[0]["lr"]   # the lr this step uses
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if opt["grad_clip"]:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), float(opt["grad_clip"]))
                    optimizer.step()
                    scheduler.step()
                    step += 1
                    epoch_steps += 1
                    samples_window += len(idx) * world

                    values = {"loss": loss_value, **{k: torch.as_tensor(v).detach().float()
                                                     for k, v in metrics.items()}}
                    for key, value in values.items():
                        sums[key] = sums.get(key, 0.0) + value
                    if step % log_every == 0:
                        finite.check(dist, device, steps_per_epoch, last_path, model, bf16)
                        rate = samples_window / max(1e-9, time.perf_counter() - t_window)
                        log.write({"kind": "step", "epoch": epoch, "step": step, "lr": lr,
                                   "samples_per_s": rate, **{k: float(v) for k, v in values.items()}})
                        t_window, samples_window = time.perf_counter(), 0
                        postfix.update(loss=f"{loss_value.item():.4f}", lr=f"{lr:.3g}", samples_s=f"{rate:.0f}")
                        bar.set_postfix(postfix, refresh=False)
                    bar.update(1)
                    # (a stop during the epoch's last step is handled after the epoch's checkpoint)
                    if i + 1 < steps_per_epoch and any_rank(stop.signal is not None, dist, device):
                        finite.check(dist, device, steps_per_epoch, last_path, model, bf16)
                        path = _save(last_path, model, optimizer, scheduler, task, cfg, epoch, step,
                                     steps_per_epoch, world, gen, dist, fingerprint=fingerprint,
                                     partial={"sums": {k: v.cpu() for k, v in sums.items()},
                                              "steps": epoch_steps})
                        name = stop.signal or "a signal on another rank"
                        raise Interrupted(f"interrupted by {name} at epoch {epoch + 1}, step {step}; saved "
                                          f"{path}; continue with --resume",
                                          exit_code=143 if stop.signal == "SIGTERM" else 130)

                # end of epoch: means, the task's own epoch metrics, then checkpoints
                finite.check(dist, device, steps_per_epoch, last_path, model, bf16)
                elapsed = time.perf_counter() - t_epoch
                record = {"kind": "epoch", "epoch": epoch + 1, "step": step,
                          "lr": lr if epoch_steps else optimizer.param_groups[0]["lr"], "time_s": elapsed,
                          "samples_per_s": epoch_steps * global_batch / max(1e-9, elapsed),
                          **{k: float(v) / max(1, epoch_steps) for k, v in sums.items()}}
                if hasattr(task, "end_epoch"):
                    record.update(task.end_epoch(epoch, dict(record)) or {})
                    shown = {label: f"{record[key]:.1f}" for key, label in
                             getattr(task, "postfix_keys", {}).items() if key in record}
                    if shown:
                        postfix.update(shown)
                        bar.set_postfix(postfix, refresh=False)
                log.write(record)
                last_epoch_record = record
                epoch += 1
                # the snapshot first: a kill between the two saves leaves last.pt one epoch behind,
                # and resuming redoes that epoch (or completes the snapshot), never loses it
                every = int(run["save_every"])
                if every and epoch % every == 0 and run_dir is not None:
                    _save(run_dir / f"epoch_{epoch:03d}.pt", model, optimizer, scheduler, task, cfg, epoch,
                          step, steps_per_epoch, world, gen, dist, fingerprint=fingerprint)
                _save(last_path, model, optimizer, scheduler, task, cfg, epoch, step, steps_per_epoch,
                      world, gen, dist, fingerprint=fingerprint)
                if any_rank(stop.signal is not None, dist, device):
                    raise Interrupted(f"interrupted by {stop.signal or 'a signal'} after epoch {epoch}; saved "
                                      f"{last_path}; continue with --resume",
                                      exit_code=143 if stop.signal == "SIGTERM" else 130)

            if dist.is_main and hasattr(task, "finish"):
                outputs = task.finish(run_dir) or {}
            barrier(dist)
        finally:
            bar.close()
            log.close()
    return TrainResult(run_dir, epoch, step, last_epoch_record, outputs)


# --------------------------------------------------------------------------- helpers

class FiniteWatch:
    """The first step whose loss is not finite, remembered on the device.

    `record` runs every step without a host-device synchronisation; `check` (one sync) runs every
    `run.log_every` steps, at the end of each epoch and before a save on a signal, so a bad loss
    is found before anything is saved after it and named by its epoch and step (the optimizer has
    taken up to `log_every` steps with it by then; nothing of them is kept).
    """

    def __init__(self, device: torch.device):
        self.step = torch.full((), -1, dtype=torch.long, device=device)
        self.value = torch.zeros((), device=device)
        self.bad_inputs = torch.zeros((), dtype=torch.long, device=device)   # at that step

    def record(self, loss_value: torch.Tensor, step: int, x: torch.Tensor | None = None) -> None:
        first = ~torch.isfinite(loss_value) & (self.step < 0)
        self.step.masked_fill_(first, step)
        self.value = torch.where(first, loss_value, self.value)
        if x is not None:
            self.bad_inputs = torch.where(first, (~torch.isfinite(x)).sum(), self.bad_inputs)

    def check(self, dist: DistInfo, device: torch.device, steps_per_epoch: int, last_path,
              model: nn.Module | None = None, bf16: bool = False) -> None:
        """Raise `NonFiniteLoss` (on every rank) if any rank has seen a non-finite loss, naming the
        cause (`_non_finite_cause`)."""
        step = int(self.step)
        if not any_rank(step >= 0, dist, device):
            return
        if step < 0:
            raise NonFiniteLoss(f"the loss is not finite on another rank; stopped without saving, the "
                                f"last good checkpoint is {_describe_last(last_path)}")
        epoch, batch = divmod(step - 1, steps_per_epoch)
        raise NonFiniteLoss(
            f"the loss is {float(self.value)} at epoch {epoch + 1}, step {step} (batch {batch + 1} of "
            f"{steps_per_epoch}); stopped without saving, the last good checkpoint is "
            f"{_describe_last(last_path)}; {_non_finite_cause(int(self.bad_inputs), model, bf16)}")


def _save(path, model, optimizer, scheduler, task, cfg, epoch, step, steps_per_epoch, world, gen, dist,
          partial=None, fingerprint=None):
    """Write a training checkpoint (rank 0 only); returns its path (None when not saving)."""
    if path is None or not dist.is_main:
        return path
    atomic_save({
        "format": FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "task": task.state_dict() if hasattr(task, "state_dict") else None,
        "epoch": epoch,
        "step": step,
        "steps_per_epoch": steps_per_epoch,
        "world_size": world,
        "rng": capture_rng(),
        "generators": {"augment": gen.get_state(), "augment_device": str(gen.device)},
        "partial_epoch": partial,
        "config": cfg,
        "data": fingerprint,
    }, path)
    return path


def _describe_last(path: Path | None) -> str:
    if path is None or not path.exists():
        return "none (no epoch finished yet)"
    try:
        ckpt = load_checkpoint(path)
    except UserError:
        return f"{path} (unreadable)"
    return f"{path} (epoch {ckpt['epoch']}, step {ckpt['step']})"


#: `torch.compile` modes (`engine.compile: MODE`); any other string names a backend (e.g. eager).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_options(value) -> dict | None:
    """`torch.compile` keyword arguments of `engine.compile` (None: no compile). false / true
    (inductor, default mode) | a mode of `COMPILE_MODES` | a backend name."""
    if value is None or value is False or value == "false":
        return None
    if value is True or value == "true":
        return {}
    if not isinstance(value, str) or not value:
        raise UserError(f"engine.compile is {value!r}; use false, true, a mode "
                        f"({', '.join(COMPILE_MODES)}) or a backend name (inductor, eager, ...)")
    return {"mode": value} if value in COMPILE_MODES else {"backend": value}


def compile_module(module: nn.Module, options: dict, device: torch.device) -> nn.Module:
    """`torch.compile(module, **options)`. On CPU inductor's layout optimisation (convolutions in
    channels-last) is turned off: with torch 2.13 its compiled ST-GCN backward crashes in
    `convolution_backward` (segmentation fault / heap corruption, measured on this project's CPU)."""
    if device.type == "cpu" and options.get("backend", "inductor") == "inductor":
        import torch._inductor.config as inductor_config
        inductor_config.layout_optimization = False
    return torch.compile(module, **options)


def captures_cuda_graphs(options: dict | None) -> bool:
    """True for the compile modes that record CUDA graphs (on CUDA): every step must then have the
    same shapes, so the engine drops the last partial batch."""
    return options is not None and options.get("mode") in ("reduce-overhead", "max-autotune")


def _non_finite_cause(bad_inputs: int, model: nn.Module | None, bf16: bool) -> str:
    """What to do about a non-finite loss: bad input, bad weights, or the numerics (lr, bf16).
    bad_inputs: the number of non-finite input values of the step whose loss was not finite."""
    if bad_inputs:
        return (f"that step's batch itself holds {bad_inputs} non-finite input values: the data is bad, "
                f"check it with `hiclr-prep verify` and re-create it")
    if model is not None and any(not bool(torch.isfinite(p).all()) for p in model.parameters()):
        return "the weights are already non-finite: lower optim.lr (or set optim.grad_clip)"
    if bf16:
        return "the input and weights are finite: lower optim.lr or use engine.precision=fp32 (this run is bf16)"
    return "the input and weights are finite and this run is fp32: lower optim.lr or set optim.grad_clip"


def derive_seed(seed: int, epoch: int, stream: int) -> int:
    """A 63-bit seed per (run seed, epoch, stream): data order is stream 0, augmentation 1 + rank."""
    words = np.random.SeedSequence([int(seed), int(epoch), int(stream)]).generate_state(2, np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and python `random`."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _device_kind(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(name).split(":")[0]


def resolve_device(name: str, dist: DistInfo = DistInfo()) -> torch.device:
    """`auto` -> cuda when available else cpu; under DDP each rank takes cuda:LOCAL_RANK."""
    kind = _device_kind(str(name))
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


class StopRequest:
    """SIGINT / SIGTERM set `signal` (its name); the loop saves and stops after the current step.

    A second Ctrl-C aborts at once. Handlers are installed only in the main thread and restored on exit.
    """

    def __init__(self):
        self.signal: str | None = None
        self._previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        from data_prep.commands import sigterm_received
        if sigterm_received():        # a SIGTERM the command's start-up received and a library swallowed
            self.signal = "SIGTERM"
        return self

    def _handle(self, signum, frame):
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name
        print(f"\n{self.signal} received: finishing the current step, then saving last.pt "
              "(Ctrl-C again aborts without saving)", file=sys.stderr)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


def _progress(total: int, initial: int, enabled: bool):
    """A bar on a terminal; a line every few seconds (done / total, rate, ETA) in logs."""
    from data_prep.progress import progress
    return progress(total, desc="train", unit="step", initial=initial, enabled=enabled)
