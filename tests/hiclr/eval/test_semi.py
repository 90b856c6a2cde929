"""Semi-supervised subsets: class balance, reproducibility from the seed, saved index files; the run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hiclr.eval.semi import balanced_subset, class_quota, mean_std, save_subset, subset_stem


def imbalanced_labels(seed=0):
    rng = np.random.default_rng(seed)
    counts = [3, 15, 50, 149, 250, 1]
    labels = np.repeat(np.arange(len(counts)), counts)
    return rng.permutation(labels), counts


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.5])
def test_subset_keeps_round_p_times_n_per_class_and_at_least_one(fraction):
    labels, counts = imbalanced_labels()
    subset = balanced_subset(labels, fraction, seed=0)
    kept = np.bincount(labels[subset], minlength=len(counts))
    expected = [max(1, int(np.floor(fraction * n + 0.5))) for n in counts]
    assert kept.tolist() == expected
    assert np.all(np.diff(subset) > 0)  # sorted, no repeats


def test_subset_is_reproducible_from_its_seed_and_differs_between_seeds():
    labels, _ = imbalanced_labels()
    a, b = balanced_subset(labels, 0.1, seed=3), balanced_subset(labels, 0.1, seed=3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, balanced_subset(labels, 0.1, seed=4))


def test_quota_rounds_half_up():
    assert class_quota(np.repeat([0, 1], [25, 35]), 0.1).tolist() == [3, 4]  # 2.5 -> 3, 3.5 -> 4


def read_subset(path):
    """A saved subset as a user reads it: the .npy indices into /samples and the .json record."""
    return np.load(path, allow_pickle=False), json.loads(path.with_suffix(".json").read_text())


def test_saved_subset_records_its_seed_and_round_trips(tmp_path):
    labels, _ = imbalanced_labels()
    positions = balanced_subset(labels, 0.01, seed=2)
    sample_index = positions + 1000
    path = save_subset(tmp_path, 0.01, 2, sample_index, labels[positions], {"protocol": "xsub"})
    assert path.name == "semi_1pct_seed2.npy" == subset_stem(0.01, 2) + ".npy"
    index, record = read_subset(path)
    assert np.array_equal(index, sample_index)
    assert record["seed"] == 2 and record["fraction"] == 0.01 and record["protocol"] == "xsub"
    assert record["size"] == len(positions)
    assert np.array_equal(balanced_subset(labels, record["fraction"], record["seed"]) + 1000, index)


def test_mean_std_over_seeds():
    assert mean_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert mean_std([5.0]) == (5.0, 0.0)


def test_run_semi_trains_one_model_per_seed_and_reports_mean_and_std(tmp_path):
    import torch

    from hiclr.eval.semi import run_semi
    from hiclr.models import build_encoder
    from tests.hiclr.eval.test_linear import tiny_config, write_tiny_store

    data = write_tiny_store(tmp_path / "tiny.h5", n=48)
    cfg = tiny_config(data)
    cfg["optim"].update({"epochs": 1, "batch_size": 4, "milestones": [], "warmup_epochs": 0, "lr": 0.01})
    cfg["engine"].update({"progress": False, "precision": "fp32", "tensorboard": False})
    cfg["run"]["save_every"] = 0
    torch.manual_seed(0)
    encoder = build_encoder({"name": "stgcn", "width": 4})
    entry = run_semi(cfg, encoder, out=tmp_path / "semi", fractions=[0.25], seeds=[0, 1], plots=False)
    frac = entry["fractions"]["25pct"]
    assert [r["seed"] for r in frac["runs"]] == [0, 1]
    top1 = [r["top1_last"] for r in frac["runs"]]
    assert (frac["top1_last_mean"], frac["top1_last_std"]) == pytest.approx(mean_std(top1))
    train_labels = np.arange(48)[np.arange(48) % 4 != 0] % 3
    for run in frac["runs"]:
        index, record = read_subset(tmp_path / "semi" / run["subset_file"])
        assert record["seed"] == run["seed"] and run["size"] == len(index) == 9  # 12 per class -> 3
        assert np.bincount(index % 3).tolist() == [3, 3, 3]
        positions = balanced_subset(train_labels, 0.25, run["seed"])
        assert np.array_equal(np.arange(48)[np.arange(48) % 4 != 0][positions], index)
        assert (tmp_path / "semi" / subset_stem(0.25, run["seed"]) / "logits.npz").exists()
    report = json.loads((tmp_path / "semi" / "report.json").read_text())
    assert report["protocols"]["semi"]["fractions"]["25pct"]["top1_last_mean"] == frac["top1_last_mean"]


def semi_steps(tmp_path, epoch_length: str) -> tuple[list[int], dict]:
    """The engine's step count at the end of each epoch of a 2-epoch semi run at 25 %."""
    import torch

    from hiclr.eval.semi import run_semi
    from hiclr.models import build_encoder
    from tests.hiclr.eval.test_linear import tiny_config, write_tiny_store

    data = write_tiny_store(tmp_path / "tiny.h5", n=48)  # 36 training clips
    cfg = tiny_config(data)
    cfg["optim"].update({"epochs": 2, "batch_size": 4, "milestones": [], "warmup_epochs": 0, "lr": 0.01})
    cfg["engine"].update({"progress": False, "precision": "fp32", "tensorboard": False})
    cfg["eval"]["epoch_length"] = epoch_length
    cfg["run"]["save_every"] = 0
    torch.manual_seed(0)
    out = tmp_path / epoch_length
    entry = run_semi(
        cfg, build_encoder({"name": "stgcn", "width": 4}), out=out, fractions=[0.25], seeds=[0], plots=False
    )
    metrics = (out / subset_stem(0.25, 0) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(l)["step"] for l in metrics if json.loads(l)["kind"] == "epoch"], entry


def test_a_semi_epoch_is_as_long_as_the_training_split_with_the_subset_cycled(tmp_path):
    steps, entry = semi_steps(tmp_path, "dataset")
    assert steps == [36 // 4, 2 * 36 // 4]  # the whole split's batches, not the subset's
    run = entry["fractions"]["25pct"]["runs"][0]
    assert run["train_samples"] == 9 and run["epoch_samples"] == 36
    steps, entry = semi_steps(tmp_path, "subset")
    assert steps == [9 // 4, 2 * (9 // 4)]  # one pass over the 9 labelled clips
    assert entry["fractions"]["25pct"]["runs"][0]["epoch_samples"] == 9


def test_a_cycled_epoch_draws_each_labelled_clip_equally_often():
    import torch

    from hiclr.engine import TrainData
    from hiclr.engine import train as engine_train
    from tests.hiclr.engine.test_loop import toy_cfg

    seen = []

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

    class Task:
        model = Recorder()

        def step(self, model, batch, generator, epoch):
            seen.extend(batch.ids.tolist())
            return (model.w * batch.x.sum()) ** 2, {}

    x = torch.arange(4.0).view(4, 1, 1, 1, 1)
    data = TrainData(x, torch.tensor([0, 1, 2, 0]), torch.tensor([10, 11, 12, 13]), epoch_length=12)
    cfg = toy_cfg(epochs=1, **{"optim.batch_size": 4})
    result = engine_train(Task(), data, cfg, None)
    assert result.step == 3  # 12 positions in batches of 4: the release's semi feeder, not one pass
    assert sorted(seen) == [10] * 3 + [11] * 3 + [12] * 3 + [13] * 3


@pytest.mark.parametrize(
    "stream, epochs, milestones", [("joint", 60, [20, 40]), ("bone", 42, [15, 30]), ("motion", 42, [15, 30])]
)
def test_the_reference_semi_configs_hold_the_release_schedule_per_stream(stream, epochs, milestones):
    from hiclr.config import load_config
    from hiclr.eval.finetune import build_augment

    for dataset in ("ntu60/xsub", "ntu60/xview", "ntu120/xsub", "ntu120/xset", "pku2/xsub"):
        cfg = load_config(f"configs/{dataset}/semi_{stream}.yaml")
        assert (cfg["optim"]["epochs"], cfg["optim"]["milestones"]) == (epochs, milestones)
        assert cfg["optim"]["schedule"] == "release" and cfg["eval"]["epoch_length"] == "dataset"
        assert build_augment(cfg) == (None, False) and cfg["engine"]["precision"] == "fp32"
        dsta = load_config(f"configs/{dataset}/transformer_semi_{stream}.yaml")
        assert (dsta["optim"]["epochs"], dsta["optim"]["milestones"]) == (50, [15, 25])
        assert build_augment(dsta) == (None, False) and dsta["eval"]["epoch_length"] == "dataset"
