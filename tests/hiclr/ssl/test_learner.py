"""The learner and its objectives: the HiCLR loss, its stop-gradients and mining against the formulas,
and one MoCo-style step with a tiny stand-in encoder."""

import copy
import sys
import types
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hiclr.ssl import ContrastiveLearner
from hiclr.ssl.learner import (
    OBJECTIVES,
    ContrastiveInputs,
    HierarchicalConsistencyLoss,
    build_objective,
    contrastive_logits,
    mine_positives,
)

TAU = 0.07


@dataclass
class View:
    x: torch.Tensor
    mask: torch.Tensor | None = None


class TinyBackbone(nn.Module):
    """Mean-pool over (T, V, M), optional BatchNorm (momentum 1: running stats = last batch), Linear."""

    def __init__(self, feature_dim=8, batch_norm=True):
        super().__init__()
        self.feature_dim = feature_dim
        self.bn = nn.BatchNorm1d(3, momentum=1.0) if batch_norm else nn.Identity()
        self.fc = nn.Linear(3, feature_dim)

    def forward(self, x):
        return self.fc(self.bn(x.mean(dim=(2, 3, 4))))


def make_learner(objective="hiclr", batch_norm=True, **kwargs):
    kwargs = {"dim": 6, "hidden": 10, "queue_size": 16, **kwargs}
    return ContrastiveLearner(lambda: TinyBackbone(batch_norm=batch_norm), objective, **kwargs)


def make_views(n_views=4, batch=4, seed=0, masked_last=True):
    gen = torch.Generator().manual_seed(seed)
    views = [View(torch.randn(batch, 3, 6, 5, 2, generator=gen)) for _ in range(n_views)]
    if masked_last:
        views[-1].mask = torch.rand(batch, 1, 6, 5, 1, generator=gen) < 0.3
    return views


def test_step_returns_loss_and_metrics_and_enqueues_the_batch():
    learner = make_learner()
    ids = torch.tensor([10, 11, 12, 13])
    loss, metrics = learner(make_views(), ids)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert {"loss", "loss_nce", "loss_1_0", "loss_2_1", "positive_acc"} <= set(metrics)
    assert all(not v.requires_grad for v in metrics.values())
    assert int(learner.queue.ptr) == 4 and learner.queue.ids[:4].tolist() == ids.tolist()
    torch.testing.assert_close(learner.queue.keys[:4].norm(dim=1), torch.ones(4))
    assert learner.view_stages == (0, 0, 1, 2) and learner.key_index == 1


def test_backward_updates_only_the_query_side():
    learner = make_learner()
    loss, _ = learner(make_views(), torch.arange(4))
    loss.backward()
    assert all(p.grad is not None for p in learner.encoder_q.parameters())
    assert all(p.grad is None and not p.requires_grad for p in learner.encoder_k.parameters())
    assert learner.mask_token.grad is not None and learner.mask_token.grad.abs() > 0
    assert not learner.queue.keys.requires_grad

    key_before = copy.deepcopy(learner.encoder_k.state_dict())
    query_before = copy.deepcopy(learner.encoder_q.state_dict())
    torch.optim.SGD([p for p in learner.parameters() if p.requires_grad], lr=0.1).step()
    for name, value in learner.encoder_k.state_dict().items():
        assert torch.equal(value, key_before[name]), name
    assert any(not torch.equal(v, query_before[k]) for k, v in learner.encoder_q.state_dict().items())


def test_ema_runs_before_the_key_forward_and_is_exactly_m_weighted():
    # PyTorch's init: BatchNorm weights are exactly 1 on both sides, so the check holds to 1e-7
    # (the reference init's N(1, 0.02) draws differ by one float32 ulp at 1 after the update)
    learner = make_learner(momentum=0.9, init="torch")
    q_before = [p.detach().clone() for p in learner.encoder_q.parameters()]
    k_before = [p.detach().clone() for p in learner.encoder_k.parameters()]
    seen = {}

    def record(module, args):
        seen["params"] = [p.detach().clone() for p in module.parameters()]
        seen["training"] = module.training

    learner.encoder_k.register_forward_pre_hook(record)
    learner(make_views(), torch.arange(4))
    for at_forward, k, q in zip(seen["params"], k_before, q_before):
        torch.testing.assert_close(at_forward, 0.9 * k + 0.1 * q, rtol=0, atol=1e-7)
    assert seen["training"]  # keys come from the key encoder in train mode, as MoCo


def test_key_encoder_starts_from_its_own_init_unless_copied():
    torch.manual_seed(0)
    random_init = make_learner()
    q_params, k_params = random_init.encoder_q.state_dict(), random_init.encoder_k.state_dict()
    randomly_initialised = [n for n in q_params if n.endswith("weight") and q_params[n].ndim == 2]
    assert len(randomly_initialised) == 3  # the backbone Linear and the two head Linears
    assert all(not torch.equal(q_params[n], k_params[n]) for n in randomly_initialised)
    copied = make_learner(key_init="copy")
    for (name, q), k in zip(copied.encoder_q.state_dict().items(), copied.encoder_k.state_dict().values()):
        assert torch.equal(q, k), name
    with pytest.raises(ValueError):
        make_learner(key_init="zeros")


def test_masked_entries_get_the_mask_token_after_stream_conversion(monkeypatch):
    motion = types.ModuleType("hiclr.augment.streams")
    calls = []

    def to_stream(x, stream):
        calls.append(stream)
        out = torch.zeros_like(x)
        out[:, :, :-1] = x[:, :, 1:] - x[:, :, :-1]
        return out

    motion.to_stream = to_stream
    monkeypatch.setitem(sys.modules, "hiclr.augment.streams", motion)
    learner = make_learner(stream="motion")
    with torch.no_grad():
        learner.mask_token.fill_(0.7)
    view = make_views(n_views=1)[0]
    x = learner.prepare(view)
    assert calls == ["motion"]
    mask = view.mask.expand_as(x)
    assert torch.all(x[mask] == 0.7)
    torch.testing.assert_close(x[~mask], to_stream(view.x, "motion")[~mask])


def test_fused_views_normalise_all_query_views_with_one_batch_statistic():
    views = make_views(masked_last=False)
    torch.manual_seed(0)
    separate = make_learner()
    fused = copy.deepcopy(separate)
    fused.fused_views = "shared"
    separate(views, torch.arange(4))
    fused(views, torch.arange(4))
    pooled = [v.x.mean(dim=(2, 3, 4)) for v in views]
    query_pooled = [pooled[0], pooled[2], pooled[3]]  # views 0, 2, 3 are queries; 1 is the key
    bn_separate, bn_fused = separate.encoder_q.backbone.bn, fused.encoder_q.backbone.bn
    # separate calls (reference): one BN batch per view; momentum 1 leaves the last view's mean
    assert int(bn_separate.num_batches_tracked) == 3
    torch.testing.assert_close(bn_separate.running_mean, query_pooled[-1].mean(0))
    # fused: one BN batch over all query views together
    assert int(bn_fused.num_batches_tracked) == 1
    torch.testing.assert_close(bn_fused.running_mean, torch.cat(query_pooled).mean(0))


def test_fused_views_give_the_same_loss_without_batch_statistics():
    views = make_views()
    torch.manual_seed(1)
    separate = make_learner(batch_norm=False)
    fused = copy.deepcopy(separate)
    fused.fused_views = "shared"
    loss_separate, _ = separate(views, torch.arange(4), mining=True)
    loss_fused, _ = fused(views, torch.arange(4), mining=True)
    torch.testing.assert_close(loss_fused, loss_separate)


def test_backbone_weights_live_under_encoder_q_backbone():
    learner = make_learner()
    backbone = learner.encoder_q.backbone.state_dict()
    full = learner.state_dict()
    for name, value in backbone.items():
        assert torch.equal(full[f"encoder_q.backbone.{name}"], value)
    assert {"queue.keys", "queue.ids", "queue.ptr", "mask_token"} <= set(full)
    assert any(k.startswith("encoder_k.head.") for k in full)


def test_skeletonclr_takes_two_views_and_wrong_counts_are_refused():
    learner = make_learner("skeletonclr")
    loss, metrics = learner(make_views(n_views=2, masked_last=False), torch.arange(4))
    loss.backward()
    assert set(metrics) == {"loss", "loss_nce", "positive_acc", "embed_std", "embed_std_ratio"}
    assert learner.mask_token.grad is not None and float(learner.mask_token.grad) == 0.0
    with pytest.raises(ValueError, match="view_stages"):
        learner(make_views(n_views=4), torch.arange(4))


def real_build_encoder():
    models = pytest.importorskip("hiclr.models")
    if not hasattr(models, "build_encoder"):
        pytest.skip("hiclr.models.build_encoder is not there yet")
    return models.build_encoder


def test_from_config_reads_the_ssl_section():
    real_build_encoder()
    from hiclr.config import load_config

    cfg = load_config(
        None,
        [
            "model.width=4",
            "data.stream=joint",
            "ssl.objective=skeletonclr",
            "ssl.dim=5",
            "ssl.hidden=7",
            "ssl.queue_size=12",
            "ssl.momentum=0.99",
            "ssl.temperature=0.2",
            "ssl.mining_epoch=3",
            "ssl.fused_views=shared",
        ],
    )
    learner = ContrastiveLearner.from_config(cfg)
    assert learner.queue.keys.shape == (12, 5) and learner.fused_views == "shared" and learner.momentum == 0.99
    assert learner.objective.temperature == 0.2 and learner.view_stages == (0, 0)
    assert learner.encoder_q.head[0].in_features == learner.encoder_q.backbone.feature_dim


def test_a_step_with_the_real_stgcn_encoder():
    build_encoder = real_build_encoder()
    torch.manual_seed(0)
    learner = ContrastiveLearner({"name": "stgcn", "width": 4}, "hiclr", queue_size=32)
    assert learner.encoder_q.backbone.feature_dim == build_encoder({"name": "stgcn", "width": 4}).feature_dim
    gen = torch.Generator().manual_seed(0)
    views = [View(torch.randn(2, 3, 50, 25, 2, generator=gen)) for _ in range(4)]
    views[3].mask = torch.zeros(2, 1, 50, 25, 1, dtype=torch.bool)
    views[3].mask[:, :, :, :2] = True
    loss, metrics = learner(views, torch.tensor([0, 1]))
    loss.backward()
    assert torch.isfinite(loss) and set(metrics) >= {"loss_nce", "loss_1_0", "loss_2_1"}
    assert learner.mask_token.grad is not None
    assert all(p.grad is not None for p in learner.encoder_q.backbone.parameters() if p.requires_grad)
    full = learner.state_dict()
    for name, value in learner.encoder_q.backbone.state_dict().items():
        assert torch.equal(full[f"encoder_q.backbone.{name}"], value)


@pytest.mark.parametrize("fused", ["separate", "per_view"])
def test_encode_queries_returns_the_block_outputs_only_when_asked_and_the_same_embeddings_either_way(fused):
    real_build_encoder()
    torch.manual_seed(0)
    learner = ContrastiveLearner({"name": "stgcn", "width": 4}, "hiclr", queue_size=32, fused_views=fused).eval()
    gen = torch.Generator().manual_seed(1)
    inputs = [torch.randn(2, 3, 50, 25, 2, generator=gen) for _ in range(3)]
    with torch.no_grad():
        features, queries, blocks = learner.encode_queries(inputs)
        block_features, block_queries, block_outputs = learner.encode_queries(inputs, block=4)
        alone = [learner.encoder_q.backbone.forward_features(x, return_block=4)[1] for x in inputs]
    assert blocks == [] and len(block_outputs) == len(inputs) == len(queries)
    for a, b in zip(features + queries, block_features + block_queries):
        torch.testing.assert_close(a, b)
    for got, expected in zip(block_outputs, alone):
        torch.testing.assert_close(got, expected)
    assert all(torch.allclose(q.norm(dim=1), torch.ones(2)) for q in queries)


def test_a_batchnorm_head_spreads_the_projections_of_features_that_share_a_common_component():
    from hiclr.ssl import embedding_spread
    from hiclr.ssl.learner import ProjectedEncoder

    class Pooled(nn.Module):  # pooled features: a large shared mean, a small per-clip part
        feature_dim = 16

        def forward(self, x):
            return 1.0 + 0.01 * x.flatten(1)[:, :16]

    torch.manual_seed(0)
    x = torch.randn(64, 16)
    spread = {}
    for norm in ("none", "batch"):
        torch.manual_seed(1)
        head = ProjectedEncoder(Pooled(), 32, 8, head_norm=norm)
        spread[norm] = float(embedding_spread(nn.functional.normalize(head(x)[1], dim=1))["embed_std_ratio"])
    assert any(isinstance(m, nn.BatchNorm1d) for m in ProjectedEncoder(Pooled(), 32, 8, "batch").head)
    assert spread["none"] < 0.1 < 0.3 < spread["batch"], spread
    with pytest.raises(ValueError, match="head_norm"):
        ProjectedEncoder(Pooled(), 32, 8, head_norm="layer")


@pytest.mark.parametrize("mining", [False, True], ids=["infonce", "mining"])
def test_a_step_reads_nothing_back_to_the_host(monkeypatch, mining):
    """No item / int / float / bool of a tensor in the forward: on a GPU each would wait for it."""
    learner = make_learner()
    learner(make_views(), torch.arange(4), mining=mining)  # the first enqueue syncs nothing either
    reads = []
    for name in ("item", "__int__", "__float__", "__bool__"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(
            torch.Tensor, name, lambda self, *a, _f=original, _n=name: (reads.append(_n), _f(self, *a))[1]
        )
    loss, metrics = learner(make_views(seed=1), torch.arange(4, 8), mining=mining)
    loss.backward()
    assert reads == [] and "loss" in metrics


def test_after_steps_the_queue_shares_no_storage_with_what_the_steps_produced():
    from tests.hiclr.ssl.test_queue import held_tensors, storages

    learner = make_learner()
    produced = []  # kept alive: no storage is reused
    enqueue = learner.queue.enqueue
    learner.queue.enqueue = lambda keys, ids: (produced.extend([keys, ids]), enqueue(keys, ids))[1]
    learner.encoder_k.register_forward_hook(lambda module, args, out: produced.extend(out))
    for step in range(4):
        loss, metrics = learner(make_views(seed=step), torch.arange(4) + 4 * step)
        loss.backward()
        produced += [loss, *metrics.values()]
        assert not storages(held_tensors(learner.queue)) & storages(produced), step


def test_compiled_steps_leave_the_queue_and_weights_of_eager_steps():
    torch.manual_seed(0)
    eager = make_learner()
    compiled_learner = copy.deepcopy(eager)
    compiled = torch.compile(compiled_learner, backend="aot_eager")
    optimizers = [
        torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
        for m in (eager, compiled_learner)
    ]
    for step in range(4):
        for model, optimizer in zip((eager, compiled), optimizers):
            loss, _ = model(make_views(seed=step), torch.arange(4) + 4 * step)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    for name, value in eager.state_dict().items():
        torch.testing.assert_close(compiled_learner.state_dict()[name], value, rtol=1e-5, atol=1e-6, msg=name)
    queue, expected = compiled_learner.queue, eager.queue
    assert torch.equal(queue.ids, expected.ids) and torch.equal(queue.ptr, expected.ptr)
    assert torch.equal(expected.ids, torch.arange(16))  # the 4 steps filled the queue once


# The objectives against their formulas


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
