"""Linear probe: a new Linear(feature_dim, classes) on a frozen encoder (reference schedule).

By default the encoder runs once over the data and the linear layer trains on the cached features;
`through_encoder=True` runs the frozen encoder on every batch instead (after `eval.augment` when set).
Reported: top-1/top-5 at the last and at the best epoch (labelled as such: the best is chosen on the
test set, as the reference reports it). The cache, `eval.standardize` and the reports:
docs/internals.md, 'Linear probe'.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from hiclr.common.errors import UserError
from hiclr.eval.common import (
    SELECTED_ON_TEST,
    ReleaseBest,
    classification_summary,
    release_eval_interval,
    topk_accuracy,
)

FeatureFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class LinearSchedule:
    """SGD schedule of the probe; defaults are the reference's (PKU-MMD II: 200 epochs, step 160)."""

    epochs: int = 100
    lr: float = 3.0
    momentum: float = 0.9
    weight_decay: float = 0.0
    nesterov: bool = False
    batch_size: int = 128
    milestones: tuple[int, ...] = (80,)
    gamma: float = 0.1
    drop_last: bool = True  # the release's loader drops the last partial batch


@dataclass
class LinearResult:
    history: list[dict] = field(default_factory=list)  # per epoch: epoch, lr, loss, top1, top5
    last: dict = field(default_factory=dict)  # {"epoch", "top1", "top5"}
    best: dict = field(default_factory=dict)  # best test top-1 over epochs
    logits_last: torch.Tensor | None = None  # (N_test, classes)
    logits_best: torch.Tensor | None = None
    head: nn.Linear | None = None  # the linear layer at the last epoch
    release_best: ReleaseBest | None = None  # the paper's best epoch (`--report paper`)


HEAD_PROTOCOLS = ("linear", "finetune")


def new_linear_head(
    feature_dim: int, num_classes: int, seed: int, init: str = "reference", protocol: str = "linear"
) -> nn.Linear:
    """A new Linear(feature_dim, num_classes), drawn from a generator seeded by `seed` (the global
    RNG is left as it was), initialised by `init` (`model.init`) as the reference does per protocol:

    - "reference", protocol "linear" (the probe): weights N(0, 0.02), bias 0 (the release's linear
      evaluation applies its `weights_init` to the whole model, fc included);
    - "reference", protocol "finetune" (fine-tune and semi): PyTorch's default Linear init (the
      release's fine-tune `weights_init` skips Linear layers);
    - "torch", either protocol: the toolkit's head from before `model.init`, MoCo's linear
      classifier: weights N(0, 0.01), bias 0.
    """
    from hiclr.models.init import check_init, init_weights

    check_init(init)
    if protocol not in HEAD_PROTOCOLS:
        raise ValueError(f"protocol must be one of {HEAD_PROTOCOLS}, got {protocol!r}")
    with torch.random.fork_rng(devices=[]):  # the constructor's draws stay off the global stream
        torch.manual_seed(seed)
        head = nn.Linear(feature_dim, num_classes)
    if init == "reference" and protocol == "finetune":
        return head
    g = torch.Generator().manual_seed(seed)
    if init == "reference":
        return init_weights(head, "reference", g)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=g) * 0.01)
        head.bias.zero_()
    return head


def fit_linear(
    train_features: torch.Tensor | FeatureFn,
    train_labels: torch.Tensor,
    test_features: torch.Tensor | Callable[[], torch.Tensor],
    test_labels: torch.Tensor,
    num_classes: int,
    feature_dim: int | None = None,
    schedule: LinearSchedule | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
    on_epoch: Callable[[dict], None] | None = None,
    init: str = "reference",
) -> LinearResult:
    """Train a linear classifier and evaluate it on the test set after every epoch (its own short
    loop, not the engine's: see `hiclr.engine`).

    train_features: cached features (N, D) or a function `idx (B,) -> (B, D)` (through the
    encoder); test_features: (N_test, D) or a function `() -> (N_test, D)`; init: the head's
    initialisation (`model.init`, see `new_linear_head`).
    """
    schedule = schedule or LinearSchedule()
    device = torch.device(device)
    cached = torch.is_tensor(train_features)
    if cached:
        train_features = train_features.float().to(device)
        feature_dim = train_features.shape[1]
    if torch.is_tensor(test_features):
        test_features = test_features.float().to(device)
    if feature_dim is None:
        raise ValueError("feature_dim is needed when features come from a function")
    train_labels = train_labels.long().to(device)
    test_labels = test_labels.long().to(device)
    n = train_labels.shape[0]
    batch = min(schedule.batch_size, n)  # a split smaller than a batch is one batch
    stop = n - n % batch if schedule.drop_last else n
    seen = stop  # samples per epoch

    head = new_linear_head(feature_dim, num_classes, seed, init, "linear").to(device)
    optimizer = torch.optim.SGD(
        head.parameters(),
        lr=schedule.lr,
        momentum=schedule.momentum,
        weight_decay=schedule.weight_decay,
        nesterov=schedule.nesterov,
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(schedule.milestones), schedule.gamma)
    shuffle = torch.Generator().manual_seed(seed)
    result = LinearResult(release_best=ReleaseBest(release_eval_interval("linear"), schedule.epochs))
    bar = _progress(schedule.epochs, progress, "linear probe")
    for epoch in range(1, schedule.epochs + 1):
        head.train()
        lr = optimizer.param_groups[0]["lr"]
        order = torch.randperm(n, generator=shuffle).to(device)
        loss_sum = torch.zeros((), device=device)
        for start in range(0, stop, batch):
            idx = order[start : start + batch]
            x = train_features[idx] if cached else train_features(idx)
            loss = F.cross_entropy(head(x), train_labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * idx.numel()
        scheduler.step()

        head.eval()
        with torch.no_grad():
            feats = test_features if torch.is_tensor(test_features) else test_features()
            logits = head(feats.to(device).float())
        acc = topk_accuracy(logits, test_labels)
        row = {"epoch": epoch, "lr": lr, "loss": float(loss_sum) / seen, **acc}
        result.history.append(row)
        if not result.best or acc["top1"] > result.best["top1"]:
            result.best = {"epoch": epoch, **acc}
            result.logits_best = logits.cpu()
        result.release_best.update(epoch, acc, logits)
        if on_epoch:
            on_epoch(row)
        if bar is not None:
            bar.set_postfix(loss=f"{row['loss']:.3f}", top1=f"{acc['top1']:.1f}")
            bar.update(1)
    if bar is not None:
        bar.close()
    result.last = {"epoch": schedule.epochs, **{k: result.history[-1][k] for k in ("top1", "top5")}}
    result.logits_last = logits.cpu()
    result.head = head
    return result


def linear_summary(
    result: LinearResult, test_labels: torch.Tensor, num_classes: int, schedule: LinearSchedule, mode: str
) -> dict:
    """The probe's entry of a report: last and best epoch, curve, per-class and confusion (last)."""
    summary = classification_summary(result.logits_last, test_labels, num_classes)
    return {
        "mode": mode,
        "top1_last": result.last["top1"],
        "top5_last": result.last["top5"],
        "top1_best": result.best["top1"],
        "top5_best": result.best["top5"],
        "best_epoch": result.best["epoch"],
        "epochs": schedule.epochs,
        "schedule": {k: (list(v) if isinstance(v, tuple) else v) for k, v in schedule.__dict__.items()},
        "history": result.history,
        "per_class": summary["per_class"],
        "confusion": summary["confusion"],
    }


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    from hiclr.common.progress import progress

    return progress(total, desc=desc, unit="epoch")


def append_jsonl(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


# ---------------------------------------------------------------- the protocol run


def run_linear(
    cfg: dict,
    encoder,
    *,
    out=None,
    through_encoder: bool | None = None,
    progress: bool = True,
    plots: bool = True,
    report: str = "standard",
) -> dict:
    """`hiclr linear`: train and evaluate the probe, write logits.npz and the report; return the entry.

    report: `standard`, or `paper`: the entry also holds `paper`, the figures the release reports,
    each chosen on the test set and labelled so: its best epoch (logits in logits_best.npz) and,
    for a joint or motion encoder of a pre-training run, the probe of that run's epoch_290.pt.

    cfg: a resolved config (`hiclr.config.load_config`); the probe's schedule is `eval.lr`,
    `eval.weight_decay`, `eval.batch_size`, `eval.epochs`, `eval.milestones` with `optim.momentum`,
    `optim.nesterov`, `optim.gamma` and `optim.drop_last` (the release drops the last partial
    batch); the head is initialised by `model.init`. encoder: a
    checkpoint path, an `nn.Module` or a `Baseline` (`raw`, `random`: built on the loaded
    training split).
    out: the run folder (default `run.out/run.name`).
    """
    from hiclr.eval.common import (
        LOGITS_BEST_FILE,
        check_report,
        finish_run,
        freeze_modules,
        frozen_features,
        save_logits,
        start_frozen_run,
    )

    check_report(report)
    ev = cfg["eval"]
    through_encoder = bool(ev["through_encoder"]) if through_encoder is None else through_encoder
    run = start_frozen_run(cfg, encoder, out, "linear")
    device, run_dir, data, model, meta = run.device, run.run_dir, run.data, run.model, run.meta
    for p in model.parameters():
        p.requires_grad_(False)
    freeze_modules(model, ev["freeze"])  # all frozen already; the names are checked all the same
    schedule = schedule_from_config(cfg)
    seed = int(cfg["run"]["seed"])
    init = cfg["model"]["init"]
    metrics = run_dir / "metrics_linear.jsonl"
    metrics.write_text("")
    log = lambda row: append_jsonl(metrics, row)  # noqa: E731

    test_features = None
    if through_encoder:
        if ev["standardize"]:
            raise UserError(
                "eval.standardize works on cached features; drop --through-encoder "
                "(eval.through_encoder) or set eval.standardize=false"
            )
        train_fn, test_fn = encoder_feature_fns(model, data.train.x, data.test.x, meta["stream"], cfg, device, seed)
        result = fit_linear(
            train_fn,
            data.train.labels,
            test_fn,
            data.test.labels,
            data.num_classes,
            meta["feature_dim"] or _probe_dim(model, data.train.x, meta["stream"], device),
            schedule,
            seed,
            device,
            progress,
            log,
            init,
        )
        mode = "through the frozen encoder every epoch" + (" with augmentation" if ev["augment"] else "")
    else:
        train_features, test_features = frozen_features(run_dir, model, meta, data, cfg, device, progress)
        mode = "cached frozen features"
        if ev["standardize"]:
            train_features, test_features = standardize(train_features, test_features)
            mode += ", standardised by the training mean / std"
        result = fit_linear(
            train_features,
            data.train.labels,
            test_features,
            data.test.labels,
            data.num_classes,
            None,
            schedule,
            seed,
            device,
            progress,
            log,
            init,
        )
    entry = linear_summary(result, data.test.labels, data.num_classes, schedule, mode)
    save_logits(run_dir, result.logits_last, data.test.labels, data.test.names, epoch=schedule.epochs)
    if report == "paper":
        best = result.release_best
        save_logits(
            run_dir, best.logits, data.test.labels, data.test.names, file=LOGITS_BEST_FILE, epoch=best.best["epoch"]
        )
        entry["paper"] = {
            "best_epoch": best.entry(),
            "checkpoint_290": _probe_epoch_290(
                cfg, meta, data, schedule, seed, device, run_dir, progress, init, through_encoder
            ),
        }
    if plots and test_features is None:
        from hiclr.features import extract_features

        test_features = extract_features(
            model, data.test.x, batch_size=int(ev["feature_batch_size"]), device=device, stream=meta["stream"]
        )
    return finish_run(
        run_dir, "linear", entry, cfg, data, meta, plots=plots, embedding=(test_features, data.test.labels)
    )


#: The pre-training epoch whose checkpoint the release's linear configs probe, per stream (bone: the
#: last, 300, which is the encoder itself).
RELEASE_PROBE_EPOCH = {"joint": 290, "motion": 290}


def _probe_epoch_290(cfg, meta, data, schedule, seed, device, run_dir, progress, init, through_encoder) -> dict:
    """The probe of the pre-training run's `epoch_290.pt` (`--report paper`), as the release's joint
    and motion linear configs load it; a note where it does not apply or the file is missing."""
    from hiclr.eval.common import frozen_features, prepare_encoder

    stream, pretrain = meta["stream"], meta.get("pretrain_run")
    if stream not in RELEASE_PROBE_EPOCH:
        return {"note": f"the release probes the last pre-training epoch for the {stream} stream: the figures above"}
    if through_encoder or cfg["eval"]["standardize"]:
        return {"note": "not run: the release's probe runs on cached features without standardisation"}
    if not pretrain:
        return {"note": "not run: the encoder is not in a pre-training run folder (metrics.jsonl beside it)"}
    path = Path(pretrain) / f"epoch_{RELEASE_PROBE_EPOCH[stream]:03d}.pt"
    if not path.exists():
        return {
            "note": f"not run: {path} does not exist (pre-train with run.save_every 10, as "
            f"configs/base/pretrain.yaml does)"
        }
    model, meta290 = prepare_encoder(str(path), cfg, device)
    train_f, test_f = frozen_features(run_dir, model, meta290, data, cfg, device, progress)
    result = fit_linear(
        train_f,
        data.train.labels,
        test_f,
        data.test.labels,
        data.num_classes,
        None,
        schedule,
        seed,
        device,
        False,
        None,
        init,
    )
    return {
        "checkpoint": str(path),
        "selection": SELECTED_ON_TEST,
        "top1_last": result.last["top1"],
        "top5_last": result.last["top5"],
        **{f"best_{k}": v for k, v in result.release_best.entry().items() if k in ("epoch", "top1", "top5")},
    }


def standardize(train: torch.Tensor, test: torch.Tensor, eps: float = 1e-5):
    """Both feature sets standardised by the training features' per-dimension mean and std."""
    mean, std = train.mean(dim=0), train.std(dim=0, unbiased=False)
    return (train - mean) / (std + eps), (test - mean) / (std + eps)


def schedule_from_config(cfg: dict) -> LinearSchedule:
    ev, optim = cfg["eval"], cfg["optim"]
    return LinearSchedule(
        epochs=int(ev["epochs"]),
        lr=float(ev["lr"]),
        momentum=float(optim["momentum"]),
        weight_decay=float(ev["weight_decay"]),
        nesterov=bool(optim["nesterov"]),
        batch_size=int(ev["batch_size"]),
        milestones=tuple(int(m) for m in ev["milestones"]),
        gamma=float(optim["gamma"]),
        drop_last=bool(optim["drop_last"]),
    )


def encoder_feature_fns(
    model: nn.Module,
    train_x: torch.Tensor,
    test_x: torch.Tensor,
    stream: str,
    cfg: dict,
    device: torch.device,
    seed: int,
):
    """(idx -> features of train clips, augmented by `eval.augment` when set, () -> test features):
    the frozen encoder on every batch, as the release's linear evaluation runs it (without
    augmentation)."""
    from hiclr.augment import to_stream
    from hiclr.eval.finetune import build_augment
    from hiclr.features import extract_features

    policy, after_stream = build_augment(cfg)
    generator = torch.Generator(device=device).manual_seed(seed + 1)
    train_x = train_x.to(device)
    batch = int(cfg["eval"]["feature_batch_size"])

    @torch.no_grad()
    def train_fn(idx: torch.Tensor) -> torch.Tensor:
        x = train_x[idx]
        if after_stream:
            x = to_stream(x, stream)
        if policy is not None:
            x = policy.apply(x, generator).x
        return model(x if after_stream else to_stream(x, stream)).float()

    def test_fn() -> torch.Tensor:
        return extract_features(model, test_x, batch_size=batch, device=device, stream=stream)

    return train_fn, test_fn


@torch.no_grad()
def _probe_dim(model: nn.Module, x: torch.Tensor, stream: str, device) -> int:
    from hiclr.augment import to_stream

    return int(model(to_stream(x[:1].to(device), stream)).shape[1])
