"""The NTU graph: ST-GCN's spatial partition, bone pairs and the left/right swap."""

import numpy as np

from hiclr.models.graph import (
    BONE_PAIRS,
    FLIP_PERMUTATION,
    NTU_CENTER,
    NTU_EDGES,
    NTU_EDGES_1BASED,
    hop_distance,
    ntu_graph,
)


def _reference_spatial_graph(num_node, edge_1based, center_1based, max_hop=1):
    """ST-GCN's Graph(strategy='spatial') written as the reference writes it, loops and all."""
    edge = [(i, i) for i in range(num_node)] + [(i - 1, j - 1) for i, j in edge_1based]
    center = center_1based - 1
    A = np.zeros((num_node, num_node))
    for i, j in edge:
        A[j, i] = 1
        A[i, j] = 1
    hop_dis = np.zeros((num_node, num_node)) + np.inf
    transfer_mat = [np.linalg.matrix_power(A, d) for d in range(max_hop + 1)]
    arrive_mat = np.stack(transfer_mat) > 0
    for d in range(max_hop, -1, -1):
        hop_dis[arrive_mat[d]] = d
    valid_hop = range(0, max_hop + 1)
    adjacency = np.zeros((num_node, num_node))
    for hop in valid_hop:
        adjacency[hop_dis == hop] = 1
    Dl = np.sum(adjacency, 0)
    Dn = np.zeros((num_node, num_node))
    for i in range(num_node):
        if Dl[i] > 0:
            Dn[i, i] = Dl[i] ** (-1)
    normalize_adjacency = np.dot(adjacency, Dn)
    out = []
    for hop in valid_hop:
        a_root = np.zeros((num_node, num_node))
        a_close = np.zeros((num_node, num_node))
        a_further = np.zeros((num_node, num_node))
        for i in range(num_node):
            for j in range(num_node):
                if hop_dis[j, i] == hop:
                    if hop_dis[j, center] == hop_dis[i, center]:
                        a_root[j, i] = normalize_adjacency[j, i]
                    elif hop_dis[j, center] > hop_dis[i, center]:
                        a_close[j, i] = normalize_adjacency[j, i]
                    else:
                        a_further[j, i] = normalize_adjacency[j, i]
        if hop == 0:
            out.append(a_root)
        else:
            out.append(a_root + a_close)
            out.append(a_further)
    return np.stack(out)


def test_spatial_partition_equals_stgcn_reference_construction():
    A = ntu_graph()
    assert A.shape == (3, 25, 25) and A.dtype == np.float32
    expected = _reference_spatial_graph(25, NTU_EDGES_1BASED, 21)
    np.testing.assert_allclose(A, expected, rtol=0, atol=1e-7)


def test_every_column_sums_to_one_over_subsets():
    A = ntu_graph()
    np.testing.assert_allclose(A.sum(axis=(0, 1)), np.ones(25), atol=1e-6)


def test_root_subset_is_the_joint_itself_weighted_by_inverse_degree():
    A = ntu_graph()
    degree = np.ones(25)
    for i, j in NTU_EDGES:
        degree[i] += 1
        degree[j] += 1
    np.testing.assert_allclose(A[0], np.diag(1.0 / degree), atol=1e-7)


def test_neighbours_are_split_by_distance_to_the_centre():
    A = ntu_graph()
    c = NTU_CENTER  # joint 21, neighbours 2, 3, 5, 9 (1-based): degree 5
    for j in (1, 2, 4, 8):  # farther from the centre than the centre -> subset 1
        assert A[1, j, c] == np.float32(1 / 5) and A[2, j, c] == 0
    # joint 2 (index 1): joint 1 is farther (subset 1), the centre is nearer (subset 2); degree 3
    assert A[1, 0, 1] == np.float32(1 / 3) and A[2, 20, 1] == np.float32(1 / 3)
    # beyond the max hop distances are infinite: joint 4 (index 3) sees joint 3 as nearer ...
    assert A[2, 2, 3] == np.float32(1 / 2)
    # ... and two infinitely distant joints (6 and 7) count as the same distance (subset 1)
    assert A[1, 6, 5] == np.float32(1 / 3) and A[2, 6, 5] == 0


def test_edges_form_one_tree_over_25_joints():
    assert len(NTU_EDGES) == 24
    dist = hop_distance(25, NTU_EDGES, max_hop=24)
    assert np.isfinite(dist).all()


def test_bone_pairs_give_each_joint_its_parent_and_the_centre_itself():
    assert len(BONE_PAIRS) == 25
    assert [child for child, _ in BONE_PAIRS] == list(range(25))
    assert BONE_PAIRS[NTU_CENTER] == (NTU_CENTER, NTU_CENTER)
    assert set(BONE_PAIRS) - {(NTU_CENTER, NTU_CENTER)} == set(NTU_EDGES)


def test_flip_swaps_left_and_right_limbs_and_is_an_involution():
    perm = np.array(FLIP_PERMUTATION)
    assert sorted(perm) == list(range(25))
    np.testing.assert_array_equal(perm[perm], np.arange(25))
    pairs_1based = [(5, 9), (6, 10), (7, 11), (8, 12), (13, 17), (14, 18), (15, 19), (16, 20), (22, 24), (23, 25)]
    for a, b in pairs_1based:
        assert perm[a - 1] == b - 1 and perm[b - 1] == a - 1
    fixed = [v for v in range(25) if perm[v] == v]
    assert fixed == [0, 1, 2, 3, 20]
