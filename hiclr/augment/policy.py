"""The gradually growing augmentation policy of HiCLR, as data.

A policy is an ordered list of stages, each a list of items ``{name: <registry name>, <param>: <value>}``;
a view "at stage i" applies stages 0..i, each view drawn independently from the same clip::

    policy = GrowingPolicy.from_config(cfg["augment"]["stages"], reference_quirks=True)
    v0, key, v1, v2 = policy.views(x, generator, HICLR_VIEWS)   # or a list of stages, [0, 0, 1, 2]
    view = policy.apply(x, generator)                            # one view, all stages

The fast paths (``concat_views``, ``fuse_linear``, the planned path) and how they consume the generator:
docs/internals.md, 'Augmentation'.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .ops import AUGMENTATIONS, Augmentation, apply_matrix, device_constant, take_indices

__all__ = [
    "View",
    "ViewLayout",
    "GrowingPolicy",
    "HICLR_VIEWS",
    "SKELETONCLR_VIEWS",
    "QUIRK_FIXES",
    "build_augmentation",
]


@dataclass(frozen=True)
class ViewLayout:
    """The views a method takes, in the order its learner receives them: a name and the last
    policy stage of each, and which one goes through the key encoder."""

    names: tuple[str, ...]
    stages: tuple[int, ...]
    key: str = "key"

    @property
    def key_index(self) -> int:
        return self.names.index(self.key)


HICLR_VIEWS = ViewLayout(("v0", "key", "v1", "v2"), (0, 0, 1, 2))
SKELETONCLR_VIEWS = ViewLayout(("query", "key"), (0, 0))

# reference_quirks=False sets these parameters (an explicit value in the item still wins).
QUIRK_FIXES: dict[str, dict[str, Any]] = {
    "spatial_flip": {"mirror": True},
    "rotate": {"symmetric": True},
    "gaussian_blur": {"normalize": True},
    "joint_mask": {"per_sample": True},
}


@dataclass
class View:
    """One augmented view: ``x`` (B, C, T, V, M); ``mask`` None or bool (B, 1, T, V, 1), True where
    the model puts its mask token; ``edges`` None or the view's graph perturbation (an object with
    ``perturb(adjacency, block)``, e.g. ``EdgePerturbation`` of ``drop_add_edges``), handed to the
    encoder call; ``params`` (when recording) what was drawn, per sample:

    - ``matrix`` (B, 3, 3): the composed geometric map A (x' = A x over all linear ops of the
      view, in order: e.g. Rz Ry Rx H); identity when the view has none.
    - ``singular`` (B,) bool: an axis mask zeroed a coordinate, A must not be canonicalised.
    - ``stage``: the last stage applied; ``ops``: list of (name, params dict) in applied order.
    - one entry per op name (first occurrence) with its params, e.g. ``params["temporal_crop"]
      ["offset"]``, ``params["spatial_flip"]["flipped"]``, ``params["rotate"]["angles"]``.
    """

    x: torch.Tensor
    mask: torch.Tensor | None = None
    params: dict[str, Any] = field(default_factory=dict)
    edges: Any = None


def build_augmentation(item: Mapping[str, Any], reference_quirks: bool = True) -> Augmentation:
    """One augmentation from a config item ``{name: ..., **params}``."""
    if not isinstance(item, Mapping) or "name" not in item:
        raise ValueError(f"augmentation item {item!r} must be a mapping with a 'name' key")
    params = dict(item)
    name = params.pop("name")
    key = _registry_key(name)
    if not reference_quirks:
        params = {**QUIRK_FIXES.get(key, {}), **params}
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
    try:
        return AUGMENTATIONS[key](**params)
    except TypeError as exc:
        raise ValueError(f"augmentation {name!r}: {exc}") from None


def _registry_key(name: str) -> str:
    if name in AUGMENTATIONS:
        return name
    by_class = {cls.__name__: key for key, cls in AUGMENTATIONS.items()}
    if name in by_class:
        return by_class[name]
    AUGMENTATIONS.lookup(name)  # raises UnknownName (a ValueError) naming the closest and every known one
    return name


class GrowingPolicy:
    """Ordered stages of augmentations; a view at stage i applies stages 0..i."""

    def __init__(
        self,
        stages: Sequence[Sequence[Augmentation]],
        *,
        concat_views: bool = True,
        fuse_linear: bool = True,
        record: bool = False,
    ):
        self.stages = [list(stage) for stage in stages]
        self.concat_views, self.fuse_linear, self.record = concat_views, fuse_linear, record
        # work buffers of the planned path, reused between calls (never returned to callers)
        self._scratch: dict[str, torch.Tensor] = {}

    @classmethod
    def from_config(
        cls, stages: Sequence[Sequence[Mapping[str, Any]]], reference_quirks: bool = True, **options
    ) -> GrowingPolicy:
        """``stages``: list of stages, each a list of ``{name: ..., **params}`` items.

        ``options``: ``concat_views``, ``fuse_linear``, ``record`` (see the module docstring).
        """
        if not isinstance(stages, Sequence) or isinstance(stages, (str, bytes)) or not stages:
            raise ValueError("augment.stages must be a non-empty list of stages")
        built = []
        for i, stage in enumerate(stages):
            if not isinstance(stage, Sequence) or isinstance(stage, (str, bytes)):
                raise ValueError(f"augment.stages[{i}] must be a list of augmentation items")
            built.append([build_augmentation(item, reference_quirks) for item in stage])
        return cls(built, **options)

    @classmethod
    def from_yaml(cls, path: str | Path, **options) -> GrowingPolicy:
        """From a YAML file holding ``augment: {stages: [...], reference_quirks: bool}``
        (or those keys at the top level)."""
        import yaml

        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f) or {}  # a policy file, not a resolved config: keys may be absent
        raw = raw.get("augment", raw)
        if "stages" not in raw:
            raise ValueError(f"{path}: no 'augment.stages' list; see configs/augment/hiclr_default.yaml")
        return cls.from_config(raw["stages"], raw.get("reference_quirks", True), **options)

    def __repr__(self) -> str:
        lines = [f"  stage {i}: {', '.join(map(repr, s))}" for i, s in enumerate(self.stages)]
        return "GrowingPolicy(\n" + "\n".join(lines) + "\n)"

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    # ------------------------------------------------------------------ public entry points
    def views(self, x: torch.Tensor, generator: torch.Generator, layout: ViewLayout | Sequence[int]) -> list[View]:
        """One independently drawn view per entry of ``layout`` (a ``ViewLayout`` or a list of
        stages), in its order; a view at stage s applies stages 0..s."""
        stages = [int(s) for s in (layout.stages if isinstance(layout, ViewLayout) else layout)]
        for s in stages:
            if not 0 <= s < self.num_stages:
                raise ValueError(f"view stage {s} out of range: the policy has {self.num_stages} stages")
        run = self._run
        if self.fuse_linear and self._plannable(x, stages if self.concat_views else stages[:1]):
            run = self._run_planned
        if self.concat_views:
            return run(x, generator, stages)
        return [run(x, generator, [s])[0] for s in stages]

    def apply(self, x: torch.Tensor, generator: torch.Generator, stage: int | None = None) -> View:
        """One view applying stages 0..stage (default: every stage)."""
        return self.views(x, generator, [self.num_stages - 1 if stage is None else stage])[0]

    # ------------------------------------------------------------------ machinery
    def _draw(self, op: Augmentation, n_views: int, B: int, generator, like) -> dict:
        """The op's params for ``n_views`` views of B samples concatenated along the batch; a
        batch-shared op draws once per view, never across views."""
        if op.shared_across_batch and n_views > 1:
            draws = [op.draw(B, generator, like) for _ in range(n_views)]
            return {k: torch.cat([d[k] for d in draws]) for k in draws[0]}
        return op.draw(n_views * B, generator, like)

    def _run(self, x: torch.Tensor, generator: torch.Generator, stages: list[int]) -> list[View]:
        """Runs the views of ``stages`` together, concatenated along the batch, op by op."""
        B = x.shape[0]
        out: list[View | None] = [None] * len(stages)
        active = list(range(len(stages)))  # view indices still being built, in block order
        pending: torch.Tensor | None = None  # deferred linear map, (nB, 3, 3)
        st = _State(self.record, len(active) * B, x)
        cur = x
        for k, stage in enumerate(self.stages):
            for op in stage:
                if pending is not None and not op.commutes_with_linear:
                    cur, pending = apply_matrix(pending, cur), None
                params = self._draw(op, len(active), B, generator, x)
                A = params.get("matrix") if op.kind in ("index", "linear") else None
                if cur is x and op.kind == "index":  # the repeated views, gathered in one pass
                    cur = take_indices(x, params, torch.arange(len(active) * B, device=x.device) % B)
                    if A is not None and not self.fuse_linear:
                        cur = apply_matrix(A, cur)
                else:
                    if cur is x and len(active) > 1:
                        cur = x.repeat(len(active), 1, 1, 1, 1)
                    if A is not None and self.fuse_linear:  # the matrix waits; an index op gathers
                        cur = take_indices(cur, params) if op.kind == "index" else cur
                    else:
                        cur = op.apply(cur, params)
                if A is not None and self.fuse_linear:
                    pending = A if pending is None else A @ pending
                st.update(op, params)
            if cur is x and len(active) > 1:  # an empty stage 0
                cur = x.repeat(len(active), 1, 1, 1, 1)
            done = [j for j, view in enumerate(active) if stages[view] == k]
            if not done:
                continue
            if pending is not None:  # views that stop here need their matrix applied
                cur, pending = apply_matrix(pending, cur), None
            for j in done:
                out[active[j]] = st.view(cur, j, B, k)
            keep = [j for j, view in enumerate(active) if stages[view] != k]
            if not keep:
                break
            cur, st = _take(cur, keep, B), st.take(keep, B, cur.device)
            active = [active[j] for j in keep]
        return out  # type: ignore[return-value]

    # ------------------------------------------------------------------ planned fast path
    def _plannable(self, x: torch.Tensor, stages: list[int]) -> bool:
        """The planned path covers every op that says it is plannable on ``(B, 3, T, V, M)``
        clips, for views in non-decreasing stage order."""
        if x.dim() != 5 or x.shape[1] != 3 or x.shape[0] == 0:
            return False
        if any(a > b for a, b in zip(stages, stages[1:])):
            return False
        return all(op.plannable(x.shape) for stage in self.stages for op in stage)

    def _run_planned(self, x: torch.Tensor, generator: torch.Generator, stages: list[int]) -> list[View]:
        """Same draws, in the same order, as ``_run`` (so the same views up to rounding), but
        every random number is drawn first and the data are then touched as few times as
        possible: the index ops of all concatenated views become ONE frame-and-joint gather from
        the clip (plus one joint-permuted copy of the clip per joint order the ops list), every
        linear map pending before the first ``values`` op becomes ONE (3 x 3) matmul per sample,
        and the ``values`` ops then work in place. Views at stage k are the
        leading rows still active at stage k, since stages are non-decreasing; every view keeps
        its own rows of one buffer."""
        B = x.shape[0]
        n = len(stages)
        out: list[View | None] = [None] * n
        st = _State(self.record, n * B, x)
        plan: list[tuple[Augmentation, int, dict]] = []  # (op, first row, params)
        r0, active = 0, list(range(n))
        for k, stage in enumerate(self.stages):
            for op in stage:
                params = self._draw(op, len(active), B, generator, x)
                plan.append((op, r0, params))
                st.update(op, params)
            done = [j for j, view in enumerate(active) if stages[view] == k]
            for j in done:  # the leading blocks: their data are final after this stage
                out[active[j]] = st.view(None, j, B, k, x.device)
            keep = [j for j, view in enumerate(active) if stages[view] != k]
            if not keep:
                break
            st = st.take(keep, B, x.device)
            active = [active[j] for j in keep]
            r0 += len(done) * B
        data = _Lazy(x, n, self._scratch).run(plan)
        for j, view in enumerate(out):
            view.x = data[j * B : (j + 1) * B]
        return out  # type: ignore[return-value]


class _State:
    """Per-sample bookkeeping of the views being built: mask, graph perturbation, composed matrix,
    records."""

    def __init__(self, record: bool, n: int, like: torch.Tensor):
        self.record = record
        self.n = n
        self.mask: torch.Tensor | None = None
        self.edges: tuple[Augmentation, dict] | None = None  # the model-side op giving `edges`, its params
        self.matrix = torch.eye(3, dtype=like.dtype, device=like.device).expand(n, 3, 3) if record else None
        self.singular = torch.zeros(n, dtype=torch.bool, device=like.device) if record else None
        self.ops: list[tuple[str, dict]] = []

    def update(self, op: Augmentation, params: dict) -> None:
        if op.kind == "model_side" and "mask" in params:
            self.mask = params["mask"] if self.mask is None else self.mask | params["mask"]
        if op.kind == "model_side" and hasattr(op, "edges"):
            if self.edges is not None:
                raise ValueError(
                    f"a view can carry one graph perturbation, but {_name(self.edges[0])} "
                    f"and {_name(op)} both apply to it; keep one of them in the stages"
                )
            self.edges = (op, params)
        if not self.record:
            return
        A = params.get("matrix") if op.kind in ("index", "linear") else None
        if A is not None:
            self.matrix = A @ self.matrix
        singular = op.singular(params)
        if singular is not None:
            self.singular = self.singular | singular
        self.ops.append((_name(op), op.recorded(params)))

    def _sliced(self, index: torch.Tensor) -> _State:
        new = copy.copy(self)
        new.n = index.numel()
        if self.mask is not None:
            new.mask = self.mask[index]
        if self.edges is not None:
            op, params = self.edges
            new.edges = (op, {k: v[index] for k, v in params.items()})
        if self.record:
            new.matrix, new.singular = self.matrix[index], self.singular[index]
            new.ops = [(name, {k: v[index] for k, v in d.items()}) for name, d in self.ops]
        return new

    def take(self, blocks: list[int], B: int, device) -> _State:
        return self._sliced(torch.cat([torch.arange(j * B, (j + 1) * B, device=device) for j in blocks]))

    def view(self, cur: torch.Tensor | None, j: int, B: int, stage: int, device=None) -> View:
        """View j (rows j*B .. (j+1)*B) of ``cur``; ``cur=None`` leaves ``x`` for the caller."""
        device = cur.device if cur is not None else device
        if not self.record and self.mask is None and self.edges is None:
            sub = self
        else:
            sub = self._sliced(torch.arange(j * B, (j + 1) * B, device=device))
        params: dict[str, Any] = {}
        if self.record:
            params = {"matrix": sub.matrix, "singular": sub.singular, "stage": stage, "ops": sub.ops}
            for name, draws in sub.ops:
                params.setdefault(name, draws)
        edges = None if sub.edges is None else sub.edges[0].edges(sub.edges[1])
        return View(None if cur is None else cur[j * B : (j + 1) * B], sub.mask, params, edges)


class _Lazy:
    """The data of the planned path: ``N0 = n_views * B`` rows, view j at rows j*B .. (j+1)*B.

    Index ops and per-joint linear maps are kept pending, per row, as a time index (N0, T), a
    joint order and a matrix (N0, 3, 3) over ``base`` (rows ``src``); ``flush`` turns them into
    data with one frame gather and one batched matmul. ``values`` ops flush first and then work in
    place on ``cur``. A joint order is, while every joint-reordering op lists its orders
    (``op.joint_orders``), the place (N0,) of the row's order in a list known on the host: the
    base is then permuted once per listed order, and the frame gather picks each row's copy;
    otherwise a joint index (N0, V), gathered after the frames. Nothing reads the draw on the host.
    """

    #: the most listed joint orders kept as permuted copies of the base; more are gathered per row
    MAX_ORDERS = 8

    def __init__(self, x: torch.Tensor, n: int, scratch: dict[str, torch.Tensor] | None = None):
        B = x.shape[0]
        self.scratch = {} if scratch is None else scratch
        self.x, self.N0 = x, n * B
        self.cur: torch.Tensor | None = None  # materialised (N0, C, T, V, M), owned
        self.src = torch.arange(self.N0, device=x.device) % B  # rows of x
        self.tidx: torch.Tensor | None = None  # (N0, T): row i reads frame tidx[i, t] of its source
        self.jidx: torch.Tensor | None = None  # (N0, V): row i reads joint jidx[i, v] of its source
        self.orders: tuple[tuple[int, ...], ...] | None = None  # the listed joint orders, or:
        self.choice: torch.Tensor | None = None  # (N0,): row i reads its joints in orders[choice[i]]
        self.pending: torch.Tensor | None = None
        self.lo = self.N0  # first row with a pending index or matrix

    def run(self, plan) -> torch.Tensor:
        for op, r0, params in plan:
            if op.kind == "index":
                self._dirty(r0)
                if "time_index" in params:
                    self._frames(r0, params["time_index"])
                if "joint_order" in params:
                    listed = op.joint_orders(self.x.shape[3]) if "joint_choice" in params else None
                    self._joints(r0, params["joint_order"], listed, params.get("joint_choice"))
                if "matrix" in params:
                    self._matrix(r0, params["matrix"])
            elif op.kind == "linear":
                self._matrix(r0, params["matrix"])
            elif op.kind == "values":
                self.flush()
                op.apply_(self.cur[r0:], params)
            # model_side: the data are untouched (the mask or graph perturbation rides on the view)
        self.flush()
        return self.cur

    def _dirty(self, r0: int) -> None:
        self.lo = min(self.lo, r0)

    def _buffer(self, name: str, shape, like: torch.Tensor) -> torch.Tensor:
        """A work buffer of ``shape`` reused between calls (its contents are never kept)."""
        numel = math.prod(shape)
        buf = self.scratch.get(name)
        if buf is None or buf.numel() < numel or buf.dtype != like.dtype or buf.device != like.device:
            buf = self.scratch[name] = torch.empty(numel, dtype=like.dtype, device=like.device)
        return buf[:numel].view(shape)

    def _frames(self, r0: int, time_index: torch.Tensor) -> None:
        """Rows r0.. now read frame ``prev[time_index[t]]``."""
        if self.tidx is None:
            T = self.x.shape[2] if self.cur is None else self.cur.shape[2]
            self.tidx = torch.arange(T, device=self.x.device).expand(self.N0, T).clone()
        self.tidx[r0:] = torch.gather(self.tidx[r0:], 1, time_index)

    def _joints(self, r0: int, joint_order: torch.Tensor, listed=None, choice=None) -> None:
        """Rows r0.. now read joint ``prev[joint_order[v]]``; ``listed``: the orders the op can
        draw, ``choice`` (n,) the place of each row's order among them (see ``joint_orders``)."""
        V, device = self.x.shape[3], self.x.device
        identity = tuple(range(V))
        if listed is not None and self.jidx is None:
            prev = self.orders or (identity,)
            steps = tuple(listed) if identity in listed else (*listed, identity)
            orders, remap = _composed_orders(prev, steps, device)
            if len(orders) <= self.MAX_ORDERS:
                keep = steps.index(identity)  # rows before r0 are not reordered
                old = torch.zeros(self.N0, dtype=torch.long, device=device) if self.choice is None else self.choice
                combined = old * len(steps) + keep
                combined[r0:] = old[r0:] * len(steps) + choice
                self.orders, self.choice = orders, remap[combined]
                return
        if self.jidx is None:  # from here on, one joint index per row
            self.jidx = (
                torch.arange(V, device=device).expand(self.N0, V).clone()
                if self.orders is None
                else _order_table(self.orders, device)[self.choice]
            )
            self.orders = self.choice = None
        self.jidx[r0:] = torch.gather(self.jidx[r0:], 1, joint_order)

    def _matrix(self, r0: int, A: torch.Tensor) -> None:
        self._dirty(r0)
        if self.pending is None:
            self.pending = torch.eye(3, dtype=A.dtype, device=A.device).repeat(self.N0, 1, 1)
        self.pending[r0:] = A @ self.pending[r0:]

    def flush(self) -> None:
        if self.cur is not None and self.lo >= self.N0:
            return
        lo = 0 if self.cur is None else self.lo
        base = self.x if self.cur is None else self.cur
        Bb, C, T, V, M = base.shape
        src = self.src[lo:]
        n = src.numel()
        tidx = None if self.tidx is None else self.tidx[lo:]
        flat = base.contiguous().view(Bb * C * T, V * M)
        identity = tuple(range(V))
        permuted = self.orders is not None and self.orders != (identity,)
        if permuted:  # one joint-permuted copy of the base per listed joint order
            stacked = self._buffer("stacked", (len(self.orders), Bb * C * T, V * M), base)
            for i, order in enumerate(self.orders):
                if order == identity:
                    stacked[i].copy_(flat)
                else:
                    cols = device_constant(
                        ("joint_columns", order, M),
                        base.device,
                        lambda order=order: (torch.tensor(order)[:, None] * M + torch.arange(M)).flatten(),
                    )
                    torch.index_select(flat, 1, cols, out=stacked[i])
            flat = stacked.view(-1, V * M)
            src = src + self.choice[lo:] * Bb
        if tidx is None and not permuted and self.cur is not None:
            data = self.cur[lo:]  # only a matrix is pending: no gather
        else:
            t = torch.arange(T, device=base.device).expand(n, T) if tidx is None else tidx
            rows = ((src[:, None] * C + torch.arange(C, device=base.device))[:, :, None] * T + t[:, None, :]).reshape(
                -1
            )
            shape = (n, C, t.shape[1], V, M)
            # gathered frames go to a reused buffer when a matrix follows, else to the result
            data = (
                self._buffer("gather", shape, base)
                if self.pending is not None
                else torch.empty(shape, dtype=base.dtype, device=base.device)
            )
            torch.index_select(flat, 0, rows, out=data.view(-1, V * M))
        if self.jidx is not None:  # joint orders that are not listed: each row's own gather
            data = data.gather(3, self.jidx[lo:, None, None, :, None].expand(data.shape))
        if self.pending is not None:
            result = torch.empty(data.shape, dtype=data.dtype, device=data.device)
            torch.bmm(self.pending[lo:].to(data.dtype), data.view(n, C, -1), out=result.view(n, C, -1))
            data = result
        if lo == 0:
            self.cur = data
        else:
            self.cur[lo:] = data
        self.src = torch.arange(self.N0, device=self.x.device)
        self.tidx = self.jidx = self.pending = self.orders = self.choice = None
        self.lo = self.N0


def _order_table(orders: tuple[tuple[int, ...], ...], device) -> torch.Tensor:
    """(len(orders), V) int64 on ``device``, built once per list of orders."""
    return device_constant(("joint_orders", orders), device, lambda: torch.tensor(orders))


_COMPOSED: dict[tuple, tuple] = {}


def _composed_orders(prev: tuple, steps: tuple, device) -> tuple[tuple, torch.Tensor]:
    """The distinct orders ``p[q]`` (a row in order p, then reordered by q) for p in ``prev`` and
    q in ``steps``, and on ``device`` the place among them of pair (i, j), at ``i * len(steps) + j``:
    worked out on the host once per pair of lists."""
    if (prev, steps) not in _COMPOSED:
        pairs = [tuple(p[v] for v in q) for p in prev for q in steps]
        distinct = tuple(dict.fromkeys(pairs))
        _COMPOSED[prev, steps] = distinct, tuple(distinct.index(c) for c in pairs)
    distinct, places = _COMPOSED[prev, steps]
    return distinct, device_constant(("composed_joint_orders", prev, steps), device, lambda: torch.tensor(places))


def _name(op: Augmentation) -> str:
    """The registry name of ``op`` (its class name when it is not registered)."""
    return next((k for k, cls in AUGMENTATIONS.items() if type(op) is cls), type(op).__name__)


def _take(x: torch.Tensor, blocks: list[int], B: int) -> torch.Tensor:
    if blocks == list(range(blocks[0], blocks[0] + len(blocks))):  # contiguous: a slice
        return x[blocks[0] * B : (blocks[-1] + 1) * B]
    return torch.cat([x[j * B : (j + 1) * B] for j in blocks])
