"""Shared pieces of the evaluation protocols: metrics, checksums, feature cache, run folders.

Every protocol writes one run folder holding `config.yaml` (resolved), `logits.npz` (test logits,
labels and sample names, for the stream ensemble), `report.json` and `report.md`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hiclr.common.errors import UserError
from hiclr.engine.checkpoint import atomic_save

LOGITS_FILE = "logits.npz"
LOGITS_BEST_FILE = "logits_best.npz"  # `--report paper`: the logits of the epoch chosen on the test set

#: `--report`: `standard` (the last epoch, fixed ensemble weights) or `paper` (also the figures
#: the release reports, each chosen on the test set and labelled so).
REPORTS = ("standard", "paper")
SELECTED_ON_TEST = "selected on the test set"

#: How often the release tests (its configs' eval_interval, in epochs; also after the last epoch):
#: the paper's best epoch is the best of these (ties to the later one, as its `>=` keeps).
RELEASE_EVAL_INTERVAL = {"linear": 5, "finetune": 5, "semi": 3, "semi_transformer": 5}


# ---------------------------------------------------------------- metrics


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[int, int]:
    """Number of samples whose label is among the `k` highest scores, for each k in `ks`."""
    kmax = min(max(ks), scores.shape[1])
    top = scores.topk(kmax, dim=1).indices  # (N, kmax)
    hit = top.eq(labels.view(-1, 1))
    return {k: int(hit[:, : min(k, kmax)].any(dim=1).sum()) for k in ks}


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[str, float]:
    """Top-k accuracy in percent: {"top1": ..., "top5": ...}."""
    n = max(int(labels.numel()), 1)
    return {f"top{k}": 100.0 * c / n for k, c in topk_correct(scores, labels, ks).items()}


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(classes, classes) int64 counts, rows = true class, columns = predicted class."""
    flat = labels.long().cpu() * num_classes + pred.long().cpu()
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def per_class_accuracy(confusion: torch.Tensor) -> list[float | None]:
    """Recall per class in percent (None for a class absent from the test set)."""
    total = confusion.sum(dim=1)
    correct = confusion.diagonal()
    return [None if int(t) == 0 else 100.0 * int(c) / int(t) for c, t in zip(correct, total)]


def classification_summary(scores: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict:
    """Top-1/top-5, per-class accuracy and confusion matrix of a score matrix (N, classes)."""
    scores, labels = scores.float().cpu(), labels.long().cpu()
    cm = confusion_matrix(scores.argmax(dim=1), labels, num_classes)
    return {**topk_accuracy(scores, labels), "per_class": per_class_accuracy(cm), "confusion": cm.tolist()}


def check_report(report: str) -> str:
    if report not in REPORTS:
        raise UserError(f"--report {report!r} is not one of {', '.join(REPORTS)}")
    return report


def release_eval_interval(protocol: str, model_name: str = "stgcn") -> int:
    """The release's test interval for a protocol (its transformer semi config tests every 5th)."""
    if protocol == "semi" and model_name == "dsta":
        return RELEASE_EVAL_INTERVAL["semi_transformer"]
    return RELEASE_EVAL_INTERVAL[protocol]


class ReleaseBest:
    """The release's best epoch on the test set: of the epochs it tests (every `interval`-th, 1-based,
    and the last), the highest top-1, a tie going to the later epoch; with that epoch's logits."""

    def __init__(self, interval: int, last_epoch: int):
        self.interval, self.last_epoch = int(interval), int(last_epoch)
        self.best: dict = {}
        self.logits = None

    def tested(self, epoch: int) -> bool:
        return epoch % self.interval == 0 or epoch == self.last_epoch

    def update(self, epoch: int, acc: dict, logits) -> None:
        """`epoch` 1-based, `acc` {"top1", "top5"}."""
        if self.tested(epoch) and (not self.best or acc["top1"] >= self.best["top1"]):
            self.best = {"epoch": epoch, "top1": acc["top1"], "top5": acc["top5"]}
            self.logits = logits

    def entry(self) -> dict:
        """The report's `paper` figures of this run."""
        return {
            "selection": SELECTED_ON_TEST,
            "rule": f"best top-1 of the epochs tested every "
            f"{self.interval} (and the last), ties to the later epoch, as the release reports it",
            "epoch": self.best.get("epoch"),
            "top1": self.best.get("top1"),
            "top5": self.best.get("top5"),
        }

    def state_dict(self) -> dict:
        return {"best": self.best, "logits": self.logits}

    def load_state_dict(self, state: dict | None) -> None:
        state = state or {}
        self.best, self.logits = dict(state.get("best") or {}), state.get("logits")


# ---------------------------------------------------------------- checksums


def state_checksum(module_or_state) -> str:
    """Hex sha256 over a model's parameters and buffers (names, dtypes, shapes and bytes)."""
    state = module_or_state.state_dict() if hasattr(module_or_state, "state_dict") else module_or_state
    digest = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


# ---------------------------------------------------------------- devices and seeds


def resolve_device(name: str | None) -> torch.device:
    """`auto` (or None) picks CUDA when available, else CPU (the engine's rule)."""
    from hiclr.engine import resolve_device as engine_device

    return engine_device(name or "auto")


# ---------------------------------------------------------------- feature cache


def cached_features(run_dir: str | os.PathLike, key: dict, compute) -> torch.Tensor:
    """Features stored under `run_dir/features/` by a key (encoder and data checksums, part ...).

    `compute()` returns the (N, D) tensor when no cache file matches; the file is written
    atomically so that an interrupted run never leaves a truncated cache behind.
    """
    blob = json.dumps(key, sort_keys=True).encode()
    name = hashlib.sha256(blob).hexdigest()[:16]
    folder = Path(run_dir) / "features"
    path = folder / f"{key.get('part', 'features')}_{name}.pt"
    if path.exists():
        stored = torch.load(path, map_location="cpu", weights_only=True)
        if stored.get("key") == json.loads(blob):
            return stored["features"]
    features = compute().float().cpu()
    folder.mkdir(parents=True, exist_ok=True)
    atomic_save({"key": json.loads(blob), "features": features}, path)
    return features


# ---------------------------------------------------------------- logits for the ensemble


def save_logits(
    run_dir: str | os.PathLike,
    logits: torch.Tensor,
    labels: torch.Tensor,
    names: list[str],
    file: str = LOGITS_FILE,
    **extra,
) -> Path:
    """Write `logits.npz` (test logits (N, classes), labels (N,), names (N,)) into the run folder
    (`file`: another name, e.g. `LOGITS_BEST_FILE`)."""
    path = Path(run_dir) / file
    tmp = path.with_name(path.stem + ".partial.npz")
    np.savez(
        tmp,
        logits=logits.detach().float().cpu().numpy(),
        labels=labels.detach().long().cpu().numpy(),
        names=np.asarray(list(names), dtype=str),
        **extra,
    )
    os.replace(tmp, path)
    return path


def load_logits(run: str | os.PathLike, file: str = LOGITS_FILE) -> dict:
    """Read `logits.npz` (or `file`) from a run folder (or the file itself): logits, labels, names."""
    path = Path(run)
    if path.is_dir():
        path = path / file
    if not path.exists():
        how = " with --report paper" if file == LOGITS_BEST_FILE else ""
        raise UserError(
            f"{path} does not exist; run an evaluation protocol (hiclr linear / finetune) "
            f"for this run first{how}, it writes {file}."
        )
    with np.load(path, allow_pickle=False) as z:
        for key in ("logits", "labels", "names"):
            if key not in z:
                raise UserError(f"{path} has no '{key}' array; re-run the protocol that wrote it.")
        return {"logits": z["logits"], "labels": z["labels"], "names": [str(n) for n in z["names"]], "path": str(path)}


# ---------------------------------------------------------------- what every protocol run needs


def freeze_modules(encoder: torch.nn.Module, names) -> list[str]:
    """Fix the parameters of the named sub-modules of `encoder` (`eval.freeze`: dotted names as in
    its state_dict, e.g. "proj", the release's `fix_conv1`; "graph_layers.0"); returns the names of
    the frozen parameters. BatchNorm statistics inside them still follow the data in training mode,
    as in the release. An unknown name is a `UserError` listing the encoder's top-level modules."""
    frozen = []
    for name in names or []:
        try:
            module = encoder.get_submodule(name)
        except AttributeError:
            known = ", ".join(n for n, _ in encoder.named_children()) or "none"
            raise UserError(
                f"eval.freeze names {name!r}, which {type(encoder).__name__} does not have; "
                f"its modules are {known} (dotted names reach inside them)"
            ) from None
        for pname, p in module.named_parameters():
            p.requires_grad_(False)
            frozen.append(f"{name}.{pname}")
    return frozen


@dataclass
class EvalData:
    """Train and test parts of a protocol, with what the report says about the data file."""

    train: object  # hiclr.data.Split
    test: object
    num_classes: int
    info: dict  # path, sha256, dataset, protocol, view, num_classes, sizes


def data_sha256(path: str | os.PathLike) -> str:
    """sha256 of the data file, computed once per process per file identity (`store_sha256`)."""
    from hiclr.data import store_sha256

    return store_sha256(path)


def load_eval_data(cfg: dict) -> EvalData:
    """The `data.path` file's `data.protocol` train and test parts (`data.view`)."""
    from hiclr.data import dataset_info, load_split, verify_wanted

    data = cfg["data"]
    path, protocol, view = data["path"], data["protocol"], data["view"]
    info = dataset_info(path, hash_file=False)
    train = load_split(path, protocol, "train", view, verify=verify_wanted(cfg))
    test = load_split(path, protocol, "test", view, verify=verify_wanted(cfg))
    num_classes = int(info.get("num_classes") or int(max(train.labels.max(), test.labels.max())) + 1)
    return EvalData(
        train,
        test,
        num_classes,
        {
            "path": str(path),
            "sha256": data_sha256(path),
            "dataset": info.get("dataset"),
            "protocol": protocol,
            "view": view,
            "num_classes": num_classes,
            "train_samples": len(train),
            "test_samples": len(test),
            "train_classes_present": int(train.labels.unique().numel()),
            "test_classes_present": int(test.labels.unique().numel()),
            "class_names": info.get("class_names"),
        },
    )


def prepare_encoder(encoder, cfg: dict, device: torch.device, train=None) -> tuple[torch.nn.Module, dict]:
    """(frozen-ready encoder on `device` in eval mode, its report entry).

    `encoder`: a checkpoint path (our encoder.pt / last.pt / epoch_XXX.pt or the reference
    release's), an `nn.Module`, or a `hiclr.eval.baselines.Baseline` (`raw`, `random`), built here
    by `build_baseline` with `train`, the protocol's training split (the frozen protocols pass it:
    `random` then has its BatchNorm statistics re-estimated on it). A checkpoint that records
    another stream than `data.stream` is refused.
    """
    from hiclr.eval.baselines import Baseline, build_baseline

    stream = cfg["data"]["stream"]
    if isinstance(encoder, Baseline):
        module, description = build_baseline(encoder.name, cfg, train, device)
        meta = {
            "path": None,
            "baseline": encoder.name,
            "description": description,
            "encoder_cfg": dict(cfg["model"]) if encoder.name == "random" else None,
        }
    elif isinstance(encoder, torch.nn.Module):
        module, meta = encoder.to(device).eval(), {"path": None, "encoder_cfg": None}
    else:
        from hiclr.models import load_encoder

        path = Path(encoder)
        module, enc_cfg, ckpt_stream = load_encoder(path, device)
        if ckpt_stream and ckpt_stream != stream:
            raise UserError(
                f"{path} was pre-trained on the {ckpt_stream} stream but data.stream is "
                f"{stream}; use --set data.stream={ckpt_stream} or the {ckpt_stream} config."
            )
        run = path.parent
        meta = {
            "path": str(path),
            "encoder_cfg": enc_cfg,
            "pretrain_run": str(run) if (run / "metrics.jsonl").exists() else None,
        }
    meta.update(
        {
            "checksum": state_checksum(module),
            "stream": stream,
            "feature_dim": int(getattr(module, "feature_dim", 0)) or None,
        }
    )
    return module, meta


def frozen_features(
    run_dir: Path,
    encoder: torch.nn.Module,
    encoder_meta: dict,
    data: EvalData,
    cfg: dict,
    device: torch.device,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(train (N, D), test (N_test, D)) features of the frozen encoder, cached in `run_dir/features`.

    The cache key holds the encoder's weight checksum and the data file's sha256 (plus protocol,
    view and stream), so a changed encoder or data file never reuses stale features.
    """
    from hiclr.features import extract_features

    ev = cfg["eval"]
    out = []
    for part, split in (("train", data.train), ("test", data.test)):
        key = {
            "part": part,
            "encoder": encoder_meta["checksum"],
            "data": data.info["sha256"],
            "protocol": data.info["protocol"],
            "view": data.info["view"],
            "stream": encoder_meta["stream"],
            "encoder_class": type(encoder).__name__,
        }
        compute = lambda s=split: extract_features(  # noqa: E731
            encoder,
            s.x,
            batch_size=int(ev["feature_batch_size"]),
            device=device,
            stream=encoder_meta["stream"],
            progress=progress,
        )
        if ev["cache_features"]:
            out.append(cached_features(run_dir, key, compute))
        else:
            out.append(compute().float())
    return out[0], out[1]


def make_run_dir(cfg: dict, out: str | os.PathLike | None, protocol: str) -> Path:
    """`out`, else `run.out/run.name`; created, with the resolved config saved as
    `config_<protocol>.yaml` (several protocols may share a run folder and its feature cache)."""
    from hiclr.config import save_config
    from hiclr.data import verify_store_of

    verify_store_of(cfg)  # a damaged store is refused before the folder is made
    run_dir = Path(out) if out else Path(cfg["run"]["out"]) / str(cfg["run"]["name"])
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / f"config_{protocol}.yaml")
    return run_dir


@dataclass
class FrozenRun:
    """What a frozen-encoder protocol (linear, kNN) works on: device, run folder, data, encoder."""

    device: torch.device
    run_dir: Path
    data: EvalData
    model: torch.nn.Module
    meta: dict  # the encoder's report entry (`prepare_encoder`)


def start_frozen_run(cfg: dict, encoder, out, protocol: str) -> FrozenRun:
    """Device (`engine.device`), run folder, the protocol's data, and the encoder prepared on the
    training split (a `random` baseline re-estimates its BatchNorm statistics there)."""
    device = resolve_device(cfg["engine"]["device"])
    run_dir = make_run_dir(cfg, out, protocol)
    data = load_eval_data(cfg)
    model, meta = prepare_encoder(encoder, cfg, device, data.train)
    return FrozenRun(device, run_dir, data, model, meta)


def finish_run(
    run_dir: Path,
    protocol: str,
    entry: dict,
    cfg: dict,
    data: EvalData,
    meta: dict,
    *,
    plots: bool = True,
    embedding: tuple | None = None,
) -> dict:
    """Writes the protocol's report (report.json, report.md, figures) into its run folder and
    returns the entry with its `run_dir` and its `provenance` (`hiclr.provenance`)."""
    from hiclr.provenance import provenance
    from hiclr.report import write_report

    entry["provenance"] = provenance(
        cfg, store=data.info["path"], encoder=meta.get("path"), baseline=meta.get("baseline")
    )
    write_report(
        run_dir,
        {protocol: entry},
        config=cfg,
        data=data.info,
        encoder=encoder_report(meta),
        stream=meta["stream"],
        embedding=embedding if plots else None,
        plots=plots,
    )
    entry["run_dir"] = str(run_dir)
    return entry


def encoder_report(meta: dict) -> dict:
    """The report's `encoder` entry; `description` names a baseline (e.g. "raw input (frame50,
    joint)"), whose `path` is None."""
    return {
        k: meta.get(k)
        for k in ("path", "description", "baseline", "checksum", "stream", "feature_dim", "pretrain_run", "encoder_cfg")
    }
