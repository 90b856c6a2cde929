"""What the Hough votes of variant C get right: the agreement of the pairing with the exact one
(recorded crops) of views v0 / v1 of the demo's policy, by the features voted on (the views'
coordinates, blocks 1, 2 and 4 of the query encoder, block 4 of the key encoder), and how much a
vote-confidence threshold keeps and at what agreement. At init, or from a pre-training's last.pt.

    OMP_NUM_THREADS=1 python scripts/hough_votes.py STORE.h5 [RUN_DIR/last.pt] [--batches 8]
"""

import argparse

import torch

from hiclr.augment.policy import HICLR_VIEWS
from hiclr.config import load_config
from hiclr.demo import CONFIG_ROOT
from hiclr.pretrain import build_policy, load_training_data
from hiclr.ssl import ContrastiveLearner
from hiclr.ssl.hough import HoughPairing, drop_invalid_pairs, frame_mask, oracle_pairs, view_coordinates

THRESHOLDS = (0.5, 0.8, 0.9, 0.95)

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("store")
parser.add_argument("checkpoint", nargs="?", help="a pre-training's last.pt (default: the encoder at init)")
parser.add_argument("--batches", type=int, default=8)
args = parser.parse_args()
torch.set_num_threads(1)
cfg = load_config(CONFIG_ROOT / "demo" / "pretrain.yaml", [f"data.path={args.store}", "ssl.objective=hough_dense"])
data = load_training_data(cfg)
policy = build_policy(cfg, record=True)
torch.manual_seed(0)
learner = ContrastiveLearner.from_config(cfg)
if args.checkpoint:
    learner.load_state_dict(torch.load(args.checkpoint, weights_only=True, map_location="cpu")["model"])
learner.train()  # batch statistics, as in training
generator = torch.Generator().manual_seed(5)
found: dict[str, list] = {}
with torch.no_grad():
    for b in range(args.batches):
        views = policy.views(data.x[b * 32 : (b + 1) * 32], generator, HICLR_VIEWS.stages)
        v0, v1 = [v for i, v in enumerate(views) if i != HICLR_VIEWS.key_index][:2]
        t = v0.x.shape[2]
        m0, m1 = frame_mask(v0, t), frame_mask(v1, t)
        oracle = drop_invalid_pairs(oracle_pairs(v0.params, v1.params, t, t), t, m0, m1)
        x0, x1 = learner.prepare(v0), learner.prepare(v1)
        sources = {"input": (view_coordinates(v0, t), view_coordinates(v1, t))}
        for block in (1, 2, 4):
            sources[f"query block {block}"] = tuple(learner.encoder_q.forward_with_block(x, block)[2] for x in (x0, x1))
        sources["key block 4"] = tuple(learner.encoder_k.forward_with_block(x, 4)[2] for x in (x0, x1))
        for name, (u0, u1) in sources.items():
            hough = HoughPairing()(u0.mean(1), u1.mean(1), m0, m1)
            found.setdefault(name, []).append((hough.pairs, oracle, hough.confidence))
for name, rows in found.items():
    pairs, oracle, confidence = (torch.cat(column) for column in zip(*rows))
    counted = oracle >= 0
    agree = (pairs == oracle) & counted
    line = f"{name:14s} agreement {agree.sum() / counted.sum():.3f}"
    for c in THRESHOLDS:
        kept = counted & (confidence >= c)
        kept_agreement = (agree & kept).sum() / kept.sum().clamp_min(1)
        line += f" | conf>={c}: kept {kept.sum() / counted.sum():.2f} at {kept_agreement:.3f}"
    print(line)
