"""Three-stream ensemble: a weighted sum of the streams' test logits.

The weights are fixed before the test set is looked at ((joint, bone, motion) = (0.6, 0.6, 0.4)
by default, the reference's), never searched on it. The runs must cover the same test samples in
the same order; this is checked on names and labels.

`--report paper` adds the release's procedure (its ensemble_ntu_cs.py), labelled "selected on the
test set": each stream's logits of its best epoch on the test set (logits_best.npz, written by the
protocols' `--report paper`), summed with the better on the test set of two weight sets, the
average (0.5 each) and (0.6, 0.6, 0.4); the first is kept unless the second is strictly better.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from hiclr.common.errors import UserError
from hiclr.config import SCHEMA
from hiclr.eval.common import (
    LOGITS_BEST_FILE,
    LOGITS_FILE,
    SELECTED_ON_TEST,
    check_report,
    classification_summary,
    load_logits,
)

STREAM_WEIGHTS = SCHEMA["eval"]["ensemble"].default  # {"joint": 0.6, "bone": 0.6, "motion": 0.4}
DEFAULT_WEIGHTS = tuple(STREAM_WEIGHTS.values())  # (joint, bone, motion)
#: The two weight sets the release's ensemble script tries, in its order.
RELEASE_WEIGHT_SETS = ({"joint": 0.5, "bone": 0.5, "motion": 0.5}, {"joint": 0.6, "bone": 0.6, "motion": 0.4})


def check_aligned(runs: list[dict], sources: list[str]) -> None:
    """Refuse logits that do not cover the same samples, in the same order, with the same labels."""
    first = runs[0]
    for run, source in zip(runs[1:], sources[1:]):
        if run["logits"].shape != first["logits"].shape:
            raise UserError(
                f"{source} has logits of shape {tuple(run['logits'].shape)} but {sources[0]} "
                f"has {tuple(first['logits'].shape)}; ensemble runs of the same dataset, "
                f"protocol and test split."
            )
        if list(run["names"]) != list(first["names"]):
            same = set(run["names"]) == set(first["names"])
            what = "the same samples in another order" if same else "other samples"
            raise UserError(
                f"{source} covers {what} than {sources[0]}; evaluate every stream on the same data file and protocol."
            )
        if not np.array_equal(run["labels"], first["labels"]):
            raise UserError(
                f"{source} has other labels than {sources[0]} for the same samples; "
                f"evaluate every stream on the same data file."
            )


def ensemble_logits(logits: list, weights) -> torch.Tensor:
    """sum_i weights[i] * logits[i], as float32 (N, classes)."""
    if len(weights) != len(logits):
        raise UserError(f"{len(weights)} weights given for {len(logits)} runs; give one weight per run.")
    stacked = torch.stack([torch.as_tensor(np.asarray(l), dtype=torch.float32) for l in logits])
    w = torch.as_tensor([float(x) for x in weights], dtype=torch.float32).view(-1, 1, 1)
    return (w * stacked).sum(dim=0)


def ensemble_runs(
    runs: list[str], weights=DEFAULT_WEIGHTS, names: list[str] | None = None, file: str = LOGITS_FILE
) -> dict:
    """Evaluate each stream and their weighted sum from the runs' `logits.npz` (or `file`).

    Returns {"weights", "streams": {name: {top1, top5, run}}, "ensemble": {top1, top5, per_class,
    confusion}, "logits": Tensor}.
    """
    loaded = [load_logits(r, file) for r in runs]
    check_aligned(loaded, [str(r) for r in runs])
    names = names or _stream_names(runs)
    labels = torch.as_tensor(loaded[0]["labels"]).long()
    num_classes = loaded[0]["logits"].shape[1]
    streams = {}
    for name, run, data in zip(names, runs, loaded):
        summary = classification_summary(torch.as_tensor(data["logits"]), labels, num_classes)
        streams[name] = {"run": str(run), "top1": summary["top1"], "top5": summary["top5"]}
    fused = ensemble_logits([d["logits"] for d in loaded], weights)
    summary = classification_summary(fused, labels, num_classes)
    return {
        "weights": [float(w) for w in weights],
        "streams": streams,
        "ensemble": summary,
        "logits": fused,
        "labels": labels,
        "names": loaded[0]["names"],
    }


def stream_weights(runs: list[str], table: dict | None = None) -> list[float]:
    """Each run's weight from its recorded stream (joint 0.6, bone 0.6, motion 0.4 by default)."""
    table = table or STREAM_WEIGHTS
    streams = _stream_names(runs)
    missing = [f"{r} ({s})" for r, s in zip(runs, streams) if s not in table]
    if missing:
        raise UserError(
            f"no default weight for {', '.join(missing)}: the run's report names no stream "
            f"among {', '.join(table)}; give --weights, one per run."
        )
    if len(set(streams)) != len(streams):
        raise UserError(f"the runs repeat a stream ({', '.join(streams)}); give --weights, one per run.")
    return [float(table[s]) for s in streams]


def _stream_names(runs) -> list[str]:
    """The stream recorded in each run's report.json, else the run folder's name; made unique."""
    names = []
    for run in runs:
        folder = Path(run) if Path(run).is_dir() else Path(run).parent
        name = folder.name
        report = folder / "report.json"
        if report.exists():
            try:
                name = json.loads(report.read_text()).get("stream") or name
            except (ValueError, OSError):
                pass
        names.append(name if name not in names else f"{name}_{len(names)}")
    return names


def release_search(runs: list[str]) -> dict:
    """The release's ensemble (`--report paper`): the streams' best-epoch logits, the better of
    `RELEASE_WEIGHT_SETS` on the test set (strictly better replaces); every figure chosen on the
    test set."""
    runs = [str(Path(r) if Path(r).is_dir() else Path(r).parent) for r in runs]
    streams = _stream_names(runs)
    if sorted(streams) != sorted(STREAM_WEIGHTS):
        return {
            "note": f"not run: the release's search weighs the three streams joint, bone and motion; "
            f"these runs are {', '.join(streams)}"
        }
    tried, best = [], None
    for table in RELEASE_WEIGHT_SETS:
        weights = stream_weights(runs, table)
        result = ensemble_runs(runs, weights, file=LOGITS_BEST_FILE)
        tried.append({"weights": weights, "top1": result["ensemble"]["top1"], "top5": result["ensemble"]["top5"]})
        if best is None or result["ensemble"]["top1"] > best["ensemble"]["top1"]:
            best = result
    return {
        "selection": SELECTED_ON_TEST,
        "logits": LOGITS_BEST_FILE,
        "rule": "each stream's best epoch on the test set, then the better of two weight sets on the "
        "test set, as the release's ensemble script reports it",
        "tried": tried,
        "weights": best["weights"],
        "top1": best["ensemble"]["top1"],
        "top5": best["ensemble"]["top5"],
        "streams": {k: {"top1": v["top1"], "top5": v["top5"]} for k, v in best["streams"].items()},
    }


def run_ensemble(runs: list[str], weights=None, *, out=None, plots: bool = True, report: str = "standard") -> dict:
    """`hiclr ensemble`: evaluate the runs' streams and their weighted sum; write the report.

    out: the report folder (default: `<first run>_ensemble` beside the first run). report `paper`:
    the entry also holds `paper`, the release's search (`release_search`), labelled as chosen on
    the test set.
    """
    check_report(report)
    from hiclr.eval.common import save_logits
    from hiclr.report import read_report, write_report

    if len(runs) < 2:
        raise UserError(f"{len(runs)} run given; the ensemble needs two or more runs (e.g. joint, bone, motion).")
    weights = list(stream_weights(runs) if weights is None else weights)
    result = ensemble_runs(runs, weights)
    first = Path(runs[0]) if Path(runs[0]).is_dir() else Path(runs[0]).parent
    out_dir = Path(out) if out else first.parent / f"{first.name}_ensemble"
    out_dir.mkdir(parents=True, exist_ok=True)
    save_logits(out_dir, result["logits"], result["labels"], result["names"])
    summary = result["ensemble"]
    entry = {
        "weights": result["weights"],
        "streams": result["streams"],
        "top1": summary["top1"],
        "top5": summary["top5"],
        "per_class": summary["per_class"],
        "confusion": summary["confusion"],
        "runs": [str(r) for r in runs],
    }
    from hiclr.provenance import ensemble_provenance

    entry["provenance"] = ensemble_provenance(runs)
    if report == "paper":
        entry["paper"] = release_search(runs)
    data = None
    if (first / "report.json").exists():
        data = read_report(first).get("data")
    write_report(out_dir, {"ensemble": entry}, data=data, stream="+".join(result["streams"]), plots=plots)
    entry["run_dir"] = str(out_dir)
    return entry
