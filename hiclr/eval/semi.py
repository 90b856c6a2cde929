"""Semi-supervised protocol: fine-tune on a class-balanced labelled fraction of the train split.

A subset keeps round(p * n_c) samples of every class c (rounding half up, at least one), chosen by
a seed; it is saved beside the run as `semi_<p>pct_seed<s>.npy` (indices into the data file's
/samples) with a `.json` recording the seed, fraction, protocol and data checksum, so that it can
be reproduced and reused. Several seeds run in one call; the report gives mean and std.

Epoch length (`eval.epoch_length`): `dataset` (the release's semi feeder, whose length is that of
the whole training split and which takes sample `index % len(subset)`) makes every epoch as many
steps as the whole split would, the subset cycled; `subset` makes one pass over the subset.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from hiclr.common.atomic import atomic_write, atomic_write_text
from hiclr.common.errors import UserError


def class_quota(labels: np.ndarray, fraction: float, num_classes: int | None = None) -> np.ndarray:
    """Samples kept per class: round(fraction * n_c) (half up), at least 1 for a present class."""
    if not 0.0 < fraction <= 1.0:
        raise UserError(f"semi fraction {fraction} is outside (0, 1]; use e.g. 0.01 or 0.1.")
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes or 0)
    quota = np.floor(fraction * counts + 0.5).astype(np.int64)
    return np.where(counts > 0, np.clip(quota, 1, counts), 0)


def balanced_subset(labels, fraction: float, seed: int, num_classes: int | None = None) -> np.ndarray:
    """Positions (sorted, int64) of a class-balanced random subset of `labels` (N,).

    Within each class the kept samples are the first ones of a seeded random order, so that the
    same (labels, fraction, seed) always gives the same subset.
    """
    labels = np.asarray(labels, dtype=np.int64)
    quota = class_quota(labels, fraction, num_classes)
    keys = np.random.default_rng(seed).random(labels.shape[0])
    order = np.lexsort((keys, labels))  # by class, random within class
    sorted_labels = labels[order]
    first = np.searchsorted(sorted_labels, sorted_labels, side="left")
    rank = np.arange(labels.shape[0]) - first  # position within its class
    return np.sort(order[rank < quota[sorted_labels]])


def subset_stem(fraction: float, seed: int) -> str:
    """File stem of a subset, e.g. semi_1pct_seed0 (fractions below 1 % keep their decimals)."""
    pct = f"{fraction * 100:g}".replace(".", "p")
    return f"semi_{pct}pct_seed{seed}"


def save_subset(
    folder: str | os.PathLike,
    fraction: float,
    seed: int,
    sample_index: np.ndarray,
    labels: np.ndarray,
    meta: dict | None = None,
) -> Path:
    """Write `<stem>.npy` (indices into /samples) and `<stem>.json` (seed, fraction, counts, meta)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = subset_stem(fraction, seed)
    path = atomic_write(folder / f"{stem}.npy", lambda f: np.save(f, np.asarray(sample_index, dtype=np.int64)))
    record = {
        "fraction": fraction,
        "seed": seed,
        "size": int(len(sample_index)),
        "per_class": np.bincount(np.asarray(labels, dtype=np.int64)).tolist(),
        **(meta or {}),
    }
    atomic_write_text(folder / f"{stem}.json", json.dumps(record, indent=1))
    return path


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def fraction_key(fraction: float) -> str:
    """0.01 -> "1pct", 0.1 -> "10pct"."""
    return subset_stem(fraction, 0).split("_")[1]


def run_semi(
    cfg: dict,
    encoder,
    *,
    out=None,
    fractions=None,
    seeds=None,
    resume: bool = False,
    plots: bool = True,
    report: str = "standard",
) -> dict:
    """`hiclr semi`: for each fraction and seed, draw and save the subset, fine-tune on it.

    Subsets come from `eval.fractions` x `eval.seeds` (or the arguments); sub-run `<stem>/`
    (engine checkpoints, metrics, logits.npz) sits beside its index file `<stem>.npy`. Training
    of the sub-run with subset seed s uses `run.seed + s`. Returns the protocol entry (mean and std
    over seeds per fraction). report `paper`: each fraction also holds `paper`, the mean and std
    over seeds of the release's best epoch, chosen on the test set (labelled so).
    """
    import copy

    import torch

    from hiclr.data import Split
    from hiclr.eval.common import (
        LOGITS_BEST_FILE,
        SELECTED_ON_TEST,
        check_report,
        finish_run,
        load_eval_data,
        make_run_dir,
        save_logits,
    )
    from hiclr.eval.finetune import finetune_once

    check_report(report)
    fractions = [float(f) for f in (fractions or cfg["eval"]["fractions"])]
    seeds = [int(s) for s in (seeds if seeds is not None else cfg["eval"]["seeds"])]
    run_dir = make_run_dir(cfg, out, "semi")
    data = load_eval_data(cfg)
    train = data.train
    entry: dict = {"fractions": {}}
    meta = None
    for fraction in fractions:
        runs = []
        for seed in seeds:
            pos = balanced_subset(train.labels.numpy(), fraction, seed, data.num_classes)
            stem = subset_stem(fraction, seed)
            subset_file = save_subset(
                run_dir,
                fraction,
                seed,
                train.index.numpy()[pos],
                train.labels.numpy()[pos],
                {
                    "data": data.info["path"],
                    "data_sha256": data.info["sha256"],
                    "protocol": data.info["protocol"],
                    "part": "train",
                    "index_into": "/samples",
                },
            )
            pos_t = torch.from_numpy(pos)
            subset = Split(
                x=train.x[pos_t],
                labels=train.labels[pos_t],
                names=[train.names[i] for i in pos],
                index=train.index[pos_t],
            )
            sub_cfg = copy.deepcopy(cfg)
            sub_cfg["run"]["seed"] = int(cfg["run"]["seed"]) + seed
            sub_dir = run_dir / stem
            epoch_samples = len(train.labels) if cfg["eval"]["epoch_length"] == "dataset" else len(pos)
            result = finetune_once(
                sub_cfg,
                encoder,
                subset,
                data.test,
                data.num_classes,
                sub_dir,
                resume=resume and (sub_dir / "last.pt").exists(),
                protocol="semi",
                epoch_length=epoch_samples,
            )
            result.update(train_samples=len(pos), epoch_samples=epoch_samples, epoch_length=cfg["eval"]["epoch_length"])
            save_logits(sub_dir, result.pop("logits_last"), data.test.labels, data.test.names)
            best = result.pop("release_best")
            if report == "paper":
                save_logits(
                    sub_dir,
                    best.logits,
                    data.test.labels,
                    data.test.names,
                    file=LOGITS_BEST_FILE,
                    epoch=best.best["epoch"],
                )
                result["paper"] = {"best_epoch": best.entry()}
            meta = result.pop("encoder_meta")
            result.pop("confusion")
            runs.append(
                {
                    "seed": seed,
                    "train_seed": sub_cfg["run"]["seed"],
                    "size": int(len(pos)),
                    "subset_file": subset_file.name,
                    "run_dir": str(sub_dir),
                    **result,
                }
            )
        summary = {"fraction": fraction, "runs": runs}
        for metric in ("top1_last", "top5_last", "top1_best", "top5_best"):
            summary[f"{metric}_mean"], summary[f"{metric}_std"] = mean_std([r[metric] for r in runs])
        if report == "paper":
            bests = [r["paper"]["best_epoch"] for r in runs]
            summary["paper"] = {"selection": SELECTED_ON_TEST, "rule": bests[0]["rule"]}
            for metric in ("top1", "top5"):
                summary["paper"][f"{metric}_mean"], summary["paper"][f"{metric}_std"] = mean_std(
                    [b[metric] for b in bests]
                )
        entry["fractions"][fraction_key(fraction)] = summary
    return finish_run(run_dir, "semi", entry, cfg, data, meta, plots=plots)
