"""What the learning monitor costs: pre-train with configs/demo/pretrain.yaml on a store, then
print per epoch (loss, monitor kNN top-1, embed_std * sqrt(dim), train s, monitor s) and the ratio
sum(monitor_s) / sum(time_s) from metrics.jsonl (time_s excludes the monitor).

    OMP_NUM_THREADS=1 python scripts/monitor_cost.py DEMO_STORE.h5 OUT_DIR [key=value ...]
"""

import json
import sys
import time

import torch

from hiclr.config import load_config
from hiclr.demo import CONFIG_ROOT
from hiclr.pretrain import pretrain

torch.set_num_threads(1)
store, out, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
cfg = load_config(
    CONFIG_ROOT / "demo" / "pretrain.yaml",
    [
        f"data.path={store}",
        f"run.out={out}",
        "engine.device=cpu",
        "engine.progress=false",
        "engine.tensorboard=false",
        *extra,
    ],
)
started = time.perf_counter()
result = pretrain(cfg, overwrite=True)
wall = time.perf_counter() - started
rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
epochs = [r for r in rows if r["kind"] == "epoch"]
train_s, monitor_s = sum(r["time_s"] for r in epochs), sum(r.get("monitor_s", 0.0) for r in epochs)
for r in epochs:
    print(
        r["epoch"],
        f"{r['loss']:.4f}",
        r.get("monitor_knn_top1", "-"),
        f"{r['embed_std_ratio']:.3f}",
        f"{r['time_s']:.1f}",
        f"{r.get('monitor_s', 0.0):.2f}",
    )
print(f"wall {wall:.1f} s, training {train_s:.1f} s, monitor {monitor_s:.1f} s: {monitor_s / train_s:.2%}")
