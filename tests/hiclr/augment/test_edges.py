"""Drop/Add edges (DAE, strong augmentation): the view carries a graph perturbation that the encoder
applies to each block's adjacency; the strong-augmentation configs."""

import copy

import numpy as np
import pytest
import torch
import yaml

from hiclr.augment import (
    AUGMENTATIONS,
    HICLR_VIEWS,
    DropAddEdges,
    EdgePerturbation,
    GrowingPolicy,
    JointMask,
    SkeleAdaIN,
)
from hiclr.augment.edges import DEFAULT_ADD, DEFAULT_ADD_VALUE, hashed_uniform
from hiclr.common.command_line import run_cli
from hiclr.common.errors import UserError
from hiclr.config import load_config
from hiclr.models import STGCN
from hiclr.models.graph import GRAPHS
from hiclr.pretrain import build_policy
from hiclr.ssl import ContrastiveLearner
from tests.helpers.closeness import assert_relatively_close
from tests.helpers.paths import ROOT_DIR
from tests.helpers.tiny_store import write_tiny_store

ROOT = ROOT_DIR
AUGMENT = ROOT / "configs" / "augment"
B, C, T, V, M = 4, 3, 12, 25, 2
A_NTU = torch.from_numpy(GRAPHS["ntu"]())  # (3, 25, 25), the ST-GCN adjacency


def clip(seed=0, batch=B):
    return torch.randn(batch, C, T, V, M, generator=torch.Generator().manual_seed(seed))


def gen(seed=1):
    return torch.Generator().manual_seed(seed)


def perturbation(seed=3, **kwargs) -> EdgePerturbation:
    op = DropAddEdges(**kwargs)
    return op.edges(op.draw(B, gen(seed), clip()))


def policy_with(strong: list[dict], **options) -> GrowingPolicy:
    """Crop + shear, then the strong stage `strong` (a 2-stage policy: views at stage 1 are strong)."""
    basic = [{"name": "temporal_crop", "padding_ratio": 6}, {"name": "shear", "amplitude": 0.5}]
    return GrowingPolicy.from_config([basic, strong], **options)


# ------------------------------------------------------------------ the op and its draw


def test_it_is_a_registered_model_side_op_that_leaves_the_data_alone():
    assert AUGMENTATIONS["drop_add_edges"] is DropAddEdges
    op = DropAddEdges(record=True)
    assert op.kind == "model_side" and op.shared_across_batch and op.commutes_with_linear
    x = clip()
    assert torch.equal(op(x, gen()), x)
    assert set(op.last) == {"seed"} and op.last["seed"].shape == (B,) and op.last["seed"].dtype == torch.int64
    assert bool((op.last["seed"] == op.last["seed"][0]).all())  # one draw per view's batch
    assert (op.drop, op.add, op.add_value) == (0.1, None, None)  # the release's drop; add: the encoder's


def test_same_generator_seed_gives_the_same_draw_and_perturbation_whatever_the_global_rng():
    torch.manual_seed(1)
    a = perturbation(seed=5, drop=0.1, add=0.05)
    torch.manual_seed(2)
    b = perturbation(seed=5, drop=0.1, add=0.05)
    c = perturbation(seed=6, drop=0.1, add=0.05)
    assert torch.equal(a.seed, b.seed) and not torch.equal(a.seed, c.seed)
    for block in range(10):
        assert torch.equal(a.perturb(A_NTU, block), b.perturb(A_NTU, block))
    assert any(not torch.equal(a.perturb(A_NTU, i), c.perturb(A_NTU, i)) for i in range(10))


def test_each_block_draws_its_own_ratios_within_their_bounds_and_its_own_masks():
    e = perturbation(drop=0.1, add=0.05)
    ratios = torch.stack([torch.stack(e.ratios(block, "cpu")) for block in range(200)])
    p, r = ratios[:, 0], ratios[:, 1]
    assert bool(((p >= 0) & (p < 0.1)).all()) and bool(((r >= 0) & (r < 0.05)).all())
    assert p.min() < 0.01 and p.max() > 0.09 and r.min() < 0.005 and r.max() > 0.045  # U(0, drop), U(0, add)
    assert len(set(p.tolist())) == 200
    kept = [e.draw_block(block, A_NTU)[2] for block in range(3)]
    assert not torch.equal(kept[0], kept[1]) and not torch.equal(kept[1], kept[2])


def test_the_hashed_uniforms_are_uniform_independent_across_seeds_and_blocks_and_prefix_stable():
    u = hashed_uniform(torch.tensor(7), 0, 200_000, "cpu")
    assert u.dtype == torch.float32 and bool(((u >= 0) & (u < 1)).all())
    assert abs(float(u.mean()) - 0.5) < 0.003 and abs(float(u.var()) - 1 / 12) < 0.001
    counts = torch.histc(u, bins=10, min=0, max=1)
    assert float((counts - 20_000).abs().max()) < 600  # about 4.5 sigma
    other_seed, other_block = (
        hashed_uniform(torch.tensor(8), 0, 200_000, "cpu"),
        hashed_uniform(torch.tensor(7), 1, 200_000, "cpu"),
    )
    others = [other_seed, other_block, u.roll(1)]  # and neighbouring entries of one draw
    for other in others:
        assert abs(float(torch.corrcoef(torch.stack([u, other]))[0, 1])) < 0.01
    assert torch.equal(hashed_uniform(torch.tensor(7), 0, 10, "cpu"), u[:10])
    assert torch.equal(hashed_uniform(7, 0, 10, "cpu"), u[:10])  # a plain int seed too


def test_drop_zeroes_entries_and_scales_the_kept_ones_by_one_over_one_minus_p():
    e = perturbation(drop=0.5, add=0.0)
    adjacency = 0.5 + torch.rand(8, 3, 25, 25, generator=gen(2))  # every entry non-zero
    for block in range(5):
        p, _, kept, _ = e.draw_block(block, adjacency)
        out = e.perturb(adjacency, block)
        assert 0 <= float(p) < 0.5
        torch.testing.assert_close(out[kept], adjacency[kept] / (1 - float(p)), rtol=1e-6, atol=0)
        assert bool((out[~kept] == 0).all())
        dropped, n = float((~kept).float().mean()), kept.numel()
        assert abs(dropped - float(p)) < 4 * (float(p) * (1 - float(p)) / n) ** 0.5 + 1e-6


@pytest.mark.parametrize("value", [1.0, "mean"])
def test_add_fills_only_zero_entries_with_the_value_and_keeps_the_total_weight(value):
    e = perturbation(drop=0.0, add=1.0, add_value=value)
    for block in range(5):
        _, r, _, grown = e.draw_block(block, A_NTU)
        out = e.perturb(A_NTU, block)
        torch.testing.assert_close(out.sum(), A_NTU.sum(), rtol=1e-6, atol=0)  # the total is kept
        new = (A_NTU == 0) & (out != 0)
        assert torch.equal(new, grown & (A_NTU == 0))
        fill = 1.0 if value == 1.0 else float(A_NTU.sum() / A_NTU.numel())
        scale = A_NTU.sum() / (A_NTU.sum() + new.sum() * fill)
        old = A_NTU != 0
        torch.testing.assert_close(out[old], A_NTU[old] * scale, rtol=1e-6, atol=0)  # one common factor
        torch.testing.assert_close(out[new], torch.full_like(out[new], fill) * scale, rtol=1e-6, atol=0)
        zeros = int((A_NTU == 0).sum())
        assert abs(int(new.sum()) - float(r) * zeros) < 5 * (zeros * float(r) * (1 - float(r))) ** 0.5 + 1


def test_add_after_drop_keeps_the_dropped_graphs_total_and_fills_dropped_entries_too():
    e = perturbation(drop=0.3, add=0.9, add_value=1.0)
    for block in range(5):
        p, _, kept, grown = e.draw_block(block, A_NTU)
        dropped = A_NTU * kept / (1 - p)
        out = e.perturb(A_NTU, block)
        torch.testing.assert_close(out.sum(), dropped.sum(), rtol=1e-6, atol=0)
        assert torch.equal(out != 0, (dropped != 0) | grown)


def test_both_ratios_zero_is_the_identity():
    e = perturbation(drop=0.0, add=0.0)
    adjacency = torch.rand(3, 25, 25)
    assert all(e.perturb(adjacency, block) is adjacency for block in range(10))
    model = STGCN(width=2, dropout=0.0).eval()
    x = clip()
    assert torch.equal(model(x, edges=e), model(x))


def test_bad_settings_are_refused_in_one_sentence_naming_the_op():
    for kwargs, what in [
        ({"drop": 1.0}, "drop"),
        ({"drop": -0.1}, "drop"),
        ({"add": 1.5}, "add"),
        ({"add_value": "max"}, "add_value"),
        ({"add_value": 0}, "add_value"),
    ]:
        with pytest.raises(ValueError, match=f"drop_add_edges {what}"):
            DropAddEdges(**kwargs)
    cfg = load_config(AUGMENT / "strong_dae.yaml")
    cfg["augment"]["stages"][2][0]["drop"] = 2
    with pytest.raises(UserError, match="augment section: drop_add_edges drop"):
        build_policy(cfg)


# ------------------------------------------------------------------ the encoder's side


class Spy:
    """A graph perturbation that adds 0.1 to every entry and notes what it was given (not linear:
    applied after the edge importance it would compute something else)."""

    def __init__(self):
        self.calls = []

    def perturb(self, adjacency, block):
        self.calls.append((block, adjacency))
        return adjacency + 0.1


def test_stgcn_without_edges_computes_what_it_did_block_by_block():
    torch.manual_seed(0)
    model = STGCN(width=2, dropout=0.0).eval()
    x = clip()
    expected = model.data_bn(x.permute(0, 4, 3, 1, 2).reshape(B * M, V * C, T))
    h = expected.view(B * M, V, C, T).permute(0, 2, 3, 1)
    for i, layer in enumerate(model.st_gcn_networks):
        h = layer(h, model.A * model.edge_importance[i])
    pooled = h.mean(dim=(2, 3)).view(B, M, -1).mean(1)
    assert torch.equal(model(x), pooled) and torch.equal(model(x, edges=None), pooled)
    assert torch.equal(model.forward_features(x, edges=None)[0], pooled)


def test_stgcn_hands_each_blocks_graph_to_the_perturbation_before_the_edge_importance():
    torch.manual_seed(0)
    model = STGCN(width=2, dropout=0.0).eval()
    with torch.no_grad():
        for importance in model.edge_importance:
            importance.uniform_(0.5, 1.5)
    shifted = copy.deepcopy(model)
    shifted.A = model.A + 0.1
    spy, x = Spy(), clip()
    features, block = model.forward_features(x, return_block=4, edges=spy)
    assert [b for b, _ in spy.calls] == list(range(10)) and all(a is model.A for _, a in spy.calls)
    expected_features, expected_block = shifted.forward_features(x, return_block=4)
    assert torch.equal(features, expected_features) and torch.equal(block, expected_block)
    assert torch.equal(model(x, edges=Spy()), shifted(x)) and not torch.equal(shifted(x), model(x))


def test_stgcn_fills_the_unset_add_with_its_release_default_drop_only():
    assert STGCN.edge_defaults == {"add": 0.0, "add_value": 1.0}
    e = perturbation(drop=0.1)  # add, add_value: the encoder's
    assert (e.add_ratio, e.fill) == (DEFAULT_ADD, DEFAULT_ADD_VALUE) == (0.05, "mean")  # where none is set
    resolved = e.with_defaults(**STGCN.edge_defaults)
    assert (resolved.add, resolved.add_value) == (0.0, 1.0)
    explicit = perturbation(drop=0.1, add=0.05, add_value="mean").with_defaults(**STGCN.edge_defaults)
    assert (explicit.add, explicit.add_value) == (0.05, "mean")  # an explicit setting wins
    torch.manual_seed(0)
    model = STGCN(width=2, dropout=0.0).eval()
    x = clip()
    assert torch.equal(model(x, edges=e), model(x, edges=resolved))
    assert not torch.equal(model(x, edges=e), model(x))
    assert not torch.equal(model(x, edges=e), model(x, edges=perturbation(drop=0.1, add=0.05)))


# ------------------------------------------------------------------ the policy: the view carries the draw


@pytest.mark.parametrize("concat, fuse", [(True, True), (True, False), (False, True)])
def test_only_the_strong_view_carries_edges_and_the_record_replays_them(concat, fuse):
    policy = GrowingPolicy.from_yaml(AUGMENT / "strong_dae.yaml", concat_views=concat, fuse_linear=fuse, record=True)
    v0, key, v1, v2 = policy.views(clip(), gen(4), HICLR_VIEWS)
    assert v0.edges is None and key.edges is None and v1.edges is None
    assert isinstance(v2.edges, EdgePerturbation) and v2.mask is None
    assert [name for name, _ in v2.params["ops"]][-1] == "drop_add_edges"
    recorded = v2.params["drop_add_edges"]
    assert recorded["seed"].shape == (B,) and bool((recorded["seed"] == v2.edges.seed).all())
    replayed = policy.stages[2][0].edges(recorded)
    for block in range(10):
        assert torch.equal(replayed.perturb(A_NTU, block), v2.edges.perturb(A_NTU, block))


def test_the_planned_path_gives_the_plain_paths_views_and_draws():
    x = clip()
    planned = GrowingPolicy.from_yaml(AUGMENT / "strong_all.yaml").views(x, gen(4), HICLR_VIEWS)
    plain = GrowingPolicy.from_yaml(AUGMENT / "strong_all.yaml", fuse_linear=False).views(x, gen(4), HICLR_VIEWS)
    for f, p in zip(planned, plain):
        torch.testing.assert_close(f.x, p.x, rtol=1e-5, atol=1e-5)
    assert torch.equal(planned[3].edges.seed, plain[3].edges.seed) and torch.equal(planned[3].mask, plain[3].mask)


def test_views_drawn_together_each_get_their_own_perturbation():
    views = policy_with([{"name": "drop_add_edges"}]).views(clip(), gen(), [1, 1, 1])
    seeds = {int(v.edges.seed) for v in views}
    assert len(seeds) == 3


def test_two_graph_perturbations_on_one_view_are_refused():
    policy = policy_with([{"name": "drop_add_edges"}, {"name": "drop_add_edges", "drop": 0.2}])
    with pytest.raises(ValueError, match="one graph perturbation"):
        policy.views(clip(), gen(), [1])


# ------------------------------------------------------------------ the learner passes view.edges on


def tiny_learner(fused_views="separate", dropout=0.5):
    torch.manual_seed(0)
    return ContrastiveLearner(
        {"name": "stgcn", "width": 2, "dropout": dropout},
        "hiclr",
        queue_size=16,
        dim=8,
        hidden=16,
        fused_views=fused_views,
    )


def step(learner, views, epoch=0):
    """One training step from a fixed global RNG (the encoder's dropout): loss and gradients."""
    learner.train()
    torch.manual_seed(9)
    loss, _ = learner(views, torch.arange(B), **learner.switches(epoch))
    loss.backward()
    return loss.detach(), {k: p.grad.clone() for k, p in learner.named_parameters() if p.grad is not None}


def hiclr_policy(strong):
    """The released policy's first two stages, then `strong` as the S stage."""
    stages = yaml.safe_load((AUGMENT / "hiclr_default.yaml").read_text())["augment"]["stages"]
    return GrowingPolicy.from_config(stages[:2] + [strong])


@pytest.mark.parametrize("epoch", [0, 200], ids=["infonce", "mining"])
def test_dae_with_both_ratios_zero_leaves_the_hiclr_step_unchanged(epoch):
    x = clip()
    with_dae = hiclr_policy(
        [{"name": "joint_mask", "ratio": 0.1}, {"name": "drop_add_edges", "drop": 0.0, "add": 0.0}]
    ).views(x, gen(5), HICLR_VIEWS)
    without = hiclr_policy([{"name": "joint_mask", "ratio": 0.1}]).views(x, gen(5), HICLR_VIEWS)
    assert with_dae[3].edges is not None and without[3].edges is None
    for a, b in zip(with_dae, without):
        assert torch.equal(a.x, b.x)
    loss_dae, grads_dae = step(tiny_learner(), with_dae, epoch)
    loss_plain, grads_plain = step(tiny_learner(), without, epoch)
    assert torch.equal(loss_dae, loss_plain)
    assert grads_dae.keys() == grads_plain.keys()
    assert all(torch.equal(grads_dae[k], grads_plain[k]) for k in grads_plain)


def test_the_strong_views_perturbation_reaches_only_its_own_encoder_call():
    x = clip()
    views = hiclr_policy([{"name": "drop_add_edges", "drop": 0.5}]).views(x, gen(5), HICLR_VIEWS)
    spy = Spy()
    views[3].edges = spy
    learner = tiny_learner()
    learner(views, torch.arange(B))
    assert [b for b, _ in spy.calls] == list(range(10))  # one forward call, each block once
    assert all(a is learner.encoder_q.backbone.A for _, a in spy.calls)
    views[3].edges = None
    loss_plain, _ = step(tiny_learner(), views)
    views[3].edges = perturbation(drop=0.5)
    loss_dae, _ = step(tiny_learner(), views)
    assert not torch.equal(loss_plain, loss_dae)


@pytest.mark.parametrize("block", [None, 4], ids=["features", "with_block"])
def test_fused_views_with_a_perturbed_view_compute_what_separate_calls_do(block):
    views = hiclr_policy(
        [{"name": "joint_mask", "ratio": 0.1}, {"name": "drop_add_edges", "drop": 0.3, "add": 0.1}]
    ).views(clip(), gen(6), HICLR_VIEWS)
    separate, fused = tiny_learner("separate", dropout=0.0), tiny_learner("per_view", dropout=0.0)
    inputs = [separate.prepare(v) for i, v in enumerate(views) if i != separate.key_index]
    edges = [None, None, views[3].edges]
    out_separate = separate.encode_queries(inputs, block, edges)
    out_fused = fused.encode_queries(inputs, block, edges)
    assert len(out_fused[2]) == (0 if block is None else len(inputs))
    for got, want in zip(out_fused, out_separate):
        assert_relatively_close(list(got), list(want), what="fused vs separate")
    # and a whole step: loss and every gradient
    loss_separate, grads_separate = step(separate, views)
    loss_fused, grads_fused = step(fused, views)
    assert_relatively_close(loss_fused, loss_separate, what="loss")
    flat = lambda g: torch.cat([v.flatten() for _, v in sorted(g.items())])
    assert_relatively_close(flat(grads_fused), flat(grads_separate), what="all gradients as one vector")


def test_under_shared_statistics_the_perturbed_view_still_gets_its_own_call():
    views = hiclr_policy([{"name": "drop_add_edges"}]).views(clip(), gen(6), HICLR_VIEWS)
    learner = tiny_learner("shared")
    learner.train()
    learner(views, torch.arange(B))
    assert int(learner.encoder_q.backbone.data_bn.num_batches_tracked) == 2  # v0 + v1 fused, v2 alone


# ------------------------------------------------------------------ the strong-augmentation configs

STRONG = {
    "strong_mask": ["joint_mask"],
    "strong_dae": ["drop_add_edges"],
    "strong_adain": ["skele_adain"],
    "strong_all": ["skele_adain", "joint_mask", "drop_add_edges"],
}


@pytest.mark.parametrize("name", sorted(STRONG))
def test_each_strong_config_builds_the_released_policy_with_its_strong_stage(name, tmp_path):
    default = yaml.safe_load((AUGMENT / "hiclr_default.yaml").read_text())["augment"]
    own = yaml.safe_load((AUGMENT / f"{name}.yaml").read_text())["augment"]
    assert own["reference_quirks"] is True and own["stages"][:2] == default["stages"][:2]
    assert [item["name"] for item in own["stages"][2]] == STRONG[name]
    run = tmp_path / "run.yaml"
    run.write_text(f"base: {AUGMENT / f'{name}.yaml'}\n")
    policy = build_policy(load_config(run))
    assert [type(op) for op in policy.stages[2]] == [AUGMENTATIONS[n] for n in STRONG[name]]
    v0, key, v1, v2 = policy.views(clip(), gen(), HICLR_VIEWS)
    assert (v2.mask is not None) == ("joint_mask" in STRONG[name])
    assert (v2.edges is not None) == ("drop_add_edges" in STRONG[name])
    assert all(v.mask is None and v.edges is None for v in (v0, key, v1))


def test_strong_mask_is_the_default_policy_and_the_default_stays_the_joint_mask():
    default = yaml.safe_load((AUGMENT / "hiclr_default.yaml").read_text())
    assert yaml.safe_load((AUGMENT / "strong_mask.yaml").read_text()) == default
    stages = load_config(ROOT / "configs" / "base" / "pretrain.yaml")["augment"]["stages"]
    assert [item["name"] for item in stages[2]] == ["joint_mask"]
    dae = build_policy(load_config(AUGMENT / "strong_dae.yaml")).stages[2][0]
    assert (dae.drop, dae.add, dae.add_value) == (0.1, None, None)
    adain, mask = build_policy(load_config(AUGMENT / "strong_all.yaml")).stages[2][:2]
    assert isinstance(adain, SkeleAdaIN) and isinstance(mask, JointMask) and mask.ratio == 0.1


def test_a_tiny_pretraining_with_all_three_strong_augmentations_runs(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 3, 50, 25, 2)).astype(np.float32)
    data = write_tiny_store(
        tmp_path / "tiny.h5", x, np.arange(24) % 3, np.arange(24) % 3, test_performer=2, num_classes=3
    )
    config = tmp_path / "run.yaml"
    config.write_text(f"base: [{ROOT / 'configs' / 'tiny' / 'pretrain.yaml'}, {AUGMENT / 'strong_all.yaml'}]\n")
    argv = [
        "pretrain",
        "--config",
        config,
        "--data",
        data,
        "--out",
        tmp_path / "out",
        "--epochs",
        1,
        "--device",
        "cpu",
        "--set",
        "model.width=2",
        "--set",
        "optim.batch_size=8",
        "--set",
        "ssl.queue_size=16",
        "--set",
        "engine.progress=false",
        "--set",
        "engine.tensorboard=false",
        "--set",
        "run.monitor_every=0",
    ]
    assert run_cli("hiclr", "", "hiclr.commands", ["pretrain"], "", list(map(str, argv))) == 0
    assert "encoder:" in capsys.readouterr().out
    resolved = yaml.safe_load((tmp_path / "out" / "tiny_pretrain" / "config.yaml").read_text())
    assert [item["name"] for item in resolved["augment"]["stages"][2]] == STRONG["strong_all"]


# ------------------------------------------------------------------ on a CUDA device (skipped without one)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
def test_the_perturbation_is_the_same_on_cuda_and_makes_no_host_device_synchronisation():
    e = perturbation(drop=0.3, add=0.2, add_value="mean")
    on_cuda = EdgePerturbation(e.seed.cuda(), e.drop, e.add, e.add_value)
    adjacency, like = A_NTU.cuda(), clip().cuda()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        outputs = [on_cuda.perturb(adjacency, block) for block in range(10)]
        seeds = DropAddEdges().draw(B, torch.Generator(device="cuda").manual_seed(0), like)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert seeds["seed"].device.type == "cuda"
    for block, out in enumerate(outputs):
        assert torch.equal(on_cuda.draw_block(block, adjacency)[2].cpu(), e.draw_block(block, A_NTU)[2])
        torch.testing.assert_close(out.cpu(), e.perturb(A_NTU, block), rtol=1e-6, atol=1e-7)


@cuda
def test_a_dae_step_on_cuda_fused_per_view_equals_separate_calls():
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    g = torch.Generator(device="cuda").manual_seed(0)
    x = 0.3 * torch.randn(B, C, 50, V, M, device="cuda", generator=g)
    views = GrowingPolicy.from_yaml(AUGMENT / "strong_all.yaml").views(x, g, HICLR_VIEWS)
    views = [type(v)(v.x.double(), v.mask, v.params, v.edges) for v in views]
    losses = []
    for mode in ("separate", "per_view"):
        learner = tiny_learner(mode, dropout=0.0).double().cuda().train()
        loss, _ = learner(views, torch.arange(B, device="cuda"), mining=True)
        loss.backward()
        losses.append(loss.detach())
    assert_relatively_close(losses[1], losses[0], what="loss")
