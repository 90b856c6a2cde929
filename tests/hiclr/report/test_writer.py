"""Reports: report.json / report.md contents, figures that plot the run's own numbers, `hiclr report`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")
pytest.importorskip("PIL")

from hiclr.report import assemble, write_report  # noqa: E402
from hiclr.report.plots import embedding_2d, pca_2d, read_png_data  # noqa: E402


def linear_entry(top1s, top5s=None, confusion=((3, 1), (0, 4))):
    history = [
        {"epoch": i + 1, "lr": 3.0, "loss": 1.0 / (i + 1), "top1": t, "top5": (top5s or top1s)[i]}
        for i, t in enumerate(top1s)
    ]
    best = int(np.argmax(top1s))
    return {
        "top1_last": top1s[-1],
        "top5_last": history[-1]["top5"],
        "top1_best": top1s[best],
        "top5_best": history[best]["top5"],
        "best_epoch": best + 1,
        "epochs": len(top1s),
        "history": history,
        "per_class": [75.0, 100.0],
        "confusion": [list(r) for r in confusion],
    }


def pretrain_run(tmp_path):
    run = tmp_path / "pretrain"
    run.mkdir()
    rows = [{"kind": "step", "epoch": 0, "step": s, "loss": 5.0 - 0.1 * s, "lr": 0.1} for s in range(1, 9)]
    rows.append({"kind": "epoch", "epoch": 1, "step": 8, "loss": 4.6})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run, rows


def test_report_files_and_figures_match_the_runs_numbers(tmp_path):
    pre, rows = pretrain_run(tmp_path)
    entry = linear_entry([40.0, 62.5, 50.0], [80.0, 90.0, 100.0])
    features = torch.randn(30, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(30) % 2
    run = tmp_path / "run"
    write_report(
        run,
        {"linear": entry},
        config={"run": {"name": "x"}},
        data={"path": "d.h5", "sha256": "ab" * 32, "protocol": "xsub", "num_classes": 2},
        encoder={"path": str(pre / "encoder.pt"), "checksum": "cd" * 32, "pretrain_run": str(pre)},
        stream="joint",
        embedding=(features, labels),
    )
    report = json.loads((run / "report.json").read_text())
    assert report["protocols"]["linear"] == entry
    assert report["data"]["sha256"] == "ab" * 32 and report["config"] == {"run": {"name": "x"}}
    assert set(report["figures"]) == {"accuracy_linear", "confusion_linear", "embedding", "pretrain_loss"}
    for file in report["figures"].values():
        assert (run / file).stat().st_size > 1000

    curve = read_png_data(run / "accuracy_linear.png")
    assert curve["top1"] == [r["top1"] for r in entry["history"]]
    assert curve["top5"] == [r["top5"] for r in entry["history"]]
    assert curve["loss"] == [r["loss"] for r in entry["history"]]
    assert read_png_data(run / "confusion_linear.png")["counts"] == entry["confusion"]
    loss = read_png_data(run / "pretrain_loss.png")["series"]["loss"]
    assert loss["x"] == [r["step"] for r in rows if r["kind"] == "step"]
    assert loss["y"] == [r["loss"] for r in rows if r["kind"] == "step"]
    emb = read_png_data(run / "embedding.png")
    coords, _ = embedding_2d(features)  # t-SNE where scikit-learn is installed, else PCA
    np.testing.assert_allclose(emb["x"], coords[:, 0].numpy(), rtol=1e-5, atol=1e-6)
    assert emb["label"] == labels.tolist()

    md = (run / "report.md").read_text()
    assert "| last epoch | 50.00 | 100.00 | 3 |" in md
    assert "| best epoch (chosen on the test set) | 62.50 | 90.00 | 2 |" in md
    assert "| 0 | 75.00 |" in md and "![embedding](embedding.png)" in md


def test_an_evaluation_report_draws_the_objectives_diagnostics_of_its_pretraining_run(tmp_path):
    pre, rows = pretrain_run(tmp_path)
    epochs = [
        {"kind": "epoch", "epoch": e, "step": 8 * e, "loss": 4.6, "eq_error": 0.8 - 0.1 * e, "pair_agreement": 0.2 * e}
        for e in (1, 2, 3)
    ]
    with open(pre / "metrics.jsonl", "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in epochs))
    run = tmp_path / "run"
    write_report(
        run,
        {"linear": linear_entry([40.0, 50.0])},
        config={},
        data={"num_classes": 2},
        encoder={"pretrain_run": str(pre)},
        stream="joint",
    )
    report = json.loads((run / "report.json").read_text())
    assert report["figures"]["pretrain_diagnostics"] == "pretrain_diagnostics.png"
    drawn = read_png_data(run / "pretrain_diagnostics.png")["series"]
    assert drawn["eq_error"]["value"] == pytest.approx([0.7, 0.6, 0.5])
    assert drawn["pair_agreement"]["value"] == pytest.approx([20.0, 40.0, 60.0])
    assert drawn["eq_error"]["epoch"] == [1, 2, 3]


def test_a_pretraining_run_without_diagnostics_draws_no_diagnostics_figure(tmp_path):
    pre, _ = pretrain_run(tmp_path)
    run = tmp_path / "run"
    write_report(
        run,
        {"linear": linear_entry([40.0, 50.0])},
        config={},
        data={"num_classes": 2},
        encoder={"pretrain_run": str(pre)},
        stream="joint",
    )
    assert "pretrain_diagnostics" not in json.loads((run / "report.json").read_text())["figures"]
    assert not (run / "pretrain_diagnostics.png").exists()


def test_accuracy_figure_draws_the_history(tmp_path):
    from hiclr.report.plots import plot_accuracy_curves

    history = linear_entry([10.0, 30.0, 20.0, 40.0])["history"]
    fig = plot_accuracy_curves(history, tmp_path / "acc.png")
    top1_line = fig.axes[0].lines[0]
    assert list(top1_line.get_xdata()) == [1, 2, 3, 4]
    assert list(top1_line.get_ydata()) == [10.0, 30.0, 20.0, 40.0]


def test_pca_map_spreads_the_largest_variance_along_the_first_axis():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=g) * torch.tensor([0.1, 5.0, 0.2, 2.0, 0.1])
    coords = pca_2d(x)
    assert coords.shape == (200, 2)
    var = coords.var(dim=0)
    assert var[0] > var[1] > 1.0
    torch.testing.assert_close(coords[:, 0].abs(), (x[:, 1] - x[:, 1].mean()).abs(), atol=0.3, rtol=0.1)


def test_later_protocols_are_added_to_the_same_report(tmp_path):
    write_report(tmp_path, {"linear": linear_entry([50.0])}, plots=False)
    write_report(tmp_path, {"knn": {"top1": 42.0, "top5": 90.0, "k": 20, "temperature": 0.1}}, plots=False)
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["protocols"]) == {"linear", "knn"}
    assert "k = 20, temperature = 0.1" in (tmp_path / "report.md").read_text()


def test_plots_are_skipped_with_a_note_without_matplotlib(tmp_path, monkeypatch):
    from hiclr.report import plots

    monkeypatch.setattr(plots, "plots_available", lambda: False)
    report = write_report(tmp_path, {"linear": linear_entry([50.0, 60.0])})
    assert report["figures"] == {} and not list(tmp_path.glob("*.png"))
    assert any("matplotlib is not installed" in n for n in report["notes"])
    assert "matplotlib is not installed" in (tmp_path / "report.md").read_text()


def test_hiclr_report_assembles_runs_into_one_table(tmp_path):
    a, b = tmp_path / "joint", tmp_path / "bone"
    write_report(
        a,
        {"linear": linear_entry([70.0, 72.0]), "knn": {"top1": 60.0, "top5": 80.0, "k": 20, "temperature": 0.1}},
        stream="joint",
        plots=False,
    )
    write_report(b, {"linear": linear_entry([65.0, 64.0])}, stream="bone", plots=False)
    table = assemble([a, b]).splitlines()
    assert table[0] == "| run | stream | protocol | linear top-1 | kNN (k=20) top-1 |"
    assert table[2] == f"| {a} | joint |  | 72.00 (best 72.00) | 60.00 |"
    assert table[3] == f"| {b} | bone |  | 64.00 (best 65.00) | - |"


def test_per_class_tables_list_only_present_classes_by_name_worst_first_when_many():
    from hiclr.report.writer import per_class_table

    names = [f"action {k}" for k in range(60)]
    few = per_class_table({"linear": [50.0, None, 70.0] + [None] * 57}, names)
    assert few[0].startswith("## Per-class accuracy (%): 2 classes present")
    assert few[-2:] == ["| 0 | action 0 | 50.00 |", "| 2 | action 2 | 70.00 |"]
    many = per_class_table({"linear": [float(k) for k in range(30, 0, -1)] + [None] * 30}, names)
    assert "30 classes present" in many[0] and "worst first" in many[0]
    assert many[4] == "| 29 | action 29 | 1.00 |" and len(many) == 4 + 30


def test_the_embedding_palette_has_a_distinct_colour_per_class():
    pytest.importorskip("matplotlib")
    from hiclr.report.plots import class_colours

    for count in (10, 18, 60, 120):
        colours = {tuple(round(v, 4) for v in c) for c in class_colours(count)}
        assert len(colours) == count
