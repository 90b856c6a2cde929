"""Drop/Add edges (DAE): HiCLR's model-side augmentation of the graph, after the release.

The op leaves the data alone; its draw travels on the view (``view.edges``, an ``EdgePerturbation``) to
the encoder call, and the encoder hands each block's adjacency to it::

    A_block = view.edges.perturb(A, block)      # ST-GCN: A (K, V, V), before the edge importance
                                                # DSTA: its attention maps (N, S, V, V)

The perturbation is a pure function of its seed, the block and the adjacency's shape. The recipe (drop,
add, each encoder's defaults) and its random numbers: docs/method.md, 'Drop/Add edges'.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .ops import Augmentation, register_augmentation

__all__ = ["DropAddEdges", "EdgePerturbation", "DEFAULT_ADD", "DEFAULT_ADD_VALUE", "hashed_uniform"]

#: The release transformer's add ratio and value: what `add=None` means where the encoder sets none.
DEFAULT_ADD = 0.05
DEFAULT_ADD_VALUE = "mean"


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """Low 32 bits of ``x * c`` for int64 ``x`` in [0, 2^32) and a 32-bit constant ``c``, in two
    16-bit halves so that no int64 product overflows."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & 0xFFFFFFFF


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """``lowbias32`` (C. Wellons' hash prospector): a bijection of 32-bit words with a strong
    avalanche, on int64 tensors holding values in [0, 2^32)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def hashed_uniform(seed: torch.Tensor | int, block: int, count: int, device) -> torch.Tensor:
    """``count`` float32 uniforms in [0, 1), entry i a pure function of (seed, block, i): a prefix
    of a longer draw is the shorter draw.

    ``seed`` is a non-negative int64 scalar (a tensor or an int, below 2^62); its two 32-bit halves
    and the block are folded into one key, then every entry index is hashed with it twice."""
    seed = torch.as_tensor(seed, dtype=torch.int64, device=device)
    key = _hash32(_hash32(_hash32(seed & 0xFFFFFFFF) ^ (seed >> 32)) ^ (block & 0xFFFFFFFF))
    index = torch.arange(count, device=device, dtype=torch.int64)
    bits = _hash32(_hash32(index ^ key) ^ key)
    return (bits >> 8).to(torch.float32) * 2.0**-24


@dataclass(frozen=True)
class EdgePerturbation:
    """One view's Drop/Add-edges draw: ``perturb(adjacency, block)`` is what the encoder applies.

    seed: int64 scalar tensor (or int), drawn from the step's generator (the op's recorded ``seed``).
    drop: the largest drop ratio (p ~ U(0, drop)); add: the largest add ratio (r ~ U(0, add)), None:
    the encoder's default; add_value: a number, ``"mean"`` (sum(A) / numel(A)) or None (the
    encoder's default). ``block`` is the 0-based index of the encoder's block.
    """

    seed: torch.Tensor | int
    drop: float = 0.1
    add: float | None = None
    add_value: float | str | None = None

    def with_defaults(self, add: float, add_value: float | str) -> EdgePerturbation:
        """A copy with the unset ``add`` / ``add_value`` taken from the encoder's defaults."""
        return replace(
            self,
            add=add if self.add is None else self.add,
            add_value=add_value if self.add_value is None else self.add_value,
        )

    @property
    def add_ratio(self) -> float:
        return DEFAULT_ADD if self.add is None else float(self.add)

    @property
    def fill(self) -> float | str:
        return DEFAULT_ADD_VALUE if self.add_value is None else self.add_value

    def ratios(self, block: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(p, r) of ``block``: the drop probability and the add ratio, float32 scalars."""
        u = hashed_uniform(self.seed, block, 2, device)
        return u[0] * self.drop, u[1] * self.add_ratio

    def draw_block(self, block: int, adjacency: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(p, r, kept, grown) of ``block``: the ratios, and bool masks of ``adjacency``'s shape,
        kept where the drop keeps the entry (probability 1 - p), grown where the add may fill a
        zero entry (probability r). Entries 0-1 of the block's uniforms give the ratios, then one
        per entry for the drop and one per entry for the add."""
        n = adjacency.numel()
        u = hashed_uniform(self.seed, block, 2 + 2 * n, adjacency.device)
        p, r = u[0] * self.drop, u[1] * self.add_ratio
        kept = (u[2 : 2 + n] >= p).view(adjacency.shape)
        grown = (u[2 + n :] < r).view(adjacency.shape)
        return p, r, kept, grown

    def perturb(self, adjacency: torch.Tensor, block: int) -> torch.Tensor:
        """The drop, then the add, of ``block``; with both ratios 0 the adjacency itself."""
        if self.drop == 0 and self.add_ratio == 0:
            return adjacency
        p, _, kept, grown = self.draw_block(block, adjacency)
        out = adjacency
        if self.drop > 0:
            out = out * kept.to(out.dtype) / (1 - p).to(out.dtype)
        if self.add_ratio > 0:
            total = out.sum()
            value = (total / out.numel()).detach() if self.fill == "mean" else float(self.fill)
            added = (grown & (out == 0)).to(out.dtype) * value
            grown_total = total + added.sum()  # 0 only for an all-zero adjacency, which stays 0
            out = (out + added) * (total / torch.where(grown_total != 0, grown_total, 1.0))
        return out


def _check_ratio(name: str, value, upper_open: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value
    ok = ok and (value < 1 if upper_open else value <= 1)
    if not ok:
        bound = "[0, 1)" if upper_open else "[0, 1]"
        raise ValueError(f"drop_add_edges {name} must be a number in {bound}, got {value!r}")


@register_augmentation("drop_add_edges")
class DropAddEdges(Augmentation):
    """Drop/Add edges (S), model-side: the encoder perturbs each block's adjacency (module docstring).

    ``drop``: the largest drop ratio (release: 0.1); ``add``: the largest add ratio, None for the
    encoder's release default (ST-GCN: 0, drop only; otherwise 0.05); ``add_value``: the value of an
    added entry, a positive number or ``"mean"`` (sum(A) / numel(A)), None for the encoder's
    default (ST-GCN: 1; otherwise "mean"). The data are returned unchanged; params ``seed`` (B,)
    int64, one per view's batch (``shared_across_batch``: the release perturbs the graph per
    forward call), from which ``edges(params)`` builds the view's ``EdgePerturbation``.
    """

    kind = "model_side"
    shared_across_batch = True

    def __init__(
        self, drop: float = 0.1, add: float | None = None, add_value: float | str | None = None, record: bool = False
    ):
        super().__init__(record)
        _check_ratio("drop", drop, upper_open=True)
        if add is not None:
            _check_ratio("add", add, upper_open=False)
        if (
            add_value is not None
            and add_value != "mean"
            and not (isinstance(add_value, (int, float)) and not isinstance(add_value, bool) and add_value > 0)
        ):
            raise ValueError(f"drop_add_edges add_value must be a positive number or 'mean', got {add_value!r}")
        self.drop = float(drop)
        self.add = None if add is None else float(add)
        self.add_value = add_value if add_value in (None, "mean") else float(add_value)

    def extra_repr(self) -> str:
        return f"drop={self.drop}, add={self.add}, add_value={self.add_value!r}"

    def draw(self, n, generator, like):
        seed = torch.randint(0, 2**62, (1,), generator=generator, device=like.device)
        return {"seed": seed.expand(n).clone()}

    def edges(self, params: dict) -> EdgePerturbation:
        """The perturbation of a view from its params (the draw, or a recorded ``seed``)."""
        return EdgePerturbation(params["seed"][0], self.drop, self.add, self.add_value)
