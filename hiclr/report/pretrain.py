"""The curve of a pre-training run: monitor kNN top-1 and loss per epoch, from its metrics.jsonl.

    result = write_pretrain_curve("demo_out/pretrain")
    result["table"]      # Markdown: epoch | loss | monitor kNN top-1 | embed_std | embed_std * sqrt(dim)
    result["png"]        # <run>/pretrain_curve.png, or None without matplotlib (skipped quietly)
    result["markdown"]   # <run>/pretrain_curve.md: the table (and the figure when drawn)
"""

from __future__ import annotations

import os
from pathlib import Path

from data_prep.atomic import atomic_write_text
from data_prep.errors import UserError
from hiclr.report import plots as P

COLUMNS = (("epoch", "epoch", "{:d}"), ("loss", "loss", "{:.4f}"),
           ("monitor_knn_top1", "monitor kNN top-1 (%)", "{:.2f}"), ("embed_std", "embed_std", "{:.4f}"),
           ("embed_std_ratio", "embed_std * sqrt(dim)", "{:.3f}"))


def epoch_records(run_dir: str | os.PathLike) -> list[dict]:
    """The epoch rows of `run_dir/metrics.jsonl` (or of that file itself), in order."""
    path = Path(run_dir)
    path = path / "metrics.jsonl" if path.is_dir() else path
    if not path.exists():
        raise UserError(f"{path} does not exist; pass a pre-training run folder (hiclr pretrain writes it)")
    return [r for r in P.read_metrics(path) if r.get("kind") == "epoch"]


def pretrain_table(epochs: list[dict]) -> str:
    """Markdown table of the epoch records ("-" where a record lacks a value, e.g. an epoch the
    monitor skipped)."""
    lines = ["| " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    for row in epochs:
        cells = []
        for key, _, fmt in COLUMNS:
            value = row.get(key)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            cells.append(fmt.format(int(value) if fmt == "{:d}" else value) if ok else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_pretrain_curve(run_dir: str | os.PathLike, *, plots: bool = True) -> dict:
    """Write `pretrain_curve.png` (when matplotlib is installed) and `pretrain_curve.md` into the
    run folder; return {"png": path or None, "markdown": path, "table": the Markdown table}."""
    run_dir = Path(run_dir)
    epochs = epoch_records(run_dir)
    table = pretrain_table(epochs)
    png = None
    if plots and epochs and P.plots_available():
        png = run_dir / "pretrain_curve.png"
        P.plot_pretrain_curve(epochs, png, title=f"pre-training {run_dir.name}")
    text = f"# Pre-training curve: {run_dir.name}\n\n{table}"
    if png is not None:
        text += f"\n![pretrain_curve]({png.name})\n"
    markdown = atomic_write_text(run_dir / "pretrain_curve.md", text)
    return {"png": png, "markdown": Path(markdown), "table": table}
