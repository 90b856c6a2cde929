"""`hiclr bench train`: samples/s of whole HiCLR pre-training steps, the reference formulation as baseline.

One run times, on the same clips, cores and batches and in interleaved repetitions (so that a drifting
load slows every variant alike), the reference formulation, our step with its defaults and ours with
one switch changed per variant; it reports each variant's median seconds per step and its ratio to the
baseline's. `exact` marks a variant that computes the reference's step. Usage and results:
docs/benchmarks.md, '`hiclr bench train`'; the variants and what a step holds: docs/internals.md,
'Benchmarks'.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

NTU60_XSUB_TRAIN = 40091
ROOT = Path(__file__).resolve().parents[2]
DEFAULT_POLICY = ROOT / "configs" / "augment" / "hiclr_default.yaml"
SIZES = {  # name -> (config file or None for the reference defaults, width, batch, queue)
    "full": (None, 16, 128, 32768),
    "demo": (ROOT / "configs" / "demo" / "pretrain.yaml", 4, 32, 512),
}
REFERENCE = {
    "augment": "numpy",
    "fused_views": "separate",
    "graph_conv": "conv_first",
    "precision": "fp32",
    "compile": False,
    "encoder": "stgcn",
}
OURS = {
    "augment": "batched",
    "fused_views": "auto",
    "graph_conv": "auto",
    "precision": "auto",
    "compile": False,
    "encoder": "stgcn",
}
EXACT_VALUES = {
    "augment": {"numpy", "batched"},
    "fused_views": {"auto", "separate", "per_view"},
    "graph_conv": {"conv_first", "aggregate_first", "auto"},
    "precision": {"fp32"},
    "compile": {False},
    "encoder": {"stgcn"},
}
ENCODER_NAMES = ("stgcn", "dsta")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--size",
        choices=tuple(SIZES),
        default="full",
        help="full: the reference recipe (width 16, batch 128, K 32768); demo: "
        "configs/demo/pretrain.yaml (width 4, batch 32, K 512) (default full)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument(
        "--variants",
        default="all",
        help="comma-separated variants to time besides reference and ours: names of "
        "the table (fused_views=separate, graph_conv=conv_first, augment=numpy, "
        "fused_views=shared, compile, precision=...) or switches joined by '+', "
        "e.g. precision=fp32+compile=reduce-overhead (default all; 'none': just the two)",
    )
    parser.add_argument(
        "--encoder",
        choices=ENCODER_NAMES,
        default="stgcn",
        help="dsta: also time the transformer (DSTA-Net, the release's configuration) "
        "beside ST-GCN, as the variant encoder=dsta (default stgcn: ST-GCN only)",
    )
    parser.add_argument(
        "--compile-mode",
        default="default",
        help="torch.compile mode of the compile variant: default, reduce-overhead "
        "(CUDA graphs), max-autotune (default default)",
    )
    parser.add_argument("--steps", type=int, default=1, help="timed steps per variant and repetition (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps of each variant first (default 1)")
    parser.add_argument("--width", type=int, default=None, help="ST-GCN width (default: the size's)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: the size's)")
    parser.add_argument("--queue", type=int, default=None, help="queue size K (default: the size's)")
    parser.add_argument("--samples", type=int, default=2048, help="clips in the resident training split (default 2048)")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="numpy augmentation's DataLoader workers on CUDA (default: usable cores)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads, pinned for the run (default: usable cores)"
    )
    parser.add_argument("--policy", default=str(DEFAULT_POLICY), help="augmentation YAML (default: released)")
    parser.add_argument("--seed", type=int, default=0)
    parser.epilog = (
        "examples:\n  hiclr bench train --json                      # full size, CPU: ~1 h on 2 cores\n"
        "  hiclr bench train --size demo --json\n"
        "  hiclr bench train --device cuda --json --repeats 5 --steps 5\n"
        "  hiclr bench train --size demo --variants none --repeats 1   # quick\n"
        "  hiclr bench train --encoder dsta --variants none --json   # the transformer beside ST-GCN"
    )


def variants(device: torch.device, compile_mode: str) -> dict[str, dict]:
    """name -> settings of every variant, reference and ours first."""
    other_precision = "bf16" if device.type == "cpu" else "fp32"
    compiled = True if compile_mode == "default" else compile_mode
    return {
        "reference": dict(REFERENCE),
        "ours": dict(OURS),
        "fused_views=per_view": {**OURS, "fused_views": "per_view"},
        "fused_views=separate": {**OURS, "fused_views": "separate"},
        "graph_conv=conv_first": {**OURS, "graph_conv": "conv_first"},
        "augment=numpy": {**OURS, "augment": "numpy"},
        "fused_views=shared": {**OURS, "fused_views": "shared"},
        "compile": {**OURS, "compile": compiled},
        f"precision={other_precision}": {**OURS, "precision": other_precision},
    }


_SWITCH_VALUES = {
    "augment": ("numpy", "batched"),
    "fused_views": ("auto", "separate", "per_view", "shared"),
    "graph_conv": ("conv_first", "aggregate_first", "auto"),
    "precision": ("auto", "fp32", "bf16"),
    "compile": None,
    "encoder": ENCODER_NAMES,
}


def parse_variant(spec: str) -> dict:
    """Settings of a variant written as our switches changed from ours, joined by '+', e.g.
    ``precision=fp32+fused_views=separate+compile=reduce-overhead`` (compile: true, false or a mode)."""
    from hiclr.common.errors import UserError
    from hiclr.engine import compile_options

    settings = dict(OURS)
    for part in spec.split("+"):
        key, _, value = part.partition("=")
        if key not in _SWITCH_VALUES or not value:
            raise UserError(
                f"unknown variant {spec!r} in --variants: write names of the table "
                "(reference, ours, fused_views=separate, compile, ...) or switches "
                f"KEY=VALUE joined by '+' with KEY one of {', '.join(_SWITCH_VALUES)}"
            )
        if key == "compile":
            value = {"true": True, "false": False}.get(value, value)
            compile_options(value)  # refuses what torch.compile would not take
        elif value not in _SWITCH_VALUES[key]:
            raise UserError(f"variant {spec!r}: {key} is one of {', '.join(_SWITCH_VALUES[key])}, not {value!r}")
        settings[key] = value
    return settings


def is_exact(settings: dict, precision: str) -> bool:
    """True when the variant computes the reference's step (to float tolerance, per the tests)."""
    resolved = {**settings, "precision": precision}
    return all(resolved[k] in allowed for k, allowed in EXACT_VALUES.items())


@dataclass
class _Variant:
    name: str
    settings: dict
    precision: str
    learner: torch.nn.Module
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    policy: object | None
    rng: np.random.Generator
    gen: torch.Generator
    times: list = field(default_factory=list)  # seconds per step, one entry per repetition
    phases: dict = field(default_factory=dict)  # augment / model seconds summed over timed steps
    done: int = 0  # steps run (for the batch order)


def _config(args, settings: dict) -> dict:
    from hiclr.config import load_config

    path = SIZES[args.size][0]
    common = [
        f"ssl.queue_size={args.queue}",
        f"optim.batch_size={args.batch}",
        f"ssl.fused_views={settings['fused_views']}",
    ]
    if settings.get("encoder", "stgcn") == "dsta":  # the release's DSTA-Net; width and graph_conv are ST-GCN's
        return load_config(path, ["model.name=dsta", *common])
    return load_config(path, [f"model.width={args.width}", f"model.graph_conv={settings['graph_conv']}", *common])


def _build(name: str, settings: dict, args, device: torch.device) -> _Variant:
    from hiclr.augment import GrowingPolicy
    from hiclr.engine import build_optimizer, resolve_precision, seed_everything
    from hiclr.pretrain import build_learner

    cfg = _config(args, settings)
    seed_everything(args.seed)
    learner = build_learner(cfg).to(device).train()
    optimizer = build_optimizer([p for p in learner.parameters() if p.requires_grad], cfg["optim"])
    from hiclr.engine import compile_module, compile_options

    options = compile_options(settings["compile"])
    model = learner if options is None else compile_module(learner, options, device)
    policy = GrowingPolicy.from_yaml(args.policy) if settings["augment"] == "batched" else None
    return _Variant(
        name,
        settings,
        resolve_precision(settings["precision"], device),
        learner,
        model,
        optimizer,
        policy,
        np.random.default_rng(args.seed),
        torch.Generator(device=device).manual_seed(args.seed),
    )


def _numpy_views(v: _Variant, clips: np.ndarray, device: torch.device):
    """The reference's data loader: four views per sample with numpy, one joint mask per batch."""
    from hiclr.augment import View
    from hiclr.bench.aug import _np_basic, _np_joint_mask, _np_normal

    per_view = [[], [], [], []]  # v0, key, v1, v2
    for clip in clips:
        per_view[0].append(_np_basic(clip, v.rng))
        per_view[1].append(_np_basic(clip, v.rng))
        per_view[2].append(_np_normal(clip, v.rng))
        per_view[3].append(_np_normal(clip, v.rng))
    mask = _np_joint_mask(clips.shape[2], clips.shape[3], v.rng)
    batch = [View(torch.from_numpy(np.stack(p).astype(np.float32)).to(device)) for p in per_view]
    masked = torch.from_numpy(mask == 0).view(1, 1, *mask.shape, 1).to(device)
    batch[3] = View(batch[3].x, masked.expand(len(clips), -1, -1, -1, -1))
    by_stage = {0: batch[0], 1: batch[2], 2: batch[3]}  # in the learner's order (`view_stages`)
    return [batch[1] if i == v.learner.key_index else by_stage[s] for i, s in enumerate(v.learner.view_stages)]


def _step(v: _Variant, data: np.ndarray, x: torch.Tensor, args, device: torch.device) -> tuple[float, float]:
    """One training step of variant `v`: (augmentation seconds, model seconds)."""
    batches = max(1, len(data) // args.batch)
    lo = (v.done % batches) * args.batch
    v.done += 1
    _sync(device)
    start = time.perf_counter()
    if v.policy is None:
        views = _numpy_views(v, data[lo : lo + args.batch], device)
    else:
        views = v.policy.views(x[lo : lo + args.batch], v.gen, list(v.learner.view_stages))
    ids = torch.arange(lo, lo + args.batch, device=device)
    _sync(device)
    middle = time.perf_counter()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=v.precision == "bf16"):
        loss, _ = v.model(views, ids, mining=True)
    v.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    v.optimizer.step()
    _sync(device)
    return middle - start, time.perf_counter() - middle


def _step_cost(augment: float, model: float, v: _Variant, device: torch.device, workers: int) -> float:
    """Seconds a step costs: numpy augmentation overlaps a GPU in `workers` processes."""
    if device.type == "cuda" and v.policy is None:
        return max(model, augment / workers)
    return augment + model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(args: argparse.Namespace) -> dict:
    from hiclr.common.errors import UserError
    from hiclr.engine import resolve_device

    _, width, batch, queue = SIZES[args.size]
    args.width, args.batch, args.queue = args.width or width, args.batch or batch, args.queue or queue
    if min(args.steps, args.repeats, args.batch, args.width, args.queue, args.samples) < 1 or args.warmup < 0:
        raise UserError("--steps, --repeats, --batch, --width, --queue and --samples must be positive")
    if args.samples < args.batch:
        raise UserError(f"--samples {args.samples} is smaller than --batch {args.batch}; raise --samples")
    device = resolve_device(args.device)
    table = variants(device, args.compile_mode)
    chosen = ["reference", "ours"]
    if args.variants == "all":
        chosen = list(table)
    elif args.variants != "none":
        for name in (n.strip() for n in args.variants.split(",")):
            if name not in table:
                table[name] = parse_variant(name)
            chosen.append(name)
    if args.encoder != "stgcn":
        table.setdefault(f"encoder={args.encoder}", {**OURS, "encoder": args.encoder})
        chosen.append(f"encoder={args.encoder}")
    chosen = list(dict.fromkeys(chosen))
    threads = args.threads or len(os.sched_getaffinity(0))
    workers = args.workers or len(os.sched_getaffinity(0))
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rng = np.random.default_rng(args.seed)
        data = rng.normal(0.0, 0.3, (args.samples, 3, 50, 25, 2)).astype(np.float32)
        x = torch.from_numpy(data).to(device)  # the resident split
        runs = [_build(name, table[name], args, device) for name in chosen]
        for v in runs:
            for _ in range(args.warmup):
                _step(v, data, x, args, device)
        for rep in range(args.repeats):
            order = runs[rep % len(runs) :] + runs[: rep % len(runs)]  # rotate who goes first
            for v in order:
                total = 0.0
                for _ in range(args.steps):
                    augment, model = _step(v, data, x, args, device)
                    total += _step_cost(augment, model, v, device, workers)
                    v.phases["augment"] = v.phases.get("augment", 0.0) + augment
                    v.phases["model"] = v.phases.get("model", 0.0) + model
                v.times.append(total / args.steps)
                print(
                    f"bench train: repetition {rep + 1}/{args.repeats}, {v.name}: {total / args.steps:.3f} s/step",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        torch.set_num_threads(previous)
    return _report(args, device, runs, threads, workers)


def _report(args, device, runs: list[_Variant], threads: int, workers: int) -> dict:
    by_name = {v.name: v for v in runs}
    base, ours = by_name["reference"], by_name["ours"]
    base_s = statistics.median(base.times)
    rate = lambda seconds: args.batch / seconds
    rows = []
    for v in runs:
        median = statistics.median(v.times)
        paired = statistics.median(b / t for b, t in zip(base.times, v.times))
        timed = args.steps * args.repeats
        rows.append(
            {
                "name": v.name,
                "exact": is_exact(v.settings, v.precision),
                "settings": {**v.settings, "precision": v.precision},
                "samples_per_s": rate(median),
                "ms_per_step": 1000 * median,
                "speedup": base_s / median,
                "speedup_paired_median": paired,
                "augment_ms_per_step": 1000 * v.phases["augment"] / timed,
                "model_ms_per_step": 1000 * v.phases["model"] / timed,
                "ms_per_step_each_repetition": [1000 * t for t in v.times],
            }
        )
    ours_row, base_row = rows[runs.index(ours)], rows[runs.index(base)]
    encoders = {"stgcn": ours_row["ms_per_step"]}
    for row in rows:  # the other encoders at our settings
        if row["name"].startswith("encoder=") and "+" not in row["name"]:
            encoders[row["settings"]["encoder"]] = row["ms_per_step"]
    split = ours_row["augment_ms_per_step"] + ours_row["model_ms_per_step"]
    full = (args.width, args.batch, args.queue) == SIZES["full"][1:]
    return {
        "baseline_samples_per_s": base_row["samples_per_s"],
        "samples_per_s": ours_row["samples_per_s"],
        "speedup": ours_row["speedup"],
        "speedup_paired_median": ours_row["speedup_paired_median"],
        "exact": ours_row["exact"],
        "projected_300_epochs_h": 300 * NTU60_XSUB_TRAIN / ours_row["samples_per_s"] / 3600,
        "baseline_projected_300_epochs_h": 300 * NTU60_XSUB_TRAIN / base_row["samples_per_s"] / 3600,
        "size": args.size,
        "full_size_configuration": full,
        "data_fraction": 0.0,  # the resident split: a batch is an index slice
        "augment_fraction": ours_row["augment_ms_per_step"] / split,
        "model_fraction": ours_row["model_ms_per_step"] / split,
        "augment_ms_per_step": ours_row["augment_ms_per_step"],
        "model_ms_per_step": ours_row["model_ms_per_step"],
        "baseline_augment_ms_per_step": base_row["augment_ms_per_step"],
        "baseline_model_ms_per_step": base_row["model_ms_per_step"],
        "variants": rows,
        "encoder_step_cost": {  # ms per step of each encoder timed, our settings, and its ratio to ST-GCN's
            **{f"{name}_ms_per_step": ms for name, ms in encoders.items()},
            **{f"{name}_over_stgcn": ms / encoders["stgcn"] for name, ms in encoders.items() if name != "stgcn"},
        },
        "baseline_workers": workers if device.type == "cuda" else 1,
        "precision": ours.precision,
        "width": args.width,
        "batch": args.batch,
        "queue": args.queue,
        "steps": args.steps,
        "repeats": args.repeats,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_threads": threads,
    }
