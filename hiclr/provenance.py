"""Where a report's figures come from: the store, the encoder checkpoint, the config, the versions.

Every `report.json` carries a `provenance` record: each protocol's entry (linear, knn, semi,
finetune; the ensemble's names the runs it sums) and the report.json that `hiclr pretrain`
writes into its run folder. `provenance` gathers it in one place:

    {"store": {"path", "sha256"}, "encoder": {"path", "sha256"} | {"baseline": "raw"} | None,
     "config": resolved config, "store_verified": data.verify, "toolkit_version": "0.1.0",
     "torch_version": "2.x", "python_version": "3.x"}

The sha256 are of the files' bytes, computed once per process per file identity
(`hiclr.data.store_sha256`), so a sweep of many runs on one store hashes it once.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import os
import platform
from pathlib import Path

import torch

from hiclr.common.atomic import atomic_write_text


def _jsonable(value):
    """Plain JSON types from a config or metrics (tensors, numpy scalars, paths)."""
    return json.loads(json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def provenance(cfg: dict | None, *, store=None, encoder=None, baseline: str | None = None) -> dict:
    """The provenance record of a run of the resolved config `cfg` that read `store` and the encoder
    checkpoint `encoder` (a path; None for a baseline, named by `baseline`, or an in-memory module)."""
    from hiclr import __version__
    from hiclr.data import store_sha256, verify_wanted

    if encoder is not None and Path(encoder).is_file():
        encoder_entry = {"path": str(encoder), "sha256": store_sha256(encoder)}
    else:
        encoder_entry = {"baseline": baseline} if baseline else None
    return {
        "store": {"path": str(store), "sha256": store_sha256(store)} if store is not None else None,
        "encoder": encoder_entry,
        "config": _jsonable(copy.deepcopy(cfg)) if cfg is not None else None,
        "store_verified": verify_wanted(cfg) if cfg is not None else None,
        "toolkit_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
    }


def ensemble_provenance(runs) -> dict:
    """The ensemble's record: the versions, and per summed run its logits file's sha256 and the
    provenance its report.json holds (the store, the encoder, the config of that run)."""
    from hiclr import __version__
    from hiclr.data import file_sha256

    entries = []
    for run in runs:
        folder = Path(run) if Path(run).is_dir() else Path(run).parent
        logits = folder / "logits.npz"
        recorded = {}
        if (folder / "report.json").exists():
            try:
                protocols = json.loads((folder / "report.json").read_text()).get("protocols", {})
            except (OSError, ValueError):
                protocols = {}
            recorded = {
                name: e["provenance"] for name, e in protocols.items() if isinstance(e, dict) and e.get("provenance")
            }
        entries.append(
            {
                "run": str(folder),
                "logits_sha256": file_sha256(logits) if logits.exists() else None,
                "provenance": recorded,
            }
        )
    return {
        "runs": entries,
        "toolkit_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
    }


def write_pretrain_report(run_dir: str | os.PathLike, cfg: dict, result, *, train_samples: int) -> Path:
    """`run_dir/report.json` of a finished pre-training run: what it read (store and split), what
    it wrote (encoder.pt with its sha256), the last epoch's metrics and its provenance."""
    run_dir = Path(run_dir)
    data = cfg["data"]
    encoder = result.outputs.get("encoder")
    prov = provenance(cfg, store=data["path"], encoder=encoder)
    report = {
        "format": "hiclr-report/1",
        "kind": "pretrain",
        "run": run_dir.name,
        "updated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": prov["config"],
        "data": {
            "path": str(data["path"]),
            "sha256": prov["store"]["sha256"],
            "protocol": data["protocol"],
            "part": "train",
            "view": data["view"],
            "train_samples": int(train_samples),
        },
        "encoder": {**(prov["encoder"] or {}), "stream": data["stream"]},
        "stream": data["stream"],
        "pretrain": {"epochs": int(result.epoch), "steps": int(result.step), "last_epoch": _jsonable(result.metrics)},
        "provenance": prov,
        "protocols": {},
    }
    return Path(atomic_write_text(run_dir / "report.json", json.dumps(report, indent=1)))
