"""Fine-tune: the whole network trains through the engine; test accuracy every epoch, last and best."""

from __future__ import annotations

import json

import numpy as np
import torch

from test_linear import tiny_config, write_tiny_store


def finetune_config(data, epochs=2):
    cfg = tiny_config(data)
    cfg["optim"].update({"epochs": epochs, "batch_size": 8, "milestones": [1], "warmup_epochs": 1,
                         "lr": 0.05, "nesterov": True})
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

    epochs = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()
              if json.loads(l)["kind"] == "epoch"]
    assert [r["test_top1"] for r in epochs] == [h["top1"] for h in entry["history"]]
    assert entry["top1_last"] == entry["history"][-1]["top1"]
    assert entry["top1_best"] == max(h["top1"] for h in entry["history"])
    assert entry["schedule"]["nesterov"] is True and entry["schedule"]["warmup_epochs"] == 1
    # every layer of the encoder moved, not only the new linear layer
    trained = torch.load(run / "last.pt", weights_only=True)["model"]
    before = encoder.state_dict()
    moved = [k for k, v in before.items() if v.dtype.is_floating_point and "running" not in k
             and not torch.equal(trained[f"encoder.{k}"], v)]
    weights = [k for k, v in before.items() if k.endswith("weight")]
    assert set(weights) <= set(moved)
    logits = np.load(run / "logits.npz")
    assert logits["logits"].shape == (10, 3)
    report = json.loads((run / "report.json").read_text())
    assert report["protocols"]["finetune"]["history"] == entry["history"]
    state, _, _ = load_encoder_state(tmp_path / "pre" / "encoder.pt")
    assert all(torch.equal(state[k], before[k]) for k in state)   # the input checkpoint is untouched


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
