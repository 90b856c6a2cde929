"""The curve of a pre-training run: monitor kNN top-1 and loss per epoch, from its metrics.jsonl,
and the objective's own diagnostics per epoch when it logs any.

    result = write_pretrain_curve("demo_out/pretrain")
    result["table"]      # Markdown: epoch | loss | monitor kNN top-1 | embed_std | embed_std * sqrt(dim)
                         #   (+ one column per diagnostic some epoch logged, e.g. eq_error, pair_agreement)
    result["png"]        # <run>/pretrain_curve.png, or None without matplotlib (skipped quietly)
    result["diagnostics_png"]  # <run>/pretrain_diagnostics.png: the diagnostics per epoch, or None
                         #   (no diagnostic logged, or no matplotlib)
    result["markdown"]   # <run>/pretrain_curve.md: the table (and the figures when drawn)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from hiclr.common.atomic import atomic_write_text
from hiclr.common.errors import UserError
from hiclr.report import plots as P


class Column(NamedTuple):
    """One per-epoch column: the epoch record's key, its title, its format, and the factor the
    logged value is shown at (100: a share in [0, 1] shown in %)."""

    key: str
    title: str
    fmt: str
    scale: float = 1.0


COLUMNS = (
    Column("epoch", "epoch", "{:d}"),
    Column("loss", "loss", "{:.4f}"),
    Column("monitor_knn_top1", "monitor kNN top-1 (%)", "{:.2f}"),
    Column("embed_std", "embed_std", "{:.4f}"),
    Column("embed_std_ratio", "embed_std * sqrt(dim)", "{:.3f}"),
)

# What an objective logs about itself (a column, and a curve, only when some epoch has the key):
# equivariant's equivariance error (should fall), hough_dense's agreement of the voted pairs with the
# exact pairing, of the confidence-kept pairs, the kept share, the flip agreement and the mean vote
# confidence, transitive's label precision of the mined edges.
DIAGNOSTICS = (
    Column("eq_error", "eq_error", "{:.4f}"),
    Column("pair_agreement", "pair agreement (%)", "{:.2f}", 100.0),
    Column("kept_agreement", "kept agreement (%)", "{:.2f}", 100.0),
    Column("dense_kept", "dense kept (%)", "{:.2f}", 100.0),
    Column("flip_agreement", "flip agreement (%)", "{:.2f}", 100.0),
    Column("vote_confidence", "vote confidence (%)", "{:.2f}", 100.0),
    Column("edge_precision", "edge precision (%)", "{:.2f}", 100.0),
)


def epoch_records(run_dir: str | os.PathLike) -> list[dict]:
    """The epoch rows of `run_dir/metrics.jsonl` (or of that file itself), in order."""
    path = Path(run_dir)
    path = path / "metrics.jsonl" if path.is_dir() else path
    if not path.exists():
        raise UserError(f"{path} does not exist; pass a pre-training run folder (hiclr pretrain writes it)")
    return [r for r in P.read_metrics(path) if r.get("kind") == "epoch"]


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def logged_diagnostics(epochs: list[dict]) -> tuple[Column, ...]:
    """The diagnostic columns some epoch record has a number for, in `DIAGNOSTICS` order."""
    return tuple(c for c in DIAGNOSTICS if any(_number(r.get(c.key)) for r in epochs))


def diagnostic_series(epochs: list[dict]) -> dict[str, dict]:
    """{key: {"title", "epoch": [...], "value": [...] at the column's scale}} of the logged
    diagnostics, each over the epochs that have it."""
    series = {}
    for column in logged_diagnostics(epochs):
        rows = [r for r in epochs if _number(r.get(column.key))]
        series[column.key] = {
            "title": column.title,
            "share": column.scale == 100.0,
            "epoch": [int(r["epoch"]) for r in rows],
            "value": [float(r[column.key]) * column.scale for r in rows],
        }
    return series


def pretrain_table(epochs: list[dict]) -> str:
    """Markdown table of the epoch records ("-" where a record lacks a value, e.g. an epoch the
    monitor skipped); the objective's diagnostics get columns only when some epoch logged them."""
    columns = COLUMNS + logged_diagnostics(epochs)
    lines = ["| " + " | ".join(c.title for c in columns) + " |", "|" + "---|" * len(columns)]
    for row in epochs:
        cells = []
        for column in columns:
            value = row.get(column.key)
            if not _number(value):
                cells.append("-")
            elif column.fmt == "{:d}":
                cells.append(column.fmt.format(int(value)))
            else:
                cells.append(column.fmt.format(value * column.scale))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_pretrain_curve(run_dir: str | os.PathLike, *, plots: bool = True) -> dict:
    """Write `pretrain_curve.png` and, when the objective logged diagnostics,
    `pretrain_diagnostics.png` (both only when matplotlib is installed), and `pretrain_curve.md`
    into the run folder; return {"png", "diagnostics_png": path or None, "markdown": path,
    "table": the Markdown table}."""
    run_dir = Path(run_dir)
    epochs = epoch_records(run_dir)
    table = pretrain_table(epochs)
    png = diagnostics_png = None
    if plots and epochs and P.plots_available():
        png = run_dir / "pretrain_curve.png"
        P.plot_pretrain_curve(epochs, png, title=f"pre-training {run_dir.name}")
        series = diagnostic_series(epochs)
        if series:
            diagnostics_png = run_dir / "pretrain_diagnostics.png"
            P.plot_pretrain_diagnostics(series, diagnostics_png, title=f"pre-training {run_dir.name}")
    text = f"# Pre-training curve: {run_dir.name}\n\n{table}"
    init = next((r["monitor_knn_top1_init"] for r in epochs if _number(r.get("monitor_knn_top1_init"))), None)
    if init is not None:
        text += (
            f"\nThe encoder as built (before the first step, BatchNorm re-estimated on the monitor's "
            f"clips) scores {init:.2f} % on the monitor: the level pre-training has to rise above.\n"
        )
    if png is not None:
        text += f"\n![pretrain_curve]({png.name})\n"
    if diagnostics_png is not None:
        text += f"\n![pretrain_diagnostics]({diagnostics_png.name})\n"
    markdown = atomic_write_text(run_dir / "pretrain_curve.md", text)
    return {"png": png, "diagnostics_png": diagnostics_png, "markdown": Path(markdown), "table": table}
