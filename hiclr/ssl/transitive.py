"""Transitive positive mining (after Transitive Invariance, ICCV 2017), variant B: objective `transitive`.

A graph over momentum keys (the batch's and the queue's): intra-instance edges I join the nodes of one
sample id, inter-instance edges E mutual k-nearest neighbours of different samples. From `mining_epoch`
on, an anchor's positives are P = [(I E I) > 0] or I, and HiCLR's InfoNCE becomes the multi-positive
-(1/|P|) sum_p log softmax(s / tau)_p; the consistency terms are HiCLR's. Config: `ssl.objective:
transitive`, `ssl.options: {k, mutual, edges, intra_hop, queue_sources, label_store}`. Method and
`queue_sources`: docs/method.md, 'The further objectives' (B); details: docs/internals.md, 'Objectives'.
"""

from __future__ import annotations

import torch

from .learner import HiCLR, at_least_float32, full_precision, register_objective


# ---------------------------------------------------------------------------------------- graph
def intra_edges(ids: torch.Tensor) -> torch.Tensor:
    """I: (n, n) bool, True where two nodes hold the same sample id (reflexive)."""
    return ids[:, None] == ids[None, :]


@torch.no_grad()
def mutual_knn_edges(
    keys: torch.Tensor, ids: torch.Tensor, k: int = 1, mutual: bool = True, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """E: (n, n) bool over the nodes `keys` (n, d): w in kNN(u) among valid nodes of another id,
    kept only if also u in kNN(w) (`mutual`); symmetric. Similarities in float32, autocast off."""
    with full_precision(keys):
        (keys,) = at_least_float32(keys)
        sim = keys @ keys.T
    blocked = intra_edges(ids)
    if valid is not None:
        blocked = blocked | ~valid[None, :] | ~valid[:, None]
    sim = sim.masked_fill(blocked, float("-inf"))
    values, index = sim.topk(min(k, sim.shape[1]), dim=1)
    knn = torch.zeros_like(blocked).scatter_(1, index, torch.isfinite(values))
    return knn & knn.T if mutual else knn | knn.T


def transitive_positives(ids: torch.Tensor, edges: torch.Tensor, hops: int | None = 1) -> torch.Tensor:
    """P = I or [(I E I) > 0] (one hop), or I (E I)^h for h <= `hops`; `hops=None`: the full
    transitive closure. (n, n) bool, symmetric, the node itself excluded."""
    same = intra_edges(ids).float()
    step = (edges | edges.T).float()
    positives = same > 0
    reach = same
    for _ in range(ids.numel() if hops is None else hops):
        reach = ((reach @ step @ same) > 0).float()
        grown = positives | (reach > 0)
        if hops is None and torch.equal(grown, positives):
            break
        positives = grown
    return positives & ~torch.eye(ids.numel(), dtype=torch.bool, device=ids.device)


# -------------------------------------------------------------------------------- batched mining
@torch.no_grad()
def mutual_neighbours(
    keys: torch.Tensor,
    ids: torch.Tensor,
    queue_keys: torch.Tensor,
    queue_ids: torch.Tensor,
    k: int = 1,
    mutual: bool = True,
    queue_sources: int | None = None,
):
    """Inter edges leaving each anchor's intra nodes, without the (K x K) queue graph.

    Nodes: the batch keys (N) then the queue (K); empty queue slots (id < 0) are no nodes. Sources
    of anchor i: its key and the queue entries with its id, at most `queue_sources` of them (None:
    every one; a fixed count keeps the shapes independent of the data). Returns (sources (N, S),
    neighbours (N, S * k)) node indices, -1 where there is none (edge dropped or no such source).
    Similarities in float32 (float64 for float64 keys), autocast off.
    """
    with full_precision(keys):
        return _mutual_neighbours(*at_least_float32(keys, queue_keys), ids, queue_ids, k, mutual, queue_sources)


def _mutual_neighbours(keys, queue_keys, ids, queue_ids, k, mutual, queue_sources=None):
    nodes = torch.cat([keys, queue_keys])
    node_ids = torch.cat([ids, queue_ids])
    valid = node_ids >= 0
    n = keys.shape[0]
    same_in_queue = queue_ids[None, :] == ids[:, None]  # (N, K)
    size = queue_ids.shape[0]
    extra = size if queue_sources is None else min(int(queue_sources), size)
    sources = torch.arange(n, device=keys.device)[:, None]
    if extra:
        hit, where = same_in_queue.to(torch.int8).topk(extra, dim=1)
        sources = torch.cat([sources, torch.where(hit > 0, where + n, -1)], dim=1)

    def knn(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """k nearest valid nodes of another id, for node indices `rows` (any shape)."""
        flat = rows.reshape(-1).clamp_min(0)
        sim = nodes[flat] @ nodes.T
        blocked = (node_ids[None, :] == node_ids[flat][:, None]) | ~valid[None, :]
        values, index = sim.masked_fill(blocked, float("-inf")).topk(min(k, sim.shape[1]), dim=1)
        index = torch.where(torch.isfinite(values), index, -1)
        return index.reshape(*rows.shape, -1)

    neighbours = knn(sources)  # (N, S, k)
    neighbours = torch.where((sources >= 0)[..., None], neighbours, -1)
    if mutual:
        back = knn(neighbours)  # (N, S, k, k)
        is_mutual = (back == sources[..., None, None]).any(dim=-1)
        neighbours = torch.where(is_mutual & (neighbours >= 0), neighbours, -1)
    return sources, neighbours.reshape(n, -1)


@torch.no_grad()
def positive_columns(
    ids: torch.Tensor, queue_ids: torch.Tensor, neighbour_nodes: torch.Tensor | None, intra_hop: bool = True
) -> torch.Tensor:
    """(N, 1 + K) bool over the logit columns [own key, queue]: the key, queue entries of the
    anchor's id (I), and the inter neighbours (node indices, batch keys first then queue, -1 =
    none): with `intra_hop` every queue entry of a neighbour's id ((I E I) > 0), else the
    neighbour entries themselves."""
    n, size = ids.shape[0], queue_ids.shape[0]
    positives = queue_ids[None, :] == ids[:, None]
    if neighbour_nodes is not None and neighbour_nodes.numel():
        if intra_hop:
            node_ids = torch.cat([ids, queue_ids])
            nbr_ids = torch.where(neighbour_nodes >= 0, node_ids[neighbour_nodes.clamp_min(0)], -2)
            positives = positives | (queue_ids[None, :, None] == nbr_ids[:, None, :]).any(dim=-1)
        else:
            in_queue = neighbour_nodes - n
            hit = torch.zeros(n, size + 1, dtype=torch.bool, device=ids.device)
            hit.scatter_(1, torch.where(in_queue >= 0, in_queue, size), True)
            positives = positives | hit[:, :size]
    return torch.cat([torch.ones(n, 1, dtype=torch.bool, device=ids.device), positives], dim=1)


# ------------------------------------------------------------------------------------ objective
@register_objective("transitive")
class TransitiveHiCLR(HiCLR):
    """HiCLR with transitive multi-positive InfoNCE: HiCLR's views, logits and consistency terms,
    other positives (`positives`).

    k: inter-edge neighbours per node; mutual: keep an edge u -> w only if u is also among w's k
    nearest (else every w in kNN(u) of the anchor's nodes u); edges: "mutual_knn"
    (among momentum keys, the method) or "query_topk" (each query branch's top-k queue entries:
    HiCLR's mining, for comparison); intra_hop: add the other nodes of a neighbour's id (I E I);
    queue_sources: older keys of an anchor in the queue that source inter edges, at most (None:
    all; see the module docstring).
    """

    def __init__(
        self,
        temperature: float = 0.07,
        mining_epoch: int = 150,
        k: int = 1,
        mutual: bool = True,
        edges: str = "mutual_knn",
        intra_hop: bool = True,
        queue_sources: int | None = 2,
        label_store: str | None = None,
    ):
        super().__init__(temperature, mining_epoch)
        if edges not in ("mutual_knn", "query_topk"):
            raise ValueError(f"edges must be 'mutual_knn' or 'query_topk', got {edges!r}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if queue_sources is not None and int(queue_sources) < 0:
            raise ValueError(f"queue_sources must be >= 0 or null (every slot), got {queue_sources!r}")
        self.k, self.mutual, self.edges, self.intra_hop = int(k), bool(mutual), edges, bool(intra_hop)
        self.queue_sources = None if queue_sources is None else int(queue_sources)
        self.register_buffer("sample_labels", torch.empty(0, dtype=torch.long), persistent=False)
        if label_store is not None:
            self.set_sample_labels(_labels_of_store(label_store))

    def set_sample_labels(self, labels) -> None:
        """Labels by sample id (used only to log the precision of mined edges)."""
        self.sample_labels = torch.as_tensor(labels, dtype=torch.long, device=self.sample_labels.device)

    @torch.no_grad()
    def mine(self, inputs, logits: list[torch.Tensor]):
        """(positive mask (N, 1 + K), neighbour node indices (N, E), source node indices (N, S))."""
        if self.edges == "query_topk":
            n = inputs.key.shape[0]
            nearest = torch.cat([b[:, 1:].topk(self.k, dim=1).indices for b in logits], dim=1) + n
            sources = torch.arange(n, device=nearest.device)[:, None].expand_as(nearest)
        else:
            sources, nearest = mutual_neighbours(
                inputs.key, inputs.ids, inputs.queue_keys, inputs.queue_ids, self.k, self.mutual, self.queue_sources
            )
        positives = positive_columns(inputs.ids, inputs.queue_ids, nearest, self.intra_hop)
        return positives, nearest, sources

    @torch.no_grad()
    def edge_precision(self, inputs, neighbours: torch.Tensor) -> torch.Tensor | None:
        """Share of mined inter edges whose two samples have the same label (None: no labels)."""
        if self.sample_labels.numel() == 0:
            return None
        node_ids = torch.cat([inputs.ids, inputs.queue_ids])
        kept = neighbours >= 0
        labels = self.sample_labels
        anchor = labels[inputs.ids][:, None].expand_as(neighbours)
        other = labels[node_ids[neighbours.clamp_min(0)].clamp_min(0)]
        same = (anchor == other) & kept
        return same.sum().float() / kept.sum().clamp_min(1).float()

    def positives(self, inputs, logits: list[torch.Tensor]):
        """P = [(I E I) > 0] or I when mining is on, else I (the key and the queue entries of the
        anchor's id), as a bool (N, 1 + K) mask; with the mined edges' count (and label precision)."""
        metrics = {}
        if inputs.mining:
            positives, neighbours, _ = self.mine(inputs, logits)
            metrics["edges_per_anchor"] = (neighbours >= 0).sum(dim=1).float().mean()
            if self.edges == "mutual_knn" and self.queue_sources is not None:
                older = (inputs.queue_ids[None, :] == inputs.ids[:, None]).sum(dim=1)
                metrics["queue_sources_cut"] = (older > self.queue_sources).float().mean()
            precision = self.edge_precision(inputs, neighbours)
            if precision is not None:
                metrics["edge_precision"] = precision
        else:
            positives = positive_columns(inputs.ids, inputs.queue_ids, None)
        metrics["num_positives"] = positives.sum(dim=1).float().mean()
        return positives, metrics


def _labels_of_store(path: str) -> torch.Tensor:
    """The `label` column of a prepared HDF5 store (row = sample id)."""
    import numpy as np

    from data_prep.store import open_store

    with open_store(path) as f:
        return torch.from_numpy(np.asarray(f["samples/label"][()], dtype=np.int64))
