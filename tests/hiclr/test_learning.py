"""Learning proof (slow): the demo on the embedded default, against its baselines.

The demo (`hiclr.demo.run_demo`, data seed 0, pre-training seed 0, one thread): synthetic clips
(`hiclr-prep synth`: 18 classes, 12 subjects, 3 cameras) prepared by `hiclr-prep ntu60`, xsub split
(643 training, 646 test clips of subjects never seen in training), the demo's HiCLR pre-training
(configs/demo/pretrain.yaml: ST-GCN width 4, 8 epochs, AdamW, PyTorch's init), then the linear
probe and the weighted cosine kNN (k 20, temperature 0.1) of the frozen encoder, beside the raw
input coordinates (no model) and the same architecture at its random initialisation (BatchNorm
statistics re-estimated on the training split).

What holds, asserted: the pre-trained encoder beats random init by `TARGET` points of top-1 in
kNN and in the linear probe, fine-tuned on the demo's labelled fraction it beats the same
architecture trained from scratch on the same subset, the monitor's kNN rises over the run and the
loss ends short of its collapse value. `TARGET` over raw input too is not reached at the demo's budget: it stays an
expected failure, so that the day it passes shows as XPASS.
"""

import json

import pytest
import torch
import yaml

from hiclr.ssl.learner import HiCLR

TARGET = 10.0  # the required margin over the baselines, in points of top-1


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's figures: {"knn": {label: top-1}, "linear": {label: top-1}, "epochs": epoch records}."""
    from data_prep.synth import SynthConfig
    from hiclr.demo import run_demo

    out = tmp_path_factory.mktemp("demo")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report = run_demo(out, device="cpu", synth=SynthConfig(seed=0))
    finally:
        torch.set_num_threads(threads)
    assert report.is_file()
    reports = {
        label: json.loads((out / f"eval_{label}" / "report.json").read_text())
        for label in ("pretrained", "raw", "random")
    }
    epochs = [
        json.loads(line)
        for line in (out / "pretrain" / "metrics.jsonl").read_text().splitlines()
        if '"kind": "epoch"' in line
    ]
    queue = yaml.safe_load((out / "pretrain" / "config.yaml").read_text())["ssl"]["queue_size"]
    figures = {
        "knn": {k: v["protocols"]["knn"]["top1"] for k, v in reports.items()},
        "linear": {k: v["protocols"]["linear"]["top1_last"] for k, v in reports.items()},
        "epochs": epochs,
        "collapse_loss": HiCLR.uniform_logits_loss(1 + queue),
        "finetune": json.loads((out / "label_efficiency" / "label_efficiency.json").read_text())["rows"][0],
    }
    print(f"\ndemo, kNN: {figures['knn']}, linear: {figures['linear']}")
    return figures


@pytest.mark.slow
def test_the_demos_pretraining_beats_random_init_by_the_target_margin(demo):
    for protocol in ("knn", "linear"):
        top1 = demo[protocol]
        assert top1["pretrained"] >= top1["random"] + TARGET, (protocol, top1)


@pytest.mark.slow
def test_the_demos_encoder_fine_tuned_on_a_labelled_fraction_beats_training_from_scratch(demo):
    row = demo["finetune"]
    assert row["pretrained_mean"] > row["scratch_mean"], row


@pytest.mark.slow
def test_the_demos_monitor_rises_and_the_loss_stays_off_the_collapse_value(demo):
    epochs = demo["epochs"]
    monitored = [e["monitor_knn_top1"] for e in epochs if e.get("monitor_knn_top1") is not None]
    assert len(monitored) >= 2 and monitored[-1] > monitored[0] + 5.0, monitored
    assert monitored[-1] > epochs[-1]["monitor_knn_top1_init"] + 5.0
    assert epochs[-1]["loss"] < 0.98 * demo["collapse_loss"], epochs[-1]["loss"]


@pytest.mark.slow
@pytest.mark.xfail(
    strict=False, reason="at the demo's budget the pre-trained encoder stays below the raw-input baseline"
)
def test_the_demos_pretraining_beats_raw_input_by_the_target_margin(demo):
    for protocol in ("knn", "linear"):
        top1 = demo[protocol]
        assert top1["pretrained"] >= max(top1["raw"], top1["random"]) + TARGET, (protocol, top1)
