"""Contrastive objectives, registered by name: which views each needs and its loss.

An objective declares `views`, a `hiclr.augment.ViewLayout`: the views the learner receives, in
order, with the last growing-policy stage of each (a view at stage i applies stages 0..i), and
which of them goes through the key encoder. All other views are queries, in order. Its forward takes
a `ContrastiveInputs` and returns `(loss, metrics)`, metrics being detached scalar tensors.

`hiclr` (the reference release), with l_i = [z_i.k, z_i.q_1..q_K] / tau and p_i = softmax(l_i):
L = L_nce + (L_1<-0 + L_2<-1) / 2, L_nce = -mean log p_0[0] (multi-positive from mining_epoch on),
L_b<-a = -mean sum_j sg(p_a[j]) log p_b[j]. The method and the further objectives: docs/method.md.

Logits, losses and mining run with autocast off, in float32 (float64 inputs stay float64): under
bf16 the positive column and the queue columns would be rounded differently and top-1 mining would
see ties. An objective whose loss depends on the epoch says how in `switches(epoch)`, which the
task evaluates outside the compiled step and passes to the learner as fixed flags.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from hiclr.augment.policy import HICLR_VIEWS, SKELETONCLR_VIEWS
from hiclr.registry import Registry

#: Every objective by name; the further ones register from their own modules, which
#: `hiclr.ssl` imports, so the table is complete once the package is imported.
OBJECTIVES = Registry("objective", config_key="ssl.objective")
register_objective = OBJECTIVES.register


def build_objective(name: str, shared: dict | None = None, **kwargs) -> nn.Module:
    """Build a registered objective. `shared` holds settings common to the `ssl` config section
    (temperature, mining_epoch, topk, ...): those the objective does not take are left out.
    `kwargs` are objective-specific and must all be accepted."""
    cls = OBJECTIVES.lookup(name)
    accepted = inspect.signature(cls.__init__).parameters
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"objective {name!r} takes no argument(s) {', '.join(unknown)}")
    args = {k: v for k, v in (shared or {}).items() if k in accepted}
    return cls(**{**args, **kwargs})


@dataclass
class ContrastiveInputs:
    """What the learner hands an objective for one step (embeddings L2-normalised)."""

    queries: list[torch.Tensor]  # (N, dim) per query view, in view order (key view left out)
    key: torch.Tensor  # (N, dim), no grad
    queue_keys: torch.Tensor  # (K, dim), a snapshot taken before this step's enqueue
    queue_ids: torch.Tensor  # (K,) sample id of each queue entry, -1 = empty
    ids: torch.Tensor  # (N,) sample ids of the batch
    mining: bool = False  # nearest-neighbour mining on (the objective's `switches`)
    warmup: bool = False  # the objective's warm-up epochs run (its `switches`)
    query_features: list[torch.Tensor] = field(default_factory=list)  # backbone outputs (N, feature_dim)
    views: list = field(default_factory=list)  # the View objects, in view order
    key_features: torch.Tensor | None = None  # key backbone output (N, feature_dim), no grad
    query_blocks: list[torch.Tensor] = field(default_factory=list)  # (N, M, C_b, T_b, V) per query view,
    #                                          when the objective sets `feature_block` (e.g. 4)
    key_blocks: dict[int, torch.Tensor] = field(default_factory=dict)  # query view index -> the key
    #   encoder's block `feature_block` on that query view's input (N, M, C_b, T_b, V), no grad, for
    #   the views the objective names in `key_block_views`


def full_precision(like: torch.Tensor):
    """Autocast off on the device of `like`: the context of every logit, loss and mining step."""
    return torch.autocast(like.device.type, enabled=False)


def at_least_float32(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The tensors in float32, or in float64 where one of them is float64."""
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return tuple(t.to(dtype) for t in tensors)


def contrastive_logits(
    z: torch.Tensor, key: torch.Tensor, queue_keys: torch.Tensor, temperature: float
) -> torch.Tensor:
    """(N, 1 + K) logits [z.k, z.q_1, ..., z.q_K] / tau in float32 (float64 for float64 inputs),
    autocast off: the positive column and the queue columns are computed alike."""
    with full_precision(z):
        z, key, queue_keys = at_least_float32(z, key, queue_keys)
        positive = (z * key).sum(dim=1, keepdim=True)
        return torch.cat([positive, z @ queue_keys.T], dim=1) / temperature


def info_nce(logits: torch.Tensor) -> torch.Tensor:
    """-mean log p[0]: the positive key sits in column 0."""
    return -F.log_softmax(logits, dim=1)[:, 0].mean()


def multi_positive_nce(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """-mean over rows of (1/|P|) sum_{j in P} log p[j]; `positives` is a bool (N, 1 + K) mask."""
    weights = positives.to(logits.dtype)
    per_row = (F.log_softmax(logits, dim=1) * weights).sum(dim=1) / weights.sum(dim=1)
    return -per_row.mean()


@torch.no_grad()
def mine_positives(logits: list[torch.Tensor], topk: int = 1) -> torch.Tensor:
    """Bool (N, 1 + K) positive mask: the key (column 0) plus, for every branch's logits, its
    `topk` most similar queue entries; an entry chosen by several branches counts once."""
    first = logits[0]
    positives = torch.zeros(first.shape, dtype=torch.bool, device=first.device)
    positives[:, 0].fill_(True)  # a Python value assigned by indexing becomes a tensor first
    with full_precision(first):
        for branch in logits:
            nearest = branch[:, 1:].topk(topk, dim=1).indices + 1
            positives.scatter_(1, nearest, True)
    return positives


class HierarchicalConsistencyLoss(nn.Module):
    """-mean sum_j sg(softmax(weaker)[j]) log softmax(stronger)[j]: pulls the distribution of the more
    strongly augmented branch toward the weaker one's, never the reverse (stop-gradient)."""

    def forward(self, stronger_logits: torch.Tensor, weaker_logits: torch.Tensor) -> torch.Tensor:
        target = F.softmax(weaker_logits.detach(), dim=1)
        return -(target * F.log_softmax(stronger_logits, dim=1)).sum(dim=1).mean()


def positive_accuracy(logits: torch.Tensor) -> torch.Tensor:
    """Fraction of rows whose largest logit is the positive key (column 0)."""
    return (logits.argmax(dim=1) == 0).float().mean().detach()


@register_objective("skeletonclr")
class SkeletonCLR(nn.Module):
    """The SkeletonCLR baseline: one basic query view v0 against its key v0', InfoNCE only."""

    views = SKELETONCLR_VIEWS

    def __init__(self, temperature: float = 0.07):
        super().__init__()
        self.temperature = temperature

    @staticmethod
    def uniform_logits_loss(num_logits: int) -> float:
        """The loss when all `num_logits` logits of a row are equal: log(1 + K)."""
        return math.log(num_logits)

    def forward(self, inputs: ContrastiveInputs):
        (z0,) = inputs.queries
        with full_precision(z0):
            logits = contrastive_logits(z0, inputs.key, inputs.queue_keys, self.temperature)
            loss = info_nce(logits)
        return loss, {"loss": loss.detach(), "loss_nce": loss.detach(), "positive_acc": positive_accuracy(logits)}


@register_objective("hiclr")
class HiCLR(nn.Module):
    """HiCLR: InfoNCE on the basic branch v0 plus hierarchical consistency v1 <- v0 and v2 <- v1.

    Views, in order: v0 (stage 0), the key v0' (stage 0), v1 (stages 0-1), v2 (stages 0-2). From
    the 0-based epoch `mining_epoch` on the InfoNCE term takes as extra positives each branch's
    `topk` nearest queue entries (the reference's nearest-neighbour mining, top-1 by default). The
    release counts epochs from 1 and mines when its epoch > mining_epoch: the same epochs.
    """

    views = HICLR_VIEWS

    def __init__(self, temperature: float = 0.07, mining_epoch: int = 150, topk: int = 1):
        super().__init__()
        self.temperature = temperature
        self.mining_epoch = mining_epoch
        self.topk = topk
        self.consistency = HierarchicalConsistencyLoss()

    @staticmethod
    def uniform_logits_loss(num_logits: int) -> float:
        """The loss when all `num_logits` logits of a row are equal: the (multi-positive) InfoNCE
        and both consistency terms are each log(1 + K), so L = 2 log(1 + K)."""
        return 2 * math.log(num_logits)

    def switches(self, epoch: int) -> dict[str, bool]:
        """The flags of a step at the 0-based `epoch`: mining from epoch `mining_epoch` on."""
        return {"mining": epoch >= self.mining_epoch}

    def positives(self, inputs: ContrastiveInputs, logits: list[torch.Tensor]):
        """(positive mask, metrics) of the InfoNCE term: the mask is None (the key alone) or a bool
        (N, 1 + K) over the logit columns. HiCLR mines each branch's `topk` nearest queue entries
        when mining is on; a variant that chooses positives otherwise overrides only this."""
        if not inputs.mining:
            return None, {}
        positives = mine_positives(logits, self.topk)
        return positives, {"num_positives": positives.sum(dim=1).float().mean()}

    def forward(self, inputs: ContrastiveInputs):
        with full_precision(inputs.key):
            logits = [contrastive_logits(z, inputs.key, inputs.queue_keys, self.temperature) for z in inputs.queries]
            positives, metrics = self.positives(inputs, logits)
            loss_nce = info_nce(logits[0]) if positives is None else multi_positive_nce(logits[0], positives)
            loss_1_0 = self.consistency(logits[1], logits[0])
            loss_2_1 = self.consistency(logits[2], logits[1])
            loss = loss_nce + (loss_1_0 + loss_2_1) / 2
        metrics.update(
            loss=loss.detach(),
            loss_nce=loss_nce.detach(),
            loss_1_0=loss_1_0.detach(),
            loss_2_1=loss_2_1.detach(),
            positive_acc=positive_accuracy(logits[0]),
        )
        return loss, metrics
