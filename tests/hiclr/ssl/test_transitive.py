"""Transitive positive mining (variant B): the I E I graph, its limits, the loss."""

import pytest
import torch
import torch.nn.functional as F

from hiclr.ssl.learner import ContrastiveInputs, build_objective
from hiclr.ssl.transitive import mutual_knn_edges, mutual_neighbours, positive_columns, transitive_positives

TAU = 0.07


def unit(*shape, gen):
    return F.normalize(torch.randn(*shape, generator=gen, dtype=torch.float64), dim=-1)


# --------------------------------------------------------------------------- toy graph
TOY = ["a1", "a2", "b1", "b2", "c1", "c2", "d1"]


def toy_graph(order):
    """Nodes a1 a2 | b1 b2 | c1 c2 | d1 in the given order, E = {a1-b1, b2-c1} (A-B and B-C)."""
    names = [TOY[i] for i in order]
    ids = torch.tensor(["abcd".index(name[0]) for name in names])
    edges = torch.zeros(7, 7, dtype=torch.bool)
    for u, w in (("a1", "b1"), ("b2", "c1")):
        edges[names.index(u), names.index(w)] = True
    return names, ids, edges


def named(names, mask, node):
    return {names[j] for j in torch.nonzero(mask[names.index(node)]).flatten().tolist()}


def test_toy_graph_one_hop_gives_another_instance_and_no_further():
    names, ids, edges = toy_graph(range(7))
    one_hop = transitive_positives(ids, edges, hops=1)
    closure = transitive_positives(ids, edges, hops=None)
    assert named(names, one_hop, "a1") == {"a2", "b1", "b2"}
    assert named(names, closure, "a1") == {"a2", "b1", "b2", "c1", "c2"}
    assert named(names, one_hop, "d1") == set() and named(names, closure, "d1") == set()
    assert named(names, one_hop, "b1") == {"b2", "a1", "a2", "c1", "c2"}
    assert torch.equal(one_hop, one_hop.T) and torch.equal(closure, closure.T)
    assert not one_hop.diagonal().any()


@pytest.mark.parametrize("seed", range(3))
def test_toy_graph_positives_do_not_depend_on_node_order(seed):
    names, ids, edges = toy_graph(range(7))
    reference = {node: named(names, transitive_positives(ids, edges), node) for node in names}
    order = torch.randperm(7, generator=torch.Generator().manual_seed(seed)).tolist()
    names_p, ids_p, edges_p = toy_graph(order)
    permuted = transitive_positives(ids_p, edges_p)
    assert {node: named(names_p, permuted, node) for node in names_p} == reference


# ------------------------------------------------------------------- batched = node-level graph
def random_graph(seed, n=6, size=24, dim=5):
    gen = torch.Generator().manual_seed(seed)
    keys, queue = unit(n, dim, gen=gen), unit(size, dim, gen=gen)
    ids = torch.arange(100, 100 + n)
    queue_ids = torch.randint(0, 12, (size,), generator=gen)
    queue_ids[:3] = torch.tensor([100, 100, 103])  # older keys of batch samples
    queue_ids[-2:] = -1  # empty slots
    return keys, ids, queue, queue_ids


@pytest.mark.parametrize("seed,k", [(0, 1), (1, 1), (2, 2), (3, 3)])
def test_batched_mining_equals_the_one_hop_positives_of_the_whole_graph(seed, k):
    keys, ids, queue, queue_ids = random_graph(seed)
    n = keys.shape[0]
    _, neighbours = mutual_neighbours(keys, ids, queue, queue_ids, k=k)
    mask = positive_columns(ids, queue_ids, neighbours, intra_hop=True)
    nodes, node_ids = torch.cat([keys, queue]), torch.cat([ids, queue_ids])
    valid = node_ids >= 0
    edges = mutual_knn_edges(nodes, node_ids, k=k, valid=valid)
    graph = transitive_positives(node_ids, edges) & valid[None, :]
    assert edges.any()
    assert mask[:, 0].all()
    assert torch.equal(mask[:, 1:], graph[:n, n:])


def neighbour_sets(neighbours):
    return [set(row[row >= 0].tolist()) for row in neighbours]


@pytest.mark.parametrize("seed", range(3))
def test_mining_from_a_fixed_number_of_queue_sources_is_exact_when_no_anchor_has_more(seed):
    keys, ids, queue, queue_ids = random_graph(seed)  # at most 2 older keys of an anchor
    _, every = mutual_neighbours(keys, ids, queue, queue_ids, k=2)
    for count in (2, 5):
        sources, fixed = mutual_neighbours(keys, ids, queue, queue_ids, k=2, queue_sources=count)
        assert sources.shape == (keys.shape[0], 1 + count)  # the count, not the data, sets the shape
        assert neighbour_sets(fixed) == neighbour_sets(every)


def test_older_keys_beyond_the_queue_sources_source_no_edges_and_are_counted():
    inputs = make_inputs(0, mining=True, shared_ids=True)
    inputs.queue_ids[5:7] = 2  # anchor 2: three older keys
    _, every = build_objective("transitive", {"mining_epoch": 10}, queue_sources=None)(inputs)
    loss, metrics = build_objective("transitive", {"mining_epoch": 10}, queue_sources=1)(inputs)
    assert "queue_sources_cut" not in every and torch.isfinite(loss)
    assert metrics["queue_sources_cut"] == pytest.approx(1 / 5)
    assert metrics["num_positives"] >= 1 + 3 / 5  # the older keys stay positives
    _, default = build_objective("transitive", {"mining_epoch": 10})(make_inputs(0, True, shared_ids=True))
    assert default["queue_sources_cut"] == 0
    with pytest.raises(ValueError, match="queue_sources"):
        build_objective("transitive", queue_sources=-1)


def test_queue_entries_of_the_anchor_are_never_negatives():
    keys, ids, queue, queue_ids = random_graph(0)
    mask = positive_columns(ids, queue_ids, None)
    assert mask[0, 1:3].all() and mask[3, 3]
    assert mask.sum() == keys.shape[0] + 3


# ----------------------------------------------------------------------- the loss's two limits
def make_inputs(seed, mining, n=5, size=20, dim=6, shared_ids=False):
    gen = torch.Generator().manual_seed(seed)
    queries = [unit(n, dim, gen=gen) for _ in range(3)]
    key, queue = unit(n, dim, gen=gen), unit(size, dim, gen=gen)
    queue_ids = torch.arange(1000, 1000 + size)
    if shared_ids:
        queue_ids[4] = 2
    return ContrastiveInputs(
        queries=queries, key=key, queue_keys=queue, queue_ids=queue_ids, ids=torch.arange(n), mining=mining
    )


def test_with_no_inter_edges_the_loss_is_hiclrs_infonce():
    inputs = make_inputs(0, mining=False)
    loss, metrics = build_objective("transitive", {"mining_epoch": 10})(inputs)
    expected, expected_metrics = build_objective("hiclr", {"mining_epoch": 10})(inputs)
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(metrics["loss_nce"], expected_metrics["loss_nce"], rtol=0, atol=1e-12)
    # mining on, but there is no node of another sample (one anchor, empty queue): E is empty
    inputs = make_inputs(0, mining=True, n=1)
    inputs.queue_ids[:] = -1
    loss, metrics = build_objective("transitive", {"mining_epoch": 10})(inputs)
    assert metrics["edges_per_anchor"] == 0
    inputs.mining = False  # HiCLR's plain InfoNCE
    torch.testing.assert_close(loss, build_objective("hiclr")(inputs)[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_with_hiclrs_top1_edges_and_no_intra_hop_the_loss_is_hiclrs_mining_loss(seed):
    inputs = make_inputs(seed, mining=True)
    ours = build_objective("transitive", {"mining_epoch": 10}, edges="query_topk", intra_hop=False)
    loss, metrics = ours(inputs)
    expected, expected_metrics = build_objective("hiclr", {"mining_epoch": 10})(inputs)
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(metrics["num_positives"], expected_metrics["num_positives"])


def test_an_older_key_of_the_anchor_is_a_positive_not_a_negative():
    inputs = make_inputs(1, mining=False, shared_ids=True)
    loss, metrics = build_objective("transitive")(inputs)
    hiclr, _ = build_objective("hiclr")(inputs)
    assert metrics["num_positives"] == pytest.approx(1 + 1 / 5)
    assert not torch.isclose(loss, hiclr)


def test_edge_label_precision_is_logged_and_never_changes_the_loss():
    inputs = make_inputs(2, mining=True)
    inputs.key = inputs.queue_keys[:5] + 0.01  # every key has a clear mutual neighbour in the queue
    inputs.key = F.normalize(inputs.key, dim=1)
    plain = build_objective("transitive", {"mining_epoch": 10})
    labelled = build_objective("transitive", {"mining_epoch": 10})
    labels = torch.zeros(1100, dtype=torch.long)
    labels[torch.arange(5)] = torch.arange(5)
    labels[1000:1005] = torch.tensor([0, 1, 2, 9, 9])  # neighbours of samples 3 and 4 are wrong
    labelled.set_sample_labels(labels)
    loss_a, metrics_a = plain(inputs)
    loss_b, metrics_b = labelled(inputs)
    assert "edge_precision" not in metrics_a
    assert metrics_b["edges_per_anchor"] == 1
    assert metrics_b["edge_precision"] == pytest.approx(3 / 5)
    assert torch.equal(loss_a, loss_b)


def test_gradients_reach_every_query_branch_but_not_the_key():
    inputs = make_inputs(3, mining=True)
    inputs.queries = [q.clone().requires_grad_() for q in inputs.queries]
    inputs.key.requires_grad_()
    loss, _ = build_objective("transitive", {"mining_epoch": 10})(inputs)
    loss.backward()
    assert all(q.grad.abs().sum() > 0 for q in inputs.queries)


@pytest.mark.parametrize("edges", ["mutual_knn", "query_topk"])
def test_loss_and_mining_under_bf16_autocast_equal_the_float32_computation(edges):
    inputs = make_inputs(4, mining=True, n=6, size=32, dim=16)
    low = make_inputs(4, mining=True, n=6, size=32, dim=16)
    low.queries, low.key = [q.bfloat16() for q in low.queries], low.key.bfloat16()
    exact = make_inputs(4, mining=True, n=6, size=32, dim=16)
    exact.queries, exact.key = [q.float() for q in low.queries], low.key.float()
    exact.queue_keys = low.queue_keys = inputs.queue_keys.float()
    objective = build_objective("transitive", {"mining_epoch": 10}, edges=edges)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, metrics = objective(low)
    expected, expected_metrics = objective(exact)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-4)
    for name, value in expected_metrics.items():  # the same edges and positives were mined
        torch.testing.assert_close(metrics[name], value, rtol=0, atol=1e-4)
