"""Fine-tune protocol: the whole network plus a new linear layer, trained by the engine's loop.

Reference schedule (configs/base/finetune.yaml, the release's gcn_ntu60/finetune): nesterov SGD
lr 0.1, weight decay 1e-4, batch 64, 70 epochs in fp32, the release's warm-up (lr x E / 5 for its
1-based epochs E = 1..4) and steps (x0.1 from E = 30, x0.01 from E = 55: `optim.schedule: release`),
no augmentation. `eval.augment` adds one (stages as in configs/augment/); an item `{name: stream}`
first in it derives the stream (bone, motion) before the augmentations instead of after them, as
the release's transformer fine-tune does. Test accuracy is measured after every
`eval.test_every`-th epoch (default: every one) and after the last; top-1/top-5 are reported at the
LAST and at the BEST tested epoch (labelled). Checkpoints, `--resume`, Ctrl-C and metrics.jsonl are
the engine's.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from hiclr.common.errors import UserError
from hiclr.eval.common import ReleaseBest, classification_summary, release_eval_interval, topk_accuracy


class Classifier(nn.Module):
    """(N, C, T, V, M) clips of a stream -> (N, classes) logits: encoder then a linear layer."""

    def __init__(self, encoder: nn.Module, head: nn.Linear):
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


class FineTuneTask:
    """The engine's task: augment, derive the stream, cross-entropy; test accuracy after every
    `test_every`-th epoch and after epoch `epochs` (None: every epoch)."""

    def __init__(
        self,
        model: Classifier,
        stream: str,
        test_x: torch.Tensor,
        test_labels: torch.Tensor,
        augment=None,
        test_batch_size: int = 256,
        augment_after_stream: bool = False,
        release_best: ReleaseBest | None = None,
        test_every: int = 1,
        epochs: int | None = None,
    ):
        self.model, self.stream, self.augment = model, stream, augment
        self.augment_after_stream = augment_after_stream
        self.release_best = release_best
        self.test_x, self.test_labels = test_x, test_labels.long()
        self.test_batch_size = test_batch_size
        self.test_every, self.epochs = int(test_every), epochs
        self.history: list[dict] = []
        self.best: dict = {}
        self.logits_last = self.logits_best = None

    def step(self, model, batch, generator, epoch):
        from hiclr.augment import to_stream

        x = batch.x
        if self.augment_after_stream:
            x = to_stream(x, self.stream)
        if self.augment is not None:
            x = self.augment.apply(x, generator).x
        logits = model(x if self.augment_after_stream else to_stream(x, self.stream))
        loss = F.cross_entropy(logits.float(), batch.labels)
        acc = (logits.detach().argmax(dim=1) == batch.labels).float().mean() * 100
        return loss, {"train_top1": acc}

    @torch.no_grad()
    def test_logits(self) -> torch.Tensor:
        from hiclr.augment import to_stream

        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        out = [
            self.model(to_stream(self.test_x[i : i + self.test_batch_size].to(device), self.stream)).float().cpu()
            for i in range(0, len(self.test_x), self.test_batch_size)
        ]
        self.model.train(was_training)
        return torch.cat(out)

    def tests_after(self, epoch: int) -> bool:
        """Whether the test set is scored after the 0-based `epoch`."""
        return (epoch + 1) % self.test_every == 0 or epoch + 1 == self.epochs

    def end_epoch(self, epoch: int, means: dict) -> dict:
        if not self.tests_after(epoch):
            return {}
        logits = self.test_logits()
        acc = topk_accuracy(logits, self.test_labels)
        row = {"epoch": epoch + 1, **acc}
        self.history.append(row)
        self.logits_last = logits
        if not self.best or acc["top1"] > self.best["top1"]:
            self.best = dict(row)
            self.logits_best = logits
        if self.release_best is not None:
            self.release_best.update(epoch + 1, acc, logits)
        return {"test_top1": acc["top1"], "test_top5": acc["top5"]}

    def state_dict(self) -> dict:
        return {
            "history": self.history,
            "best": self.best,
            "logits_best": self.logits_best,
            "release_best": self.release_best.state_dict() if self.release_best is not None else None,
        }

    def load_state_dict(self, state: dict) -> None:
        self.history = list(state.get("history", []))
        self.best = dict(state.get("best", {}))
        self.logits_best = state.get("logits_best")
        if self.release_best is not None:
            self.release_best.load_state_dict(state.get("release_best"))


STREAM_ITEM = "stream"  # `{name: stream}` in eval.augment: the stream is derived at that point


def split_stream_item(stages) -> tuple[list, bool]:
    """(`eval.augment` without the `{name: stream}` item, whether it was there). The item may only
    open the first stage (the stream is derived before every augmentation); elsewhere it is refused."""
    stages = [list(stage) for stage in (stages or [])]
    found = [
        (i, j)
        for i, stage in enumerate(stages)
        for j, item in enumerate(stage)
        if isinstance(item, dict) and item.get("name") == STREAM_ITEM
    ]
    if not found:
        return stages, False
    if found != [(0, 0)] or len(stages[0][0]) != 1:
        raise UserError(
            "eval.augment holds {name: stream} elsewhere than as the first item of the first "
            "stage (or with parameters); put it first to derive the stream before the "
            "augmentations, or remove it to derive it after them"
        )
    stages[0] = stages[0][1:]
    return [stage for stage in stages if stage], True


def build_augment(cfg: dict):
    """(the fine-tune's augmentation policy from `eval.augment` or None when empty, whether it acts
    on the derived stream rather than on the joints)."""
    from hiclr.augment import GrowingPolicy

    stages, after_stream = split_stream_item(cfg["eval"]["augment"])
    if not stages:
        return None, after_stream
    return GrowingPolicy.from_config(stages, cfg["augment"]["reference_quirks"]), after_stream


def finetune_once(
    cfg: dict,
    encoder,
    train,
    test,
    num_classes: int,
    run_dir: Path,
    *,
    resume: bool = False,
    protocol: str = "finetune",
    epoch_length: int | None = None,
) -> dict:
    """Fine-tune `encoder` (checkpoint path, module (copied) or `Baseline("random")`: built from
    `model.*` and `run.seed`, trained from scratch) on `train`, test on `test` every epoch.

    train/test: `hiclr.data.Split`-like (x, labels, index, names); `epoch_length`: samples an epoch
    draws from `train`, cycled (the release's semi feeder; None: one pass). Returns the protocol entry plus
    "logits_last" (Tensor) for the caller to save, and "release_best" (`ReleaseBest`: the epoch the
    release would report, chosen on the test set, with its logits) for `--report paper`.
    """
    import copy

    from hiclr.engine import TrainData
    from hiclr.engine import train as engine_train
    from hiclr.eval.baselines import Baseline, check_protocol
    from hiclr.eval.common import freeze_modules, prepare_encoder
    from hiclr.eval.linear import new_linear_head

    device = torch.device("cpu")  # the engine moves the model to its device
    if isinstance(encoder, Baseline):
        check_protocol(encoder.name, "finetune", frozen=False)
    if isinstance(encoder, nn.Module):
        encoder = copy.deepcopy(encoder)
    module, meta = prepare_encoder(encoder, cfg, device)
    for p in module.parameters():
        p.requires_grad_(True)
    frozen = freeze_modules(module, cfg["eval"]["freeze"])
    _set_training_dropout(module, cfg["model"])
    dim = meta["feature_dim"] or int(module(torch.zeros(1, *train.x.shape[1:])).shape[1])
    head = new_linear_head(dim, num_classes, int(cfg["run"]["seed"]), cfg["model"]["init"], "finetune")
    augment, after_stream = build_augment(cfg)
    release_best = ReleaseBest(release_eval_interval(protocol, cfg["model"]["name"]), int(cfg["optim"]["epochs"]))
    task = FineTuneTask(
        Classifier(module, head),
        meta["stream"],
        test.x,
        test.labels,
        augment,
        int(cfg["eval"]["feature_batch_size"]),
        after_stream,
        release_best,
        test_every=int(cfg["eval"]["test_every"]),
        epochs=int(cfg["optim"]["epochs"]),
    )
    engine_train(task, TrainData(train.x, train.labels, train.index, epoch_length), cfg, run_dir, resume=resume)
    if task.logits_last is None:  # resumed a run that had already finished
        task.logits_last = task.test_logits()
    opt = cfg["optim"]
    return {
        **finetune_summary(task, num_classes),
        "epochs": int(opt["epochs"]),
        "train_samples": len(train.labels),
        "schedule": {
            k: opt[k]
            for k in (
                "name",
                "lr",
                "momentum",
                "weight_decay",
                "nesterov",
                "batch_size",
                "epochs",
                "schedule",
                "milestones",
                "gamma",
                "warmup_epochs",
            )
        },
        "mode": (
            "whole network"
            + (f" but {', '.join(cfg['eval']['freeze'])} (frozen)" if frozen else "")
            + ", engine loop"
            + (
                ", augmented" + (" after the stream" if after_stream else "")
                if task.augment is not None
                else ", no augmentation"
            )
        ),
        "frozen_parameters": frozen,
        "precision": cfg["engine"]["precision"],
        "logits_last": task.logits_last,
        "encoder_meta": meta,
        "release_best": release_best,
    }


def finetune_summary(task: FineTuneTask, num_classes: int) -> dict:
    """The report's figures of a fine-tune: top-1/top-5 of the last and the best epoch, the curve,
    and per-class accuracy and confusion matrix of the last epoch's test logits."""
    summary = classification_summary(task.logits_last, task.test_labels, num_classes)
    return {
        "top1_last": task.history[-1]["top1"],
        "top5_last": task.history[-1]["top5"],
        "top1_best": task.best["top1"],
        "top5_best": task.best["top5"],
        "best_epoch": task.best["epoch"],
        "history": task.history,
        "per_class": summary["per_class"],
        "confusion": summary["confusion"],
    }


def _set_training_dropout(module: nn.Module, model_cfg: dict) -> None:
    """A loaded DSTA trains with the attention dropout of the protocol's `model` section (the
    release: 0 in its fine-tune configs, 0.5 in pre-training, which its checkpoint records)."""
    from hiclr.models import DSTA

    if isinstance(module, DSTA) and model_cfg["name"] == "dsta":
        module.set_attention_dropout(float(model_cfg["attention_dropout"]))


def run_finetune(
    cfg: dict, encoder, *, out=None, resume: bool = False, plots: bool = True, report: str = "standard"
) -> dict:
    """`hiclr finetune`: fine-tune, write logits.npz and the report; return the protocol entry.
    report `paper`: the entry also holds `paper`, the release's best epoch chosen on the test set
    (labelled so; its logits in logits_best.npz)."""
    from hiclr.eval.common import LOGITS_BEST_FILE, check_report, finish_run, load_eval_data, make_run_dir, save_logits

    check_report(report)
    run_dir = make_run_dir(cfg, out, "finetune")
    data = load_eval_data(cfg)
    entry = finetune_once(cfg, encoder, data.train, data.test, data.num_classes, run_dir, resume=resume)
    save_logits(run_dir, entry.pop("logits_last"), data.test.labels, data.test.names, epoch=entry["epochs"])
    best = entry.pop("release_best")
    if report == "paper":
        save_logits(
            run_dir, best.logits, data.test.labels, data.test.names, file=LOGITS_BEST_FILE, epoch=best.best["epoch"]
        )
        entry["paper"] = {"best_epoch": best.entry()}
    return finish_run(run_dir, "finetune", entry, cfg, data, entry.pop("encoder_meta"), plots=plots)
