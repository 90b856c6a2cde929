"""The NTU RGB+D 25-joint skeleton graph: adjacency partitions, bones and the left/right swap.

`spatial_partition()` builds A (3, V, V) exactly as ST-GCN's
`Graph(layout='ntu-rgb+d', strategy='spatial', max_hop=1)` does, so that checkpoints of the
reference release compute the same features. Joint indices are 0-based everywhere in this
module except in `NTU_EDGES_1BASED`, which is written as in the papers.
"""

from __future__ import annotations

import numpy as np

NUM_JOINTS = 25

#: Joint 21 (1-based), the spine-shoulder, is the centre of the spatial partition.
NTU_CENTER = 21 - 1

#: The 24 bones as (child, parent), 1-based, in ST-GCN's order.
NTU_EDGES_1BASED: tuple[tuple[int, int], ...] = (
    (1, 2),
    (2, 21),
    (3, 21),
    (4, 3),
    (5, 21),
    (6, 5),
    (7, 6),
    (8, 7),
    (9, 21),
    (10, 9),
    (11, 10),
    (12, 11),
    (13, 1),
    (14, 13),
    (15, 14),
    (16, 15),
    (17, 1),
    (18, 17),
    (19, 18),
    (20, 19),
    (22, 23),
    (23, 8),
    (24, 25),
    (25, 12),
)

#: The 24 bones, 0-based (child, parent).
NTU_EDGES: tuple[tuple[int, int], ...] = tuple((i - 1, j - 1) for i, j in NTU_EDGES_1BASED)

#: Bone-stream pairs (child, parent), 0-based: one per joint, ``BONE_PAIRS[v][0] == v``;
#: the centre is paired with itself, so its bone is zero (as the reference's (21, 21)).
BONE_PAIRS: tuple[tuple[int, int], ...] = tuple(sorted(NTU_EDGES + ((NTU_CENTER, NTU_CENTER),)))

#: Left/right swap of the reference's spatial flip: ``flipped[..., v, :] = x[..., FLIP_PERMUTATION[v], :]``.
#: Swaps joints 5-8 <-> 9-12, 13-16 <-> 17-20 and 22-23 <-> 24-25 (1-based).
FLIP_PERMUTATION: tuple[int, ...] = (
    0,
    1,
    2,
    3,
    8,
    9,
    10,
    11,
    4,
    5,
    6,
    7,
    16,
    17,
    18,
    19,
    12,
    13,
    14,
    15,
    20,
    23,
    24,
    21,
    22,
)


def hop_distance(num_nodes: int, edges, max_hop: int = 1) -> np.ndarray:
    """(V, V) hop distances up to `max_hop`; farther pairs are `inf` (as ST-GCN)."""
    adjacency = np.zeros((num_nodes, num_nodes))
    for i, j in edges:
        adjacency[i, j] = adjacency[j, i] = 1
    dist = np.full((num_nodes, num_nodes), np.inf)
    reach = np.stack([np.linalg.matrix_power(adjacency, d) for d in range(max_hop + 1)]) > 0
    for d in range(max_hop, -1, -1):
        dist[reach[d]] = d
    return dist


def normalize_digraph(adjacency: np.ndarray) -> np.ndarray:
    """Divide each column by its sum (in-degree normalisation, ST-GCN's `normalize_digraph`)."""
    degree = adjacency.sum(axis=0)
    inverse = np.where(degree > 0, 1.0 / np.where(degree > 0, degree, 1.0), 0.0)
    return adjacency * inverse[None, :]


def spatial_partition(
    num_nodes: int = NUM_JOINTS, edges=NTU_EDGES, center: int = NTU_CENTER, max_hop: int = 1
) -> np.ndarray:
    """ST-GCN's "spatial" strategy: A (1 + 2 * max_hop, V, V), float32.

    A[k, j, i] weights input joint j for output joint i. Subset 0 is the joint itself; for each
    hop, one subset holds neighbours at the same or a larger distance from the centre, the other
    those nearer to it. Distances beyond `max_hop` are infinite and compare as in the reference
    (two infinitely distant joints count as "same distance").
    """
    links = [(i, i) for i in range(num_nodes)] + list(edges)
    hop = hop_distance(num_nodes, links, max_hop)
    adjacency = np.zeros((num_nodes, num_nodes))
    for d in range(max_hop + 1):
        adjacency[hop == d] = 1
    norm = normalize_digraph(adjacency)
    to_center = hop[:, center]  # distance of each joint to the centre
    subsets = []
    for d in range(max_hop + 1):
        at_hop = hop == d  # [j, i]
        same = at_hop & (to_center[:, None] == to_center[None, :])
        farther = at_hop & (to_center[:, None] > to_center[None, :])  # j farther than i
        nearer = at_hop & ~same & ~farther
        root, far, near = (np.where(mask, norm, 0.0) for mask in (same, farther, nearer))
        if d == 0:
            subsets.append(root)
        else:
            subsets.append(root + far)
            subsets.append(near)
    return np.stack(subsets).astype(np.float32)


def ntu_graph() -> np.ndarray:
    """A (3, 25, 25) of the NTU skeleton, spatial partition, max hop 1."""
    return spatial_partition()


GRAPHS = {"ntu": ntu_graph}
