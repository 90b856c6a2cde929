"""`hiclr report RUN...`: several runs' reports as one Markdown table (rows = runs, columns = protocols)."""

from __future__ import annotations

import os
from pathlib import Path

from hiclr.common.errors import UserError
from hiclr.report.writer import read_report

COLUMN_ORDER = ("linear", "knn", "semi", "finetune", "ensemble")


def protocol_cells(report: dict) -> dict[str, str]:
    """{column: cell text} of one report's top-1 figures (last epoch first, best in brackets)."""
    cells = {}
    for name, e in report.get("protocols", {}).items():
        if "top1_last" in e:
            cells[f"{name} top-1"] = f"{e['top1_last']:.2f} (best {e['top1_best']:.2f})"
        elif "fractions" in e:
            for key, f in e["fractions"].items():
                cells[f"semi {key} top-1"] = f"{f['top1_last_mean']:.2f} ± {f['top1_last_std']:.2f}"
        elif "top1" in e:
            label = f"kNN (k={e['k']}) top-1" if name == "knn" else f"{name} top-1"
            cells[label] = f"{e['top1']:.2f}"
        paper = e.get("paper") or {}
        best = paper.get("best_epoch") or (paper if "top1" in paper else None)
        if best:
            cells[f"{name} top-1 (paper, selected on the test set)"] = f"{best['top1']:.2f}"
    return cells


def assemble(runs: list[str | os.PathLike]) -> str:
    """One Markdown table of the runs' results; a run without report.json is an error."""
    rows, columns = [], []
    for run in runs:
        path = Path(run)
        path = path.parent if path.name == "report.json" else path
        if not (path / "report.json").exists():
            raise UserError(
                f"{path} has no report.json; pass run folders written by hiclr linear, knn, semi, finetune or ensemble."
            )
        report = read_report(path)
        cells = protocol_cells(report)
        for col in cells:
            if col not in columns:
                columns.append(col)
        data = report.get("data") or {}
        rows.append((str(path), report.get("stream") or "", data.get("protocol") or "", cells))
    order = {p: i for i, p in enumerate(COLUMN_ORDER)}
    columns.sort(key=lambda c: (order.get(c.split()[0].lower(), len(order)), c))
    lines = ["| run | stream | protocol | " + " | ".join(columns) + " |", "|---|---|---|" + "---|" * len(columns)]
    for run, stream, protocol, cells in rows:
        lines.append(f"| {run} | {stream} | {protocol} | " + " | ".join(cells.get(c, "-") for c in columns) + " |")
    note = (
        "\nlinear / finetune: top-1 (%) at the last epoch, best epoch (chosen on the test set) in "
        "brackets; semi: mean ± std over seeds of the last epoch; a 'paper' column: the release's "
        "procedure (`--report paper`), selected on the test set."
    )
    return "\n".join(lines) + "\n" + note + "\n"
