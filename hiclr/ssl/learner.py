"""HiCLR's learner and objectives: the whole method in one file (after facebookresearch/moco's builder).

`ContrastiveLearner` (query encoder + MLP head, EMA key encoder, id-tagged key queue, learnable mask
token, stream conversion, an objective): one call of `forward` is one training step's loss; the engine
does backward and the optimizer step. Objectives register by name (`OBJECTIVES`), declare their `views`
(a `hiclr.augment.ViewLayout`) and map a `ContrastiveInputs` to `(loss, metrics)`; `hiclr` and
`skeletonclr` live here, the further objectives in their own modules. Contract and precision:
docs/internals.md, 'Objectives'; the losses: docs/method.md, 'Pre-training: HiCLR'.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from hiclr.augment.policy import HICLR_VIEWS, SKELETONCLR_VIEWS
from hiclr.config import STREAMS
from hiclr.models.view_norm import ViewBatchNorm1d, call_views, convert_to_view_batchnorm, fused_views_mode
from hiclr.registry import Registry

from .queue import KeyQueue

HEAD_NORMS = ("none", "batch")


def _cache_einops_backends() -> None:
    """einops looks its backend up per tensor type and caches it on first use; a first use inside
    a compiled step changes a dict the graph guards on, and the step compiles again. The encoders
    pass tensors and parameters (ST-GCN's fused graph convolution): cached here, once."""
    from einops import rearrange

    for tensor in (torch.zeros(1), nn.Parameter(torch.zeros(1))):
        rearrange(tensor, "a -> a")


_cache_einops_backends()


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


class ProjectedEncoder(nn.Module):
    """backbone (N, C, T, V, M) -> (N, feature_dim), then head feature_dim -> hidden -> ReLU -> dim.

    head_norm "none" is the reference's MoCo v2 head; "batch" puts a BatchNorm before the ReLU (as
    SimCLR's and MoCo v3's heads do). Pooled ST-GCN features share a large common component, so
    without it every clip's projection starts nearly the same vector and a short run cannot leave
    that state (the embedding spread stays near 0); with it the head sees each clip's deviation.
    """

    def __init__(self, backbone: nn.Module, hidden: int, dim: int, head_norm: str = "none"):
        super().__init__()
        if head_norm not in HEAD_NORMS:
            raise ValueError(f"head_norm must be one of {', '.join(HEAD_NORMS)}, got {head_norm!r}")
        self.backbone = convert_to_view_batchnorm(backbone)  # same weights; per-view BN when fused
        norm = [ViewBatchNorm1d(hidden)] if head_norm == "batch" else []
        self.head = nn.Sequential(
            nn.Linear(backbone.feature_dim, hidden), *norm, nn.ReLU(inplace=True), nn.Linear(hidden, dim)
        )

    def forward(self, x: torch.Tensor, edges=None) -> tuple[torch.Tensor, torch.Tensor]:
        """`edges`: None, or the view's graph perturbation, passed on to the backbone (which then
        must take `forward(x, edges=...)`, as ST-GCN)."""
        features = self.backbone(x) if edges is None else self.backbone(x, edges=edges)
        return features, self.head(features)

    def forward_with_block(self, x: torch.Tensor, block: int, edges=None):
        """(features, projection, output of backbone block `block`): the backbone must have
        `forward_features(x, return_block, edges=None)` (e.g. ST-GCN)."""
        if edges is None:
            features, block_out = self.backbone.forward_features(x, return_block=block)
        else:
            features, block_out = self.backbone.forward_features(x, return_block=block, edges=edges)
        return features, self.head(features), block_out


def embedding_spread(z: torch.Tensor) -> dict[str, torch.Tensor]:
    """SimSiam's collapse indicator of a batch of projections z (N, dim), detached tensors:
    `embed_std`, the mean over dimensions of the per-dimension (population) standard deviation of
    the L2-normalised rows (about 1/sqrt(dim) when spread, 0 at collapse), and `embed_std_ratio`
    = embed_std * sqrt(dim)."""
    with torch.no_grad():
        z = F.normalize(z.detach().float(), dim=1)
        std = z.std(dim=0, correction=0).mean()
        return {"embed_std": std, "embed_std_ratio": std * math.sqrt(z.shape[1])}


def _unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel (or torch.compile) wrapper, else itself."""
    for attr in ("module", "_orig_mod"):
        while hasattr(module, attr) and isinstance(getattr(module, attr), nn.Module):
            module = getattr(module, attr)
    return module


class ContrastiveLearner(nn.Module):
    """Query/key encoders, queue and objective of MoCo-style skeleton pre-training.

    encoder: a backbone config for `hiclr.models.build_encoder` (e.g. {"name": "stgcn", "width": 16})
        or a zero-argument callable returning a fresh backbone (with attribute `feature_dim`).
    objective: a registered name (`OBJECTIVES`) or an objective module; its `views` fix the views.
    key_init: "random" (reference quirk: the key encoder starts from its own random init) or "copy".
    init: the weight initialisation of both encoders, backbone and projection head
        (`hiclr.models.init`: "reference", the release's N(0, 0.02), or "torch"); applied to the
        query encoder, then to the key encoder (its own draw), before `key_init: copy` copies.
        None: the `init` of an `encoder` config, else "reference" (the `model.init` default).
    head_norm: "none" (reference) or "batch": a BatchNorm in the projection head (`ProjectedEncoder`).
    fused_views: "per_view": all query views in one encoder call, each BatchNorm normalising
        every view with its own statistics (`hiclr.models.view_norm`): the results of separate
        calls to float tolerance; "separate": one call per view (the reference); "shared" (or
        true): one call whose BatchNorm normalises all views together (changes the results);
        "auto" (default): per_view on CUDA, separate on CPU. Dropout masks are drawn in another
        order when fused (same distribution). A view that carries a graph perturbation
        (`view.edges`, Drop/Add edges) always gets a call of its own.
    stream: one of `hiclr.config.STREAMS` (joint, motion, bone), derived from each view before the encoder.
    temperature, mining_epoch, topk go to the objective when it takes them; further keyword
        arguments are objective-specific (an objective that does not take one is an error).
    """

    def __init__(
        self,
        encoder: dict | Callable[[], nn.Module],
        objective: str | nn.Module = "hiclr",
        *,
        dim: int = 128,
        hidden: int = 256,
        queue_size: int = 32768,
        momentum: float = 0.999,
        temperature: float = 0.07,
        mining_epoch: int = 150,
        topk: int = 1,
        stream: str = "joint",
        fused_views: str | bool = "auto",
        key_init: str = "random",
        init: str | None = None,
        head_norm: str = "none",
        **objective_args,
    ):
        super().__init__()
        if key_init not in ("random", "copy"):
            raise ValueError(f"key_init must be 'random' or 'copy', got {key_init!r}")
        if stream not in STREAMS:
            raise ValueError(f"stream must be one of {', '.join(STREAMS)}, got {stream!r}")
        from hiclr.models.init import check_init, init_weights

        if init is None:
            init = (None if callable(encoder) else encoder.get("init")) or "reference"
        self.init_scheme = check_init(init)
        make_backbone = encoder if callable(encoder) else _backbone_factory(encoder)
        self.encoder_q = ProjectedEncoder(make_backbone(), hidden, dim, head_norm)
        self.encoder_k = ProjectedEncoder(make_backbone(), hidden, dim, head_norm)
        init_weights(self.encoder_q, init)
        init_weights(self.encoder_k, init)
        if key_init == "copy":
            self.encoder_k.load_state_dict(self.encoder_q.state_dict())
        self.encoder_k.requires_grad_(False)
        self.queue = KeyQueue(queue_size, dim)
        self.mask_token = nn.Parameter(torch.zeros(()))
        shared = {
            "temperature": temperature,
            "mining_epoch": mining_epoch,
            "topk": topk,
            "queue_size": queue_size,
            "momentum": momentum,  # an objective takes what it needs
            "feature_dim": self.encoder_q.backbone.feature_dim,
        }
        self.objective = (
            objective if isinstance(objective, nn.Module) else build_objective(objective, shared, **objective_args)
        )
        self.momentum = momentum
        self.stream = stream
        self.fused_views = fused_views

    @property
    def fused_views(self) -> str:
        """The `FUSED_VIEWS` mode of the query views' encoder calls (settable)."""
        return self._fused_views

    @fused_views.setter
    def fused_views(self, value) -> None:
        self._fused_views = fused_views_mode(value)

    @classmethod
    def from_config(cls, cfg: dict) -> ContrastiveLearner:
        """Build from a resolved run config: sections `model` (`model.init`: the initialisation),
        `ssl` (its `options` mapping goes to the objective) and `data.stream`."""
        ssl = dict(cfg["ssl"])
        options = ssl.pop("options")
        model = dict(cfg["model"])
        init = model.pop("init")
        return cls(model, ssl.pop("objective"), stream=cfg["data"]["stream"], init=init, **ssl, **options)

    @property
    def view_stages(self) -> tuple[int, ...]:
        """The last policy stage of each view `forward` expects, in order (the objective's `views`)."""
        return tuple(self.objective.views.stages)

    @property
    def key_index(self) -> int:
        return self.objective.views.key_index

    def collapse_loss(self) -> float | None:
        """The objective's loss when every logit of a row is equal (a collapsed embedding: query,
        key and queue entries all the same vector), for the queue's 1 + K logits; None when the
        objective does not say (`uniform_logits_loss`)."""
        uniform = getattr(self.objective, "uniform_logits_loss", None)
        return None if uniform is None else float(uniform(1 + self.queue.keys.shape[0]))

    @torch.no_grad()
    def momentum_update(self) -> None:
        """theta_k = m theta_k + (1 - m) theta_q, over the parameters (BN buffers follow own forward)."""
        key_params = list(self.encoder_k.parameters())
        query_params = [p.detach() for p in self.encoder_q.parameters()]
        torch._foreach_mul_(key_params, self.momentum)
        torch._foreach_add_(key_params, query_params, alpha=1.0 - self.momentum)

    def prepare(self, view) -> torch.Tensor:
        """A view's clip as the encoder input: stream conversion, then masked entries := mask token."""
        x = view.x
        if self.stream != "joint":
            from hiclr.augment.streams import to_stream

            x = to_stream(x, self.stream)
        mask = getattr(view, "mask", None)
        if mask is not None:
            x = torch.where(mask, self.mask_token.to(x.dtype), x)
        return x

    def encode_queries(
        self, inputs: Sequence[torch.Tensor], block: int | None = None, edges: Sequence | None = None
    ) -> tuple[list, list, list]:
        """(backbone features, L2-normalised projections, outputs of backbone block `block`) of each
        query input, in order; the block outputs only for an objective with a `feature_block` (e.g.
        dense pairs, variant C: the backbone needs `forward_features`), else an empty list.

        `edges`: per input None or its view's graph perturbation (`view.edges`); an input with one
        gets an encoder call of its own (`hiclr.models.view_norm.call_views`)."""
        encoder = _unwrap(self.encoder_q)

        def call(x, view_edges):
            if block is not None:
                return encoder.forward_with_block(x, block, edges=view_edges)
            return self.encoder_q(x) if view_edges is None else self.encoder_q(x, edges=view_edges)

        outputs = call_views(encoder, inputs, edges, call, self.fused_views)
        return (
            [out[0] for out in outputs],
            [F.normalize(out[1], dim=1) for out in outputs],
            [] if block is None else [out[2] for out in outputs],
        )

    @torch.no_grad()
    def encode_key_blocks(self, inputs: dict[int, torch.Tensor], block: int | None) -> dict[int, torch.Tensor]:
        """{view index: the key encoder's output of backbone block `block`} for each query input the
        objective asks for (`key_block_views`; e.g. Hough votes from momentum features): one call
        per input, no gradient. The key encoder's buffers (BatchNorm running statistics) are put
        back afterwards, so its state is what the key view's own forward left."""
        if not inputs:
            return {}
        encoder = _unwrap(self.encoder_k)
        kept = [buffer.clone() for buffer in encoder.buffers()]
        blocks = {i: encoder.forward_with_block(x, block)[2] for i, x in inputs.items()}
        for buffer, saved in zip(encoder.buffers(), kept):
            buffer.copy_(saved)
        return blocks

    def switches(self, epoch: int) -> dict[str, bool]:
        """The keyword flags of `forward` at the 0-based `epoch` (the objective's `switches`, e.g.
        {"mining": epoch >= mining_epoch}). Evaluated by the caller, outside a compiled step, so that
        the epoch never reaches the graph: it compiles once per set of flags."""
        switches = getattr(self.objective, "switches", None)
        return {} if switches is None else dict(switches(epoch))

    def forward(self, views: Sequence, ids: torch.Tensor, mining: bool = False, warmup: bool = False):
        """One step's loss. `views`: View objects (`.x` (B, C, T, V, M), `.mask` None or bool
        broadcastable, optionally `.edges`: a graph perturbation for the encoder call) ordered as
        `view_stages`; `ids`: (B,) sample ids; `mining`, `warmup`: the step's flags (`switches`).
        Returns (loss, metrics of detached scalars): the objective's, plus `embed_std` /
        `embed_std_ratio` of the first query view's projections (`embedding_spread`, the collapse
        indicator)."""
        if len(views) != len(self.view_stages):
            raise ValueError(
                f"objective {type(self.objective).__name__} needs {len(self.view_stages)} "
                f"views ordered as view_stages {self.view_stages}, got {len(views)}"
            )
        query_views = [v for i, v in enumerate(views) if i != self.key_index]
        query_inputs = [self.prepare(v) for v in query_views]
        block = getattr(self.objective, "feature_block", None)
        key_block_views = tuple(getattr(self.objective, "key_block_views", ()))
        if key_block_views and block is None:
            raise ValueError(
                f"objective {type(self.objective).__name__} asks for key blocks "
                "(key_block_views) but sets no feature_block"
            )
        features, queries, blocks = self.encode_queries(
            query_inputs, block, [getattr(v, "edges", None) for v in query_views]
        )

        with torch.no_grad():  # no gradient to keys; the key encoder follows the learner's mode
            self.momentum_update()  # before the key forward, as MoCo
            key_view = views[self.key_index]
            key_edges = getattr(key_view, "edges", None)  # only where a policy perturbs the key's stage
            key_input = self.prepare(key_view)
            key_features, key = (
                self.encoder_k(key_input) if key_edges is None else self.encoder_k(key_input, edges=key_edges)
            )
            key = F.normalize(key, dim=1)
            key_blocks = self.encode_key_blocks({i: query_inputs[i] for i in key_block_views}, block)

        queue_keys, queue_ids = self.queue.snapshot()  # no copy: intact until the enqueue after next
        inputs = ContrastiveInputs(
            queries=queries,
            key=key,
            queue_keys=queue_keys,
            queue_ids=queue_ids,
            ids=ids,
            mining=bool(mining),
            warmup=bool(warmup),
            query_features=features,
            views=list(views),
            key_features=key_features,
            query_blocks=blocks,
            key_blocks=key_blocks,
        )
        loss, metrics = self.objective(inputs)
        metrics = {**metrics, **embedding_spread(queries[0])}
        if not any(getattr(v, "mask", None) is not None for v in query_views):
            # keep every trainable parameter in the graph each step (DDP requires it); adds 0
            loss = loss + 0.0 * self.mask_token
        self.queue.enqueue(key, ids)
        return loss, metrics


def _backbone_factory(cfg: dict) -> Callable[[], nn.Module]:
    from hiclr.models import build_encoder

    cfg = {k: v for k, v in cfg.items() if k != "init"}  # the learner initialises both encoders
    return lambda: build_encoder(dict(cfg))
