"""Label efficiency: the pre-trained encoder and the same architecture from scratch on the same subsets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hiclr.eval.label_efficiency import comparison_rows, comparison_table, read_label_efficiency


def _semi_entry(values: dict[float, list[float]]) -> dict:
    return {
        "fractions": {
            f"{int(f * 100)}pct": {
                "fraction": f,
                "runs": [{"seed": s, "size": 10, "top1_last": v} for s, v in enumerate(vals)],
            }
            for f, vals in values.items()
        }
    }


def test_rows_give_each_sides_mean_and_std_over_seeds_and_their_difference_by_increasing_fraction():
    pre = _semi_entry({0.3: [60.0, 64.0], 0.1: [30.0, 40.0]})
    scr = _semi_entry({0.3: [30.0, 34.0], 0.1: [20.0, 20.0]})
    rows = comparison_rows(pre, scr)
    assert [r["fraction"] for r in rows] == [0.1, 0.3]
    assert rows[0]["pretrained_mean"] == 35.0 and rows[0]["pretrained_std"] == pytest.approx(np.std([30, 40], ddof=1))
    assert rows[0]["scratch_std"] == 0.0 and rows[0]["difference"] == 15.0
    assert rows[1]["difference"] == 30.0 and rows[1]["pretrained"] == [60.0, 64.0]
    table = comparison_table(rows).splitlines()
    assert table[2] == "| 10 % | 10 | 35.00 ± 7.07 | 20.00 ± 0.00 | +15.00 |"


def test_the_figure_plots_both_curves_with_their_spread(tmp_path):
    from hiclr.report.plots import plot_label_efficiency, read_png_data

    rows = comparison_rows(
        _semi_entry({0.1: [30.0, 40.0], 0.3: [60.0, 64.0]}), _semi_entry({0.1: [20.0, 22.0], 0.3: [30.0, 34.0]})
    )
    path = plot_label_efficiency(rows, tmp_path / "le.png")
    data = read_png_data(path)
    assert data["fraction"] == [10.0, 30.0]
    assert data["pretrained_mean"] == [35.0, 62.0] and data["scratch_mean"] == [21.0, 32.0]
    assert data["scratch_std"] == pytest.approx([np.std([20, 22], ddof=1), np.std([30, 34], ddof=1)])


def test_semi_with_a_random_baseline_trains_both_on_the_same_subsets_into_one_report(tmp_path, capsys):
    from hiclr.cli import main
    from tests.hiclr.commands.test_evaluate import encoder_file
    from tests.hiclr.eval.test_linear import write_tiny_store

    data = write_tiny_store(tmp_path / "tiny.h5", n=48)
    encoder = encoder_file(tmp_path)
    sets = [
        "model.width=4",
        "engine.device=cpu",
        "optim.epochs=1",
        "optim.batch_size=4",
        "optim.milestones=[]",
        "optim.warmup_epochs=0",
        "engine.progress=false",
        "engine.precision=fp32",
        "run.save_every=0",
    ]
    argv = [
        "semi",
        "--encoder",
        str(encoder),
        "--data",
        data,
        "--protocol",
        "xsub",
        "--fractions",
        "0.25",
        "0.5",
        "--seeds",
        "0",
        "1",
        "--baseline",
        "random",
        "--out",
        str(tmp_path / "run"),
    ]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 0
    assert "pre-trained vs from scratch" in capsys.readouterr().out
    run = tmp_path / "run"
    for stem in ("semi_25pct_seed0", "semi_25pct_seed1", "semi_50pct_seed0", "semi_50pct_seed1"):
        a, b = run / "pretrained" / f"{stem}.npy", run / "scratch" / f"{stem}.npy"
        assert np.array_equal(np.load(a), np.load(b))
    result = read_label_efficiency(run)
    assert [r["fraction"] for r in result["rows"]] == [0.25, 0.5] and result["figure"] == "label_efficiency.png"
    scratch = json.loads((run / "scratch" / "report.json").read_text())
    assert scratch["encoder"]["baseline"] == "random"
    for row in result["rows"]:
        key = row["key"]
        assert row["scratch"] == [r["top1_last"] for r in scratch["protocols"]["semi"]["fractions"][key]["runs"]]
    md = (run / "report.md").read_text()
    assert "| 25 % |" in md and "| 50 % |" in md and "![label efficiency](label_efficiency.png)" in md
    assert (run / "label_efficiency.png").stat().st_size > 1000


def test_runs_pooled_over_data_seeds_give_every_runs_values_per_fraction(tmp_path):
    from hiclr.eval.label_efficiency import pool_runs

    for k, (p, s) in enumerate([(40.0, 20.0), (50.0, 24.0)]):
        rows = comparison_rows(_semi_entry({0.1: [p]}), _semi_entry({0.1: [s]}))
        (tmp_path / str(k)).mkdir()
        (tmp_path / str(k) / "label_efficiency.json").write_text(json.dumps({"rows": rows}))
    (row,) = pool_runs([tmp_path / "0", tmp_path / "1"])
    assert row["pretrained"] == [40.0, 50.0] and row["scratch"] == [20.0, 24.0] and row["seeds"] == [0, 1]
    assert row["difference"] == 23.0 and row["scratch_std"] == pytest.approx(np.std([20, 24], ddof=1))


def test_a_pooled_figure_counts_every_value_it_spreads_over(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.axes import Axes

    from hiclr.eval.label_efficiency import pool_runs
    from hiclr.report.plots import plot_label_efficiency

    for k in range(2):  # two runs, each with two subset seeds
        rows = comparison_rows(_semi_entry({0.1: [40.0 + k, 42.0]}), _semi_entry({0.1: [20.0, 22.0 + k]}))
        (tmp_path / str(k)).mkdir()
        (tmp_path / str(k) / "label_efficiency.json").write_text(json.dumps({"rows": rows}))
    titles = []
    original = Axes.set_title
    monkeypatch.setattr(Axes, "set_title", lambda self, text, **kw: titles.append(text) or original(self, text, **kw))
    plot_label_efficiency(pool_runs([tmp_path / "0", tmp_path / "1"]), tmp_path / "le.png", spread_over="run")
    assert "over 4 runs" in titles[-1]
