"""`hiclr bench train`: samples/s of full HiCLR pre-training steps, against the reference pipeline.

Ours, as `hiclr pretrain` runs it: the split resident on the device, a batch by index gather,
the four views drawn by the batched `GrowingPolicy` on the device, the learner's forward (3 query
views + key, bf16 autocast on CUDA unless `--precision fp32`, views fused into one encoder call
with `--fused-views`, `--compile`), backward and the SGD step. Time is split into data (index
gather), augmentation and model (fwd + bwd + step) by synchronising between the phases; the
headline `samples_per_s` comes from separate steps run without those synchronisations.

Baseline, the reference pipeline: per-sample numpy augmentation of the four views (the numpy code
of `hiclr bench aug`, one joint mask per batch), collated and copied to the device, then the same
learner in fp32 with one encoder call per view. The reference overlaps augmentation (DataLoader
workers) with the GPU, so on CUDA a baseline step costs max(model, augmentation / workers); on
CPU both share the cores and the step costs their sum. Workers scale perfectly here, which
favours the baseline. Steps run with mining on (the costlier part of training).

`projected_300_epochs_h` is 300 epochs of NTU60 xsub (40,091 training clips) at the measured rate;
it is the figure to quote only for the full-size configuration (width 16, batch 128, K 32768).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

NTU60_XSUB_TRAIN = 40091
DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "configs" / "augment" / "hiclr_default.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                        help="ours: auto = bf16 autocast on CUDA, fp32 on CPU (the baseline is fp32)")
    parser.add_argument("--fused-views", action="store_true", help="ours: all query views in one encoder call")
    parser.add_argument("--compile", action="store_true", help="ours: torch.compile the learner")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    parser.add_argument("--width", type=int, default=16, help="ST-GCN width (default 16)")
    parser.add_argument("--batch", type=int, default=128, help="batch size (default 128)")
    parser.add_argument("--queue", type=int, default=32768, help="queue size K (default 32768)")
    parser.add_argument("--samples", type=int, default=2048,
                        help="clips in the resident training split (default 2048)")
    parser.add_argument("--workers", type=int, default=None,
                        help="baseline DataLoader workers on CUDA (default: usable cores)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--policy", default=str(DEFAULT_POLICY), help="augmentation YAML (default: released)")
    parser.add_argument("--seed", type=int, default=0)
    parser.epilog = ("examples:\n  hiclr bench train --json --device cuda\n"
                     "  hiclr bench train --device cuda --precision fp32 --fused-views --compile\n"
                     "  hiclr bench train --width 4 --batch 32 --queue 1024 --steps 2   # quick, CPU")


def _config(args, fused: bool) -> dict:
    from hiclr.config import load_config
    return load_config(None, [f"model.width={args.width}", f"ssl.queue_size={args.queue}",
                              f"ssl.fused_views={str(fused).lower()}", f"optim.batch_size={args.batch}"])


class _Clock:
    """Accumulates the wall time of named phases, synchronising the device at each boundary."""

    def __init__(self, device: torch.device, sync: bool):
        self.device, self.sync, self.totals = device, sync, {}
        self._last = None

    def start(self):
        self._sync()
        self._last = time.perf_counter()

    def lap(self, name: str):
        self._sync()
        now = time.perf_counter()
        self.totals[name] = self.totals.get(name, 0.0) + now - self._last
        self._last = now

    def _sync(self):
        if self.sync and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _learner(args, device, fused: bool):
    from hiclr.engine import build_optimizer, seed_everything
    from hiclr.pretrain import build_learner
    cfg = _config(args, fused)
    seed_everything(args.seed)
    learner = build_learner(cfg).to(device).train()
    optimizer = build_optimizer([p for p in learner.parameters() if p.requires_grad], cfg["optim"])
    return learner, optimizer


def _model_step(model, learner, optimizer, views, ids, bf16: bool):
    device_type = views[0].x.device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
        loss, _ = model(views, ids, 10**6)     # mining on
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


def _time_ours(args, device, bf16: bool) -> dict:
    from hiclr.augment import GrowingPolicy
    learner, optimizer = _learner(args, device, args.fused_views)
    model = torch.compile(learner) if args.compile else learner
    policy = GrowingPolicy.from_yaml(args.policy)
    stages = list(learner.view_stages)
    g = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.samples, 3, 50, 25, 2, generator=g).mul_(0.3).to(device)   # resident split
    ids_all = torch.arange(args.samples, device=device)
    perm = torch.randperm(args.samples, generator=g).to(device)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    batches = max(1, args.samples // args.batch)

    def run(steps: int, clock: _Clock | None):
        for s in range(steps):
            idx = perm[(s % batches) * args.batch:(s % batches + 1) * args.batch]
            if clock:
                clock.start()
            xb, ids = x[idx], ids_all[idx]
            if clock:
                clock.lap("data")
            views = policy.views(xb, gen, stages)
            if clock:
                clock.lap("augment")
            _model_step(model, learner, optimizer, views, ids, bf16)
            if clock:
                clock.lap("model")

    run(args.warmup, None)
    clock = _Clock(device, sync=True)
    run(args.steps, clock)
    _sync(device)
    start = time.perf_counter()
    run(args.steps, None)
    _sync(device)
    total = time.perf_counter() - start
    return {"total": total, **clock.totals}


def _time_baseline(args, device, workers: int) -> dict:
    from hiclr.augment import View
    from hiclr.bench.aug import _np_basic, _np_joint_mask, _np_normal
    learner, optimizer = _learner(args, device, fused=False)
    rng = np.random.default_rng(args.seed)
    data = rng.normal(0.0, 0.3, (args.samples, 3, 50, 25, 2)).astype(np.float32)
    batches = max(1, args.samples // args.batch)
    clock = _Clock(device, sync=True)

    def run(steps: int, timed: bool):
        for s in range(steps):
            clock.start()
            lo = (s % batches) * args.batch
            views = [[], [], [], []]                       # v0, key, v1, v2: per sample, as a Dataset
            for clip in data[lo:lo + args.batch]:
                views[0].append(_np_basic(clip, rng))
                views[1].append(_np_basic(clip, rng))
                views[2].append(_np_normal(clip, rng))
                views[3].append(_np_normal(clip, rng))
            mask = _np_joint_mask(data.shape[2], data.shape[3], rng)
            tensors = [torch.from_numpy(np.stack(v).astype(np.float32)) for v in views]
            ids = torch.arange(lo, lo + len(tensors[0]))
            if timed:
                clock.lap("augment")
            masked = torch.from_numpy(mask == 0).view(1, 1, *mask.shape, 1).to(device)
            batch = [View(t.to(device)) for t in tensors]
            batch[3] = View(batch[3].x, masked.expand(len(ids), -1, -1, -1, -1))
            # in the learner's order (`view_stages`): the key view, BA, BA+NA, BA+NA+S (masked)
            by_stage = {0: batch[0], 1: batch[2], 2: batch[3]}
            ordered = [batch[1] if i == learner.key_index else by_stage[st]
                       for i, st in enumerate(learner.view_stages)]
            _model_step(learner, learner, optimizer, ordered, ids.to(device), bf16=False)
            if timed:
                clock.lap("model")

    run(args.warmup, False)
    clock.totals.clear()
    run(args.steps, True)
    return clock.totals


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(args: argparse.Namespace) -> dict:
    from data_prep.errors import UserError
    from hiclr.engine import resolve_device, resolve_precision
    if min(args.steps, args.batch, args.width, args.queue, args.samples) < 1 or args.warmup < 0:
        raise UserError("--steps, --batch, --width, --queue and --samples must be positive")
    if args.samples < args.batch:
        raise UserError(f"--samples {args.samples} is smaller than --batch {args.batch}; raise --samples")
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    previous = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    workers = args.workers or len(os.sched_getaffinity(0))
    try:
        ours = _time_ours(args, device, precision == "bf16")
        base = _time_baseline(args, device, workers)
    finally:
        torch.set_num_threads(previous)
    n = args.steps * args.batch
    if device.type == "cuda":
        base_step = max(base["model"], base["augment"] / workers)
    else:
        base_step = base["model"] + base["augment"]
    baseline_rate, rate = n / base_step, n / ours["total"]
    full = (args.width, args.batch, args.queue) == (16, 128, 32768)
    split = sum(ours[k] for k in ("data", "augment", "model"))
    return {
        "baseline_samples_per_s": baseline_rate,
        "samples_per_s": rate,
        "speedup": rate / baseline_rate,
        "projected_300_epochs_h": 300 * NTU60_XSUB_TRAIN / rate / 3600,
        "baseline_projected_300_epochs_h": 300 * NTU60_XSUB_TRAIN / baseline_rate / 3600,
        "full_size_configuration": full,
        "data_fraction": ours["data"] / split,
        "augment_fraction": ours["augment"] / split,
        "model_fraction": ours["model"] / split,
        "data_ms_per_step": 1000 * ours["data"] / args.steps,
        "augment_ms_per_step": 1000 * ours["augment"] / args.steps,
        "model_ms_per_step": 1000 * ours["model"] / args.steps,
        "baseline_augment_ms_per_step": 1000 * base["augment"] / args.steps,
        "baseline_model_ms_per_step": 1000 * base["model"] / args.steps,
        "baseline_workers": workers if device.type == "cuda" else 1,
        "precision": precision,
        "fused_views": bool(args.fused_views),
        "compile": bool(args.compile),
        "width": args.width,
        "batch": args.batch,
        "queue": args.queue,
        "steps": args.steps,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_threads": args.threads or previous,
    }
