"""The GPU check behind scripts/device_check.sh: numbers back from one call, even when a part fails.

    bash scripts/device_check.sh                 # on a CUDA machine: full sizes, 560 s in all
    bash scripts/device_check.sh --dry-run       # on CPU, tiny sizes: the same code path

The orchestrator (`run`, standard library only) runs each part as its own process under coreutils
`timeout`, in order of value, each limited to its cap (or `--limit`) or to what is left of
`--budget`, whichever is less, so a hung part cannot take the others with it. Parts (functions
`part_<name>` below):

- setup: installs `.whl/*.whl` (or `$DEVICE_CHECK_WHEELS/*.whl`) when there are any, then what
  is still missing from the registry (a machine without network refuses at once), then records
  the environment (GPU, driver, torch, CUDA, cuDNN);
- eager: full-size training steps (augmentation + 3 query views and the key + backward + SGD
  step, mining on, `fused_views: per_view`) in bf16 and fp32: warm-up, then timed steps; peak memory;
  then the same bf16 step with the transformer (DSTA-Net) in ST-GCN's place;
- loss: the learner's loss and gradients on the device against the CPU's, same weights, same views
  (drawn on the CPU and copied), fp32 (TF32 off) and bf16 autocast;
- engine: `hiclr.engine.train` on synthetic clips resident on the device (the NTU60 xsub recipe at
  its batch), epochs without and with mining: samples/s and the projection of 300 epochs of NTU60
  xsub;
- aug: `hiclr bench aug --device cuda`;
- compiled: the bf16 step of `eager` under `torch.compile`: compile time and step time (skipped by
  `--dry-run` unless `--compile-on-cpu`: capturing the learner's graphs takes minutes of CPU);
- tests: `pytest tests/hiclr/test_cuda.py`, then a 2-rank NCCL run of the DDP learner when the machine
  has 2 GPUs (with `--dry-run`: 2 gloo ranks on the CPU).

Each part writes `<out>/<part>.json` as it goes (status `running`) and the orchestrator rewrites it
when the part ends (`ok | failed | timeout | skipped`, seconds, limit); `<out>/summary.json` is
rewritten before and after every part: every part's status and seconds, the headline numbers and
every part's record. `<out>` is `$OUT/device_check`, or `runs/device_check` when OUT is unset.
At most 8 files, so that a device tool that returns 8 files returns all of them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STARTED = time.monotonic()  # a part's limit counts from its process's start
# (name, cap in seconds), in the order they run; the caps add up to less than the default budget
PARTS = [("setup", 45), ("eager", 75), ("loss", 45), ("engine", 75), ("aug", 45), ("compiled", 155), ("tests", 100)]
BUDGET_S = 560  # the whole check, install included, inside a 600-second call
MIN_PART_S = 10  # a part that would get less is skipped
NEEDS_CUDA = {"eager", "loss", "engine", "aug", "compiled", "tests"}  # without --dry-run
SIZES = {
    # width, batch, queue K, dropout: the reference recipe; timed steps after warm-up
    "full": dict(
        width=16,
        batch=128,
        queue=32768,
        dropout=0.5,
        warmup=5,
        steps=50,
        compiled_warmup=3,
        compiled_steps=50,
        loss_batch=16,
        engine_clips=128 * 100,
        engine_epochs=3,
        aug_samples=2048,
        aug_batch=128,
        ddp_batch=32,
        ddp_queue=1024,
        dsta_blocks=None,
    ),
    "tiny": dict(
        width=4,
        batch=8,
        queue=64,
        dropout=0.5,
        warmup=1,
        steps=3,
        compiled_warmup=1,
        compiled_steps=2,
        loss_batch=4,
        engine_clips=8 * 4,
        engine_epochs=3,
        aug_samples=32,
        aug_batch=8,
        ddp_batch=4,
        ddp_queue=64,
        dsta_blocks="[[8,8,4,1],[8,16,4,2]]",
    ),
}
NTU60_CONFIG = ROOT / "configs" / "ntu60" / "xsub" / "pretrain_joint.yaml"
NTU60_XSUB_TRAIN = 40091
REQUIRED = {
    "torch": "torch",
    "numpy": "numpy",
    "yaml": "PyYAML",
    "h5py": "h5py",
    "scipy": "scipy",
    "einops": "einops",
    "tqdm": "tqdm",
    "pytest": "pytest",
}
STATUSES = ("ok", "failed", "timeout", "skipped")


class _Stopped(Exception):
    """The orchestrator got SIGTERM / SIGINT (e.g. from the outer `timeout`) while a part ran."""


_SIGNAL = {"name": None, "waiting": False}  # the stop signal, and whether a part is in flight


def _stop(signum, frame):
    """Remember the signal; interrupt the wait for the part in flight (between parts, the loop
    sees the signal before the next part and skips the rest)."""
    _SIGNAL["name"] = signal.Signals(signum).name
    if _SIGNAL["waiting"]:
        raise _Stopped(_SIGNAL["name"])


# =========================================================================== files


def _write_json(path: Path, data: dict) -> None:
    """Atomically (a reader never sees half a file), with non-finite floats as null."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_finite_or_null(data), indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)


def _finite_or_null(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    return value


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def default_out() -> Path:
    base = os.environ.get("OUT")
    return (Path(base) if base else ROOT / "runs") / "device_check"


# =========================================================================== the orchestrator


def _parse_pairs(items: list[str], what: str, values=None) -> dict:
    names = [n for n, _ in PARTS]
    pairs = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in names or not value or (values is not None and value not in values):
            shape = "|".join(values) if values else "SECONDS"
            raise SystemExit(f"device_check: --{what} {item!r}: write PART={shape} with PART one of {', '.join(names)}")
        pairs[name] = value
    return pairs


def orchestrate(args: argparse.Namespace) -> int:
    chosen = [n for n, _ in PARTS] if not args.parts else [p.strip() for p in args.parts.split(",")]
    unknown = set(chosen) - {n for n, _ in PARTS}
    if unknown:
        raise SystemExit(
            f"device_check: --parts names {', '.join(sorted(unknown))}; the parts are {', '.join(n for n, _ in PARTS)}"
        )
    force = _parse_pairs(args.force, "force", ("fail", "timeout"))
    try:
        limits = {k: float(v) for k, v in _parse_pairs(args.limit, "limit").items()}
    except ValueError:
        raise SystemExit(f"device_check: --limit {' '.join(args.limit)}: SECONDS must be a number") from None
    out = Path(args.out) if args.out else default_out()
    out.mkdir(parents=True, exist_ok=True)
    for stale in list(out.glob("*.json")):  # a summary must never mix two runs
        stale.unlink()
    start = time.monotonic()
    env = dict(os.environ)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *paths])  # the checkout, not an installed copy
    env["PYTHONUNBUFFERED"] = "1"
    summary = {
        "dry_run": args.dry_run,
        "budget_s": args.budget,
        "out": str(out),
        "parts": {n: {"status": "pending"} for n, _ in PARTS if n in chosen},
    }
    records: dict[str, dict] = {}
    blocked = None  # why the parts after setup cannot run
    logs = Path(tempfile.mkdtemp(prefix="device_check_logs_"))
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    for name, cap in PARTS:
        if name not in chosen:
            continue
        left = args.budget - (time.monotonic() - start)
        limit = min(limits.get(name, cap), left)
        reason = None
        if _SIGNAL["name"]:
            reason = f"the check was stopped ({_SIGNAL['name']}) before this part"
        elif blocked and name != "setup":
            reason = blocked
        elif name == "compiled" and args.dry_run and not args.compile_on_cpu:
            reason = (
                "dry run: torch.compile of the learner costs minutes of CPU, so it is timed on CUDA "
                "only; --compile-on-cpu runs it here with dynamo's eager backend"
            )
        elif limit < min(MIN_PART_S, limits.get(name, MIN_PART_S)):
            reason = f"budget exhausted: {max(0.0, left):.0f} s of {args.budget:.0f} s left"
        if reason:
            record = {"part": name, "status": "skipped", "seconds": 0.0, "reason": reason}
        else:
            summary["parts"][name] = {"status": "running", "limit_s": round(limit, 1)}
            _write_summary(out, summary, records, start)
            began = time.monotonic()
            try:
                record = _run_part(name, limit, args, force.get(name), out, env, logs)
            except _Stopped as err:  # the part in flight was stopped with it
                record = {
                    **_read_json(out / f"{name}.json"),
                    "part": name,
                    "status": "timeout",
                    "seconds": round(time.monotonic() - began, 1),
                    "limit_s": round(limit, 1),
                    "reason": f"the check was stopped ({err}) while this part ran",
                }
        _write_json(out / f"{name}.json", record)
        records[name] = record
        summary["parts"][name] = {
            k: record[k] for k in ("status", "seconds", "limit_s", "reason", "error") if k in record
        }
        _write_summary(out, summary, records, start)
        print(
            f"device_check: {name:<9} {record['status']:<8} {record['seconds']:7.1f} s"
            + (f"  ({record.get('reason') or record.get('error')})" if record["status"] != "ok" else ""),
            flush=True,
        )
        if name == "setup":
            if record["status"] != "ok":
                why = record.get("error") or record.get("reason") or ""
                blocked = f"setup {record['status']}: {why}"
            else:
                site = record.get("site_packages")
                if site:
                    env["PYTHONPATH"] = os.pathsep.join([site, env["PYTHONPATH"]])
                if not args.dry_run and not record.get("env", {}).get("cuda_available"):
                    blocked = (
                        "no CUDA device visible to torch; on a machine without one run "
                        "`bash scripts/device_check.sh --dry-run`"
                    )
    summary = _write_summary(out, summary, records, start, final=not _SIGNAL["name"])
    shutil.rmtree(logs, ignore_errors=True)  # their tails are in the records
    _print_summary(summary)
    return 124 if _SIGNAL["name"] else 0


def _run_part(name: str, limit: float, args, forced: str | None, out: Path, env: dict, logs: Path) -> dict:
    cmd = [
        "timeout",
        "-k",
        "5",
        f"{max(limit, 1.0):.1f}",
        sys.executable,
        str(Path(__file__).resolve()),
        "part",
        name,
        "--out",
        str(out),
        "--limit",
        f"{max(limit, 1.0):.1f}",
    ]
    if args.dry_run:
        cmd.append("--dry-run")
    if forced:
        cmd += ["--forced", forced]
    log_path = logs / f"{name}.log"
    began = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            _SIGNAL["waiting"] = True
            if _SIGNAL["name"]:  # arrived just before the wait began
                raise _Stopped(_SIGNAL["name"])
            rc = proc.wait()
        except _Stopped:
            proc.terminate()  # `timeout` passes it on to the part's process group
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
        finally:
            _SIGNAL["waiting"] = False
    seconds = round(time.monotonic() - began, 1)
    record = _read_json(out / f"{name}.json")
    record.update(part=name, seconds=seconds, limit_s=round(limit, 1), rc=rc)
    tail = log_path.read_text(errors="replace")[-2000:]
    if rc in (124, 137) or rc == -9:
        record["status"] = "timeout"
        record["reason"] = f"stopped at its limit of {limit:.0f} s"
    elif rc != 0:
        record["status"] = "failed"
        record.setdefault("error", (tail.strip().splitlines() or [f"exit code {rc}"])[-1])
    elif record.get("status") not in ("ok", "skipped"):
        record["status"] = "ok"
    if record["status"] != "ok":
        record["log_tail"] = tail
    return record


def _write_summary(out: Path, summary: dict, records: dict, start: float, final: bool = False) -> dict:
    summary = dict(summary)
    summary["elapsed_s"] = round(time.monotonic() - start, 1)
    summary["complete"] = final
    summary.update(headline(records))
    summary["records"] = records
    _write_json(out / "summary.json", summary)
    return summary


def _get(record: dict, *keys):
    for key in keys:
        if not isinstance(record, dict) or key not in record:
            return None
        record = record[key]
    return record


def headline(records: dict) -> dict:
    """The numbers a reader wants first, taken from the parts' records (None where a part gave none)."""
    setup, eager, compiled = records.get("setup", {}), records.get("eager", {}), records.get("compiled", {})
    loss, engine, aug, tests = (
        records.get("loss", {}),
        records.get("engine", {}),
        records.get("aug", {}),
        records.get("tests", {}),
    )
    runs = {
        "eager_bf16": _get(eager, "bf16"),
        "eager_fp32": _get(eager, "fp32"),
        "compiled_bf16": compiled,
        "eager_bf16_dsta": _get(eager, "dsta_bf16"),
    }
    return {
        "device": _get(setup, "env", "device_name"),
        "torch": _get(setup, "env", "torch"),
        "install_seconds": _get(setup, "install_seconds"),
        "step_ms": {k: _get(v, "step_ms", "median") for k, v in runs.items()},
        "samples_per_s": {k: _get(v, "samples_per_s") for k, v in runs.items()},
        "peak_memory_mb": {k: _get(v, "peak_memory_mb") for k, v in runs.items()},
        "dsta_over_stgcn": _get(eager, "dsta_bf16", "over_stgcn"),
        "compile_seconds": _get(compiled, "compile_seconds"),
        "compiled_warmup_steps_s": _get(compiled, "warmup_steps_s"),  # kept when the part times out
        "loss_rel_error": {k: _get(loss, k, "loss_rel_error") for k in ("fp32", "bf16")},
        "grad_rel_error": {k: _get(loss, k, "grad_rel_error") for k in ("fp32", "bf16")},
        "engine_samples_per_s": _get(engine, "samples_per_s"),
        "projection_minutes_300_epochs_ntu60_xsub": _get(engine, "projection_minutes_300_epochs_ntu60_xsub"),
        "aug_samples_per_s": _get(aug, "samples_per_s"),
        "aug_speedup": _get(aug, "speedup"),
        "cuda_tests": _get(tests, "cuda_tests"),
        "nccl": _get(tests, "nccl"),
    }


def _print_summary(summary: dict) -> None:
    print(
        "device_check: summary " + json.dumps({k: v for k, v in summary.items() if k not in ("records",)}, default=str),
        flush=True,
    )


# =========================================================================== a part's process


class Context:
    """What a part function gets: sizes, device, and a record it fills and flushes as it goes."""

    def __init__(self, name: str, out: Path, dry_run: bool, limit: float):
        self.name, self.out, self.dry_run, self.limit = name, out, dry_run, limit
        self.size = SIZES["tiny" if dry_run else "full"]
        self.record: dict = {"part": name, "status": "running", "dry_run": dry_run}
        self.status, self.reason = "ok", None

    @property
    def device(self):
        import torch

        return torch.device("cpu" if self.dry_run else "cuda")

    def flush(self) -> None:
        _write_json(self.out / f"{self.name}.json", self.record)

    def skip(self, reason: str) -> None:
        self.status, self.reason = "skipped", reason


def run_part(name: str, out: Path, dry_run: bool, forced: str | None, limit: float) -> int:
    ctx = Context(name, out, dry_run, limit)
    ctx.flush()
    try:
        if forced == "fail":
            raise RuntimeError(f"forced failure (--force {name}=fail)")
        if forced == "timeout":
            time.sleep(10**6)
        globals()[f"part_{name}"](ctx)
    except BaseException as err:  # recorded, then the process fails
        ctx.record.update(
            status="failed", error=f"{type(err).__name__}: {err}"[:500], traceback=traceback.format_exc()[-1500:]
        )
        ctx.flush()
        traceback.print_exc()
        return 1
    ctx.record["status"] = ctx.status
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    ctx.record["cpu_seconds"] = round(sum(u.ru_utime + u.ru_stime for u in usage), 2)
    if ctx.reason:
        ctx.record["reason"] = ctx.reason
    ctx.flush()
    return 0


# --------------------------------------------------------------------------- setup


def part_setup(ctx: Context) -> None:
    """Install what is missing (wheels from `.whl/` first), time it, then record the environment."""
    import importlib
    import importlib.util

    began = time.monotonic()
    wheels = sorted(Path(os.environ.get("DEVICE_CHECK_WHEELS", ROOT / ".whl")).glob("*.whl"))
    missing = [m for m in REQUIRED if importlib.util.find_spec(m) is None]
    site = Path(tempfile.mkdtemp(prefix="device_check_site_")) if wheels or missing else None
    target = ["--no-compile", "--no-cache-dir", "--upgrade", "--target", str(site)]  # later parts import from it
    installed = []
    if wheels:
        _pip(
            ["install", "-q", "--no-index", "--no-deps", *target, *map(str, wheels)],
            "install the wheels of .whl/",
            timeout=max(10.0, STARTED + ctx.limit - time.monotonic() - 10),
        )
        sys.path.insert(0, str(site))
        ctx.record["site_packages"] = str(site)
        installed = [w.name for w in wheels]
        importlib.invalidate_caches()
        missing = [m for m in REQUIRED if importlib.util.find_spec(m) is None]
    if missing:
        # a machine without network refuses at once (no retries); one with network installs
        try:
            _pip(
                ["install", "-q", "--retries", "0", "--timeout", "5", *target, *[REQUIRED[m] for m in missing]],
                "install " + ", ".join(REQUIRED[m] for m in missing),
                timeout=max(10.0, STARTED + ctx.limit - time.monotonic() - 10),
            )
            sys.path.insert(0, str(site))
            ctx.record["site_packages"] = str(site)
            installed += [REQUIRED[m] for m in missing]
        except RuntimeError as err:
            ctx.record["install_error"] = str(err)
        importlib.invalidate_caches()
        missing = [m for m in REQUIRED if importlib.util.find_spec(m) is None]
    ctx.record.update(install_seconds=round(time.monotonic() - began, 2), installed=installed, missing=missing)
    ctx.flush()
    if "torch" in missing:
        raise RuntimeError(
            "torch is not importable and could not be installed: carry its wheels in .whl/ "
            "(docs/benchmarks_gpu.md, 'Wheels') or run with PYTHON=<a python with torch>"
        )
    ctx.record["env"] = environment()
    if missing:
        names = ", ".join(REQUIRED[m] for m in missing)
        ctx.record["warning"] = f"missing {names}: the parts that need them fail"


def _pip(arguments: list[str], what: str, timeout: float = 40) -> None:
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pip", *arguments], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"pip could not {what} within {timeout:.0f} s") from None
    if done.returncode != 0:
        raise RuntimeError(f"pip could not {what}: {(done.stderr.strip().splitlines() or ['?'])[-1]}")


def environment() -> dict:
    import platform

    import numpy
    import torch

    env = {
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "cuda_available": torch.cuda.is_available(),
        "gpus": [],
        "device_name": "cpu",
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "commit": _git_commit(),
    }
    if env["cuda_available"]:
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            env["gpus"].append(
                {
                    "name": p.name,
                    "memory_mb": round(p.total_memory / 2**20),
                    "capability": f"{p.major}.{p.minor}",
                    "multiprocessors": p.multi_processor_count,
                }
            )
        env["device_name"] = env["gpus"][0]["name"]
        env["bf16_supported"] = torch.cuda.is_bf16_supported()
        try:
            smi = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=15,
            )
            env["driver"] = smi.stdout.strip().splitlines()[0] if smi.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired, IndexError):
            env["driver"] = None
    return env


def _git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return done.stdout.strip() or None if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


# --------------------------------------------------------------------------- shared pieces


def _config(ctx: Context, overrides: list[str] = (), encoder: str = "stgcn") -> dict:
    """The NTU60 xsub recipe at the check's size (full: the recipe itself), views fused per view;
    `encoder` dsta: the release's DSTA-Net (on the dry run two small blocks) in ST-GCN's place."""
    from hiclr.config import load_config

    s = ctx.size
    model = [f"model.width={s['width']}", f"model.dropout={s['dropout']}"]
    if encoder == "dsta":
        model = ["model.name=dsta"] + ([f"model.blocks={s['dsta_blocks']}"] if s.get("dsta_blocks") else [])
    return load_config(
        NTU60_CONFIG,
        [
            *model,
            f"optim.batch_size={s['batch']}",
            f"ssl.queue_size={s['queue']}",
            "ssl.fused_views=per_view",
            *overrides,
        ],
    )


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _stats_ms(seconds: list[float]) -> dict:
    import statistics

    ms = sorted(1000 * s for s in seconds)
    pick = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]
    return {
        "median": statistics.median(ms),
        "mean": statistics.fmean(ms),
        "p10": pick(0.1),
        "p90": pick(0.9),
        "min": ms[0],
        "max": ms[-1],
        "n": len(ms),
    }


def _peak_memory_mb(device) -> tuple[float, str]:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "torch.cuda.max_memory_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process max RSS (CPU)"


def time_steps(ctx: Context, precision: str, compile_value=None, progress=None, encoder: str = "stgcn") -> dict:
    """Warm-up, then timed training steps of the learner at the check's size: views drawn on the
    device, forward of the query views and the key (mining on), backward, SGD step, as the engine
    does. On CUDA each step is timed by events (no host synchronisation inside the timed steps)."""
    import torch

    from hiclr.engine import build_optimizer, compile_module, compile_options, seed_everything
    from hiclr.pretrain import build_learner, build_policy

    s, device = ctx.size, ctx.device
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as a training run on CUDA (fixed shapes)
    cfg = _config(ctx, encoder=encoder)
    seed_everything(0)
    learner = build_learner(cfg).to(device).train()
    optimizer = build_optimizer([p for p in learner.parameters() if p.requires_grad], cfg["optim"])
    options = compile_options(compile_value) if compile_value is not None else None
    model = learner if options is None else compile_module(learner, options, device)
    policy = build_policy(cfg)
    stages = list(learner.view_stages)
    batch, batches = s["batch"], 4
    steps = s["compiled_steps"] if options is not None else s["steps"]
    clips = 0.3 * torch.randn(batch * batches, 3, 50, 25, 2, generator=torch.Generator().manual_seed(0))
    x = clips.to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    bf16 = precision == "bf16"
    losses = []

    def step(i: int) -> None:
        lo = (i % batches) * batch
        with torch.autocast(device.type, enabled=False):
            views = policy.views(x[lo : lo + batch], gen, stages)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss, _ = model(views, torch.arange(lo, lo + batch, device=device), mining=True)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach().float())

    warmup_s = []
    for i in range(s["compiled_warmup"] if options is not None else s["warmup"]):
        _sync(device)
        began = time.perf_counter()
        step(i)
        _sync(device)
        warmup_s.append(time.perf_counter() - began)
        if progress is not None:
            progress(warmup_s)
    graphs_after_warmup = _graph_count()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        events = [torch.cuda.Event(enable_timing=True) for _ in range(steps + 1)]
    _sync(device)
    began = time.perf_counter()
    step_s = []
    for i in range(steps):
        if device.type == "cuda":
            events[i].record()
        else:
            t = time.perf_counter()
        step(len(warmup_s) + i)
        if device.type != "cuda":
            step_s.append(time.perf_counter() - t)
    if device.type == "cuda":
        events[-1].record()
    _sync(device)
    wall = time.perf_counter() - began
    if device.type == "cuda":
        step_s = [events[i].elapsed_time(events[i + 1]) / 1000 for i in range(steps)]
    peak, source = _peak_memory_mb(device)
    finite = bool(torch.isfinite(torch.stack(losses)).all())
    result = {
        "encoder": encoder,
        "precision": precision,
        "fused_views": "per_view",
        "mining": True,
        "device": str(device),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "width": s["width"],
        "batch": batch,
        "queue": s["queue"],
        "dropout": s["dropout"],
        "warmup_steps_s": [round(v, 4) for v in warmup_s],
        "timed_steps": steps,
        "step_ms": _stats_ms(step_s),
        "wall_ms_per_step": 1000 * wall / steps,
        "samples_per_s": batch * steps / wall,
        "peak_memory_mb": peak,
        "peak_memory_source": source,
        "last_loss": float(losses[-1]),
        "losses_finite": finite,
    }
    if options is not None:
        result.update(
            compile=options,
            graphs_after_warmup=graphs_after_warmup,
            graphs_added_by_timed_steps=(_graph_count() - graphs_after_warmup)
            if graphs_after_warmup is not None
            else None,
        )
    if not finite:
        raise RuntimeError(f"non-finite loss in the {precision} steps")
    return result


def _graph_count() -> int | None:
    try:
        from torch._dynamo.utils import counters

        return int(counters["stats"]["unique_graphs"])
    except Exception:  # private API: absent in some versions
        return None


# --------------------------------------------------------------------------- eager, compiled


def part_eager(ctx: Context) -> None:
    """ST-GCN's step in bf16 and fp32, then the transformer's (DSTA-Net) in bf16 beside it."""
    for precision in ("bf16", "fp32"):
        ctx.record[precision] = time_steps(ctx, precision)
        ctx.flush()
    dsta = ctx.record["dsta_bf16"] = time_steps(ctx, "bf16", encoder="dsta")
    dsta["model"] = _config(ctx, encoder="dsta")["model"]
    dsta["over_stgcn"] = dsta["step_ms"]["median"] / ctx.record["bf16"]["step_ms"]["median"]


def part_compiled(ctx: Context) -> None:
    """The bf16 step compiled: inductor on CUDA; on the CPU dry run the `eager` backend (the same
    graph capture by dynamo without generating kernels, which would take minutes of CPU)."""
    value = "eager" if ctx.dry_run else True
    ctx.record.update(backend="eager" if ctx.dry_run else "inductor")
    ctx.flush()

    def progress(warmup_s):  # a part stopped while compiling keeps its first steps
        ctx.record["warmup_steps_s"] = [round(v, 4) for v in warmup_s]
        ctx.flush()

    result = time_steps(ctx, "bf16", compile_value=value, progress=progress)
    median = result["step_ms"]["median"] / 1000
    result["compile_seconds"] = sum(max(0.0, w - median) for w in result["warmup_steps_s"])
    ctx.record.update(result)


# --------------------------------------------------------------------------- loss


def part_loss(ctx: Context) -> None:
    """The loss and gradients of one step on the device against the CPU in fp32, same weights and
    views (drawn on the CPU, copied), without and with mining; dropout 0 so that no random draw
    differs between the devices. fp32 on the device runs with TF32 off."""
    import copy
    import dataclasses

    import torch

    from hiclr.engine import seed_everything
    from hiclr.pretrain import build_learner, build_policy

    device, batch = ctx.device, ctx.size["loss_batch"]
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cfg = _config(ctx, ["model.dropout=0.0", f"optim.batch_size={batch}"])
    seed_everything(0)
    reference = build_learner(cfg).train()
    policy = build_policy(cfg)
    g = torch.Generator().manual_seed(1)
    x = 0.3 * torch.randn(batch, 3, 50, 25, 2, generator=g)
    views = policy.views(x, g, list(reference.view_stages))
    if any(v.edges is not None for v in views):
        raise RuntimeError("the policy perturbs edges; the comparison copies only x and mask")
    moved = [
        dataclasses.replace(v, x=v.x.to(device), mask=None if v.mask is None else v.mask.to(device)) for v in views
    ]
    ids = torch.arange(batch)

    def one(learner, views, ids, epoch, bf16):
        with torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss, _ = learner(views, ids, **learner.switches(epoch))
        loss.backward()
        grads = torch.cat(
            [p.grad.detach().double().flatten().cpu() for p in learner.parameters() if p.grad is not None]
        )
        return loss.detach().double().cpu(), grads

    results = {"device": str(device), "batch": batch, "width": ctx.size["width"], "queue": ctx.size["queue"]}
    for mining, epoch in (("no_mining", 0), ("mining", 10**6)):
        torch.manual_seed(0)
        loss_cpu, grad_cpu = one(copy.deepcopy(reference), views, ids, epoch, False)
        for precision in ("fp32", "bf16"):
            torch.manual_seed(0)
            loss_dev, grad_dev = one(
                copy.deepcopy(reference).to(device), moved, ids.to(device), epoch, precision == "bf16"
            )
            row = {
                "loss_cpu": float(loss_cpu),
                "loss_device": float(loss_dev),
                "loss_rel_error": float((loss_dev - loss_cpu).abs() / loss_cpu.abs().clamp_min(1e-12)),
                "grad_rel_error": float((grad_dev - grad_cpu).norm() / grad_cpu.norm().clamp_min(1e-12)),
            }
            results.setdefault(precision, {})[mining] = row
            ctx.record.update(results)
            ctx.flush()
    for precision in ("fp32", "bf16"):  # the worse of the two epochs, for the summary
        rows = results[precision]
        for key in ("loss_rel_error", "grad_rel_error"):
            rows[key] = max(rows[m][key] for m in ("no_mining", "mining"))
    tolerance = {"loss_rel_error": 1e-4, "grad_rel_error": 1e-3}
    results["fp32_tolerance"] = tolerance
    ctx.record.update(results)
    values = [
        results[p][m][k]
        for p in ("fp32", "bf16")
        for m in ("no_mining", "mining")
        for k in ("loss_rel_error", "grad_rel_error")
    ]
    if not all(math.isfinite(v) for v in values):
        raise RuntimeError("a loss or gradient on the device is not finite")
    worse = [k for k, t in tolerance.items() if results["fp32"][k] > t]
    if worse:
        raise RuntimeError(
            "fp32 on the device differs from the CPU beyond tolerance: "
            + ", ".join(f"{k} {results['fp32'][k]:.2e} > {tolerance[k]:.0e}" for k in worse)
        )


# --------------------------------------------------------------------------- engine


def part_engine(ctx: Context) -> None:
    """`hiclr.engine.train` on synthetic clips resident on the device: epochs without mining, then
    one with, at the recipe's batch; the projection of a 300-epoch NTU60 xsub run from their rates."""
    import torch

    from hiclr.config import load_config
    from hiclr.engine import TrainData, seed_everything, train
    from hiclr.pretrain import PretrainTask, build_learner, build_policy

    s, device = ctx.size, ctx.device
    epochs = s["engine_epochs"]
    cfg = _config(
        ctx,
        [
            f"optim.epochs={epochs}",
            f"ssl.mining_epoch={epochs - 1}",
            "run.save_every=0",
            "run.log_every=50",
            "run.monitor_every=0",
            "run.collapse_warning=0",
            f"engine.device={device.type}",
            "engine.progress=false",
            "engine.resident=true",
        ],
    )
    recipe = load_config(NTU60_CONFIG)
    g = torch.Generator().manual_seed(0)
    n = s["engine_clips"]
    data = TrainData(x=0.3 * torch.randn(n, 3, 50, 25, 2, generator=g), labels=torch.randint(0, 60, (n,), generator=g))
    seed_everything(0)
    learner = build_learner(cfg)
    task = PretrainTask(learner, build_policy(cfg), cfg["model"], cfg["data"]["stream"])
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        result = train(task, data, cfg, Path(tmp) / "run")
        wall = time.perf_counter() - began
        lines = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    per_epoch = [r for r in lines if r.get("kind") == "epoch"]
    rates = [r["samples_per_s"] for r in per_epoch]
    if len(rates) != epochs:
        raise RuntimeError(f"the engine logged {len(rates)} epochs of {epochs}")
    no_mining, mining = rates[-2], rates[-1]  # the first epoch also warms up: left out
    total, start_mining = int(recipe["optim"]["epochs"]), int(recipe["ssl"]["mining_epoch"])
    minutes = (start_mining * NTU60_XSUB_TRAIN / no_mining + (total - start_mining) * NTU60_XSUB_TRAIN / mining) / 60
    ctx.record.update(
        {
            "device": str(device),
            "precision": "bf16" if device.type == "cuda" else "fp32",
            "clips": n,
            "batch": s["batch"],
            "width": s["width"],
            "queue": s["queue"],
            "epochs": epochs,
            "steps": result.step,
            "wall_s": wall,
            "epoch_seconds": [r["time_s"] for r in per_epoch],
            "samples_per_s_each_epoch": rates,
            "samples_per_s_no_mining": no_mining,
            "samples_per_s_mining": mining,
            "samples_per_s": (no_mining + mining) / 2,
            "last_loss": per_epoch[-1].get("loss"),
            "projection_minutes_300_epochs_ntu60_xsub": minutes,
            "projection_basis": f"{start_mining} epochs at the rate without mining and {total - start_mining} "
            f"with, {NTU60_XSUB_TRAIN} clips; steps only (no checkpoint or monitor time)",
        }
    )


# --------------------------------------------------------------------------- aug


def part_aug(ctx: Context) -> None:
    """`hiclr bench aug --device cuda --json` (on the dry run: cpu, tiny, one thread)."""
    import contextlib
    import io

    from hiclr.cli import main

    s = ctx.size
    argv = [
        "bench",
        "aug",
        "--json",
        "--device",
        ctx.device.type,
        "--samples",
        str(s["aug_samples"]),
        "--batch",
        str(s["aug_batch"]),
    ] + (["--threads", "1"] if ctx.dry_run else [])
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        rc = main(argv)
    ctx.record["command"] = "hiclr " + " ".join(argv)
    if rc != 0:
        raise RuntimeError(f"`hiclr {' '.join(argv)}` exited with {rc}")
    ctx.record.update(json.loads(buffer.getvalue().strip().splitlines()[-1]))


# --------------------------------------------------------------------------- tests (CUDA tests, NCCL)


def part_tests(ctx: Context) -> None:
    """`pytest tests/hiclr/test_cuda.py`, then 2 DDP ranks (NCCL on 2 GPUs; on the dry run gloo on the CPU)."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    ddp_reserve = 40 if (gpus >= 2 or ctx.dry_run) else 0  # the DDP run gets this at least
    deadline = STARTED + ctx.limit - 3
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        began = time.monotonic()
        rc = _timed(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "tests/hiclr/test_cuda.py",
                f"--junitxml={xml}",
                "-o",
                "addopts=",
            ],
            max(5.0, deadline - ddp_reserve - began),
        )
        ctx.record["cuda_tests"] = {**_pytest_outcome(rc, xml), "seconds": round(time.monotonic() - began, 1)}
        ctx.flush()
        if ddp_reserve:
            backend = "nccl" if gpus >= 2 else "gloo"
            result = Path(tmp) / "ddp.json"
            began = time.monotonic()
            rc = _timed(
                [
                    sys.executable,
                    "-m",
                    "torch.distributed.run",
                    "--standalone",
                    "--nproc-per-node",
                    "2",
                    str(Path(__file__).resolve()),
                    "ddp-rank",
                    backend,
                    str(result),
                ]
                + (["--dry-run"] if ctx.dry_run else []),
                max(5.0, deadline - began),
            )
            ddp = {
                "backend": backend,
                "ranks": 2,
                "rc": rc,
                "seconds": round(time.monotonic() - began, 1),
                **_read_json(result),
            }
            ddp["status"] = "timeout" if rc == "timeout" else "ok" if rc == 0 and ddp.get("ok") else "failed"
        else:
            ddp = {"status": "skipped", "reason": f"needs 2 GPUs, the machine has {gpus}"}
        ctx.record["nccl"] = ddp
    bad = [k for k in ("cuda_tests", "nccl") if ctx.record[k]["status"] in ("failed", "timeout")]
    if bad:
        raise RuntimeError(", ".join(f"{k} {ctx.record[k]['status']}" for k in bad))
    if all(ctx.record[k]["status"] == "skipped" for k in ("cuda_tests", "nccl")):
        ctx.skip("no CUDA device and no second GPU")


def _pytest_outcome(rc, xml: Path) -> dict:
    """Status and counts of a pytest run from its exit code and JUnit report."""
    from xml.etree import ElementTree

    if rc == "timeout":
        return {"rc": rc, "status": "timeout"}
    if not xml.exists():
        return {"rc": rc, "status": "failed", "reason": "pytest wrote no report"}
    suite = ElementTree.parse(xml).getroot()
    suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    row = {
        "rc": rc,
        **counts,
        "passed": passed,
        "failed_tests": [
            case.get("name")
            for case in suite.iter("testcase")
            if case.find("failure") is not None or case.find("error") is not None
        ],
    }
    if rc != 0 or counts["failures"] or counts["errors"]:
        return {**row, "status": "failed"}
    if counts["skipped"] == counts["tests"]:
        return {**row, "status": "skipped", "reason": "every test of tests/hiclr/test_cuda.py needs a CUDA device"}
    return {**row, "status": "ok"}


def _timed(cmd: list[str], limit: float):
    """Exit code of `cmd` under `timeout` (its output to our stderr), or "timeout"."""
    rc = subprocess.call(
        ["timeout", "-k", "5", f"{max(limit, 1.0):.1f}", *cmd], cwd=ROOT, stdout=sys.stderr, stdin=subprocess.DEVNULL
    )
    return "timeout" if rc in (124, 137) else rc


def ddp_rank(backend: str, result: str, dry_run: bool) -> int:
    """One rank of a 2-rank DDP run (under torchrun): 2 steps of the learner, the queue gathered from
    both ranks; rank 0 writes whether the losses are finite, the queue advanced by the global batch
    each step and the ranks' weights agree."""
    import torch
    import torch.distributed as dist

    from hiclr.config import load_config
    from hiclr.engine import build_optimizer, seed_everything
    from hiclr.pretrain import build_learner, build_policy

    s = SIZES["tiny" if dry_run else "full"]
    dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cpu")
    if backend == "nccl":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    cfg = load_config(
        NTU60_CONFIG,
        [
            f"model.width={s['width']}",
            f"ssl.queue_size={s['ddp_queue']}",
            f"optim.batch_size={s['ddp_batch'] * world}",
            "ssl.fused_views=per_view",
        ],
    )
    seed_everything(0)  # the same initial weights on every rank
    learner = build_learner(cfg).to(device).train()
    model = torch.nn.parallel.DistributedDataParallel(
        learner, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False
    )
    optimizer = build_optimizer([p for p in learner.parameters() if p.requires_grad], cfg["optim"])
    policy = build_policy(cfg)
    gen = torch.Generator(device=device).manual_seed(1 + rank)
    b = s["ddp_batch"]
    ptrs, losses = [], []
    for step in range(2):
        x = 0.3 * torch.randn(b, 3, 50, 25, 2, device=device, generator=gen)
        views = policy.views(x, gen, list(learner.view_stages))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss, _ = model(views, torch.arange(b, device=device) + b * (rank + world * step), mining=True)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
        ptrs.append(int(learner.queue.ptr))
    flat = torch.cat([p.detach().float().flatten() for p in learner.parameters()])
    reference = flat.clone()
    dist.broadcast(reference, 0)
    diff = (flat - reference).abs().max()
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    ok = (
        all(math.isfinite(v) for v in losses)
        and ptrs == [b * world, (2 * b * world) % s["ddp_queue"]]
        and float(diff) == 0.0
    )
    if rank == 0:
        _write_json(
            Path(result),
            {
                "ok": ok,
                "losses_rank0": losses,
                "queue_ptr_after_each_step": ptrs,
                "expected_queue_ptr": [b * world, (2 * b * world) % s["ddp_queue"]],
                "max_weight_difference_between_ranks": float(diff),
                "device": str(device),
            },
        )
    dist.destroy_process_group()
    return 0


# =========================================================================== command line


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["part"]:
        p = argparse.ArgumentParser(prog="device_check.py part")
        p.add_argument("name", choices=[n for n, _ in PARTS])
        p.add_argument("--out", required=True)
        p.add_argument("--dry-run", action="store_true")
        p.add_argument("--forced", choices=("fail", "timeout"))
        p.add_argument("--limit", type=float, default=60.0, help="seconds this part has")
        a = p.parse_args(argv[1:])
        return run_part(a.name, Path(a.out), a.dry_run, a.forced, a.limit)
    if argv[:1] == ["ddp-rank"]:
        return ddp_rank(argv[1], argv[2], "--dry-run" in argv[3:])
    if argv[:1] == ["run"]:
        argv = argv[1:]
    p = argparse.ArgumentParser(
        prog="scripts/device_check.sh", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: the same parts, what needs CUDA skipped")
    p.add_argument(
        "--out",
        default=None,
        help="folder of the JSON files (default $OUT/device_check, or runs/device_check when OUT is unset)",
    )
    p.add_argument(
        "--budget", type=float, default=BUDGET_S, help=f"seconds for all parts, install included (default {BUDGET_S})"
    )
    p.add_argument("--parts", default=None, help="comma-separated subset of " + ",".join(n for n, _ in PARTS))
    p.add_argument(
        "--force",
        action="append",
        default=[],
        metavar="PART=fail|timeout",
        help="make a part fail or hang (to test that the others and the summary survive)",
    )
    p.add_argument(
        "--limit", action="append", default=[], metavar="PART=SECONDS", help="a part's time limit instead of its cap"
    )
    p.add_argument(
        "--compile-on-cpu",
        action="store_true",
        help="with --dry-run: run the compiled part too (dynamo's eager backend; minutes of CPU)",
    )
    return orchestrate(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
