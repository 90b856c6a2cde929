"""PNG figures of a run: pre-training loss and diagnostics, accuracy curves, confusion matrix, 2-D
feature map (t-SNE when scikit-learn is installed, PCA otherwise), label efficiency.

matplotlib is an optional extra: `plots_available()` says whether it is installed, and every plot
function raises `PlotsUnavailable` without it (the report writer then skips plots with a note).
Figures are drawn on a bare `matplotlib.figure.Figure` (Agg canvas, no pyplot state). Each PNG
also carries the plotted numbers as JSON in its `hiclr-data` text chunk, so that a figure can be
checked against the run's metrics.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from hiclr.common.atomic import atomic_write

PNG_DATA_KEY = "hiclr-data"


class PlotsUnavailable(RuntimeError):
    """matplotlib is not installed (pip install 'hiclr-toolkit[plots]')."""


def plots_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(width: float = 6.0, height: float = 4.0):
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise PlotsUnavailable("matplotlib is not installed; pip install 'hiclr-toolkit[plots]'") from err
    return Figure(figsize=(width, height), dpi=100)


def _save(fig, path: str | os.PathLike, data: dict) -> Path:
    return atomic_write(path, lambda f: fig.savefig(f, format="png", metadata={PNG_DATA_KEY: json.dumps(data)}))


def read_png_data(path: str | os.PathLike) -> dict:
    """The numbers a figure of this module plotted (its `hiclr-data` PNG text chunk)."""
    from PIL import Image

    with Image.open(path) as image:
        return json.loads(image.text[PNG_DATA_KEY])


# ---------------------------------------------------------------- pre-training loss


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """Rows of a metrics.jsonl file (malformed lines, e.g. a line cut by a crash, are skipped)."""
    rows = []
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


def loss_series(rows: list[dict]) -> dict[str, dict[str, list[float]]]:
    """Loss-like series of a metrics log: {name: {"x": steps or epochs, "y": values}}.

    Every numeric key containing "loss" becomes a series; x is the row's `step` when present,
    else its `epoch`, else its position. With the engine's log (rows of kind "step" and "epoch"),
    the per-step rows are used, or the per-epoch rows when no step was logged.
    """
    kinds = {row.get("kind") for row in rows}
    if "step" in kinds:
        rows = [row for row in rows if row.get("kind") == "step"]
    elif "epoch" in kinds:
        rows = [row for row in rows if row.get("kind") == "epoch"]
    series: dict[str, dict[str, list[float]]] = {}
    for i, row in enumerate(rows):
        x = row.get("step", row.get("epoch", i))
        for key, value in row.items():
            if "loss" in key and isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
                s = series.setdefault(key, {"x": [], "y": []})
                s["x"].append(float(x))
                s["y"].append(float(value))
    return series


def plot_loss_curve(metrics_path: str | os.PathLike, out: str | os.PathLike, title: str = "pre-training"):
    """Pre-training loss(es) against step; returns the Figure (None when the log has no loss)."""
    series = loss_series(read_metrics(metrics_path))
    if not series:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    for name, s in series.items():
        ax.plot(s["x"], s["y"], label=name, linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"{title} loss")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, out, {"kind": "loss", "series": series})
    return fig


def plot_pretrain_curve(epochs: list[dict], out: str | os.PathLike, title: str = "pre-training"):
    """Monitor kNN top-1 (left axis; dotted: the initial encoder's score) and the mean loss (right
    axis) per epoch of a pre-training run, from its epoch records (`kind` "epoch" rows of
    metrics.jsonl); returns the Figure."""
    x = [int(r["epoch"]) for r in epochs]
    loss = [r.get("loss") for r in epochs]
    knn = [
        (int(r["epoch"]), float(r["monitor_knn_top1"]))
        for r in epochs
        if isinstance(r.get("monitor_knn_top1"), (int, float))
    ]
    fig = _figure()
    ax = fig.add_subplot()
    data = {
        "kind": "pretrain_curve",
        "epoch": x,
        "loss": loss,
        "knn_epoch": [e for e, _ in knn],
        "knn_top1": [v for _, v in knn],
    }
    init = [
        float(r["monitor_knn_top1_init"]) for r in epochs if isinstance(r.get("monitor_knn_top1_init"), (int, float))
    ]
    if knn:
        ax.plot(data["knn_epoch"], data["knn_top1"], marker="o", color="C0", label="monitor kNN top-1")
    if init:
        data["knn_top1_init"] = init[0]
        ax.axhline(init[0], color="C0", linestyle=":", linewidth=1, label="monitor kNN top-1 at initialisation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("monitor kNN top-1 (%)")
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(
        x,
        [float("nan") if v is None else float(v) for v in loss],
        color="C2",
        linestyle="--",
        linewidth=1,
        label="loss (epoch mean)",
    )
    ax2.set_ylabel("loss")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="best")
    last = f": last kNN top-1 {knn[-1][1]:.1f}" if knn else ""
    ax.set_title(f"{title}{last}")
    fig.tight_layout()
    _save(fig, out, data)
    return fig


def plot_pretrain_diagnostics(series: dict[str, dict], out: str | os.PathLike, title: str = "pre-training"):
    """The objective's own diagnostics per epoch: one panel with the shares (agreements, kept share,
    edge precision, in %), and one panel for each other value (e.g. the equivariance error, which
    should fall). series: {key: {"title", "share": bool, "epoch": [...], "value": [...]}} as
    `hiclr.report.pretrain_curve.diagnostic_series` gives it; returns the Figure."""
    shares = {k: s for k, s in series.items() if s["share"]}
    panels = ([("shares (%)", shares)] if shares else []) + [
        (s["title"], {k: s}) for k, s in series.items() if not s["share"]
    ]
    fig = _figure(5.0 * len(panels) + 1.0, 4.0)
    for i, (ylabel, members) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for s in members.values():
            ax.plot(s["epoch"], s["value"], marker="o", markersize=3, linewidth=1, label=s["title"])
        if len(members) == 1:
            (s,) = members.values()
            ax.set_title(f"{s['title']}: {s['value'][0]:.3g} -> {s['value'][-1]:.3g}", fontsize=9)
        else:
            ax.legend(fontsize=7, loc="best")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title}: objective diagnostics", fontsize=10)
    fig.tight_layout()
    _save(fig, out, {"kind": "pretrain_diagnostics", "series": series})
    return fig


# ---------------------------------------------------------------- accuracy curves


def plot_accuracy_curves(history: list[dict], out: str | os.PathLike, title: str = "linear probe"):
    """Test top-1 / top-5 per epoch (and training loss on a second axis); marks the best epoch."""
    epochs = [int(r["epoch"]) for r in history]
    top1 = [float(r["top1"]) for r in history]
    top5 = [float(r["top5"]) for r in history]
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(epochs, top1, label="test top-1", color="C0")
    ax.plot(epochs, top5, label="test top-5", color="C1", alpha=0.7)
    best = int(np.argmax(top1))
    ax.scatter(
        [epochs[best]], [top1[best]], color="C3", zorder=3, label=f"best epoch {epochs[best]} ({top1[best]:.1f})"
    )
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{title}: last epoch top-1 {top1[-1]:.1f}")
    ax.grid(alpha=0.3)
    data = {"kind": "accuracy", "epoch": epochs, "top1": top1, "top5": top5}
    if all("loss" in r for r in history):
        loss = [float(r["loss"]) for r in history]
        ax2 = ax.twinx()
        ax2.plot(epochs, loss, label="train loss", color="C2", linestyle="--", linewidth=1)
        ax2.set_ylabel("train loss")
        data["loss"] = loss
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    _save(fig, out, data)
    return fig


# ---------------------------------------------------------------- confusion matrix


def plot_confusion(
    confusion, out: str | os.PathLike, title: str = "confusion (last epoch)", class_names: list[str] | None = None
):
    """Row-normalised confusion matrix (rows: true class, columns: predicted class).

    Only the classes that occur (as truth or as prediction) are drawn, labelled by their names,
    shortened; the tick labels shrink with the number of classes and stop above 120.
    """
    from data_prep.classes import short_name

    cm = np.asarray(confusion, dtype=np.float64)
    used = np.flatnonzero((cm.sum(axis=0) + cm.sum(axis=1)) > 0)
    if used.size == 0:
        used = np.arange(cm.shape[0])
    shown = cm[np.ix_(used, used)]
    rows = shown.sum(axis=1, keepdims=True)
    norm = np.divide(shown, rows, out=np.zeros_like(shown), where=rows > 0)
    n = shown.shape[0]
    size = min(4 + 0.12 * n, 16)
    fig = _figure(size + 1.5, size + 1)
    ax = fig.add_subplot()
    image = ax.imshow(norm, vmin=0, vmax=1, cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    if n <= 120:
        labels = [short_name(class_names[c], 22) if class_names and c < len(class_names) else str(c) for c in used]
        fontsize = 6 if n <= 30 else 4 if n <= 60 else 3
        ax.set_xticks(range(n), labels, rotation=90, fontsize=fontsize)
        ax.set_yticks(range(n), labels, fontsize=fontsize)
    fig.tight_layout()
    _save(fig, out, {"kind": "confusion", "counts": cm.astype(int).tolist(), "classes_shown": used.tolist()})
    return fig


def class_colours(count: int) -> list:
    """`count` distinct colours: tab10 / tab20 when they suffice, else evenly spaced hues in three shades."""
    import matplotlib

    if count <= 10:
        return [matplotlib.colormaps["tab10"](i) for i in range(count)]
    if count <= 20:
        return [matplotlib.colormaps["tab20"](i) for i in range(count)]
    hsv = matplotlib.colormaps["hsv"]
    shades = (1.0, 0.65, 0.4)
    return [tuple(np.array(hsv((i // 3) / -(-count // 3))[:3]) * shades[i % 3]) + (1.0,) for i in range(count)]


# ---------------------------------------------------------------- 2-D map of features


def pca_2d(features: torch.Tensor) -> torch.Tensor:
    """First two principal components of (N, D) features (centred; exact SVD, signs fixed)."""
    x = features.double()
    x = x - x.mean(dim=0, keepdim=True)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    comps = vh[:2]  # (2, D)
    signs = torch.sign(comps[torch.arange(comps.shape[0]), comps.abs().argmax(dim=1)])
    coords = x @ (comps * signs.view(-1, 1)).T
    if coords.shape[1] < 2:
        coords = torch.cat([coords, torch.zeros(coords.shape[0], 2 - coords.shape[1], dtype=coords.dtype)], 1)
    return coords.float()


def tsne_available() -> bool:
    """scikit-learn is installed (the optional `tsne` extra): the embedding figure is a t-SNE."""
    try:
        from sklearn.manifold import TSNE  # noqa: F401
    except ImportError:
        return False
    return True


def embedding_2d(features: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, str]:
    """(N, 2) map of (N, D) features and the method's name: t-SNE (scikit-learn, PCA-initialised,
    perplexity 30 or less for few points, seeded) when scikit-learn is installed, else PCA."""
    if not tsne_available() or features.shape[0] < 5:
        return pca_2d(features), "PCA"
    from sklearn.manifold import TSNE

    x = features.double().numpy()
    perplexity = float(min(30.0, (x.shape[0] - 1) / 3))
    coords = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    return torch.from_numpy(np.ascontiguousarray(coords)).float(), "t-SNE"


def plot_embedding(
    features: torch.Tensor,
    labels: torch.Tensor,
    out: str | os.PathLike,
    title: str = "test features",
    max_points: int = 5000,
    seed: int = 0,
    class_names: list[str] | None = None,
):
    """2-D map of the features (`embedding_2d`: t-SNE with scikit-learn, PCA without), one distinct
    colour per class; the title and the axes name the method.

    Up to 20 classes get a legend with their names; more are labelled at their cluster centres.
    """
    from data_prep.classes import short_name

    features, labels = torch.as_tensor(features).float(), torch.as_tensor(labels).long()
    if features.shape[0] > max_points:
        keep = torch.randperm(features.shape[0], generator=torch.Generator().manual_seed(seed))[:max_points]
        features, labels = features[keep.sort().values], labels[keep.sort().values]
    coords, method = embedding_2d(features, seed)
    fig = _figure(6.5, 5.5)
    ax = fig.add_subplot()
    classes = sorted(set(labels.tolist()))
    colours = class_colours(len(classes))
    name = lambda c: short_name(class_names[c], 22) if class_names and c < len(class_names) else str(c)  # noqa: E731
    for colour, c in zip(colours, classes):
        keep = labels == c
        ax.scatter(coords[keep, 0].numpy(), coords[keep, 1].numpy(), s=6, color=colour, label=name(c))
        if len(classes) > 20:
            centre = coords[keep].mean(dim=0)
            ax.annotate(
                name(c), (float(centre[0]), float(centre[1])), fontsize=5, ha="center", color=colour, fontweight="bold"
            )
    if len(classes) <= 20:
        ax.legend(title="class", fontsize=6, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    axis = "PC" if method == "PCA" else method
    ax.set_xlabel(f"{axis} 1")
    ax.set_ylabel(f"{axis} 2")
    note = "" if method != "PCA" else "; pip install 'hiclr-toolkit[tsne]' for t-SNE"
    ax.set_title(f"{title} ({method}{note})", fontsize=10 if note else None)
    fig.tight_layout()
    _save(
        fig,
        out,
        {
            "kind": "embedding",
            "method": method,
            "x": coords[:, 0].tolist(),
            "y": coords[:, 1].tolist(),
            "label": labels.tolist(),
        },
    )
    return fig


# ---------------------------------------------------------------- label efficiency


def plot_label_efficiency(
    rows: list[dict],
    out: str | os.PathLike,
    metric: str = "top1_last",
    title: str = "label efficiency",
    spread_over: str = "subset seed",
):
    """Top-1 against the labelled fraction: the pre-trained encoder fine-tuned and the same
    architecture from scratch, each mean over the subset seeds with a +- std band and every seed's
    value as a dot (`rows`: `hiclr.eval.label_efficiency.comparison_rows`). Returns the path."""
    fig = _figure(5.5, 4.0)
    ax = fig.add_subplot()
    x = np.array([r["fraction"] * 100 for r in rows])
    for side, label, colour in (
        ("pretrained", "fine-tuned from the pre-trained encoder", "tab:blue"),
        ("scratch", "from scratch (random init)", "tab:orange"),
    ):
        mean = np.array([r[f"{side}_mean"] for r in rows])
        std = np.array([r[f"{side}_std"] for r in rows])
        ax.plot(x, mean, "o-", color=colour, label=label)
        ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.2, linewidth=0)
        for xi, r in zip(x, rows):
            ax.scatter([xi] * len(r[side]), r[side], s=8, color=colour, alpha=0.6)
    if len(x) > 1 and x.max() / max(x.min(), 1e-9) >= 8:
        ax.set_xscale("log")
    ax.set_xticks(x, [f"{v:g} %" for v in x])
    ax.set_xlabel("labelled fraction of the training set")
    ax.set_ylabel(f"test top-1 (%, {'last' if metric.endswith('_last') else 'best'} epoch)")
    seeds = len(rows[0]["pretrained"]) if rows else 0  # values per fraction (runs x subset seeds when pooled)
    ax.set_title(f"{title} (mean ± std over {seeds} {spread_over}{'s' if seeds != 1 else ''})", fontsize=9)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(
        fig,
        out,
        {
            "kind": "label_efficiency",
            "metric": metric,
            "fraction": x.tolist(),
            **{f"{s}_{k}": [r[f"{s}_{k}"] for r in rows] for s in ("pretrained", "scratch") for k in ("mean", "std")},
        },
    )
