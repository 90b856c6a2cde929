"""What pre-training is learning, while it runs: a kNN monitor and a collapse watch.

    monitor = LearningMonitor.from_config(cfg, train_data)     # None when off or without a test split
    monitor.score_initial(backbone)                            # before the first step (and on resume)
    record.update(monitor(backbone, epoch))                    # {"monitor_knn_top1": ..., ...}

`LearningMonitor` leaves the training's random draws, weights and BatchNorm statistics as they would be
without it; `CollapseWatch` prints one stderr warning per run and rule. The subsets, the scoring and
the rules: docs/internals.md, 'Learning monitor'.
"""

from __future__ import annotations

import os
import sys
import time

import torch

from hiclr.common.errors import UserError

MONITOR_STREAM = 1_000_003  # derive_seed stream of the subset draw (the loop uses 0 and 1 + rank)
COLLAPSE_LOSS_TOLERANCE = 0.02  # the loss rule: epoch mean within 2 % of the uniform-logits loss
KNN_DROP = 5.0  # the kNN rule: points below the initial encoder's monitor score (a margin above the sampling noise of its subset)


def _note(message: str) -> None:
    if os.environ.get("RANK", "0") == "0":  # once, not once per DDP process
        print(f"note: {message}", file=sys.stderr)


def _subset(n: int, size: int | None, generator: torch.Generator) -> torch.Tensor:
    """Sorted indices of `size` of `n` items drawn with `generator` (all of them when size is None)."""
    if size is None or size >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=generator)[:size].sort().values


class LearningMonitor:
    """kNN top-1 (%) of a backbone on fixed subsets of a bank (training clips) and of queries (test)."""

    def __init__(
        self,
        bank_x: torch.Tensor,
        bank_labels: torch.Tensor,
        query_x: torch.Tensor,
        query_labels: torch.Tensor,
        *,
        every: int = 1,
        epochs: int | None = None,
        samples: int | None = 256,
        seed: int = 0,
        k: int = 20,
        temperature: float = 0.1,
        stream: str = "joint",
        batch_size: int | None = None,
    ):
        from hiclr.engine.loop import derive_seed

        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        g = torch.Generator().manual_seed(derive_seed(seed, 0, MONITOR_STREAM))
        bank, query = _subset(len(bank_x), samples, g), _subset(len(query_x), samples, g)
        self.bank_index, self.query_index = bank, query
        self.bank_x, self.bank_labels = bank_x[bank].contiguous(), bank_labels[bank].long()
        self.query_x, self.query_labels = query_x[query].contiguous(), query_labels[query].long()
        self.num_classes = int(max(bank_labels.max(), query_labels.max())) + 1
        self.every, self.epochs = int(every), epochs
        self.k, self.temperature = int(k), float(temperature)
        self.stream, self.batch_size = stream, batch_size
        self.seconds = 0.0  # time spent in evaluations, in all
        self.initial: float | None = None  # score of the encoder as built (score_initial)

    @classmethod
    def from_config(cls, cfg: dict, train) -> LearningMonitor | None:
        """The monitor of `run.monitor_every` / `run.monitor_samples` on `train` (the `TrainData` of
        the run) and the test split of `data.protocol`; None when off, or (with a note) when the
        store has no test split or an empty one."""
        run, data = cfg["run"], cfg["data"]
        every = int(run["monitor_every"])
        if every <= 0:
            return None
        from hiclr.data import load_split, verify_wanted

        try:
            test = load_split(data["path"], data["protocol"], "test", data["view"], verify=verify_wanted(cfg))
        except UserError as err:
            _note(f"the learning monitor is off: no test split to score it on ({err})")
            return None
        if len(test) == 0:
            _note(f"the learning monitor is off: the {data['protocol']} test split of {data['path']} is empty")
            return None
        if (train.labels < 0).any() or (test.labels < 0).any():
            _note("the learning monitor is off: the store has unlabelled clips")
            return None
        samples = run["monitor_samples"]
        return cls(
            train.x,
            train.labels,
            test.x,
            test.labels,
            every=every,
            epochs=int(cfg["optim"]["epochs"]),
            samples=None if samples is None else int(samples),
            seed=int(run["seed"]),
            k=int(cfg["eval"]["k"]),
            temperature=float(cfg["eval"]["knn_temperature"]),
            stream=data["stream"],
        )

    def due(self, epoch: int) -> bool:
        """Whether the monitor scores after 0-based `epoch`: every `every` epochs and after the last."""
        done = epoch + 1
        return done % self.every == 0 or (self.epochs is not None and done >= self.epochs)

    def __call__(self, backbone: torch.nn.Module, epoch: int) -> dict:
        """{"monitor_knn_top1": %, "monitor_s": seconds} after a due epoch, else {}."""
        if not self.due(epoch):
            return {}
        started = time.perf_counter()
        top1 = self.evaluate(backbone)
        elapsed = time.perf_counter() - started
        self.seconds += elapsed
        record = {"monitor_knn_top1": top1, "monitor_s": elapsed}
        if self.initial is not None:
            record["monitor_knn_top1_init"] = self.initial
        return record

    def score_initial(self, backbone: torch.nn.Module) -> float:
        """kNN top-1 (%) of `backbone` as it is now, before training, with its BatchNorm statistics
        re-estimated on the bank (fresh BatchNorms hold mean 0, var 1 and would map every clip to
        nearly the same feature); scored on a copy, so `backbone` and every RNG stay untouched."""
        import copy

        from hiclr.features import recalibrate_batchnorm

        started = time.perf_counter()
        device = next(backbone.parameters()).device
        clone = copy.deepcopy(backbone)
        with torch.autocast(device.type, enabled=False):
            recalibrate_batchnorm(clone, self.bank_x, batch_size=self._batch(device), device=device, stream=self.stream)
        self.initial = self.evaluate(clone)
        self.seconds += time.perf_counter() - started
        return self.initial

    def _batch(self, device: torch.device) -> int:
        """Clips per forward: `batch_size`, or when None 64 on a CPU (twice as fast as 256 there:
        the activations stay in cache) and 256 on an accelerator."""
        return self.batch_size or (64 if device.type == "cpu" else 256)

    def features(self, backbone: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """(bank features, query features) of `backbone` in eval mode, on the backbone's device."""
        from hiclr.features import extract_features

        device = next(backbone.parameters()).device
        if self.bank_x.device != device:  # once: the subsets stay on the backbone's device
            self.bank_x, self.query_x = self.bank_x.to(device), self.query_x.to(device)
        args = {"batch_size": self._batch(device), "device": device, "stream": self.stream}
        with torch.autocast(device.type, enabled=False):
            return extract_features(backbone, self.bank_x, **args), extract_features(backbone, self.query_x, **args)

    def evaluate(self, backbone: torch.nn.Module) -> float:
        """kNN top-1 (%) of `backbone` now (whatever the epoch)."""
        from hiclr.eval.common import topk_accuracy
        from hiclr.eval.knn import knn_scores

        bank, query = self.features(backbone)
        scores = knn_scores(bank, self.bank_labels, query, self.num_classes, self.k, self.temperature)
        return float(topk_accuracy(scores, self.query_labels, ks=(1,))["top1"])


class CollapseWatch:
    """Warns once per run (one stderr line per rule) when an epoch's embedding looks collapsed.

    Rules, on the epoch means of the step metrics (`end_epoch(epoch, means)`):
    - spread: `embed_std_ratio` (per-dimension std of the L2-normalised query projections times
      sqrt(dim); about 1 when spread, 0 at collapse) below `threshold` (`run.collapse_warning`);
    - loss: the loss within 2 % of `collapse_loss`, the objective's loss at uniform logits (every
      clip, key and queue entry the same vector), when the objective knows it. The first epoch is
      not judged by this rule: a fresh queue of random keys and untrained encoders also give
      nearly uniform logits.
    - knn: the learning monitor's score (`monitor_knn_top1`) more than `KNN_DROP` points below the
      initial encoder's (`monitor_knn_top1_init`), from the monitor's second score on (the first
      may still dip while the features leave their random start). This catches runs that fail
      without a uniform loss: the encoder learns something, but not the classes.
    """

    def __init__(self, threshold: float | None = 0.2, collapse_loss: float | None = None, stream=None):
        self.threshold = threshold
        self.collapse_loss = collapse_loss
        self.stream = stream
        self.warned: set[str] = set()
        self.scored = 0  # monitor scores seen

    def end_epoch(self, epoch: int, means: dict, quiet: bool = False) -> list[str]:
        """Judge 0-based `epoch` by its means ({"loss": ..., "embed_std_ratio": ...}); returns the
        warnings printed now (`quiet`: judge, print nothing, e.g. on DDP ranks other than 0)."""
        printed = []
        ratio = means.get("embed_std_ratio")
        if self.threshold and ratio is not None and ratio < self.threshold and "spread" not in self.warned:
            printed.append(
                f"warning: epoch {epoch + 1}: embedding spread embed_std * sqrt(dim) = {ratio:.3f} "
                f"(below {self.threshold:g}; about 1 for a spread embedding): the embedding is "
                "collapsing, every clip maps to nearly the same vector; try a lower optim.lr, a higher "
                "ssl.temperature or a larger ssl.queue_size"
            )
            self.warned.add("spread")
        loss, c = means.get("loss"), self.collapse_loss
        if (
            c
            and loss is not None
            and epoch > 0
            and abs(loss - c) <= COLLAPSE_LOSS_TOLERANCE * c
            and "loss" not in self.warned
        ):
            printed.append(
                f"warning: epoch {epoch + 1}: mean loss {loss:.4f} is within "
                f"{COLLAPSE_LOSS_TOLERANCE:.0%} of {c:.4f}, the objective's loss at uniform logits: the "
                "embedding is collapsing (or not learning), every clip maps to nearly the same vector; "
                "try a lower optim.lr, a higher ssl.temperature or a larger ssl.queue_size"
            )
            self.warned.add("loss")
        knn, init = means.get("monitor_knn_top1"), means.get("monitor_knn_top1_init")
        if knn is not None:
            self.scored += 1
        if (
            knn is not None
            and init is not None
            and self.scored > 1
            and knn < init - KNN_DROP
            and "knn" not in self.warned
        ):
            printed.append(
                f"warning: epoch {epoch + 1}: the learning monitor's kNN top-1 is {knn:.1f} %, "
                f"{init - knn:.1f} points below the {init:.1f} % of the encoder at its initialisation "
                "(BatchNorm re-estimated): pre-training is making the features worse, not better; try a "
                "lower optim.lr, a higher ssl.temperature or another run.seed"
            )
            self.warned.add("knn")
        for line in [] if quiet else printed:
            print(line, file=self.stream or sys.stderr)
        return printed
