"""Stream ensemble: weights applied to the runs' logits, alignment checks, default weights by stream."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hiclr.common.errors import UserError
from hiclr.eval.common import save_logits
from hiclr.eval.ensemble import ensemble_logits, ensemble_runs, run_ensemble, stream_weights

NAMES = ["a", "b", "c", "d"]
LABELS = torch.tensor([0, 1, 2, 1])


def make_run(folder, logits, stream, names=NAMES, labels=LABELS):
    folder.mkdir(parents=True)
    save_logits(folder, torch.tensor(logits, dtype=torch.float32), labels, names)
    (folder / "report.json").write_text(json.dumps({"stream": stream, "protocols": {}}))
    return str(folder)


@pytest.fixture
def three_runs(tmp_path):
    # each stream errs on one sample; the weighted sum gets all four right
    joint = [[2, 0, 0], [0, 2, 0], [0, 0, 1], [0, 0, 1]]
    bone = [[2, 0, 0], [0, 1, 0], [1, 0, 0], [0, 2, 0]]
    motion = [[0, 1, 0], [0, 1, 0], [0, 0, 3], [0, 1, 0]]
    return [
        make_run(tmp_path / "j", joint, "joint"),
        make_run(tmp_path / "b", bone, "bone"),
        make_run(tmp_path / "m", motion, "motion"),
    ], (joint, bone, motion)


def test_weighted_sum_of_logits():
    logits = [np.eye(3), 2 * np.eye(3), np.ones((3, 3))]
    fused = ensemble_logits(logits, [0.6, 0.6, 0.4])
    torch.testing.assert_close(fused, torch.tensor(0.6 * np.eye(3) + 1.2 * np.eye(3) + 0.4, dtype=torch.float32))


def test_ensemble_reports_each_stream_and_the_weighted_sum(three_runs):
    runs, (joint, bone, motion) = three_runs
    result = ensemble_runs(runs, [0.6, 0.6, 0.4])
    expected = 0.6 * np.array(joint) + 0.6 * np.array(bone) + 0.4 * np.array(motion)
    torch.testing.assert_close(result["logits"], torch.tensor(expected, dtype=torch.float32))

    def accuracy(logits):
        return 100.0 * np.mean(np.argmax(logits, 1) == LABELS.numpy())

    assert {k: v["top1"] for k, v in result["streams"].items()} == {
        "joint": accuracy(joint),
        "bone": accuracy(bone),
        "motion": accuracy(motion),
    }
    assert max(accuracy(joint), accuracy(bone), accuracy(motion)) < 100.0
    assert result["ensemble"]["top1"] == pytest.approx(accuracy(expected)) == pytest.approx(100.0)


def test_default_weights_follow_each_runs_stream_not_its_position(three_runs):
    runs, _ = three_runs
    assert stream_weights(runs) == [0.6, 0.6, 0.4]
    assert stream_weights([runs[2], runs[0], runs[1]]) == [0.4, 0.6, 0.6]


def test_runs_over_other_samples_or_another_order_are_refused(tmp_path, three_runs):
    runs, (joint, _, _) = three_runs
    shuffled = make_run(tmp_path / "s", joint, "bone", names=["b", "a", "c", "d"])
    with pytest.raises(UserError, match="another order"):
        ensemble_runs([runs[0], shuffled], [1, 1])
    other = make_run(tmp_path / "o", joint, "bone", names=["a", "b", "c", "x"])
    with pytest.raises(UserError, match="other samples"):
        ensemble_runs([runs[0], other], [1, 1])
    with pytest.raises(UserError, match="one weight per run"):
        ensemble_runs(runs, [1.0, 1.0])


def test_run_ensemble_writes_its_report(tmp_path, three_runs):
    runs, _ = three_runs
    entry = run_ensemble(runs, out=tmp_path / "ens", plots=False)
    report = json.loads((tmp_path / "ens" / "report.json").read_text())
    assert report["protocols"]["ensemble"]["weights"] == [0.6, 0.6, 0.4]
    assert report["protocols"]["ensemble"]["top1"] == entry["top1"]
    assert "| **ensemble** |" in (tmp_path / "ens" / "report.md").read_text()


def best_run(folder, best_logits, stream):
    """A run folder with last-epoch logits (all wrong) and best-epoch logits (logits_best.npz)."""
    from hiclr.eval.common import LOGITS_BEST_FILE

    wrong = [[0, 0, 9]] * 4
    path = make_run(folder, wrong, stream)
    save_logits(folder, torch.tensor(best_logits, dtype=torch.float32), LABELS, NAMES, file=LOGITS_BEST_FILE)
    return path


def test_paper_report_searches_the_release_two_weight_sets_on_best_epoch_logits(tmp_path):
    # sample 2 (label 2) decides: (0.5, 0.5, 0.5) sums [0.625, 0, 0.5] -> wrong, (0.6, 0.6, 0.4)
    # sums [0.5, 0, 0.6] -> right; the other three are right under both
    joint = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 0]]
    bone = [[1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 1, 0]]
    motion = [[1, 0, 0], [0, 1, 0], [1.25, 0, 0], [0, 1, 0]]
    runs = [
        best_run(tmp_path / "j", joint, "joint"),
        best_run(tmp_path / "b", bone, "bone"),
        best_run(tmp_path / "m", motion, "motion"),
    ]
    default = run_ensemble(runs, out=tmp_path / "plain", plots=False)
    assert "paper" not in default and default["top1"] == pytest.approx(25.0)  # last-epoch logits, fixed weights
    entry = run_ensemble(runs, out=tmp_path / "paper", plots=False, report="paper")
    paper = entry["paper"]
    assert paper["selection"] == "selected on the test set"
    assert [t["weights"] for t in paper["tried"]] == [[0.5, 0.5, 0.5], [0.6, 0.6, 0.4]]
    assert [t["top1"] for t in paper["tried"]] == pytest.approx([75.0, 100.0])
    assert paper["weights"] == [0.6, 0.6, 0.4] and paper["top1"] == pytest.approx(100.0)
    assert entry["top1"] == default["top1"]  # the default figure unchanged
    assert "selected on the test set" in (tmp_path / "paper" / "report.md").read_text()
    stored = json.loads((tmp_path / "paper" / "report.json").read_text())["protocols"]["ensemble"]["paper"]
    assert stored["selection"] == "selected on the test set" and stored["top1"] == pytest.approx(100.0)


def test_paper_search_keeps_the_average_on_a_tie(tmp_path):
    same = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 0]]
    runs = [best_run(tmp_path / s, same, s) for s in ("joint", "bone", "motion")]
    paper = run_ensemble(runs, out=tmp_path / "e", plots=False, report="paper")["paper"]
    assert paper["weights"] == [0.5, 0.5, 0.5]  # the second replaces only when better


def test_paper_report_needs_the_runs_best_epoch_logits(three_runs, tmp_path):
    with pytest.raises(UserError, match="report paper"):
        run_ensemble(three_runs[0], out=tmp_path / "e", plots=False, report="paper")
