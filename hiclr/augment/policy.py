"""The gradually growing augmentation policy of HiCLR, as data.

A policy is an ordered list of stages; each stage is a list of augmentation items
``{name: <registry name>, <param>: <value>, ...}`` (see ``AUGMENTATIONS``). A view "at stage i"
applies stages 0..i, every view drawn independently from the same clip. HiCLR's four views are

    v0 (query, BA)  = stage 0        key (BA)  = stage 0
    v1 (query, BA+NA) = stages 0-1   v2 (query, BA+NA+S) = stages 0-2

so a caller asks for them by stage index::

    policy = GrowingPolicy.from_config(cfg["augment"]["stages"], reference_quirks=True)
    views = policy.named_views(x, generator, HICLR_VIEWS)   # {"v0": View, "key": View, ...}
    # or: v0, key, v1, v2 = policy.views(x, generator, stages=[0, 0, 1, 2])
    # or (contract form, view i = stages 0..i): policy(x, generator, num_views=3)

Moving an augmentation to another stage, or adding a stage, is a change of the YAML only.

Fast paths (both on by default, both deterministic for a given seed, but they consume the
generator differently from the plain per-view path, so the numbers differ between settings):
- ``concat_views``: the views that need stage k are concatenated along the batch and stage k
  runs once on them (4B samples for BA, 2B for NA, ...), instead of once per view.
- ``fuse_linear``: consecutive per-joint linear maps (shear, rotation, mirror) are composed into
  one (B, 3, 3) matrix, moved past ops that commute with them (temporal crop, index flip, blur,
  joint mask) and applied before the first op that does not (noise, axis mask) or at the end.
  With the built-in ops and views in non-decreasing stage order, the planned path (``_run_planned``)
  goes further: it draws every random number in the plain path's order first, then builds all
  views in one pass: one frame gather for crop and index flip of every view, one batched 3x3 per
  sample, then noise, blur and axis mask in place on the chosen samples only, in reused buffers.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from .ops import (AUGMENTATIONS, Augmentation, AxisMask, GaussianBlur, GaussianNoise, JointMask,
                  Rotate, Shear, SpatialFlip, TemporalCrop, apply_matrix)

__all__ = ["View", "GrowingPolicy", "HICLR_VIEWS", "QUIRK_FIXES", "build_augmentation"]

# HiCLR's four views: name -> the last stage the view applies.
HICLR_VIEWS: dict[str, int] = {"v0": 0, "key": 0, "v1": 1, "v2": 2}

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
    the model puts its mask token; ``params`` (when recording) what was drawn, per sample:

    - ``matrix`` (B, 3, 3): the composed geometric map A (x' = A x over all linear ops of the
      view, in order: e.g. Rz Ry Rx H); identity when the view has none.
    - ``singular`` (B,) bool: an axis mask zeroed a coordinate, A must not be canonicalised.
    - ``stage``: the last stage applied; ``ops``: list of (name, draws dict) in applied order.
    - one entry per op name (first occurrence) with its draws, e.g. ``params["temporal_crop"]
      ["offset"]``, ``params["spatial_flip"]["flipped"]``, ``params["rotate"]["angles"]``.
    """

    x: torch.Tensor
    mask: torch.Tensor | None = None
    params: dict[str, Any] = field(default_factory=dict)


def build_augmentation(item: Mapping[str, Any], reference_quirks: bool = True,
                       record: bool = False) -> Augmentation:
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
        return AUGMENTATIONS[key](**params, record=record)
    except TypeError as exc:
        raise ValueError(f"augmentation {name!r}: {exc}") from None


def _registry_key(name: str) -> str:
    if name in AUGMENTATIONS:
        return name
    by_class = {cls.__name__: key for key, cls in AUGMENTATIONS.items()}
    if name in by_class:
        return by_class[name]
    known = ", ".join(AUGMENTATIONS)
    raise ValueError(f"unknown augmentation {name!r}; known: {known}")


class GrowingPolicy:
    """Ordered stages of augmentations; a view at stage i applies stages 0..i."""

    def __init__(self, stages: Sequence[Sequence[Augmentation]], *, concat_views: bool = True,
                 fuse_linear: bool = True, record: bool = False):
        self.stages = [list(stage) for stage in stages]
        self.concat_views, self.fuse_linear, self.record = concat_views, fuse_linear, record
        # work buffers of the planned path, reused between calls (never returned to callers)
        self._scratch: dict[str, torch.Tensor] = {}

    @classmethod
    def from_config(cls, stages: Sequence[Sequence[Mapping[str, Any]]],
                    reference_quirks: bool = True, **options) -> "GrowingPolicy":
        """``stages``: list of stages, each a list of ``{name: ..., **params}`` items.

        ``options``: ``concat_views``, ``fuse_linear``, ``record`` (see the module docstring).
        """
        if not isinstance(stages, Sequence) or isinstance(stages, (str, bytes)) or not stages:
            raise ValueError("augment.stages must be a non-empty list of stages")
        record = options.get("record", False)
        built = []
        for i, stage in enumerate(stages):
            if not isinstance(stage, Sequence) or isinstance(stage, (str, bytes)):
                raise ValueError(f"augment.stages[{i}] must be a list of augmentation items")
            built.append([build_augmentation(item, reference_quirks, record) for item in stage])
        return cls(built, **options)

    @classmethod
    def from_yaml(cls, path: str | Path, **options) -> "GrowingPolicy":
        """From a YAML file holding ``augment: {stages: [...], reference_quirks: bool}``
        (or those keys at the top level)."""
        import yaml

        with open(path, encoding="utf-8") as f:
            cfg = yaml.safe_load(f) or {}
        cfg = cfg.get("augment", cfg)
        if "stages" not in cfg:
            raise ValueError(f"{path}: no 'augment.stages' list; see configs/augment/hiclr_default.yaml")
        return cls.from_config(cfg["stages"], cfg.get("reference_quirks", True), **options)

    def __repr__(self) -> str:
        lines = [f"  stage {i}: {', '.join(map(repr, s))}" for i, s in enumerate(self.stages)]
        return "GrowingPolicy(\n" + "\n".join(lines) + "\n)"

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    # ------------------------------------------------------------------ public entry points
    def __call__(self, x: torch.Tensor, generator: torch.Generator, num_views: int) -> list[View]:
        """The contract form: view i applies stages 0..i, for i < num_views."""
        return self.views(x, generator, list(range(num_views)))

    def named_views(self, x: torch.Tensor, generator: torch.Generator,
                    layout: Mapping[str, int] = HICLR_VIEWS) -> dict[str, View]:
        """``{name: View}`` for ``layout`` = {name: last stage}, e.g. ``HICLR_VIEWS``."""
        names = list(layout)
        return dict(zip(names, self.views(x, generator, [layout[n] for n in names])))

    def views(self, x: torch.Tensor, generator: torch.Generator,
              stages: Sequence[int]) -> list[View]:
        """One independently drawn view per entry; entry j applies stages 0..stages[j]."""
        stages = [int(s) for s in stages]
        for s in stages:
            if not 0 <= s < self.num_stages:
                raise ValueError(f"view stage {s} out of range: the policy has {self.num_stages} stages")
        run = self._run
        if self.fuse_linear and self._plannable(x, stages if self.concat_views else stages[:1]):
            run = self._run_planned
        if self.concat_views:
            return run(x, generator, stages)
        return [run(x, generator, [s])[0] for s in stages]

    # ------------------------------------------------------------------ machinery
    def _run(self, x: torch.Tensor, generator: torch.Generator, stages: list[int]) -> list[View]:
        """Runs the views of ``stages`` together, concatenated along the batch."""
        B = x.shape[0]
        out: list[View | None] = [None] * len(stages)
        active = list(range(len(stages)))  # view indices still being built, in block order
        pending: torch.Tensor | None = None  # deferred linear map, (nB, 3, 3)
        st = _State(self.record, len(active) * B, x)
        cur = x
        for k, stage in enumerate(self.stages):
            for i, op in enumerate(stage):
                if k == 0 and i == 0 and hasattr(op, "transform_repeated"):  # repeat + op, one pass
                    cur, _ = op.transform_repeated(x, len(active), generator)
                    st.update(op, None)
                    continue
                if cur is x and len(active) > 1:
                    cur = x.repeat(len(active), 1, 1, 1, 1)
                cur, pending = self._apply(op, cur, pending, generator, st, B, len(active))
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
    _PLANNED = (TemporalCrop, Shear, SpatialFlip, Rotate, GaussianNoise, GaussianBlur, AxisMask,
                JointMask)

    def _plannable(self, x: torch.Tensor, stages: list[int]) -> bool:
        """The planned path covers the registry's ops (crop mode "crop" keeping T frames) on
        ``(B, 3, T, V, M)`` clips, for views in non-decreasing stage order."""
        if x.dim() != 5 or x.shape[1] != 3 or x.shape[0] == 0:
            return False
        if any(a > b for a, b in zip(stages, stages[1:])):
            return False
        T = x.shape[2]
        for stage in self.stages:
            for op in stage:
                if type(op) not in self._PLANNED:
                    return False
                if isinstance(op, TemporalCrop) and (op.mode != "crop" or (op.size or T) != T):
                    return False
                if isinstance(op, SpatialFlip) and len(op.order) != x.shape[3]:
                    return False
        return True

    def _run_planned(self, x: torch.Tensor, generator: torch.Generator,
                     stages: list[int]) -> list[View]:
        """Same draws, in the same order, as ``_run`` (so the same views up to rounding), but
        every random number is drawn first and the data are then touched as few times as
        possible: crop and index flip of all concatenated views become ONE frame gather from
        the clip (plus, when some sample flips, one column-permuted copy of the clip), every
        linear map pending before the first op that does not commute with it becomes ONE
        (3 x 3) matmul per sample, and noise, blur and axis mask then work in place on the
        chosen samples only. Views at stage k are the leading rows still active at stage k,
        since stages are non-decreasing; every view keeps its own rows of one buffer."""
        B = x.shape[0]
        n = len(stages)
        N0 = n * B
        device, dtype = x.device, x.dtype
        out: list[View | None] = [None] * n
        st = _State(self.record, N0, x)
        plan: list[tuple[Augmentation, int, tuple]] = []  # (op, first row, draws)
        r0, active = 0, list(range(n))
        shape = x.shape[1:]
        for k, stage in enumerate(self.stages):
            for op in stage:
                rows = len(active) * B
                A = None
                if op.shared_across_batch and len(active) > 1:  # one draw per view
                    draws = []
                    for _ in range(len(active)):
                        op.sample_mask(x, generator)
                        draws.append(op.last)
                    op.last = {key: torch.cat([d[key] for d in draws]) for key in draws[0]}
                    plan.append((op, r0, ()))
                elif isinstance(op, JointMask):
                    op.sample_mask(x[:1].expand(rows, *shape), generator)
                    plan.append((op, r0, ()))
                elif isinstance(op, TemporalCrop):
                    _, time_index = op.draw_crop(rows, shape[1], generator, device)
                    plan.append((op, r0, (time_index,)))
                elif isinstance(op, Shear):
                    A = op.sample_matrix(rows, generator, device, dtype)
                    op._keep(matrix=A)
                    plan.append((op, r0, (A,)))
                elif isinstance(op, Rotate):
                    axis, angles, A = op.sample(rows, generator, device, dtype)
                    op._keep(axis=axis, angles=angles, matrix=A)
                    plan.append((op, r0, (A,)))
                elif isinstance(op, SpatialFlip):
                    flipped, A = op.draw(rows, generator, device, dtype)
                    plan.append((op, r0, (flipped, A)))
                elif isinstance(op, GaussianNoise):
                    _, chosen, noise = op.draw((rows, *shape), generator, device, dtype)
                    plan.append((op, r0, (chosen, noise)))
                elif isinstance(op, GaussianBlur):
                    plan.append((op, r0, op.draw(rows, generator, device, dtype)))
                else:  # AxisMask
                    plan.append((op, r0, op.draw(rows, shape[0], generator, device)))
                st.update(op, A)
            done = [j for j, view in enumerate(active) if stages[view] == k]
            for j in done:  # the leading blocks: their data are final after this stage
                out[active[j]] = st.view(None, j, B, k, device)
            keep = [j for j, view in enumerate(active) if stages[view] != k]
            if not keep:
                break
            st = st.take(keep, B, device)
            active = [active[j] for j in keep]
            r0 += len(done) * B
        data = _Lazy(x, n, self._scratch).run(plan)
        for j, view in enumerate(out):
            view.x = data[j * B:(j + 1) * B]
        return out  # type: ignore[return-value]

    def _apply(self, op, cur, pending, generator, st: "_State", B: int, n_views: int):
        if pending is not None and not op.commutes_with_linear:
            cur, pending = apply_matrix(pending, cur), None
        if op.shared_across_batch and n_views > 1:  # one draw per view, never across views
            parts, draws = [], []
            for chunk in cur.split(B):
                y, A = op.transform(chunk, generator, defer_linear=False)
                assert A is None, "a batch-shared op cannot be geometric"
                parts.append(y)
                draws.append(op.last)
            cur = torch.cat(parts)
            op.last = {k: torch.cat([d[k] for d in draws]) for k in draws[0]}
            st.update(op, None)
            return cur, pending
        cur, A = op.transform(cur, generator, defer_linear=self.fuse_linear)
        if A is not None and self.fuse_linear:
            pending = A if pending is None else A @ pending
        st.update(op, A)
        return cur, pending


class _State:
    """Per-sample bookkeeping of the views being built: mask, composed matrix, records."""

    def __init__(self, record: bool, n: int, like: torch.Tensor):
        self.record = record
        self.n = n
        self.mask: torch.Tensor | None = None
        self.matrix = torch.eye(3, dtype=like.dtype, device=like.device).expand(n, 3, 3) if record else None
        self.singular = torch.zeros(n, dtype=torch.bool, device=like.device) if record else None
        self.ops: list[tuple[str, dict]] = []

    def update(self, op: Augmentation, A: torch.Tensor | None) -> None:
        mask = op.last.get("mask") if hasattr(op, "sample_mask") else None
        if mask is not None:
            self.mask = mask if self.mask is None else self.mask | mask
        if not self.record:
            return
        if A is not None:
            self.matrix = A @ self.matrix
        if isinstance(op, AxisMask):
            self.singular = self.singular | op.last["applied"]
        self.ops.append((_name(op), {k: v for k, v in op.last.items()}))

    def _sliced(self, index: torch.Tensor) -> "_State":
        new = copy.copy(self)
        new.n = index.numel()
        if self.mask is not None:
            new.mask = self.mask[index]
        if self.record:
            new.matrix, new.singular = self.matrix[index], self.singular[index]
            new.ops = [(name, {k: v[index] for k, v in d.items()}) for name, d in self.ops]
        return new

    def take(self, blocks: list[int], B: int, device) -> "_State":
        return self._sliced(torch.cat([torch.arange(j * B, (j + 1) * B, device=device) for j in blocks]))

    def view(self, cur: torch.Tensor | None, j: int, B: int, stage: int, device=None) -> View:
        """View j (rows j*B .. (j+1)*B) of ``cur``; ``cur=None`` leaves ``x`` for the caller."""
        device = cur.device if cur is not None else device
        if not self.record and self.mask is None:
            sub = self
        else:
            sub = self._sliced(torch.arange(j * B, (j + 1) * B, device=device))
        params: dict[str, Any] = {}
        if self.record:
            params = {"matrix": sub.matrix, "singular": sub.singular, "stage": stage, "ops": sub.ops}
            for name, draws in sub.ops:
                params.setdefault(name, draws)
        return View(None if cur is None else cur[j * B:(j + 1) * B], sub.mask, params)


class _Lazy:
    """The data of the planned path: ``N0 = n_views * B`` rows, view j at rows j*B .. (j+1)*B.

    Index ops (temporal crop, index flip) and per-joint linear maps are kept pending, per row,
    as a time index (N0, T), a joint index (N0, V) and a matrix (N0, 3, 3) over ``base``
    (rows ``src``); ``flush`` turns them into data with one frame gather and one batched
    matmul. Noise, blur and axis mask flush first and then work in place on ``cur``.
    """

    def __init__(self, x: torch.Tensor, n: int, scratch: dict[str, torch.Tensor] | None = None):
        B = x.shape[0]
        self.scratch = {} if scratch is None else scratch
        self.x, self.N0 = x, n * B
        self.cur: torch.Tensor | None = None  # materialised (N0, C, T, V, M), owned
        self.src = torch.arange(self.N0, device=x.device) % B  # rows of x
        self.tidx: torch.Tensor | None = None
        # joint orders: row i reads joint orders[code[i]][v] of its source for joint v
        self.orders: list[tuple[int, ...]] = [tuple(range(x.shape[3]))]
        self.code: torch.Tensor | None = None
        self.pending: torch.Tensor | None = None
        self.lo = self.N0  # first row with a pending index or matrix

    def run(self, plan) -> torch.Tensor:
        for op, r0, draws in plan:
            if isinstance(op, TemporalCrop):
                (time_index,) = draws
                self._dirty(r0)
                if self.tidx is None:
                    T = self.x.shape[2] if self.cur is None else self.cur.shape[2]
                    self.tidx = torch.arange(T, device=self.x.device).expand(self.N0, T).clone()
                self.tidx[r0:] = torch.gather(self.tidx[r0:], 1, time_index)
            elif isinstance(op, SpatialFlip):
                flipped, A = draws
                self._dirty(r0)
                self._flip(r0, flipped, tuple(op.order))
                if A is not None:
                    self._matrix(r0, A)
            elif isinstance(op, (Shear, Rotate)):
                self._matrix(r0, draws[0])
            elif isinstance(op, GaussianNoise):
                self.flush()
                op.apply_(self.cur[r0:], *draws)
            elif isinstance(op, GaussianBlur):
                self.flush()
                op.apply_(self.cur[r0:], *draws)
            elif isinstance(op, AxisMask):
                self.flush()
                op.apply_(self.cur[r0:], *draws)
            # JointMask: the data are untouched
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

    def _flip(self, r0: int, flipped: torch.Tensor, order: tuple[int, ...]) -> None:
        """Rows r0.. that flip now read joint ``prev[order[v]]``: one composed order per code."""
        if self.code is None:
            self.code = torch.zeros(self.N0, dtype=torch.long, device=self.x.device)
        nxt = []
        for prev in list(self.orders):
            composed = tuple(prev[o] for o in order)
            if composed not in self.orders:
                self.orders.append(composed)
            nxt.append(self.orders.index(composed))
        lookup = torch.as_tensor(nxt, device=self.x.device)
        part = self.code[r0:]
        part.copy_(torch.where(flipped, lookup[part], part))

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
        permuted = False
        if self.code is not None:  # one column-permuted copy of the base per joint order used
            code = self.code[lo:]
            used = sorted(set(code.unique().tolist()))
            if used != [0]:
                permuted = True
                stacked = self._buffer("stacked", (len(used), Bb * C * T, V * M), base)
                slot = torch.zeros(len(self.orders), dtype=torch.long, device=base.device)
                for i, c in enumerate(used):
                    slot[c] = i
                    if c == 0:
                        stacked[i].copy_(flat)
                    else:
                        cols = (torch.as_tensor(self.orders[c], device=base.device)[:, None] * M
                                + torch.arange(M, device=base.device)).flatten()
                        torch.index_select(flat, 1, cols, out=stacked[i])
                flat = stacked.view(-1, V * M)
                src = src + slot[code] * Bb
        if tidx is None and not permuted and self.cur is not None:
            data = self.cur[lo:]  # only a matrix is pending: no gather
        else:
            t = torch.arange(T, device=base.device).expand(n, T) if tidx is None else tidx
            rows = ((src[:, None] * C + torch.arange(C, device=base.device))[:, :, None] * T
                    + t[:, None, :]).reshape(-1)
            shape = (n, C, t.shape[1], V, M)
            # gathered frames go to a reused buffer when a matrix follows, else to the result
            data = self._buffer("gather", shape, base) if self.pending is not None else \
                torch.empty(shape, dtype=base.dtype, device=base.device)
            torch.index_select(flat, 0, rows, out=data.view(-1, V * M))
        if self.pending is not None:
            result = torch.empty(data.shape, dtype=data.dtype, device=data.device)
            torch.bmm(self.pending[lo:].to(data.dtype), data.view(n, C, -1), out=result.view(n, C, -1))
            data = result
        if lo == 0:
            self.cur = data
        else:
            self.cur[lo:] = data
        self.src = torch.arange(self.N0, device=self.x.device)
        self.tidx = self.code = self.pending = None
        self.orders = self.orders[:1]
        self.lo = self.N0


def _name(op: Augmentation) -> str:
    return next(k for k, cls in AUGMENTATIONS.items() if type(op) is cls)


def _take(x: torch.Tensor, blocks: list[int], B: int) -> torch.Tensor:
    if blocks == list(range(blocks[0], blocks[0] + len(blocks))):  # contiguous: a slice
        return x[blocks[0] * B:(blocks[-1] + 1) * B]
    return torch.cat([x[j * B:(j + 1) * B] for j in blocks])
