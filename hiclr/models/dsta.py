"""DSTA-Net (Shi et al. 2020), the transformer encoder of the HiCLR release, spatial attention only.

The release's `net/dsta.py` at the settings of its `transformer_ntu60` configs (`DSTA_BLOCKS`), with a
7x1 temporal convolution where the full DSTA-Net has temporal attention. Module names follow the
release, so its weights, stripped of `encoder_q.`, load as they are. A graph perturbation (`edges`)
gets each block's attention maps (N*M, S, V, V) and the block's 0-based index. Architecture:
docs/method.md, 'The transformer encoder'; names and buffers: docs/internals.md, 'Models'.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import torch
from einops import rearrange
from torch import nn

#: The release's block plan: (in, out, inter channels, stride) per block.
DSTA_BLOCKS = (
    (32, 32, 16, 1),
    (32, 32, 16, 1),
    (32, 64, 16, 2),
    (64, 64, 16, 1),
    (64, 128, 32, 2),
    (128, 128, 32, 1),
    (128, 128, 32, 1),
    (128, 256, 32, 1),
)

LEAKY_SLOPE = 0.1


class GraphPerturbation(Protocol):
    """What an encoder accepts as `edges`: a change of each block's adjacency (attention maps)."""

    def perturb(self, adjacency: torch.Tensor, block: int) -> torch.Tensor: ...


def spatial_encoding(channels: int, num_joints: int) -> torch.Tensor:
    """(1, channels, 1, V) sinusoidal encoding of the joint index v: sin(v w_i) on even channels,
    cos(v w_i) on odd ones, w_i = 10000^(-2i / channels) (the Transformer's, as the release)."""
    position = torch.arange(num_joints, dtype=torch.float32)[:, None]  # (V, 1)
    frequency = torch.exp(torch.arange(0, channels, 2).float() * -(math.log(10000.0) / channels))
    encoding = torch.zeros(num_joints, channels)
    encoding[:, 0::2] = torch.sin(position * frequency)
    encoding[:, 1::2] = torch.cos(position * frequency[: channels // 2])
    return rearrange(encoding, "v c -> 1 c 1 v")


def _conv_bn(in_channels: int, out_channels: int, kernel=1, stride=1, padding=0) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel, stride, padding), nn.BatchNorm2d(out_channels))


class SpatialAttentionBlock(nn.Module):
    """(n, in, t, v) -> (n, out, t / stride, v): spatial attention, feed-forward, temporal conv.

        A = tanh(q^T k / (inter * t)) * alphas + attention0s            (n, S, V, V), S subsets
        y = relu(downs1(x) + out_nets(x A))  ->  y = relu(downs2(x) + ff_nets(y))
        z = relu(dropout(downt2(y)) + out_nett(y))                        out_nett: kernel x 1, stride

    with q, k = in_nets(x + joint encoding) and leaky ReLUs. The residual branches are identities
    where the shape is kept, else 1x1 conv + BN (downt2 with the stride).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        inter_channels: int,
        stride: int = 1,
        num_subsets: int = 3,
        num_joints: int = 25,
        temporal_kernel: int = 7,
        attention_dropout: float = 0.0,
    ):
        super().__init__()
        if temporal_kernel % 2 != 1:
            raise ValueError(f"temporal_kernel must be odd, got {temporal_kernel}")
        self.num_subsets, self.inter_channels = num_subsets, inter_channels
        self.register_buffer("joint_encoding", spatial_encoding(in_channels, num_joints), persistent=False)
        self.in_nets = nn.Conv2d(in_channels, 2 * num_subsets * inter_channels, 1)
        self.alphas = nn.Parameter(torch.ones(1, num_subsets, 1, 1))
        self.attention0s = nn.Parameter(torch.ones(1, num_subsets, num_joints, num_joints) / num_joints)
        self.out_nets = _conv_bn(in_channels * num_subsets, out_channels)
        self.ff_nets = _conv_bn(out_channels, out_channels)
        self.out_nett = _conv_bn(
            out_channels, out_channels, (temporal_kernel, 1), (stride, 1), ((temporal_kernel - 1) // 2, 0)
        )
        if in_channels != out_channels or stride != 1:
            self.downs1 = _conv_bn(in_channels, out_channels)
            self.downs2 = _conv_bn(in_channels, out_channels)
            self.downt2 = _conv_bn(out_channels, out_channels, 1, (stride, 1))
        else:
            self.downs1 = self.downs2 = self.downt2 = nn.Identity()
        self.relu = nn.LeakyReLU(LEAKY_SLOPE)
        self.drop = nn.Dropout(attention_dropout)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """(n, in, t, v) -> (n, S, V, V): the data-dependent maps plus the global ones."""
        q, k = rearrange(
            self.in_nets(x + self.joint_encoding), "n (two s c) t v -> two n s c t v", two=2, s=self.num_subsets
        )
        scores = torch.einsum("nsctu,nsctv->nsuv", q, k) / (self.inter_channels * x.shape[2])
        return torch.tanh(scores) * self.alphas + self.attention0s

    def forward(self, x: torch.Tensor, edges: GraphPerturbation | None = None, index: int = 0) -> torch.Tensor:
        attention = self.attention(x)
        if edges is not None:
            attention = edges.perturb(attention, index)
        y = rearrange(torch.einsum("nctu,nsuv->nsctv", x, attention), "n s c t v -> n (s c) t v")
        y = self.relu(self.downs1(x) + self.out_nets(y))
        y = self.relu(self.downs2(x) + self.ff_nets(y))
        return self.relu(self.drop(self.downt2(y)) + self.out_nett(y))


class DSTA(nn.Module):
    """(N, C, T, V, M) -> (N, feature_dim): persons folded into the batch, the blocks, then the mean
    over frames and joints and over persons. feature_dim is the last block's out channels (256).

    blocks: (in, out, inter channels, stride) per block, each block's in = the previous block's
    out; num_subsets: attention maps per block; attention_dropout: dropout on the temporal
    residual (the release's `attentiondrop`: 0.5 in pre-training, 0 in its evaluations).
    """

    def __init__(
        self,
        in_channels: int = 3,
        blocks: Sequence[Sequence[int]] = DSTA_BLOCKS,
        num_subsets: int = 3,
        num_joints: int = 25,
        temporal_kernel: int = 7,
        attention_dropout: float = 0.5,
    ):
        super().__init__()
        plan = [tuple(int(n) for n in block) for block in blocks]
        _check_plan(plan)
        self.in_channels = in_channels
        self.feature_dim = plan[-1][1]
        self.proj = nn.Conv2d(in_channels, plan[0][0], 1)
        self.input_map = nn.Sequential(nn.BatchNorm2d(plan[0][0]), nn.LeakyReLU(LEAKY_SLOPE))
        self.graph_layers = nn.ModuleList(
            SpatialAttentionBlock(
                c_in, c_out, inter, stride, num_subsets, num_joints, temporal_kernel, attention_dropout
            )
            for c_in, c_out, inter, stride in plan
        )

    def set_attention_dropout(self, p: float) -> None:
        """Every block's dropout on the temporal residual (the release's `attentiondrop`) := p."""
        for layer in self.graph_layers:
            layer.drop.p = float(p)

    def forward(self, x: torch.Tensor, edges: GraphPerturbation | None = None) -> torch.Tensor:
        """(N, C, T, V, M) -> (N, feature_dim): the pooled features of `forward_features`."""
        return self._encode(x, edges, None)[0]

    def forward_features(
        self, x: torch.Tensor, return_block: int = 4, edges: GraphPerturbation | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Like `forward`, also returning the output of block `return_block` (1-based), persons
        unfolded: ((N, feature_dim), (N, M, C_b, T_b, V)). `edges` perturbs every block's attention."""
        if not 1 <= return_block <= len(self.graph_layers):
            raise ValueError(f"return_block must be in 1..{len(self.graph_layers)}, got {return_block}")
        return self._encode(x, edges, return_block)

    def _encode(self, x: torch.Tensor, edges: GraphPerturbation | None, return_block: int | None):
        n, m = x.shape[0], x.shape[4]
        x = self.input_map(self.proj(rearrange(x, "n c t v m -> (n m) c t v")))
        block = None
        for i, layer in enumerate(self.graph_layers):
            x = layer(x, edges, i)
            if i + 1 == return_block:
                block = rearrange(x, "(n m) c t v -> n m c t v", n=n, m=m)
        pooled = rearrange(x.mean(dim=(2, 3)), "(n m) d -> n m d", n=n, m=m).mean(dim=1)
        return pooled, block


def _check_plan(plan: list[tuple[int, ...]]) -> None:
    if not plan:
        raise ValueError("blocks must list at least one block (in, out, inter channels, stride)")
    for i, block in enumerate(plan):
        if len(block) != 4 or min(block) < 1:
            raise ValueError(
                f"block {i + 1} is {list(block)}; write each block as four positive "
                "integers [in, out, inter channels, stride]"
            )
        if i and block[0] != plan[i - 1][1]:
            raise ValueError(
                f"block {i + 1} takes {block[0]} channels but block {i} gives "
                f"{plan[i - 1][1]}; each block's in must be the previous block's out"
            )
