"""Per-run reports: `report.json` (every number), `report.md` (tables) and PNG figures.

A run folder's `report.json`:

    {"format": "hiclr-report/1", "run": name, "updated": iso time,
     "config": resolved config, "data": {path, sha256, dataset, protocol, num_classes ...},
     "encoder": {path, description, checksum, stream, pretrain_run}, "stream": "joint",
     "protocols": {"linear": {...}, "knn": {...}, "semi": {...}, "finetune": {...}, "ensemble": {...}},
     "figures": {name: file}, "notes": [...]}

Protocol entries are those of `hiclr.eval` (e.g. `linear_summary`); a later protocol run into the
same folder adds its entry to the existing report (e.g. `hiclr linear` then `hiclr knn`).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path

import torch

from hiclr.common.atomic import atomic_write_text
from hiclr.report import plots as P
from hiclr.report.pretrain_curve import diagnostic_series, epoch_records

FORMAT = "hiclr-report/1"
PROTOCOL_TITLES = {
    "linear": "Linear probe",
    "knn": "kNN",
    "semi": "Semi-supervised",
    "finetune": "Fine-tune",
    "ensemble": "Stream ensemble",
}


def write_report(
    run_dir: str | os.PathLike,
    protocols: dict,
    *,
    config: dict | None = None,
    data: dict | None = None,
    encoder: dict | None = None,
    stream: str | None = None,
    embedding: tuple | None = None,
    class_names: list[str] | None = None,
    plots: bool = True,
    merge: bool = True,
) -> dict:
    """Write (or update) `report.json`, `report.md` and the PNGs of a run folder; return the report.

    protocols: {protocol name: entry}; embedding: (test features (N, D), labels (N,)) for the
    2-D feature map; encoder["pretrain_run"]: the pre-training run folder, whose metrics.jsonl
    gives the loss curve.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "report.json"
    if data is not None and "class_names" in data:  # the store's names travel with the data info
        data = dict(data)
        class_names = class_names or data.pop("class_names")
        data.pop("class_names", None)
    report = read_report(run_dir) if merge and path.exists() else {}
    report.update(
        {
            "format": FORMAT,
            "run": run_dir.name,
            "updated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
    )
    for key, value in (
        ("config", config),
        ("data", data),
        ("encoder", encoder),
        ("stream", stream),
        ("class_names", class_names),
    ):
        if value is not None:
            report[key] = _jsonable(value)
    if config is not None:
        report.setdefault("configs", {}).update({name: _jsonable(config) for name in protocols})
    report.setdefault("protocols", {}).update(_jsonable(protocols))
    report.setdefault("figures", {})
    notes = [n for n in report.get("notes", []) if not n.startswith("plots skipped")]
    if plots:
        if P.plots_available():
            report["figures"].update(_draw(run_dir, report, protocols, embedding))
        else:
            notes.append("plots skipped: matplotlib is not installed (pip install 'hiclr-toolkit[plots]')")
    report["notes"] = notes
    atomic_write_text(path, json.dumps(report, indent=1))
    atomic_write_text(run_dir / "report.md", render_markdown(report))
    return report


def read_report(run: str | os.PathLike) -> dict:
    path = Path(run)
    path = path / "report.json" if path.is_dir() else path
    return json.loads(path.read_text())


def _draw(run_dir: Path, report: dict, protocols: dict, embedding) -> dict:
    figures = {}
    names = report.get("class_names")
    for name, entry in protocols.items():
        title = PROTOCOL_TITLES.get(name, name)
        if entry.get("history"):
            P.plot_accuracy_curves(entry["history"], run_dir / f"accuracy_{name}.png", title)
            figures[f"accuracy_{name}"] = f"accuracy_{name}.png"
        if entry.get("confusion"):
            P.plot_confusion(
                entry["confusion"],
                run_dir / f"confusion_{name}.png",
                f"{title}: confusion ({entry.get('confusion_at', 'last epoch')})",
                names,
            )
            figures[f"confusion_{name}"] = f"confusion_{name}.png"
        for key, sub in _semi_runs(entry) if name == "semi" else []:
            if sub.get("history"):
                P.plot_accuracy_curves(sub["history"], run_dir / f"accuracy_{key}.png", f"{title} {key}")
                figures[f"accuracy_{key}"] = f"accuracy_{key}.png"
    if embedding is not None:
        features, labels = embedding
        P.plot_embedding(features, labels, run_dir / "embedding.png", class_names=names)
        figures["embedding"] = "embedding.png"
    pretrain = (report.get("encoder") or {}).get("pretrain_run")
    if pretrain and (Path(pretrain) / "metrics.jsonl").exists():
        if P.plot_loss_curve(Path(pretrain) / "metrics.jsonl", run_dir / "pretrain_loss.png") is not None:
            figures["pretrain_loss"] = "pretrain_loss.png"
        series = diagnostic_series(epoch_records(pretrain))
        if series:
            P.plot_pretrain_diagnostics(
                series, run_dir / "pretrain_diagnostics.png", title=f"pre-training {Path(pretrain).name}"
            )
            figures["pretrain_diagnostics"] = "pretrain_diagnostics.png"
    return figures


def _semi_runs(entry: dict):
    for frac_key, frac in (entry.get("fractions") or {}).items():
        for run in frac.get("runs", []):
            yield f"semi_{frac_key}_seed{run['seed']}", run


# ---------------------------------------------------------------- Markdown


def _pct(value) -> str:
    return "-" if value is None else f"{float(value):.2f}"


def render_markdown(report: dict) -> str:
    """report.md: what was evaluated, a table per protocol, per-class accuracy, the figures."""
    lines = [f"# Report: {report.get('run', '')}", ""]
    data, encoder = report.get("data") or {}, report.get("encoder") or {}
    if data:
        present = data.get("test_classes_present")
        classes = (
            f"{present} classes in the test split (the heads use {data.get('num_classes')}, "
            f"the classes of {data.get('dataset')})"
            if present is not None
            else f"{data.get('num_classes')} classes"
        )
        lines.append(
            f"- data: `{data.get('path')}` (sha256 `{str(data.get('sha256', ''))[:16]}...`), "
            f"protocol {data.get('protocol')}, {classes}, "
            f"{data.get('train_samples', '?')} train / {data.get('test_samples', '?')} test samples"
        )
    if encoder:
        what = encoder.get("description") or f"`{encoder.get('path')}`"  # a baseline, or a file
        lines.append(
            f"- encoder: {what} (weights checksum "
            f"`{str(encoder.get('checksum', ''))[:16]}...`), stream {report.get('stream')}"
        )
    lines.append(f"- updated: {report.get('updated')}")
    lines.append("")
    protocols = report.get("protocols", {})
    for name, entry in protocols.items():
        lines += [f"## {PROTOCOL_TITLES.get(name, name)}", ""]
        lines += _protocol_table(name, entry) + [""]
    per_class = {n: e["per_class"] for n, e in protocols.items() if e.get("per_class")}
    if per_class:
        lines += per_class_table(per_class, report.get("class_names")) + [""]
    if report.get("figures"):
        lines += ["## Figures", ""] + [f"![{k}]({v})" for k, v in report["figures"].items()] + [""]
    for note in report.get("notes", []):
        lines.append(f"> {note}")
    return "\n".join(lines).rstrip() + "\n"


WORST_FIRST_ABOVE = 20  # more classes than this: the table lists the worst classes first


def per_class_table(per_class: dict[str, list], names: list[str] | None) -> list[str]:
    """Per-class accuracy rows for the classes present in the test split (None everywhere: absent).

    Up to 20 classes in label order; more are sorted by the first protocol's accuracy, worst first,
    so the classes to look at come first. Names are shortened to fit a table cell.
    """
    from data_prep.classes import short_name

    cols = list(per_class)
    count = max(len(v) for v in per_class.values())
    value = lambda p, c: per_class[p][c] if c < len(per_class[p]) else None  # noqa: E731
    present = [c for c in range(count) if any(value(p, c) is not None for p in cols)]
    order = "label order"
    if len(present) > WORST_FIRST_ABOVE:
        present.sort(key=lambda c: (value(cols[0], c) is None, value(cols[0], c) or 0.0, c))
        order = f"worst first by {cols[0]}"
    lines = [
        f"## Per-class accuracy (%): {len(present)} classes present in the test split, {order}",
        "",
        "| label | class | " + " | ".join(cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for c in present:
        name = short_name(names[c], 40) if names and c < len(names) else str(c)
        lines.append(f"| {c} | {name} | " + " | ".join(_pct(value(p, c)) for p in cols) + " |")
    return lines


def _protocol_table(name: str, e: dict) -> list[str]:
    rows = _standard_table(name, e)
    return rows + paper_rows(e["paper"]) if e.get("paper") else rows


def paper_rows(paper: dict) -> list[str]:
    """The `--report paper` figures of an entry, every one labelled as selected on the test set."""
    rows = [
        "",
        ("As the paper reports it (`--report paper`): **selected on the test set**, not a held-out estimate."),
        "",
        "| figure (selected on the test set) | top-1 | top-5 | epoch / weights |",
        "|---|---|---|---|",
    ]
    best = paper.get("best_epoch")
    if best:
        rows.append(
            f"| best epoch, selected on the test set | {_pct(best.get('top1'))} | {_pct(best.get('top5'))} "
            f"| {best.get('epoch')} |"
        )
    ckpt = paper.get("checkpoint_290")
    if ckpt is not None:
        if "note" in ckpt:
            rows.append(f"| epoch-290 checkpoint, selected on the test set | - | - | {ckpt['note']} |")
        else:
            rows.append(
                f"| epoch-290 checkpoint, best epoch selected on the test set | {_pct(ckpt['best_top1'])} "
                f"| {_pct(ckpt['best_top5'])} | {ckpt['best_epoch']} |"
            )
            rows.append(
                f"| epoch-290 checkpoint, last epoch | {_pct(ckpt['top1_last'])} | {_pct(ckpt['top5_last'])} | last |"
            )
    if "top1_mean" in paper:  # semi: one fraction
        rows.append(
            f"| best epoch per seed, selected on the test set (mean ± std) | {_pct(paper['top1_mean'])} ± "
            f"{_pct(paper['top1_std'])} | {_pct(paper['top5_mean'])} ± {_pct(paper['top5_std'])} | |"
        )
    if "tried" in paper:  # ensemble
        for t in paper["tried"]:
            rows.append(
                f"| ensemble of best-epoch logits, weights tried on the test set | {_pct(t['top1'])} "
                f"| {_pct(t['top5'])} | {' '.join(f'{w:g}' for w in t['weights'])} |"
            )
        rows.append(
            f"| **ensemble, weights selected on the test set** | **{_pct(paper['top1'])}** "
            f"| {_pct(paper['top5'])} | {' '.join(f'{w:g}' for w in paper['weights'])} |"
        )
    if "note" in paper and "tried" not in paper:
        rows.append(f"| - | - | - | {paper['note']} |")
    return rows


def _standard_table(name: str, e: dict) -> list[str]:
    if "top1_last" in e:  # linear, finetune
        rows = [
            "| | top-1 | top-5 | epoch |",
            "|---|---|---|---|",
            f"| last epoch | {_pct(e['top1_last'])} | {_pct(e['top5_last'])} | {e.get('epochs')} |",
            f"| best epoch (chosen on the test set) | {_pct(e['top1_best'])} | {_pct(e['top5_best'])} "
            f"| {e.get('best_epoch')} |",
        ]
        if e.get("mode"):
            rows.append(f"\nmode: {e['mode']}")
        return rows
    if name == "knn" or "k" in e and "top1" in e:
        return [
            f"k = {e.get('k')}, temperature = {e.get('temperature')}",
            "",
            "| top-1 | top-5 |",
            "|---|---|",
            f"| {_pct(e['top1'])} | {_pct(e['top5'])} |",
        ]
    if "fractions" in e:  # semi
        rows = [
            "| labelled fraction | seeds | top-1 last (mean ± std) | top-1 best (mean ± std) | samples |",
            "|---|---|---|---|---|",
        ]
        for key, f in e["fractions"].items():
            seeds = ", ".join(str(r["seed"]) for r in f.get("runs", []))
            sizes = ", ".join(str(r.get("size", "?")) for r in f.get("runs", []))
            rows.append(
                f"| {key} | {seeds} | {_pct(f['top1_last_mean'])} ± {_pct(f['top1_last_std'])} "
                f"| {_pct(f['top1_best_mean'])} ± {_pct(f['top1_best_std'])} | {sizes} |"
            )
        for key, f in e["fractions"].items():
            if f.get("paper"):
                rows += [f"\n{key}:"] + paper_rows(f["paper"])
        return rows
    if "streams" in e:  # ensemble
        weights = e.get("weights", [])
        rows = ["| stream | weight | top-1 | top-5 |", "|---|---|---|---|"]
        for (stream, s), w in zip(e["streams"].items(), weights):
            rows.append(f"| {stream} | {w:g} | {_pct(s['top1'])} | {_pct(s['top5'])} |")
        rows.append(f"| **ensemble** | | **{_pct(e['top1'])}** | {_pct(e['top5'])} |")
        return rows
    return ["```", json.dumps({k: v for k, v in e.items() if k not in ("confusion",)}, indent=1), "```"]


# ---------------------------------------------------------------- helpers


def _jsonable(value):
    if torch.is_tensor(value):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return value.tolist()
    return value
