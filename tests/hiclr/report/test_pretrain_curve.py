"""The pre-training report (`write_pretrain_curve`) on hand-written metrics.jsonl files: the
objective's own diagnostics (eq_error, the Hough agreements, edge precision) get table columns and a
figure only when some epoch logged them; a run without them reads exactly as before.

The epoch records copy values logged by real demo-budget runs (equivariant and hough_dense with
vote pairing, data seed 0)."""

import json
from pathlib import Path

import pytest

from hiclr.report import write_pretrain_curve
from hiclr.report.pretrain_curve import DIAGNOSTICS

BASE = [
    {
        "kind": "epoch",
        "epoch": 1,
        "step": 20,
        "loss": 14.066409301757812,
        "embed_std": 0.0433276355266571,
        "embed_std_ratio": 0.49019618034362794,
    },
    {
        "kind": "epoch",
        "epoch": 2,
        "step": 40,
        "loss": 14.62604217529297,
        "embed_std": 0.03296691179275513,
        "embed_std_ratio": 0.3729780435562134,
        "monitor_knn_top1": 25.0,
    },
]
EQ_ERROR = [0.7472908020019531, 0.6844062805175781]
HOUGH = [
    {
        "pair_agreement": 0.8419487953186036,
        "flip_agreement": 0.9765625,
        "vote_confidence": 0.8997025489807129,
        "dense_kept": 0.8256253242492676,
        "kept_agreement": 0.8896347045898437,
    },
    {
        "pair_agreement": 0.8432131767272949,
        "flip_agreement": 0.96875,
        "vote_confidence": 0.8972854614257812,
        "dense_kept": 0.8142532348632813,
        "kept_agreement": 0.8898001670837402,
    },
]

# What write_pretrain_curve wrote for BASE before the diagnostics existed (plots off).
BASE_MARKDOWN = """# Pre-training curve: plain

| epoch | loss | monitor kNN top-1 (%) | embed_std | embed_std * sqrt(dim) |
|---|---|---|---|---|
| 1 | 14.0664 | - | 0.0433 | 0.490 |
| 2 | 14.6260 | 25.00 | 0.0330 | 0.373 |
"""


def run_folder(root: Path, name: str, epochs: list[dict]) -> Path:
    """A run folder whose metrics.jsonl holds a step row, then the epoch records."""
    folder = root / name
    folder.mkdir()
    rows = [{"kind": "step", "step": 1, "epoch": 1, "loss": 14.5}] + epochs
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def with_diagnostics(root: Path) -> Path:
    """Equivariant and Hough diagnostics on both epochs; kept_agreement only on epoch 2."""
    epochs = [dict(base, eq_error=eq, **hough) for base, eq, hough in zip(BASE, EQ_ERROR, HOUGH)]
    del epochs[0]["kept_agreement"]
    return run_folder(root, "diag", epochs)


def columns(table: str) -> list[str]:
    return [cell.strip() for cell in table.splitlines()[0].strip("|").split("|")]


def cells(table: str, epoch_line: int) -> dict[str, str]:
    row = [cell.strip() for cell in table.splitlines()[2 + epoch_line].strip("|").split("|")]
    return dict(zip(columns(table), row))


def test_a_run_that_logs_diagnostics_shows_them_as_columns_shares_in_percent(tmp_path):
    out = write_pretrain_curve(with_diagnostics(tmp_path), plots=False)
    assert columns(out["table"]) == [
        "epoch",
        "loss",
        "monitor kNN top-1 (%)",
        "embed_std",
        "embed_std * sqrt(dim)",
        "eq_error",
        "pair agreement (%)",
        "kept agreement (%)",
        "dense kept (%)",
        "flip agreement (%)",
        "vote confidence (%)",
    ]
    first, second = cells(out["table"], 0), cells(out["table"], 1)
    assert first["eq_error"] == "0.7473" and second["eq_error"] == "0.6844"
    assert first["pair agreement (%)"] == "84.19" and second["pair agreement (%)"] == "84.32"
    assert first["flip agreement (%)"] == "97.66" and second["flip agreement (%)"] == "96.88"
    assert first["dense kept (%)"] == "82.56" and second["vote confidence (%)"] == "89.73"
    assert first["kept agreement (%)"] == "-" and second["kept agreement (%)"] == "88.98"
    assert first["monitor kNN top-1 (%)"] == "-" and second["loss"] == "14.6260"
    assert out["diagnostics_png"] is None and out["table"] in out["markdown"].read_text()


def test_only_the_diagnostics_a_run_logged_get_columns(tmp_path):
    epochs = [dict(base, eq_error=eq) for base, eq in zip(BASE, EQ_ERROR)]
    epochs[1]["edge_precision"] = 0.625
    table = write_pretrain_curve(run_folder(tmp_path, "eq", epochs), plots=False)["table"]
    assert columns(table)[5:] == ["eq_error", "edge precision (%)"]
    assert cells(table, 0)["edge precision (%)"] == "-" and cells(table, 1)["edge precision (%)"] == "62.50"


def test_a_run_without_diagnostics_reads_exactly_as_before(tmp_path, monkeypatch):
    from hiclr.report import plots

    monkeypatch.setattr(plots, "plots_available", lambda: False)
    folder = run_folder(tmp_path, "plain", BASE)
    out = write_pretrain_curve(folder)
    assert out["markdown"].read_text() == BASE_MARKDOWN
    assert out["table"] == BASE_MARKDOWN.split("\n\n", 1)[1]
    assert out["png"] is None and out["diagnostics_png"] is None
    assert not any(c.title in out["table"] for c in DIAGNOSTICS)


def test_the_diagnostics_figure_is_drawn_with_matplotlib_and_only_when_logged(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("PIL")
    from hiclr.report.plots import read_png_data

    out = write_pretrain_curve(with_diagnostics(tmp_path))
    assert out["diagnostics_png"] == tmp_path / "diag" / "pretrain_diagnostics.png"
    figure = read_png_data(out["diagnostics_png"])
    series = figure["series"]
    assert figure["kind"] == "pretrain_diagnostics"
    assert list(series) == [
        "eq_error",
        "pair_agreement",
        "kept_agreement",
        "dense_kept",
        "flip_agreement",
        "vote_confidence",
    ]
    assert series["eq_error"]["epoch"] == [1, 2] and series["eq_error"]["value"] == EQ_ERROR
    assert not series["eq_error"]["share"] and series["pair_agreement"]["share"]
    assert series["pair_agreement"]["value"] == pytest.approx([100 * h["pair_agreement"] for h in HOUGH])
    assert series["kept_agreement"]["epoch"] == [2]
    assert "![pretrain_diagnostics](pretrain_diagnostics.png)" in out["markdown"].read_text()

    plain = write_pretrain_curve(run_folder(tmp_path, "plain", BASE))
    assert plain["png"] is not None and plain["diagnostics_png"] is None
    assert not (tmp_path / "plain" / "pretrain_diagnostics.png").exists()
    assert plain["markdown"].read_text() == BASE_MARKDOWN + "\n![pretrain_curve](pretrain_curve.png)\n"
