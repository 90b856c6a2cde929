"""Label efficiency: the semi-supervised protocol from a pre-trained encoder and from scratch, side by side.

`hiclr semi --baseline random` (and the demo) run the protocol twice on the very same
class-balanced subsets (the same fractions and subset seeds, hence the same saved index files):
once from the encoder (`<out>/pretrained/`), once from the same architecture at random
initialisation (`<out>/scratch/`). The run folder then holds `report.md` (per fraction: mean +-
std over the subset seeds of both, and their difference), `label_efficiency.json` (the same
numbers, every seed's value) and `label_efficiency.png` (top-1 against the labelled fraction, both curves with their spread).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hiclr.common.atomic import atomic_write_text

SUMMARY = "label_efficiency"


def run_label_efficiency(
    cfg: dict,
    encoder,
    *,
    out=None,
    fractions=None,
    seeds=None,
    resume: bool = False,
    plots: bool = True,
    metric: str = "top1_last",
) -> dict:
    """Fine-tune `encoder` and the architecture from scratch on the same subsets; write the joint report.

    cfg: a resolved semi config. Returns {"pretrained": semi entry, "scratch": semi entry,
    "rows": table rows, "run_dir": ..., "figure": path or None}.
    """
    import copy

    from hiclr.eval.baselines import Baseline
    from hiclr.eval.semi import run_semi

    run_dir = Path(out) if out else Path(cfg["run"]["out"]) / str(cfg["run"]["name"])
    entries = {}
    for side, enc in (("pretrained", encoder), ("scratch", Baseline("random"))):
        entries[side] = run_semi(
            copy.deepcopy(cfg), enc, out=run_dir / side, fractions=fractions, seeds=seeds, resume=resume, plots=plots
        )
    _check_same_subsets(run_dir)
    rows = comparison_rows(entries["pretrained"], entries["scratch"], metric)
    figure = None
    if plots:
        from hiclr.report.plots import PlotsUnavailable, plot_label_efficiency

        try:
            figure = plot_label_efficiency(rows, run_dir / f"{SUMMARY}.png", metric=metric)
        except PlotsUnavailable:
            figure = None
    result = {
        "metric": metric,
        "rows": rows,
        "pretrained_run": str(run_dir / "pretrained"),
        "scratch_run": str(run_dir / "scratch"),
        "figure": figure.name if figure else None,
    }
    atomic_write_text(run_dir / f"{SUMMARY}.json", json.dumps(result, indent=1))
    atomic_write_text(run_dir / "report.md", render_markdown(result))
    return {**entries, "rows": rows, "run_dir": str(run_dir), "figure": figure}


def comparison_rows(pretrained: dict, scratch: dict, metric: str = "top1_last") -> list[dict]:
    """One row per labelled fraction, in increasing order: both sides' per-seed values, mean and std,
    and the difference of the means (pre-trained minus scratch)."""
    from hiclr.eval.semi import mean_std

    rows = []
    for key, pre in pretrained["fractions"].items():
        scr = scratch["fractions"][key]
        row = {
            "fraction": float(pre["fraction"]),
            "key": key,
            "seeds": [r["seed"] for r in pre["runs"]],
            "size": [r["size"] for r in pre["runs"]],
        }
        for side, entry in (("pretrained", pre), ("scratch", scr)):
            values = [float(r[metric]) for r in entry["runs"]]
            row[side] = values
            row[f"{side}_mean"], row[f"{side}_std"] = mean_std(values)
        row["difference"] = row["pretrained_mean"] - row["scratch_mean"]
        rows.append(row)
    return sorted(rows, key=lambda r: r["fraction"])


def _check_same_subsets(run_dir: Path) -> None:
    """Both sides must have trained on identical index files (a guard on the protocol's determinism)."""
    for index in sorted((run_dir / "pretrained").glob("semi_*.npy")):
        other = run_dir / "scratch" / index.name
        if not other.is_file() or other.read_bytes() != index.read_bytes():
            raise RuntimeError(f"{index.name}: the scratch run trained on another subset than the pre-trained one")


def _pm(mean: float, std: float, n: int) -> str:
    return f"{mean:.2f} ± {std:.2f}" if n > 1 else f"{mean:.2f}"


def comparison_table(rows: list[dict]) -> str:
    """Markdown table: labelled fraction, clips, pre-trained, scratch, difference."""
    lines = [
        "| labelled fraction | clips | from the pre-trained encoder | from scratch | difference |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        n = len(r["seeds"])
        size = str(r["size"][0]) if len(set(r["size"])) == 1 else "/".join(map(str, r["size"]))
        lines.append(
            f"| {r['fraction'] * 100:g} % | {size} | {_pm(r['pretrained_mean'], r['pretrained_std'], n)} | "
            f"{_pm(r['scratch_mean'], r['scratch_std'], n)} | {r['difference']:+.2f} |"
        )
    return "\n".join(lines) + "\n"


def render_markdown(result: dict) -> str:
    rows = result["rows"]
    seeds = rows[0]["seeds"] if rows else []
    what = "last epoch" if result["metric"].endswith("_last") else "best epoch"
    picture = f"\n![label efficiency]({result['figure']})\n" if result.get("figure") else ""
    return f"""# Label efficiency

Top-1 (%, {what}) of the semi-supervised protocol on the same class-balanced subsets of the training
labels (subset seeds {", ".join(map(str, seeds))}; mean ± std over them): fine-tuned from the
pre-trained encoder, and the same architecture trained from scratch.

{comparison_table(rows)}{picture}
Runs: `{result["pretrained_run"]}/report.md`, `{result["scratch_run"]}/report.md`.
"""


def pool_runs(runs: list[str | os.PathLike]) -> list[dict]:
    """The rows of several `--baseline random` runs (e.g. one per data seed, each with its own
    pre-training) pooled per fraction: every run's values, their mean, std and difference; `seeds`
    lists the runs' positions. For a figure over data seeds: `plot_label_efficiency(pool_runs(...),
    out, spread_over="data seed")`."""
    from hiclr.eval.semi import mean_std

    pooled: dict[float, dict] = {}
    for k, run in enumerate(runs):
        for row in read_label_efficiency(run)["rows"]:
            d = pooled.setdefault(
                row["fraction"],
                {
                    "fraction": row["fraction"],
                    "key": row["key"],
                    "seeds": [],
                    "size": [],
                    "pretrained": [],
                    "scratch": [],
                },
            )
            d["seeds"].append(k)
            d["size"] += row["size"]
            d["pretrained"] += row["pretrained"]
            d["scratch"] += row["scratch"]
    rows = []
    for d in pooled.values():
        for side in ("pretrained", "scratch"):
            d[f"{side}_mean"], d[f"{side}_std"] = mean_std(d[side])
        d["difference"] = d["pretrained_mean"] - d["scratch_mean"]
        rows.append(d)
    return sorted(rows, key=lambda r: r["fraction"])


def read_label_efficiency(run: str | os.PathLike) -> dict:
    """The `label_efficiency.json` of a run folder."""
    return json.loads((Path(run) / f"{SUMMARY}.json").read_text())
