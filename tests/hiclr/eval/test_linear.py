"""Linear probe: cached features, the frozen encoder path, last/best reporting, feature cache."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from hiclr.eval.linear import LinearSchedule, fit_linear


def write_tiny_store(path, n: int = 48, classes: int = 3, frames: int = 12, seed: int = 0) -> str:
    """A minimal HDF5 store (docs/internals.md, format 1) whose classes differ by an x offset."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    x = rng.normal(size=(n, 3, frames, 25, 2)).astype(np.float32) * 0.1
    x[:, 0] += labels[:, None, None, None].astype(np.float32)
    index = np.arange(n, dtype=np.int64)
    with h5py.File(path, "w") as f:
        f.attrs.update({"format_version": 1, "dataset": "synth", "num_classes": classes})
        f.create_dataset(
            "samples/name",
            data=np.array([f"S001C001P{i:03d}R001A{labels[i] + 1:03d}" for i in range(n)], dtype=object),
            dtype=h5py.string_dtype(),
        )
        f.create_dataset("samples/label", data=labels.astype(np.int64))
        f.create_dataset("views/frame50", data=x)
        f.create_dataset("splits/xsub/train", data=index[index % 4 != 0])
        f.create_dataset("splits/xsub/test", data=index[index % 4 == 0])
    return str(path)


def tiny_config(data_path, **eval_overrides):
    import hiclr.eval.common  # noqa: F401  (evaluation keys)
    from hiclr.config import load_config

    sets = [
        f"data.path={data_path}",
        "model.width=4",
        "engine.device=cpu",
        "eval.epochs=3",
        "eval.milestones=[2]",
        "eval.batch_size=16",
        "eval.feature_batch_size=64",
    ]
    sets += [f"eval.{k}={json.dumps(v)}" for k, v in eval_overrides.items()]
    return load_config(None, sets)


def separable(n_per_class=40, classes=4, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * 4
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    x = centres[labels] + 0.3 * torch.randn(len(labels), dim, generator=g)
    return x, labels


def test_linear_probe_reaches_full_accuracy_on_linearly_separable_features():
    train_x, train_y = separable(seed=0)
    test_x, test_y = separable(n_per_class=10, seed=0)
    test_x = test_x + 0.1 * torch.randn(test_x.shape, generator=torch.Generator().manual_seed(1))
    schedule = LinearSchedule(epochs=20, milestones=(15,), batch_size=32)
    result = fit_linear(train_x, train_y, test_x, test_y, num_classes=4, schedule=schedule, seed=0)
    assert result.last["top1"] == pytest.approx(100.0)
    assert result.last["epoch"] == 20
    assert result.logits_last.argmax(1).eq(test_y).all()


def test_last_and_best_epoch_are_reported_from_the_per_epoch_curve():
    x, y = separable(n_per_class=20, classes=5, seed=3)
    noisy = x + 6 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    result = fit_linear(noisy, y, x, y, 5, schedule=LinearSchedule(epochs=8, milestones=(6,), batch_size=16))
    top1 = [row["top1"] for row in result.history]
    assert [row["epoch"] for row in result.history] == list(range(1, 9))
    assert result.last["top1"] == top1[-1]
    assert result.best["top1"] == max(top1)
    assert result.best["epoch"] == 1 + int(np.argmax(top1))
    assert result.history[6]["lr"] == pytest.approx(0.3)  # x0.1 after epoch 6


def test_probe_is_deterministic_for_a_seed():
    x, y = separable(seed=4)
    a = fit_linear(x, y, x, y, 4, schedule=LinearSchedule(epochs=3), seed=7)
    b = fit_linear(x, y, x, y, 4, schedule=LinearSchedule(epochs=3), seed=7)
    assert torch.equal(a.logits_last, b.logits_last)
    assert a.history == b.history


def test_training_through_a_function_matches_training_on_the_cache():
    x, y = separable(seed=5)
    calls = []

    def through(idx):
        calls.append(len(idx))
        return x[idx]

    schedule = LinearSchedule(epochs=3, batch_size=32)
    cached = fit_linear(x, y, x, y, 4, schedule=schedule, seed=1)
    fn = fit_linear(through, y, lambda: x, y, 4, feature_dim=x.shape[1], schedule=schedule, seed=1)
    assert sum(calls) == 3 * len(y)
    torch.testing.assert_close(cached.logits_last, fn.logits_last)


def test_run_linear_writes_report_metrics_logits_and_reuses_the_feature_cache(tmp_path, monkeypatch):
    from hiclr.eval import linear
    from hiclr.models import build_encoder

    data = write_tiny_store(tmp_path / "tiny.h5")
    cfg = tiny_config(data)
    torch.manual_seed(0)
    encoder = build_encoder({"name": "stgcn", "width": 4})
    run = tmp_path / "run"
    first = linear.run_linear(cfg, encoder, out=run, progress=False, plots=False)

    report = json.loads((run / "report.json").read_text())
    rows = [json.loads(line) for line in (run / "metrics_linear.jsonl").read_text().splitlines()]
    entry = report["protocols"]["linear"]
    assert entry["history"] == rows and len(rows) == 3
    assert entry["top1_last"] == rows[-1]["top1"] and entry["top1_best"] == max(r["top1"] for r in rows)
    assert report["data"]["sha256"] and report["encoder"]["checksum"]
    logits = np.load(run / "logits.npz")
    assert logits["logits"].shape == (12, 3) and list(logits["labels"]) == [i % 3 for i in range(0, 48, 4)]
    assert len(list((run / "features").glob("*.pt"))) == 2

    import hiclr.features

    monkeypatch.setattr(
        hiclr.features, "extract_features", lambda *a, **k: pytest.fail("features recomputed despite the cache")
    )
    second = linear.run_linear(cfg, encoder, out=run, progress=False, plots=False)
    assert second["history"] == first["history"]


def test_feature_cache_key_changes_with_the_encoder(tmp_path):
    from hiclr.eval import linear
    from hiclr.models import build_encoder

    data = write_tiny_store(tmp_path / "tiny.h5")
    cfg = tiny_config(data, epochs=1, milestones=[])
    for seed in (0, 1):
        torch.manual_seed(seed)
        linear.run_linear(
            cfg, build_encoder({"name": "stgcn", "width": 4}), out=tmp_path / "run", progress=False, plots=False
        )
    assert len(list((tmp_path / "run" / "features").glob("train_*.pt"))) == 2


def test_reference_release_checkpoint_is_accepted(tmp_path):
    from hiclr.eval import linear
    from hiclr.models import build_encoder

    data = write_tiny_store(tmp_path / "tiny.h5")
    torch.manual_seed(0)
    encoder = build_encoder({"name": "stgcn", "width": 4})
    release = {f"encoder_q.{k}": v for k, v in encoder.state_dict().items()}
    release["encoder_q.fc.weight"] = torch.zeros(60, 64)
    torch.save({"state_dict": release}, tmp_path / "release.pth.tar")
    cfg = tiny_config(data, epochs=2, milestones=[])
    from_release = linear.run_linear(
        cfg, str(tmp_path / "release.pth.tar"), out=tmp_path / "a", progress=False, plots=False
    )
    from_module = linear.run_linear(cfg, encoder, out=tmp_path / "b", progress=False, plots=False)
    assert from_release["history"] == from_module["history"]


def test_through_encoder_mode_trains_on_augmented_batches(tmp_path):
    from hiclr.eval import linear
    from hiclr.models import build_encoder

    data = write_tiny_store(tmp_path / "tiny.h5", n=24)
    cfg = tiny_config(data, epochs=1, milestones=[])
    torch.manual_seed(0)
    entry = linear.run_linear(
        cfg,
        build_encoder({"name": "stgcn", "width": 4}),
        out=tmp_path / "r",
        through_encoder=True,
        progress=False,
        plots=False,
    )
    assert entry["mode"].startswith("through the frozen encoder") and "augmentation" in entry["mode"]
    assert len(entry["history"]) == 1
    assert not (tmp_path / "r" / "features").exists()


def test_standardised_features_rescue_the_reference_probe_from_a_dominant_common_offset():
    from hiclr.eval.linear import standardize

    train_x, train_y = separable(seed=0)
    test_x, test_y = separable(n_per_class=10, seed=0)
    offset = torch.full((16,), 50.0)  # a common mean that dwarfs the spread
    train_x, test_x = train_x * 0.01 + offset, test_x * 0.01 + offset
    schedule = LinearSchedule(epochs=10, milestones=(8,), batch_size=32)  # lr 3.0, the reference's
    raw = fit_linear(train_x, train_y, test_x, test_y, num_classes=4, schedule=schedule, seed=0)
    std_train, std_test = standardize(train_x, test_x)
    assert torch.allclose(std_train.mean(0), torch.zeros(16), atol=1e-3)  # float32 cancellation
    assert torch.allclose(std_train.std(0, unbiased=False), torch.ones(16), atol=1e-3)
    fixed = fit_linear(std_train, train_y, std_test, test_y, num_classes=4, schedule=schedule, seed=0)
    assert fixed.last["top1"] == pytest.approx(100.0)
    assert raw.last["top1"] < fixed.last["top1"]


def test_run_linear_labels_the_standardised_mode_and_refuses_it_through_the_encoder(tmp_path):
    from hiclr.common.errors import UserError
    from hiclr.eval import linear
    from hiclr.models import build_encoder

    data = write_tiny_store(tmp_path / "tiny.h5")
    torch.manual_seed(0)
    encoder = build_encoder({"name": "stgcn", "width": 4})
    entry = linear.run_linear(
        tiny_config(data, standardize=True), encoder, out=tmp_path / "run", progress=False, plots=False
    )
    assert "standardised" in entry["mode"]
    with pytest.raises(UserError, match="standardize"):
        linear.run_linear(
            tiny_config(data, standardize=True, through_encoder=True),
            encoder,
            out=tmp_path / "run2",
            progress=False,
            plots=False,
        )


def test_the_probe_drops_the_last_partial_batch(monkeypatch):
    steps = []

    class CountingSGD(torch.optim.SGD):
        def step(self, closure=None):
            steps.append(1)
            return super().step(closure)

    def count(**schedule) -> int:
        steps.clear()
        fit_linear(train_x, train_y, train_x, train_y, 2, schedule=LinearSchedule(epochs=3, **schedule))
        return len(steps)

    monkeypatch.setattr(torch.optim, "SGD", CountingSGD)
    train_x, train_y = separable(n_per_class=5, classes=2, dim=4, seed=0)  # 10 training clips
    assert count(batch_size=4) == 3 * 2  # two full batches an epoch, 2 clips left out
    assert count(batch_size=4, drop_last=False) == 3 * 3
    assert count(batch_size=64) == 3 * 1  # a split smaller than a batch is one batch


def test_the_reference_linear_configs_hold_the_release_probe():
    from hiclr.config import load_config
    from hiclr.eval.linear import schedule_from_config

    for path in (
        "configs/ntu60/xsub/linear_joint.yaml",
        "configs/ntu60/xsub/transformer_linear_bone.yaml",
        "configs/pku2/xsub/linear_motion.yaml",
        "configs/transfer/ntu120_to_pku2_linear.yaml",
    ):
        cfg = load_config(path)
        schedule = schedule_from_config(cfg)
        assert schedule.drop_last and schedule.lr == 3.0 and schedule.weight_decay == 0.0
        assert not cfg["eval"]["augment"] and not cfg["eval"]["through_encoder"]


def test_paper_report_adds_the_release_best_epoch_and_the_epoch_290_checkpoint(tmp_path):
    from hiclr.eval.linear import run_linear
    from hiclr.models import build_encoder, save_encoder

    data = write_tiny_store(tmp_path / "tiny.h5", n=40)
    pre = tmp_path / "pretrain"
    torch.manual_seed(0)
    save_encoder(
        pre / "encoder.pt", build_encoder({"name": "stgcn", "width": 4}), {"name": "stgcn", "width": 4}, "joint"
    )
    torch.manual_seed(1)
    save_encoder(
        pre / "epoch_290.pt", build_encoder({"name": "stgcn", "width": 4}), {"name": "stgcn", "width": 4}, "joint"
    )
    (pre / "metrics.jsonl").write_text("")
    cfg = tiny_config(data, epochs=6, milestones=[4])

    plain = run_linear(cfg, str(pre / "encoder.pt"), out=tmp_path / "plain", progress=False, plots=False)
    assert "paper" not in plain
    entry = run_linear(
        cfg, str(pre / "encoder.pt"), out=tmp_path / "paper", progress=False, plots=False, report="paper"
    )
    assert {k: entry[k] for k in ("top1_last", "top1_best")} == {k: plain[k] for k in ("top1_last", "top1_best")}
    best = entry["paper"]["best_epoch"]
    tested = [h for h in entry["history"] if h["epoch"] in (5, 6)]  # every 5th epoch and the last
    top = max(h["top1"] for h in tested)
    assert best["selection"] == "selected on the test set"
    assert best["top1"] == top and best["epoch"] == max(h["epoch"] for h in tested if h["top1"] == top)
    saved = np.load(tmp_path / "paper" / "logits_best.npz")
    assert (saved["logits"].argmax(1) == saved["labels"]).mean() * 100 == pytest.approx(best["top1"])

    at_290 = entry["paper"]["checkpoint_290"]
    direct = run_linear(cfg, str(pre / "epoch_290.pt"), out=tmp_path / "e290", progress=False, plots=False)
    assert at_290["selection"] == "selected on the test set" and at_290["checkpoint"].endswith("epoch_290.pt")
    assert at_290["top1_last"] == pytest.approx(direct["top1_last"])
    report_md = (tmp_path / "paper" / "report.md").read_text()
    assert "selected on the test set" in report_md and "epoch-290" in report_md
    stored = json.loads((tmp_path / "paper" / "report.json").read_text())["protocols"]["linear"]["paper"]
    assert stored["best_epoch"]["selection"] == "selected on the test set"
