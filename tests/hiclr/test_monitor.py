"""The learning monitor (kNN during pre-training), the embedding-spread metric, the collapse warnings
and the pre-training curve report, on a tiny store and a width-2 ST-GCN."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from hiclr.config import load_config
from hiclr.data import load_split
from hiclr.engine import derive_seed, load_checkpoint
from hiclr.eval.knn import knn_scores
from hiclr.features import extract_features
from hiclr.models import load_encoder
from hiclr.monitor import MONITOR_STREAM, CollapseWatch, LearningMonitor
from hiclr.pretrain import build_learner, load_training_data, pretrain
from hiclr.report import write_pretrain_curve
from hiclr.ssl import embedding_spread
from tests.helpers.paths import ROOT_DIR
from tests.helpers.tiny_store import write_tiny_store

ROOT = ROOT_DIR
TINY = ROOT / "configs" / "tiny" / "pretrain.yaml"


def store(path, parts=("train", "test")):
    """24 clips, 3 classes; xsub: 16 training clips (performers 1, 2), 8 test clips (performer 3)."""
    rng = np.random.default_rng(0)
    n = 24
    labels, performer = np.arange(n) % 3, np.arange(n) // 2 % 3
    x = (rng.normal(size=(n, 3, 50, 25, 2)) + labels[:, None, None, None, None]).astype(np.float32)
    return write_tiny_store(path, x, labels, performer, test_performer=2, num_classes=3, parts=parts)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return store(tmp_path_factory.mktemp("data") / "tiny.h5")


def config(data, out, *sets):
    return load_config(
        TINY,
        [
            f"data.path={data}",
            f"run.out={out}",
            "model.width=2",
            "optim.batch_size=8",
            "ssl.queue_size=16",
            "engine.progress=false",
            "engine.tensorboard=false",
            "engine.device=cpu",
            "run.save_every=0",
            *sets,
        ],
    )


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    """A 3-epoch run scored every 2 epochs (so after epochs 2 and 3) on 10 training / 8 test clips."""
    cfg = config(
        data,
        tmp_path_factory.mktemp("runs"),
        "optim.epochs=3",
        "run.monitor_every=2",
        "run.monitor_samples=10",
        "run.log_every=1",
    )
    return cfg, pretrain(cfg)


def records(run_dir, kind):
    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == kind]


# ------------------------------------------------------------------ the monitor


def test_metrics_hold_the_monitor_every_monitor_every_epochs_and_after_the_last(run):
    _, result = run
    epochs = records(result.run_dir, "epoch")
    assert [r["epoch"] for r in epochs] == [1, 2, 3]
    assert ["monitor_knn_top1" in r for r in epochs] == [False, True, True]
    assert all(0.0 <= r["monitor_knn_top1"] <= 100.0 for r in epochs[1:])
    assert result.metrics["monitor_knn_top1"] == epochs[-1]["monitor_knn_top1"]
    steps = records(result.run_dir, "step")
    for row in steps + epochs:
        assert 0.0 <= row["embed_std"] <= 1.0
        assert row["embed_std_ratio"] == pytest.approx(row["embed_std"] * math.sqrt(32), rel=1e-5)


def test_the_monitor_equals_a_knn_computed_by_hand_on_the_fixed_subsets(run, data):
    cfg, result = run
    # the documented draw: one generator seeded by derive_seed(run.seed, 0, MONITOR_STREAM), the
    # bank's subset of the training data first, then the test subset (all 8 test clips < 10)
    g = torch.Generator().manual_seed(derive_seed(cfg["run"]["seed"], 0, MONITOR_STREAM))
    train = load_training_data(cfg)
    bank = torch.randperm(len(train.x), generator=g)[:10].sort().values
    test = load_split(data, "xsub", "test")
    assert len(test) == 8
    encoder, _, _ = load_encoder(result.outputs["encoder"])  # the backbone after the last epoch
    bank_f = extract_features(encoder, train.x[bank])
    test_f = extract_features(encoder, test.x)
    scores = knn_scores(bank_f, train.labels[bank], test_f, 3, k=20, temperature=0.1)
    top1 = (scores.argmax(1) == test.labels).float().mean().item() * 100
    assert records(result.run_dir, "epoch")[-1]["monitor_knn_top1"] == pytest.approx(top1, abs=1e-9)

    monitor = LearningMonitor.from_config(cfg, train)
    assert torch.equal(monitor.bank_index, bank) and torch.equal(monitor.query_index, torch.arange(8))
    assert (monitor.k, monitor.temperature) == (20, 0.1)
    encoder.train()
    assert monitor(encoder, 2)["monitor_knn_top1"] == pytest.approx(top1, abs=1e-9)
    assert encoder.training  # train mode restored
    assert monitor(encoder, 0) == {} and monitor.due(1) and monitor.due(2)


def test_the_initial_score_is_the_built_encoders_knn_with_batchnorm_re_estimated_on_the_bank(run):
    import copy

    from hiclr.engine import seed_everything
    from hiclr.features import recalibrate_batchnorm

    cfg, result = run
    epochs = records(result.run_dir, "epoch")
    initial = epochs[1]["monitor_knn_top1_init"]
    assert all(r["monitor_knn_top1_init"] == initial for r in epochs[1:])
    # by hand: run.seed builds the same weights; BatchNorm re-estimated on the bank's 10 clips
    monitor = LearningMonitor.from_config(cfg, load_training_data(cfg))
    seed_everything(int(cfg["run"]["seed"]))
    backbone = build_learner(cfg).encoder_q.backbone
    clone = recalibrate_batchnorm(copy.deepcopy(backbone), monitor.bank_x)
    bank_f, test_f = extract_features(clone, monitor.bank_x), extract_features(clone, monitor.query_x)
    scores = knn_scores(bank_f, monitor.bank_labels, test_f, 3, k=20, temperature=0.1)
    assert initial == pytest.approx((scores.argmax(1) == monitor.query_labels).float().mean().item() * 100, abs=1e-9)
    before = copy.deepcopy(backbone.state_dict())
    assert monitor.score_initial(backbone) == pytest.approx(initial, abs=1e-9)
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())  # scored on a copy


def test_the_monitor_does_not_change_the_training(data, tmp_path):
    finals = {}
    for every in (0, 1):
        cfg = config(data, tmp_path / f"every{every}", "optim.epochs=2", f"run.monitor_every={every}")
        result = pretrain(cfg)
        assert ("monitor_knn_top1" in result.metrics) == bool(every)
        finals[every] = (
            load_checkpoint(result.run_dir / "last.pt")["model"],
            [r["loss"] for r in records(result.run_dir, "step")],
        )
    (off, loss_off), (on, loss_on) = finals[0], finals[1]
    assert loss_off == loss_on
    assert off.keys() == on.keys()
    for key in off:
        assert torch.equal(off[key], on[key]), key


def test_without_a_test_split_the_monitor_says_so_once_and_is_off(tmp_path, capsys):
    path = store(tmp_path / "train_only.h5", parts=("train",))
    cfg = config(path, tmp_path / "runs", "optim.epochs=2")
    result = pretrain(cfg)
    err = capsys.readouterr().err
    assert err.count("learning monitor is off") == 1 and "test" in err
    assert not any("monitor_knn_top1" in r for r in records(result.run_dir, "epoch"))


def test_monitor_keys_are_checked(data, tmp_path):
    from hiclr.common.errors import UserError

    for bad in ("run.monitor_every=-1", "run.monitor_samples=0", "run.monitor_every=1.5"):
        with pytest.raises(UserError, match=bad.split("=")[0]):
            config(data, tmp_path, bad)
    assert config(data, tmp_path, "run.monitor_samples=null")["run"]["monitor_samples"] is None


# ------------------------------------------------------------------ embedding spread and collapse


def test_embed_std_is_the_mean_per_dimension_std_of_the_normalised_projections():
    z = torch.randn(64, 32, generator=torch.Generator().manual_seed(0)) * 3 + 1
    u = z / z.norm(dim=1, keepdim=True)
    by_hand = ((u - u.mean(0)) ** 2).mean(0).sqrt().mean()
    spread = embedding_spread(z)
    assert torch.allclose(spread["embed_std"], by_hand, atol=1e-7)
    assert torch.allclose(spread["embed_std_ratio"], by_hand * math.sqrt(32), atol=1e-6)
    assert 0.5 < spread["embed_std_ratio"] < 1.1  # spread: about 1/sqrt(dim) per dimension
    same = embedding_spread(torch.randn(1, 32).repeat(64, 1) * 5)
    assert same["embed_std"] < 1e-6 and same["embed_std_ratio"] < 1e-5
    assert not spread["embed_std"].requires_grad


def test_the_learner_logs_embed_std_of_the_first_query_projections(data):
    from hiclr.augment.policy import View

    cfg = config(data, "unused")
    learner = build_learner(cfg)
    heads = []
    learner.encoder_q.head.register_forward_hook(lambda m, i, out: heads.append(out.detach()))
    x = torch.randn(6, 3, 50, 25, 2, generator=torch.Generator().manual_seed(1))
    views = [View(x + 0.01 * i) for i in range(len(learner.view_stages))]
    loss, metrics = learner(views, torch.arange(6), 0)
    assert torch.allclose(metrics["embed_std"], embedding_spread(heads[0])["embed_std"], rtol=1e-5, atol=0)
    assert metrics["embed_std"].grad_fn is None and loss.requires_grad
    assert learner.collapse_loss() == pytest.approx(2 * math.log(17))


def watch_epochs(watch, projections, epochs=3, loss=1.0):
    """Epochs of two steps each, judged by their means as the engine hands them to the task."""
    for epoch in range(epochs):
        ratios = [float(embedding_spread(projections())["embed_std_ratio"]) for _ in range(2)]
        watch.end_epoch(epoch, {"loss": loss, "embed_std_ratio": sum(ratios) / 2})


def test_the_collapse_warning_fires_once_for_a_collapsed_embedding_only(capsys):
    g = torch.Generator().manual_seed(0)
    centre = torch.randn(1, 32, generator=g)
    watch_epochs(CollapseWatch(0.2), lambda: centre + 1e-3 * torch.randn(16, 32, generator=g))
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: epoch 1:") and "collapsing" in lines[0]
    assert "lr" in lines[0] and "temperature" in lines[0]
    watch_epochs(CollapseWatch(0.2), lambda: torch.randn(16, 32, generator=g))
    assert capsys.readouterr().err == ""
    watch_epochs(CollapseWatch(0), lambda: centre.repeat(16, 1))  # 0: the spread rule is off
    assert capsys.readouterr().err == ""


def test_the_loss_warning_fires_once_near_the_uniform_logits_loss_after_the_first_epoch(capsys):
    collapse = 2 * math.log(17)
    spread = lambda: torch.randn(16, 32)  # noqa: E731
    watch_epochs(CollapseWatch(0.2, collapse), spread, epochs=4, loss=collapse * 0.99)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: epoch 2:") and "uniform logits" in lines[0]
    watch_epochs(CollapseWatch(0.2, collapse), spread, epochs=4, loss=collapse * 0.9)
    assert capsys.readouterr().err == ""


def test_the_knn_warning_fires_once_when_the_monitor_falls_below_the_initial_encoder(capsys):
    watch = CollapseWatch(0.2)
    spread = {"loss": 1.0, "embed_std_ratio": 0.8}
    # the first score may dip; the second, 6 points below the initial 25, warns; later ones are quiet
    for epoch, knn in enumerate([10.0, 19.0, 12.0, 11.0]):
        watch.end_epoch(epoch, {**spread, "monitor_knn_top1": knn, "monitor_knn_top1_init": 25.0})
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: epoch 2:")
    assert "19.0 %" in lines[0] and "25.0 %" in lines[0] and "initialisation" in lines[0]
    # within KNN_DROP points of the initial score, without a monitor score or an initial score: quiet
    for scores in ([24.0, 21.0, 20.5], [None, None, None]):
        watch = CollapseWatch(0.2)
        for epoch, knn in enumerate(scores):
            watch.end_epoch(
                epoch, {**spread, **({} if knn is None else {"monitor_knn_top1": knn, "monitor_knn_top1_init": 25.0})}
            )
    watch = CollapseWatch(0.2)
    for epoch in range(3):
        watch.end_epoch(epoch, {**spread, "monitor_knn_top1": 5.0})
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------ report


def test_the_pretrain_curve_reads_the_runs_epoch_records(run):
    _, result = run
    out = write_pretrain_curve(result.run_dir)
    epochs = records(result.run_dir, "epoch")
    lines = out["table"].strip().splitlines()
    assert lines[0].startswith("| epoch | loss | monitor kNN top-1 (%) | embed_std |") and len(lines) == 2 + 3
    assert lines[2].split(" | ")[2] == "-"  # epoch 1 was not scored
    assert lines[4].split(" | ")[2] == f"{epochs[2]['monitor_knn_top1']:.2f}"
    assert out["table"] in out["markdown"].read_text()
    assert f"scores {epochs[1]['monitor_knn_top1_init']:.2f} % on the monitor" in out["markdown"].read_text()
    try:
        import PIL  # noqa: F401

        from hiclr.report.plots import plots_available, read_png_data
    except ImportError:
        return
    if plots_available():
        figure = read_png_data(out["png"])
        assert figure["knn_epoch"] == [2, 3] and figure["loss"] == [r["loss"] for r in epochs]
        assert figure["knn_top1_init"] == epochs[1]["monitor_knn_top1_init"]


def test_the_pretrain_curve_skips_the_figure_quietly_without_matplotlib(run, monkeypatch, capsys):
    from hiclr.report import plots

    _, result = run
    monkeypatch.setattr(plots, "plots_available", lambda: False)
    (result.run_dir / "pretrain_curve.png").unlink(missing_ok=True)
    out = write_pretrain_curve(result.run_dir)
    assert out["png"] is None and not (result.run_dir / "pretrain_curve.png").exists()
    assert out["markdown"].read_text().count("\n| ") == 4 and capsys.readouterr().err == ""


def test_the_progress_bar_shows_the_monitor(data, tmp_path, monkeypatch):
    from hiclr.engine import loop

    class Bar:
        postfixes = []

        def set_postfix(self, postfix=None, refresh=True, **kwargs):
            self.postfixes.append(dict(postfix or {}, **kwargs))

        def update(self, n=1):
            pass

        def close(self):
            pass

    monkeypatch.setattr(loop, "_progress", lambda *a, **k: Bar())
    result = pretrain(config(data, tmp_path, "optim.epochs=1", "run.monitor_every=1", "run.log_every=1"))
    last = Bar.postfixes[-1]
    assert last["knn"] == f"{result.metrics['monitor_knn_top1']:.1f}" and "loss" in last
