"""Fine-tune: the whole network trains through the engine; test accuracy every epoch, last and best."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.hiclr.eval.test_linear import tiny_config, write_tiny_store


def finetune_config(data, epochs=2):
    cfg = tiny_config(data)
    cfg["optim"].update(
        {"epochs": epochs, "batch_size": 8, "milestones": [1], "warmup_epochs": 1, "lr": 0.05, "nesterov": True}
    )
    cfg["engine"].update({"progress": False, "precision": "fp32", "tensorboard": False})
    cfg["run"]["save_every"] = 0
    return cfg


def test_finetune_trains_the_whole_network_and_reports_every_epoch(tmp_path):
    from hiclr.eval.finetune import run_finetune
    from hiclr.models import build_encoder, load_encoder_state, save_encoder

    data = write_tiny_store(tmp_path / "tiny.h5", n=40)
    torch.manual_seed(0)
    encoder = build_encoder({"name": "stgcn", "width": 4})
    save_encoder(tmp_path / "pre" / "encoder.pt", encoder, {"name": "stgcn", "width": 4}, "joint")
    run = tmp_path / "ft"
    entry = run_finetune(finetune_config(data), str(tmp_path / "pre" / "encoder.pt"), out=run, plots=False)

    epochs = [
        json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if json.loads(l)["kind"] == "epoch"
    ]
    assert [r["test_top1"] for r in epochs] == [h["top1"] for h in entry["history"]]
    assert entry["top1_last"] == entry["history"][-1]["top1"]
    assert entry["top1_best"] == max(h["top1"] for h in entry["history"])
    assert entry["schedule"]["nesterov"] is True and entry["schedule"]["warmup_epochs"] == 1
    # every layer of the encoder moved, not only the new linear layer
    trained = torch.load(run / "last.pt", weights_only=True)["model"]
    before = encoder.state_dict()
    moved = [
        k
        for k, v in before.items()
        if v.dtype.is_floating_point and "running" not in k and not torch.equal(trained[f"encoder.{k}"], v)
    ]
    weights = [k for k, v in before.items() if k.endswith("weight")]
    assert set(weights) <= set(moved)
    logits = np.load(run / "logits.npz")
    assert logits["logits"].shape == (10, 3)
    report = json.loads((run / "report.json").read_text())
    assert report["protocols"]["finetune"]["history"] == entry["history"]
    state, _, _ = load_encoder_state(tmp_path / "pre" / "encoder.pt")
    assert all(torch.equal(state[k], before[k]) for k in state)  # the input checkpoint is untouched


def test_test_every_scores_every_nth_epoch_and_the_last(tmp_path):
    from hiclr.eval.finetune import run_finetune
    from hiclr.models import build_encoder

    data = write_tiny_store(tmp_path / "tiny.h5", n=24)
    cfg = finetune_config(data, epochs=5)
    cfg["eval"]["test_every"] = 2
    torch.manual_seed(0)
    entry = run_finetune(cfg, build_encoder({"name": "stgcn", "width": 4}), out=tmp_path / "ft", plots=False)
    assert [h["epoch"] for h in entry["history"]] == [2, 4, 5]
    assert entry["top1_last"] == entry["history"][-1]["top1"]
    assert entry["best_epoch"] in (2, 4, 5)
    epochs = [json.loads(l) for l in (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()]
    tested = [r["epoch"] for r in epochs if r["kind"] == "epoch" and "test_top1" in r]
    assert tested == [2, 4, 5]


def test_resuming_a_finished_finetune_gives_the_same_report(tmp_path):
    from hiclr.eval.finetune import run_finetune
    from hiclr.models import build_encoder

    data = write_tiny_store(tmp_path / "tiny.h5", n=24)
    torch.manual_seed(0)
    encoder = build_encoder({"name": "stgcn", "width": 4})
    cfg = finetune_config(data, epochs=1)
    first = run_finetune(cfg, encoder, out=tmp_path / "ft", plots=False)
    again = run_finetune(cfg, encoder, out=tmp_path / "ft", resume=True, plots=False)
    assert again["history"] == first["history"] and again["top1_last"] == first["top1_last"]


# the release's fine-tune lr rule (processor/finetune_evaluation.py adjust_lr), written with its
# 1-based epoch E: lr * E / warm_up_epoch while E < warm_up_epoch, else lr * 0.1 ** #(steps <= E)
def release_lr(E: int, base=0.1, warm=5, steps=(30, 55)) -> float:
    if E < warm:
        return base * E / warm
    return base * 0.1 ** sum(E >= s for s in steps)


def test_the_release_schedule_follows_its_one_based_epochs():
    from hiclr.engine.schedule import lr_factor_fn

    optim = {
        "epochs": 70,
        "warmup_epochs": 5,
        "milestones": [30, 55],
        "gamma": 0.1,
        "min_lr": 0.0,
        "lr": 0.1,
        "schedule": "release",
    }
    steps_per_epoch = 7
    factor = lr_factor_fn(optim, steps_per_epoch)
    for epoch in range(70):  # the engine's 0-based epoch
        E = epoch + 1  # the release's
        for step in range(epoch * steps_per_epoch, (epoch + 1) * steps_per_epoch):  # constant in an epoch
            assert 0.1 * factor(step) == pytest.approx(release_lr(E))
    lr_at = lambda epoch: 0.1 * factor(epoch * steps_per_epoch)  # noqa: E731
    assert [lr_at(e) for e in range(5)] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])  # E = 1..5
    assert lr_at(28) == pytest.approx(0.1) and lr_at(29) == pytest.approx(0.01)  # E = 29, 30
    assert lr_at(53) == pytest.approx(0.01) and lr_at(54) == pytest.approx(0.001)  # E = 54, 55


def test_the_step_schedule_counts_from_zero_and_warms_up_per_step():
    from hiclr.engine.schedule import lr_factor_fn

    optim = {
        "epochs": 70,
        "warmup_epochs": 5,
        "milestones": [30, 55],
        "gamma": 0.1,
        "min_lr": 0.0,
        "lr": 0.1,
        "schedule": "step",
    }
    factor = lr_factor_fn(optim, 10)
    assert factor(0) == pytest.approx(1 / 50) and factor(49) == pytest.approx(1.0)
    assert factor(29 * 10) == pytest.approx(1.0) and factor(30 * 10) == pytest.approx(0.1)  # one epoch later


def test_a_finetune_run_logs_the_release_lr_per_epoch(tmp_path):
    from hiclr.eval.finetune import run_finetune
    from hiclr.models import build_encoder

    data = write_tiny_store(tmp_path / "tiny.h5", n=24)
    cfg = finetune_config(data, epochs=4)
    cfg["optim"].update({"schedule": "release", "warmup_epochs": 3, "milestones": [4], "lr": 0.06})
    torch.manual_seed(0)
    run_finetune(cfg, build_encoder({"name": "stgcn", "width": 4}), out=tmp_path / "ft", plots=False)
    epochs = [
        json.loads(l)
        for l in (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()
        if json.loads(l)["kind"] == "epoch"
    ]
    assert [r["lr"] for r in epochs] == pytest.approx([0.02, 0.04, 0.06, 0.006])  # E = 1, 2, 3, 4


def test_the_reference_finetune_configs_hold_the_release_protocol():
    from hiclr.config import load_config
    from hiclr.eval.finetune import build_augment

    gcn = load_config("configs/ntu60/xsub/finetune_joint.yaml")
    assert gcn["optim"]["schedule"] == "release" and gcn["optim"]["milestones"] == [30, 55]
    assert gcn["optim"]["warmup_epochs"] == 5 and gcn["engine"]["precision"] == "fp32"
    assert build_augment(gcn) == (None, False)  # no augmentation
    dsta = load_config("configs/ntu60/xsub/transformer_finetune_motion.yaml")
    policy, after_stream = build_augment(dsta)
    assert policy is not None and after_stream  # crop + shear on the stream
    assert dsta["optim"]["schedule"] == "release" and dsta["engine"]["precision"] == "fp32"


def test_the_transformer_augments_the_derived_stream():
    from hiclr.augment import to_stream
    from hiclr.engine import Batch
    from hiclr.eval.finetune import FineTuneTask, build_augment
    from tests.hiclr.eval.test_linear import tiny_config

    cfg = tiny_config("unused.h5", augment=[[{"name": "stream"}, {"name": "temporal_crop", "padding_ratio": 6}]])
    policy, after_stream = build_augment(cfg)
    assert after_stream
    seen = []
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(3))
    task = FineTuneTask(
        model, "motion", torch.zeros(1, 3, 12, 25, 2), torch.zeros(1), policy, augment_after_stream=True
    )
    x = torch.randn(2, 3, 12, 25, 2)
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    task.step(model, Batch(x, torch.tensor([0, 1]), torch.arange(2)), torch.Generator().manual_seed(0), 0)
    expected = policy.apply(to_stream(x, "motion"), torch.Generator().manual_seed(0)).x
    torch.testing.assert_close(seen[0], expected)
    with pytest.raises(Exception, match="first item"):
        build_augment(tiny_config("unused.h5", augment=[[{"name": "shear"}, {"name": "stream"}]]))


def test_finetune_paper_report_is_the_release_best_epoch_labelled(tmp_path):
    from hiclr.eval.finetune import run_finetune
    from hiclr.models import build_encoder

    data = write_tiny_store(tmp_path / "tiny.h5", n=24)
    torch.manual_seed(0)
    entry = run_finetune(
        finetune_config(data, epochs=2),
        build_encoder({"name": "stgcn", "width": 4}),
        out=tmp_path / "ft",
        plots=False,
        report="paper",
    )
    best = entry["paper"]["best_epoch"]
    assert best["selection"] == "selected on the test set"
    tested = [h for h in entry["history"] if h["epoch"] % 5 == 0 or h["epoch"] == 2]
    top = max(h["top1"] for h in tested)
    assert best["top1"] == top and best["epoch"] == max(h["epoch"] for h in tested if h["top1"] == top)
    saved = np.load(tmp_path / "ft" / "logits_best.npz")
    acc = (saved["logits"].argmax(1) == saved["labels"]).mean() * 100
    assert acc == pytest.approx(best["top1"])
    assert "selected on the test set" in (tmp_path / "ft" / "report.md").read_text()
