"""The figures of every protocol's report (top-1, top-5, per-class accuracy, the confusion matrix
with rows = true class), on hand-made scores whose answers are known, and a probe's report.json
against its own saved logits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hiclr.eval.common import classification_summary, confusion_matrix, per_class_accuracy, topk_accuracy

# five test clips of six classes; each row's ranking is written out
SCORES = torch.tensor(
    [
        [9.0, 1.0, 2.0, 3.0, 4.0, 5.0],  # true 0, predicted 0
        [8.0, 9.0, 1.0, 2.0, 3.0, 4.0],  # true 0, predicted 1, the true class second: a top-5 hit only
        [1.0, 9.0, 2.0, 3.0, 4.0, 5.0],  # true 1, predicted 1
        [9.0, 5.0, 0.0, 4.0, 3.0, 2.0],  # true 2, predicted 0, the true class last: missed by top-5 too
        [1.0, 2.0, 3.0, 9.0, 4.0, 5.0],  # true 3, predicted 3
    ]
)
LABELS = torch.tensor([0, 0, 1, 2, 3])
TOP1, TOP5 = 60.0, 80.0
CONFUSION = [
    [1, 1, 0, 0, 0, 0],  # row = true class, column = predicted class
    [0, 1, 0, 0, 0, 0],
    [1, 0, 0, 0, 0, 0],
    [0, 0, 0, 1, 0, 0],
    [0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0],
]
PER_CLASS = [50.0, 100.0, 0.0, 100.0, None, None]  # recall; None: no test clip of the class


def assert_known_answers(entry: dict, last: str = "") -> None:
    assert entry[f"top1{last}"] == pytest.approx(TOP1)
    assert entry[f"top5{last}"] == pytest.approx(TOP5)
    assert entry["confusion"] == CONFUSION
    assert entry["per_class"] == pytest.approx(PER_CLASS)


def test_top1_top5_per_class_and_confusion_of_hand_made_scores():
    assert topk_accuracy(SCORES, LABELS) == {"top1": pytest.approx(TOP1), "top5": pytest.approx(TOP5)}
    cm = confusion_matrix(SCORES.argmax(1), LABELS, 6)
    assert cm.tolist() == CONFUSION
    assert per_class_accuracy(cm) == pytest.approx(PER_CLASS)
    assert_known_answers(classification_summary(SCORES, LABELS, 6))


def test_the_probe_reports_its_last_epoch_logits():
    from hiclr.eval.linear import LinearResult, LinearSchedule, linear_summary

    other = SCORES.roll(1, dims=1)  # a best epoch with other predictions
    result = LinearResult(
        history=[{"epoch": 1, "top1": 0.0, "top5": 40.0}, {"epoch": 2, "top1": TOP1, "top5": TOP5}],
        last={"epoch": 2, "top1": TOP1, "top5": TOP5},
        best={"epoch": 1, "top1": 0.0, "top5": 40.0},
        logits_last=SCORES,
        logits_best=other,
    )
    entry = linear_summary(result, LABELS, 6, LinearSchedule(epochs=2), "cached frozen features")
    assert_known_answers(entry, "_last")


def test_knn_report_of_hand_made_neighbours():
    from hiclr.eval.knn import knn_evaluate

    # one training clip per class on its own axis: every class votes exp(cos / T), in the order
    # of the query's coordinates, so the kNN scores rank the classes as SCORES does
    bank, bank_labels = torch.eye(6), torch.arange(6)
    result = knn_evaluate(bank, bank_labels, SCORES, LABELS, num_classes=6, k=6, temperature=0.5)
    assert_known_answers(result)


class _Table(torch.nn.Module):
    """A 'model' whose logits for test clip i are SCORES[i] (i is written in the clip's first value)."""

    def __init__(self):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return SCORES[x[:, 0, 0, 0, 0].long()] + self.bias


def test_the_finetune_report_of_hand_made_logits():
    from hiclr.eval.finetune import FineTuneTask, finetune_summary

    test_x = torch.zeros(5, 3, 4, 25, 2)
    test_x[:, 0, 0, 0, 0] = torch.arange(5.0)
    task = FineTuneTask(_Table(), "joint", test_x, LABELS, test_batch_size=2)
    task.end_epoch(0, {})
    entry = finetune_summary(task, 6)
    assert_known_answers(entry, "_last")
    assert entry["top1_best"] == pytest.approx(TOP1) and entry["best_epoch"] == 1


def test_the_ensemble_report_of_hand_made_logits(tmp_path):
    from hiclr.eval.common import save_logits
    from hiclr.eval.ensemble import run_ensemble

    names = [f"clip{i}" for i in range(5)]
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    save_logits(tmp_path / "a", 2 * SCORES, LABELS, names)  # 2 S - S = S
    save_logits(tmp_path / "b", -SCORES, LABELS, names)
    entry = run_ensemble([str(tmp_path / "a"), str(tmp_path / "b")], [1.0, 1.0], out=tmp_path / "ens", plots=False)
    assert_known_answers(entry)
    stored = json.loads((tmp_path / "ens" / "report.json").read_text())["protocols"]["ensemble"]
    assert_known_answers(stored)


def test_a_probe_report_equals_the_figures_of_its_saved_logits(tmp_path):
    from hiclr.eval.linear import run_linear
    from hiclr.models import build_encoder
    from tests.hiclr.eval.test_linear import tiny_config, write_tiny_store

    data = write_tiny_store(tmp_path / "tiny.h5", n=60, classes=6)
    torch.manual_seed(0)
    entry = run_linear(
        tiny_config(data),
        build_encoder({"name": "stgcn", "width": 4}),
        out=tmp_path / "lin",
        progress=False,
        plots=False,
    )
    saved = np.load(tmp_path / "lin" / "logits.npz")
    again = classification_summary(torch.from_numpy(saved["logits"]), torch.from_numpy(saved["labels"]), 6)
    report = json.loads((tmp_path / "lin" / "report.json").read_text())["protocols"]["linear"]
    for figures in (entry, report):
        assert figures["top1_last"] == pytest.approx(again["top1"])
        assert figures["top5_last"] == pytest.approx(again["top5"])
        assert figures["per_class"] == pytest.approx(again["per_class"])
        assert figures["confusion"] == again["confusion"]
    assert again["top5"] > again["top1"] or again["top1"] == 100.0  # top-5 is not top-1 here


def test_the_release_best_epoch_is_the_best_tested_epoch_ties_to_the_later():
    from hiclr.eval.common import ReleaseBest

    # top-1 by 1-based epoch; the release tests epochs 5, 10 and the last (12)
    curve = {
        1: 90.0,
        2: 10.0,
        3: 10.0,
        4: 10.0,
        5: 40.0,
        6: 95.0,
        7: 10.0,
        8: 10.0,
        9: 10.0,
        10: 60.0,
        11: 10.0,
        12: 60.0,
    }
    best = ReleaseBest(interval=5, last_epoch=12)
    for epoch, top1 in curve.items():
        best.update(epoch, {"top1": top1, "top5": top1 + 1}, logits=f"logits of {epoch}")
    assert best.best == {"epoch": 12, "top1": 60.0, "top5": 61.0}  # not 6 (95) nor 1 (90): untested
    assert best.logits == "logits of 12"  # 10 and 12 tie: the later
    assert best.entry()["selection"] == "selected on the test set"
