"""Objectives: the HiCLR loss, its stop-gradients and nearest-neighbour mining, against the formulas."""

import pytest
import torch
import torch.nn.functional as F

from hiclr.ssl.objectives import (
    OBJECTIVES,
    ContrastiveInputs,
    HierarchicalConsistencyLoss,
    build_objective,
    contrastive_logits,
    mine_positives,
)

TAU = 0.07


def unit(*shape, gen):
    return F.normalize(torch.randn(*shape, generator=gen, dtype=torch.float64), dim=-1)


def make_inputs(queries, key, queue, mining=False):
    n = key.shape[0]
    return ContrastiveInputs(
        queries=list(queries),
        key=key,
        queue_keys=queue,
        queue_ids=torch.arange(queue.shape[0]),
        ids=torch.arange(n),
        mining=mining,
    )


def naive_probabilities(z, key, queue):
    """p_i = softmax([z.k, z.q_1..q_K] / tau), written out with exp and a sum, in float64."""
    logits = torch.cat([(z * key).sum(1, keepdim=True), z @ queue.T], dim=1).double() / TAU
    e = torch.exp(logits - logits.max(dim=1, keepdim=True).values)
    return e / e.sum(dim=1, keepdim=True)


def naive_hiclr(z0, z1, z2, key, queue, mining):
    p0, p1, p2 = (naive_probabilities(z, key, queue) for z in (z0, z1, z2))
    n = key.shape[0]
    terms = []
    for i in range(n):
        positives = {0}
        if mining:
            for z in (z0, z1, z2):
                positives.add(int(torch.argmax(z[i] @ queue.T)) + 1)
        terms.append(-sum(torch.log(p0[i, j]) for j in positives) / len(positives))
    loss_nce = torch.stack(terms).mean()
    loss_1_0 = -(p0.detach() * torch.log(p1)).sum(1).mean()
    loss_2_1 = -(p1.detach() * torch.log(p2)).sum(1).mean()
    return loss_nce + (loss_1_0 + loss_2_1) / 2, loss_nce, loss_1_0, loss_2_1


def test_objectives_are_registered_with_their_views():
    hiclr, skeletonclr = OBJECTIVES["hiclr"].views, OBJECTIVES["skeletonclr"].views
    assert hiclr.stages == (0, 0, 1, 2) and hiclr.key_index == 1 and hiclr.names == ("v0", "key", "v1", "v2")
    assert skeletonclr.stages == (0, 0) and skeletonclr.key_index == 1
    assert {"equivariant", "transitive", "hough_dense"} <= set(OBJECTIVES)  # complete on import


def test_build_objective_filters_shared_settings_but_not_specific_ones():
    hiclr = build_objective("hiclr", {"temperature": 0.2, "mining_epoch": 7, "unrelated": 1})
    assert (hiclr.temperature, hiclr.mining_epoch) == (0.2, 7)
    skeletonclr = build_objective("skeletonclr", {"temperature": 0.1, "mining_epoch": 7})
    assert skeletonclr.temperature == 0.1
    with pytest.raises(ValueError, match="unknown objective"):
        build_objective("simclr")
    with pytest.raises(ValueError, match="lambda_eq"):
        build_objective("hiclr", lambda_eq=0.5)


# (the project's 0-based epoch, the release's 1-based epoch of the same pass, mining): the release
# mines when its epoch > mining_epoch (150), so from its 151st epoch, the project's epoch 150
MINING_RULE = [(0, 1, False), (149, 150, False), (150, 151, True), (151, 152, True), (299, 300, True)]


@pytest.mark.parametrize("epoch,release_epoch,mining", MINING_RULE)
def test_hiclr_mines_from_the_epoch_the_release_mines_from(epoch, release_epoch, mining):
    assert (release_epoch > 150) == mining and release_epoch == epoch + 1
    for name in ("hiclr", "transitive", "equivariant", "hough_dense"):
        objective = build_objective(name, {"temperature": TAU, "mining_epoch": 150})
        assert objective.switches(epoch)["mining"] == mining, name
    gen = torch.Generator().manual_seed(0)
    z0, z1, z2, key = (unit(4, 8, gen=gen) for _ in range(4))
    hiclr = build_objective("hiclr", {"temperature": TAU, "mining_epoch": 150})
    _, metrics = hiclr(make_inputs([z0, z1, z2], key, unit(16, 8, gen=gen), **hiclr.switches(epoch)))
    assert ("num_positives" in metrics) == mining


@pytest.mark.parametrize("epoch,mining", [(0, False), (149, False), (150, True), (300, True)])
def test_hiclr_loss_equals_the_formula_evaluated_directly(epoch, mining):
    gen = torch.Generator().manual_seed(epoch)
    n, dim, size = 6, 8, 32
    z0, z1, z2, key = (unit(n, dim, gen=gen) for _ in range(4))
    queue = unit(size, dim, gen=gen)
    objective = build_objective("hiclr", {"temperature": TAU, "mining_epoch": 150})
    loss, metrics = objective(make_inputs([z0, z1, z2], key, queue, **objective.switches(epoch)))
    expected = naive_hiclr(z0, z1, z2, key, queue, mining)
    for name, value in zip(["loss", "loss_nce", "loss_1_0", "loss_2_1"], expected):
        torch.testing.assert_close(metrics[name].double(), value, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss.double(), expected[0], rtol=1e-5, atol=1e-5)
    assert ("num_positives" in metrics) == mining


def test_skeletonclr_loss_is_infonce_with_the_key_in_column_zero():
    gen = torch.Generator().manual_seed(1)
    z0, key, queue = unit(5, 8, gen=gen), unit(5, 8, gen=gen), unit(20, 8, gen=gen)
    loss, metrics = build_objective("skeletonclr", {"temperature": TAU})(make_inputs([z0], key, queue))
    expected = -torch.log(naive_probabilities(z0, key, queue)[:, 0]).mean()
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-5)
    assert 0.0 <= float(metrics["positive_acc"]) <= 1.0


def test_consistency_loss_gives_no_gradient_to_the_weaker_side():
    gen = torch.Generator().manual_seed(2)
    weaker = torch.randn(4, 9, generator=gen, requires_grad=True)  # only the weaker side is a leaf
    stronger = torch.randn(4, 9, generator=gen)
    loss = HierarchicalConsistencyLoss()(stronger, weaker)
    assert not loss.requires_grad  # nothing to differentiate: sg() cut the only path to a leaf
    stronger_leaf = stronger.clone().requires_grad_(True)
    HierarchicalConsistencyLoss()(stronger_leaf, weaker).backward()
    assert weaker.grad is None
    assert stronger_leaf.grad.abs().sum() > 0
    # d/dl_s of -sum sg(p_w) log softmax(l_s) = (softmax(l_s) - p_w) / N
    expected = (F.softmax(stronger, 1) - F.softmax(weaker.detach(), 1)) / 4
    torch.testing.assert_close(stronger_leaf.grad, expected)


def test_hiclr_gradients_follow_the_chain_and_skip_the_key():
    """z0 gets only the InfoNCE gradient, z1 only that of L_1<-0 (as the stronger side), z2 only
    that of L_2<-1; the key gets none (sg on the weaker side, keys treated as constants)."""
    gen = torch.Generator().manual_seed(3)
    n, dim, size = 4, 8, 16
    z0, z1, z2 = (unit(n, dim, gen=gen).float().requires_grad_(True) for _ in range(3))
    key = unit(n, dim, gen=gen).float()
    queue = unit(size, dim, gen=gen).float()
    objective = build_objective("hiclr", {"temperature": TAU})
    loss, _ = objective(make_inputs([z0, z1, z2], key, queue))
    loss.backward()

    def grad_of(term, leaf):
        leaf_copy = leaf.detach().clone().requires_grad_(True)
        term(leaf_copy).backward()
        return leaf_copy.grad

    def logits(z):
        return torch.cat([(z * key).sum(1, keepdim=True), z @ queue.T], 1) / TAU

    consistency = HierarchicalConsistencyLoss()
    g0 = grad_of(lambda z: F.cross_entropy(logits(z), torch.zeros(n, dtype=torch.long)), z0)
    g1 = grad_of(lambda z: consistency(logits(z), logits(z0.detach())) / 2, z1)
    g2 = grad_of(lambda z: consistency(logits(z), logits(z1.detach())) / 2, z2)
    torch.testing.assert_close(z0.grad, g0)
    torch.testing.assert_close(z1.grad, g1)
    torch.testing.assert_close(z2.grad, g2)


def test_mining_takes_each_branch_top1_queue_entry_and_merges_duplicates():
    eye = torch.eye(4)
    queue = torch.stack([eye[3], -eye[0], eye[0], eye[2], -eye[1], eye[1]])  # 6 entries
    # sample 0: branches 0 and 1 nearest to entry 2 (e0), branch 2 to entry 5 (e1) -> {key, 3, 6}
    # sample 1: all three branches nearest to entry 3 (e2) -> {key, 4}
    z0 = torch.stack([eye[0], eye[2]])
    z1 = torch.stack([F.normalize(eye[0] + 0.1 * eye[1], dim=0), eye[2]])
    z2 = torch.stack([eye[1], F.normalize(eye[2] + 0.2 * eye[3], dim=0)])
    key = torch.stack([eye[1], eye[3]])
    logits = [torch.cat([(z * key).sum(1, keepdim=True), z @ queue.T], 1) / TAU for z in (z0, z1, z2)]
    positives = mine_positives(logits, topk=1)
    assert positives.dtype == torch.bool and positives.shape == (2, 7)
    assert positives[0].nonzero().flatten().tolist() == [0, 3, 6]
    assert positives[1].nonzero().flatten().tolist() == [0, 4]

    objective = build_objective("hiclr", {"temperature": TAU, "mining_epoch": 0})
    loss, metrics = objective(make_inputs([z0, z1, z2], key, queue, mining=True))
    torch.testing.assert_close(metrics["num_positives"], torch.tensor(2.5))
    log_p0 = F.log_softmax(logits[0], 1)
    expected_nce = -((log_p0[0, [0, 3, 6]].sum() / 3) + (log_p0[1, [0, 4]].sum() / 2)) / 2
    torch.testing.assert_close(metrics["loss_nce"], expected_nce)


def test_mining_with_topk_two_adds_two_entries_per_branch():
    gen = torch.Generator().manual_seed(4)
    logits = [torch.randn(3, 11, generator=gen) for _ in range(3)]
    positives = mine_positives(logits, topk=2)
    for row in range(3):
        expected = {0}
        for branch in logits:
            expected |= {int(j) + 1 for j in branch[row, 1:].topk(2).indices}
        assert set(positives[row].nonzero().flatten().tolist()) == expected


def bf16_step_inputs(seed, n=6, dim=16, size=64):
    """Query and key embeddings as a bf16 encoder leaves them under autocast, a float32 queue."""
    gen = torch.Generator().manual_seed(seed)
    queries = [F.normalize(torch.randn(n, dim, generator=gen), dim=1).bfloat16() for _ in range(3)]
    key = F.normalize(torch.randn(n, dim, generator=gen), dim=1).bfloat16()
    return queries, key, F.normalize(torch.randn(size, dim, generator=gen), dim=1)


def test_logits_under_bf16_autocast_are_float32_and_equal_the_float32_computation():
    queries, key, queue = bf16_step_inputs(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = contrastive_logits(queries[0], key, queue, TAU)
    z = queries[0].float()
    expected = torch.cat([(z * key.float()).sum(1, keepdim=True), z @ queue.T], dim=1) / TAU
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("objective,mining", [("hiclr", False), ("hiclr", True), ("skeletonclr", False)])
def test_loss_and_mining_under_bf16_autocast_equal_the_float32_computation(objective, mining):
    queries, key, queue = bf16_step_inputs(1)
    queries = queries[: len(OBJECTIVES[objective].views.stages) - 1]
    loss_fn = build_objective(objective, {"temperature": TAU})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, metrics = loss_fn(make_inputs(queries, key, queue, mining))
    expected, expected_metrics = loss_fn(make_inputs([q.float() for q in queries], key.float(), queue, mining))
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-4)
    assert metrics.keys() == expected_metrics.keys()
    for name, value in expected_metrics.items():  # num_positives too: mining chose the same entries
        torch.testing.assert_close(metrics[name], value, rtol=0, atol=1e-4)
