"""MoCo-style contrastive learner (after facebookresearch/moco's builder): the whole method in one class.

Query encoder (backbone + MLP head), EMA key encoder, id-tagged key queue, learnable mask token,
stream conversion, and a pluggable objective (`hiclr`, `skeletonclr`, ...). One call of `forward`
is one training step's loss; the engine does backward and the optimizer step.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hiclr.config import STREAMS
from hiclr.models.view_norm import ViewBatchNorm1d, convert_to_view_batchnorm, views_in_batch

from .objectives import ContrastiveInputs, build_objective
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

#: How the query views go through the encoder (`ssl.fused_views`): one call per view (the
#: reference), one call for all with BatchNorm statistics per view (the same results), one call
#: with statistics shared by all views (changes the results), or "auto": per_view on CUDA, separate
#: on CPU (both exact; `hiclr bench train` compares them). The config also takes false (separate)
#: and true (shared).
FUSED_VIEWS = ("auto", "separate", "per_view", "shared")
_FUSED_ALIASES = {False: "separate", True: "shared"}


def fused_views_mode(value) -> str:
    """The `FUSED_VIEWS` mode named by `value` (a mode, or false / true)."""
    mode = _FUSED_ALIASES.get(value, value) if isinstance(value, bool) else value
    if mode not in FUSED_VIEWS:
        raise ValueError(f"fused_views must be one of {', '.join(FUSED_VIEWS)} (or false / true), got {value!r}")
    return mode


def resolve_fused_views(mode: str, device: torch.device) -> str:
    """The mode a step runs: "auto" is per_view on CUDA and separate elsewhere."""
    if mode != "auto":
        return mode
    return "per_view" if device.type == "cuda" else "separate"


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
        """The `FUSED_VIEWS` mode of the query views' encoder calls (settable, also as a bool)."""
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
        gets an encoder call of its own (`_query_calls`)."""
        encoder = _unwrap(self.encoder_q)

        def call(x, view_edges):
            if block is not None:
                return encoder.forward_with_block(x, block, edges=view_edges)
            return self.encoder_q(x) if view_edges is None else self.encoder_q(x, edges=view_edges)

        outputs = self._query_calls(inputs, edges, call)
        return (
            [out[0] for out in outputs],
            [F.normalize(out[1], dim=1) for out in outputs],
            [] if block is None else [out[2] for out in outputs],
        )

    def _query_calls(self, inputs: Sequence[torch.Tensor], edges: Sequence | None, call) -> list[tuple]:
        """`call(x, edges)` (a tuple of per-sample tensors) for every input, in input order.

        Fused modes put the inputs without a graph perturbation into one call; an input with one
        gets a call of its own, since its perturbation holds for its whole call (ST-GCN's graph is
        shared by the batch; the release's sums run over the whole tensor). With per_view
        statistics that is what separate calls compute; under "shared" such a view keeps its own
        BatchNorm statistics."""
        edges = [None] * len(inputs) if edges is None else list(edges)
        outputs: list[tuple | None] = [None] * len(inputs)
        plain = [i for i, e in enumerate(edges) if e is None]
        if len(plain) > 1 and resolve_fused_views(self.fused_views, inputs[0].device) != "separate":
            group = [inputs[i] for i in plain]
            with self._fused(group):
                fused = call(torch.cat(group, dim=0), None)
            sizes = [x.shape[0] for x in group]
            for i, parts in zip(plain, zip(*(t.split(sizes) for t in fused))):
                outputs[i] = parts
        for i, x in enumerate(inputs):
            if outputs[i] is None:
                outputs[i] = call(x, edges[i])
        return outputs  # type: ignore[return-value]

    def _fused(self, inputs: Sequence[torch.Tensor]):
        """The context of one fused call: per-view BatchNorm statistics unless the mode is "shared"."""
        if self.fused_views == "shared":
            return contextlib.nullcontext()
        if len({x.shape[0] for x in inputs}) > 1:
            raise ValueError(
                f"fused_views per_view needs query views of one batch size, got {[x.shape[0] for x in inputs]}"
            )
        return views_in_batch(_unwrap(self.encoder_q), len(inputs))

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
