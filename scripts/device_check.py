"""The GPU check behind scripts/device_check.sh: each part under a time limit, one JSON line at the end.

Parts: the CUDA tests; `hiclr bench train --device cuda` at full size for bf16 / fp32 x fused
(per-view BN) / separate x compile off / on, with the transformer (`--encoder dsta`) beside; one epoch of full-size pre-training on synthetic data
(bf16, device-resident data); a 1-process NCCL run (DDP-wrapped learner, queue gather, 2 steps).
Not yet run on a GPU by the session that wrote it: run it when a device is lent, put the figures in
the README.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRID = [f"precision={p}+fused_views={f}+compile={c}"
        for p in ("bf16", "fp32") for f in ("per_view", "separate") for c in ("false", "true")]


def _run(cmd: list[str], limit: float, env=None) -> dict:
    start = time.perf_counter()
    try:
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=limit, env=env)
        result = {"rc": out.returncode, "tail": (out.stdout + out.stderr)[-1500:]}
        stdout = out.stdout
    except subprocess.TimeoutExpired as err:
        partial = err.stdout or ""
        result = {"rc": None, "timed_out": True}
        stdout = partial.decode() if isinstance(partial, bytes) else partial
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["_stdout"] = stdout
    return result


def nccl_part() -> None:
    """Run under torchrun (1 process): NCCL group, DDP learner, 2 steps, queue gathered."""
    import torch
    import torch.distributed as dist
    from hiclr.augment import GrowingPolicy
    from hiclr.bench.train import DEFAULT_POLICY
    from hiclr.ssl import ContrastiveLearner
    dist.init_process_group("nccl")
    torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    learner = ContrastiveLearner({"name": "stgcn", "width": 16}, "hiclr", queue_size=1024).cuda().train()
    model = torch.nn.parallel.DistributedDataParallel(learner, broadcast_buffers=False)
    opt = torch.optim.SGD([p for p in learner.parameters() if p.requires_grad], lr=0.1)
    g = torch.Generator(device="cuda").manual_seed(0)
    policy = GrowingPolicy.from_yaml(DEFAULT_POLICY)
    for step in range(2):
        x = 0.3 * torch.randn(64, 3, 50, 25, 2, device="cuda", generator=g)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss, _ = model(policy.views(x, g, list(learner.view_stages)), torch.arange(64, device="cuda"), 200)
        opt.zero_grad()
        loss.backward()
        opt.step()
    ok = bool(torch.isfinite(loss)) and int(learner.queue.ptr) == 128
    print(json.dumps({"nccl_ok": ok, "loss": float(loss)}))
    dist.destroy_process_group()


def main() -> int:
    report: dict = {"parts": {}}
    py = sys.executable
    tests = _run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cuda.py",
                  "tests/test_dsta.py", "-k", "cuda"], 90)
    report["parts"]["cuda_tests"] = {k: v for k, v in tests.items() if k != "_stdout"}
    bench = _run([py, "-m", "hiclr.cli", "bench", "train", "--device", "cuda", "--size", "full", "--json",
                  "--repeats", "3", "--steps", "3", "--variants", ",".join(GRID), "--encoder", "dsta"], 240)
    try:
        result = json.loads(bench["_stdout"].strip().splitlines()[-1])
        report["bench_train_cuda_full"] = {
            "device": result["device"], "reference_samples_per_s": result["baseline_samples_per_s"],
            "variants": {v["name"]: {"samples_per_s": round(v["samples_per_s"], 1),
                                     "speedup_vs_reference": round(v["speedup"], 2),
                                     "projected_300_epochs_ntu60_xsub_min": round(300 * 40091 / v["samples_per_s"] / 60, 1)}
                         for v in result["variants"]},
            "encoder_step_cost": result.get("encoder_step_cost")}
    except (ValueError, IndexError, KeyError):
        report["parts"]["bench_train"] = {k: v for k, v in bench.items() if k != "_stdout"}
    with tempfile.TemporaryDirectory() as tmp:
        raw, store = Path(tmp) / "raw", Path(tmp) / "synth.h5"
        prep = _run([py, "-m", "data_prep.cli", "synth", "--out", str(raw)], 40)
        prep2 = _run([py, "-m", "data_prep.cli", "ntu60", "--raw", str(raw), "--out", str(store)], 60)
        epoch = _run([py, "-m", "hiclr.cli", "pretrain", "--config", "configs/ntu60/xsub/pretrain_joint.yaml",
                      "--data", str(store), "--epochs", "1", "--out", str(Path(tmp) / "runs"), "--set",
                      "engine.device=cuda", "--set", "engine.precision=bf16", "--set", "engine.resident=true",
                      "--set", "engine.progress=false"], 90)
        report["parts"]["synthetic_epoch"] = {k: v for k, v in epoch.items() if k != "_stdout"}
        report["parts"]["synthetic_prep_rc"] = [prep["rc"], prep2["rc"]]
    nccl = _run([py, "-m", "torch.distributed.run", "--nproc-per-node", "1", __file__, "nccl"], 60)
    report["parts"]["torchrun_nccl"] = {k: v for k, v in nccl.items() if k != "_stdout"}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(nccl_part() if sys.argv[1:] == ["nccl"] else main())
