"""ST-GCN backbone (Yan et al. 2018) at the reduced width of the contrastive line.

Module names and tensor layouts follow the reference implementation (`data_bn`,
`st_gcn_networks.<i>.gcn.conv`, `.tcn.0..4`, `.residual.0..1`, `edge_importance.<i>`), so a
reference state_dict, stripped of its `encoder_q.` prefix, loads as it is. The adjacency `A` is a
non-persistent buffer: it is rebuilt from the graph, never read from a checkpoint.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from hiclr.models.graph import GRAPHS

#: `GraphConv` orders: the reference's, the cheaper one, and the per-block choice by cost.
GRAPH_CONV_ORDERS = ("conv_first", "aggregate_first", "auto")


def cheaper_graph_conv_order(in_channels: int, out_channels: int) -> str:
    """The order with fewer multiply-adds per (t, v) position, the reference's on a tie.

    conv first: K*in*out (1x1 conv to K*out channels) + K*out*V (aggregation over K*out channels);
    aggregate first: K*in*V + K*in*out. Both share K*in*out, so aggregating first wins exactly when
    in < out (ST-GCN's blocks 3->w, w->2w, 2w->4w, 4w->16w).
    """
    return "aggregate_first" if in_channels < out_channels else "conv_first"


class GraphConv(nn.Module):
    """Spatial graph convolution y = sum_k W_k x A_k + b_k (1^T A_k): (n, in, t, v) -> (n, out, t, v).

    The reference computes it conv first (a 1x1 conv to K * out channels, then the sum over the K
    adjacency subsets). `order="aggregate_first"` aggregates the input over the graph first (K * in
    channels) and mixes channels after: the same linear map, fewer operations and a smaller
    intermediate when in < out. The bias then enters multiplied by A's column sums, as in the
    reference. `"auto"` picks the cheaper order (`cheaper_graph_conv_order`). The parameters are
    the reference's (`conv.weight` (K * out, in, 1, 1), `conv.bias` (K * out,)) in every order, so
    reference checkpoints load unchanged.
    """

    def __init__(self, in_channels: int, out_channels: int, num_subsets: int, order: str = "conv_first"):
        super().__init__()
        if order not in GRAPH_CONV_ORDERS:
            raise ValueError(f"graph conv order must be one of {', '.join(GRAPH_CONV_ORDERS)}, got {order!r}")
        self.num_subsets = num_subsets
        self.order = cheaper_graph_conv_order(in_channels, out_channels) if order == "auto" else order
        self.conv = nn.Conv2d(in_channels, out_channels * num_subsets, kernel_size=1)

    def forward(self, x: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
        k = self.num_subsets
        if self.order == "conv_first":
            x = rearrange(self.conv(x), "n (k c) t v -> n k c t v", k=k)
            return torch.einsum("nkctv,kvw->nctw", x, A)
        aggregated = rearrange(torch.einsum("nctv,kvw->nkctw", x, A), "n k c t w -> n (k c) t w")
        weight = rearrange(self.conv.weight, "(k o) c 1 1 -> o (k c) 1 1", k=k)
        y = F.conv2d(aggregated, weight)
        if self.conv.bias is None:
            return y
        # sum_v (sum_k b_k) A_k[v, w]: the bias of each subset times A_k's column sums
        bias = torch.einsum("ko,kw->ow", self.conv.bias.view(k, -1), A.sum(dim=1))
        return y + bias[None, :, None, :]

    def extra_repr(self) -> str:
        return f"order={self.order}"


class STGCNBlock(nn.Module):
    """Graph conv, BN, ReLU, temporal conv (kernel x 1, stride), BN, Dropout, + residual, ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_subsets: int,
        temporal_kernel: int = 9,
        stride: int = 1,
        dropout: float = 0.0,
        residual: bool = True,
        graph_conv: str = "conv_first",
    ):
        super().__init__()
        if temporal_kernel % 2 != 1:
            raise ValueError(f"temporal_kernel must be odd, got {temporal_kernel}")
        self.gcn = GraphConv(in_channels, out_channels, num_subsets, graph_conv)
        self.tcn = nn.Sequential(
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),  # in place, as the reference: BN backward needs only its input
            nn.Conv2d(out_channels, out_channels, (temporal_kernel, 1), (stride, 1), ((temporal_kernel - 1) // 2, 0)),
            nn.BatchNorm2d(out_channels),
            nn.Dropout(dropout, inplace=True),
        )
        if not residual:
            self.residual = None
        elif in_channels == out_channels and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=(stride, 1)),
                nn.BatchNorm2d(out_channels),
            )
        self.relu = nn.ReLU(inplace=True)  # on the fresh sum (or dropout output), never on x

    def forward(self, x: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
        y = self.tcn(self.gcn(x, A))
        if self.residual is not None:
            y = y + self.residual(x)
        return self.relu(y)


class STGCN(nn.Module):
    """(N, C, T, V, M) -> (N, feature_dim): persons folded into the batch, pooled over (T, V), then averaged.

    Channels per block at width w: w, w, w, w, 2w, 2w, 2w, 4w, 4w, feature_dim (16w unless
    given); stride 2 at blocks 5 and 8; no residual in block 1; dropout in blocks 2-10.
    """

    def __init__(
        self,
        in_channels: int = 3,
        width: int = 16,
        dropout: float = 0.5,
        edge_importance: bool = True,
        graph: str = "ntu",
        temporal_kernel: int = 9,
        feature_dim: int | None = None,
        graph_conv: str = "auto",
    ):
        super().__init__()
        if graph not in GRAPHS:
            raise ValueError(f"unknown graph {graph!r}; known: {sorted(GRAPHS)}")
        A = torch.from_numpy(GRAPHS[graph]())
        self.register_buffer("A", A, persistent=False)
        num_subsets, num_joints = A.shape[0], A.shape[1]
        self.in_channels = in_channels
        self.feature_dim = 16 * width if feature_dim is None else feature_dim

        w = width
        plan = [  # (in, out, stride)
            (in_channels, w, 1),
            (w, w, 1),
            (w, w, 1),
            (w, w, 1),
            (w, 2 * w, 2),
            (2 * w, 2 * w, 1),
            (2 * w, 2 * w, 1),
            (2 * w, 4 * w, 2),
            (4 * w, 4 * w, 1),
            (4 * w, self.feature_dim, 1),
        ]
        self.data_bn = nn.BatchNorm1d(in_channels * num_joints)
        self.st_gcn_networks = nn.ModuleList(
            STGCNBlock(
                c_in,
                c_out,
                num_subsets,
                temporal_kernel,
                stride,
                dropout=0.0 if i == 0 else dropout,
                residual=i > 0,
                graph_conv=graph_conv,
            )
            for i, (c_in, c_out, stride) in enumerate(plan)
        )
        if edge_importance:
            self.edge_importance = nn.ParameterList(nn.Parameter(torch.ones_like(A)) for _ in self.st_gcn_networks)
        else:
            self.edge_importance = None

    #: The release's Drop/Add-edges settings for ST-GCN, filled into a perturbation that leaves
    #: them unset (`EdgePerturbation.with_defaults`): the drop only (its add call is commented
    #: out), and an added edge weighs 1.
    edge_defaults = {"add": 0.0, "add_value": 1.0}

    def forward(self, x: torch.Tensor, edges=None) -> torch.Tensor:
        """(N, C, T, V, M) -> (N, feature_dim): the pooled features of `forward_features`."""
        return self.forward_features(x, edges=edges)[0]

    def forward_features(self, x: torch.Tensor, return_block: int = 4, edges=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Like `forward`, also returning the output of block `return_block` (1-based), persons
        unfolded: ((N, feature_dim), (N, M, C_b, T_b, V)). For dense objectives (block 4: stride 1).

        `edges`: None (the graph as it is) or a graph perturbation (`view.edges`, an object with
        `perturb(adjacency, block)`): block i (0-based) uses `edges.perturb(A, i)`, before the edge
        importance multiplies it, as the release's drop-graph branch does."""
        if not 1 <= return_block <= len(self.st_gcn_networks):
            raise ValueError(f"return_block must be in 1..{len(self.st_gcn_networks)}, got {return_block}")
        if edges is not None and hasattr(edges, "with_defaults"):
            edges = edges.with_defaults(**self.edge_defaults)
        n, c, t, v, m = x.shape
        x = self.data_bn(rearrange(x, "n c t v m -> (n m) (v c) t"))
        x = rearrange(x, "nm (v c) t -> nm c t v", v=v, c=c)
        block = None
        for i, layer in enumerate(self.st_gcn_networks):
            A = self.A if edges is None else edges.perturb(self.A, i)
            A = A if self.edge_importance is None else A * self.edge_importance[i]
            x = layer(x, A)
            if i + 1 == return_block:
                block = rearrange(x, "(n m) c t v -> n m c t v", n=n, m=m)
        x = x.mean(dim=(2, 3))
        return rearrange(x, "(n m) d -> n m d", n=n, m=m).mean(dim=1), block
