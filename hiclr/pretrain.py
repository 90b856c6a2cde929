"""Contrastive pre-training from a config: data, growing policy and learner, handed to the engine.

    cfg = load_config("configs/ntu60/xsub/pretrain_joint.yaml", ["optim.epochs=10"])
    result = pretrain(cfg)                      # writes <run.out>/<run.name>/ ... encoder.pt

`PretrainTask` is the engine task: per step it draws the objective's views of the batch with the
growing policy (on the device, from the epoch's generator, outside autocast so that augmentation
stays fp32) and returns the learner's loss; after each epoch the learning monitor may score the
query backbone (`monitor_knn_top1`) and the collapse watch may warn (`hiclr.monitor`); at the end it
writes `encoder.pt` (the query backbone).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from hiclr.common.errors import UserError
from hiclr.engine import TrainData, TrainResult, is_main_process, seed_everything, train


class PretrainTask:
    """Engine task of contrastive pre-training: views from `policy`, loss from `learner`;
    optionally a `LearningMonitor` (kNN after epochs) and a `CollapseWatch` (warnings)."""

    postfix_keys = {"monitor_knn_top1": "knn"}  # epoch metrics the engine shows in the progress bar

    def __init__(self, learner, policy, encoder_cfg: dict, stream: str, *, monitor=None, watch=None):
        self.model = learner
        self.policy = policy
        self.layout = learner.objective.views  # the views the objective takes, in its order
        self.encoder_cfg = dict(encoder_cfg)
        self.stream = stream
        self.monitor = monitor
        self.watch = watch

    def step(self, model, batch, generator: torch.Generator, epoch: int):
        with torch.autocast(batch.x.device.type, enabled=False):
            views = self.policy.views(batch.x, generator, self.layout)
        # the epoch's flags (mining = epoch >= mining_epoch) are decided here, outside the compiled
        # learner: fixed bools, so the graph compiles once per set of flags, never per epoch
        return model(views, batch.ids, **self.model.switches(epoch))

    def end_epoch(self, epoch: int, means: dict) -> dict:
        main = is_main_process()
        record = self.monitor(self.model.encoder_q.backbone, epoch) if self.monitor is not None and main else {}
        if self.watch is not None:
            self.watch.end_epoch(epoch, {**means, **record}, quiet=not main)
        return record

    def finish(self, run_dir: Path | None) -> dict:
        if run_dir is None:
            return {}
        from hiclr.models import save_encoder

        path = save_encoder(Path(run_dir) / "encoder.pt", self.model.encoder_q.backbone, self.encoder_cfg, self.stream)
        return {"encoder": Path(path)}


def build_learner(cfg: dict):
    """The `ContrastiveLearner` of the `model`, `ssl` and `data.stream` sections."""
    from hiclr.ssl import ContrastiveLearner

    try:
        return ContrastiveLearner.from_config(cfg)
    except (ValueError, TypeError) as err:
        raise UserError(f"ssl section: {err}") from None


def build_policy(cfg: dict, record: bool = False):
    """The growing augmentation policy of the `augment` section (`record`: keep the draws per view,
    e.g. for an objective with `needs_view_params`)."""
    from hiclr.augment import GrowingPolicy

    aug = cfg["augment"]
    if not aug["stages"]:
        raise UserError(
            "augment.stages is empty; inherit configs/augment/hiclr_default.yaml "
            "(base: ...) or list the stages in the config"
        )
    try:
        return GrowingPolicy.from_config(
            aug["stages"],
            bool(aug["reference_quirks"]),
            concat_views=bool(aug["concat_views"]),
            fuse_linear=bool(aug["fuse_linear"]),
            record=bool(aug["record"]) or record,
        )
    except ValueError as err:
        raise UserError(f"augment section: {err}") from None


def load_training_data(cfg: dict) -> TrainData:
    """The training split of `data` (optionally a seeded subset of `data.max_samples`)."""
    from hiclr.data import load_split, verify_wanted

    data = cfg["data"]
    split = load_split(data["path"], data["protocol"], "train", data["view"], verify=verify_wanted(cfg))
    if len(split) == 0:
        raise UserError(f"{data['path']}: the {data['protocol']} training split is empty")
    x, labels, ids = split.x, split.labels, split.index
    empty = ~x.flatten(1).ne(0).any(dim=1)  # clips without a non-zero coordinate (data_prep.empty)
    if empty.any():
        names = [split.names[i] for i in torch.nonzero(empty).flatten().tolist()]
        if is_main_process():
            print(
                f"note: {data['path']}: leaving out {len(names)} empty training clips (all coordinates 0: "
                f"{', '.join(names[:5])}{' ...' if len(names) > 5 else ''}); re-run hiclr-prep to skip "
                f"them in the store",
                file=sys.stderr,
            )
        x, labels, ids = x[~empty], labels[~empty], ids[~empty]
        if len(x) == 0:
            raise UserError(f"{data['path']}: every clip of the {data['protocol']} training split is empty")
    limit = data["max_samples"]
    if limit is not None and int(limit) < len(x):
        g = torch.Generator().manual_seed(int(cfg["run"]["seed"]))
        keep = torch.randperm(len(x), generator=g)[: int(limit)].sort().values
        x, labels, ids = x[keep], labels[keep], ids[keep]
    return TrainData(x=x, labels=labels, ids=ids)


def run_dir_of(cfg: dict) -> Path:
    return Path(cfg["run"]["out"]) / str(cfg["run"]["name"])


def pretrain(
    cfg: dict, *, resume: bool = False, overwrite: bool = False, force: bool = False, run_dir: str | Path | None = None
) -> TrainResult:
    """Pre-train one encoder as `cfg` says; returns the engine's result (outputs["encoder"])."""
    data = load_training_data(cfg)
    seed_everything(int(cfg["run"]["seed"]))
    learner = build_learner(cfg)
    policy = build_policy(cfg, record=bool(getattr(learner.objective, "needs_view_params", False)))
    from hiclr.monitor import CollapseWatch, LearningMonitor

    monitor = LearningMonitor.from_config(cfg, data)
    if monitor is not None and is_main_process():
        # the weights as built from run.seed: the same on a resumed run, whose checkpoint loads later
        monitor.score_initial(learner.encoder_q.backbone)
    watch = CollapseWatch(cfg["run"]["collapse_warning"], learner.collapse_loss())
    task = PretrainTask(learner, policy, cfg["model"], cfg["data"]["stream"], monitor=monitor, watch=watch)
    out = run_dir if run_dir is not None else run_dir_of(cfg)
    result = train(task, data, cfg, out, resume=resume, overwrite=overwrite, force=force)
    if is_main_process() and result.outputs.get("encoder") is not None:
        from hiclr.provenance import write_pretrain_report

        write_pretrain_report(out, cfg, result, train_samples=len(data.x))  # provenance of encoder.pt
    return result
