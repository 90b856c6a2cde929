"""SkeleAdaIN (strong augmentation): each sample takes the per-channel style of a rolled batch."""

import pytest
import torch

from hiclr.augment import AUGMENTATIONS, HICLR_VIEWS, GrowingPolicy, SkeleAdaIN
from hiclr.config import load_config
from hiclr.pretrain import build_policy
from tests.helpers.paths import ROOT_DIR

ROOT = ROOT_DIR
ADAIN = ROOT / "configs" / "augment" / "strong_adain.yaml"
MASK_ADAIN = ROOT / "configs" / "augment" / "strong_mask_adain.yaml"
B, C, T, V, M = 6, 3, 20, 25, 2
EPS = 1e-5


def clip(seed=0, batch=B, dtype=torch.float64):
    """Clips whose samples differ in location and spread, so every style is distinct."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, C, T, V, M, generator=g, dtype=dtype)
    scale = 0.5 + torch.rand(batch, C, 1, 1, M, generator=g, dtype=dtype)
    shift = torch.randn(batch, C, 1, 1, M, generator=g, dtype=dtype)
    return x * scale + shift


def gen(seed=1):
    return torch.Generator().manual_seed(seed)


def written_out(x, n, dims=(2, 3)):
    """The recipe: normalise by own (mean, sqrt(unbiased var + eps)), rescale with the batch rolled by n."""
    mean = x.mean(dim=dims, keepdim=True)
    std = (torch.var(x, dim=dims, keepdim=True) + EPS).sqrt()
    style = torch.roll(x, n, 0)
    style_mean = style.mean(dim=dims, keepdim=True)
    style_std = (torch.var(style, dim=dims, keepdim=True) + EPS).sqrt()
    return (x - mean) / std * style_std + style_mean


def test_it_is_registered_as_a_values_op_drawn_once_per_batch():
    assert AUGMENTATIONS["skele_adain"] is SkeleAdaIN
    op = SkeleAdaIN()
    assert op.kind == "values" and op.shared_across_batch and not op.commutes_with_linear


@pytest.mark.parametrize("dim, dims", [("TV", (2, 3)), ("V", (3,))])
def test_output_is_the_written_out_formula_with_the_recorded_offset(dim, dims):
    x = clip()
    op = SkeleAdaIN(dim=dim, record=True)
    y = op(x, gen())
    n = int(op.last["offset"][0])
    torch.testing.assert_close(y, written_out(x, n, dims), rtol=1e-12, atol=1e-12)
    assert not torch.equal(y, x)


def test_each_sample_gets_its_partners_per_channel_mean_and_std():
    x = clip()
    op = SkeleAdaIN(record=True)
    y = op(x, gen())
    partner = op.last["partner"]
    var_y, mean_y = torch.var_mean(y, dim=(2, 3))
    var_p, mean_p = torch.var_mean(x[partner], dim=(2, 3))
    torch.testing.assert_close(mean_y, mean_p, rtol=1e-12, atol=1e-12)
    # std_y = std_p * std_x / sqrt(var_x + eps): the partner's std up to eps / var_x
    torch.testing.assert_close(var_y.sqrt(), var_p.sqrt(), rtol=1e-4, atol=0)


def test_dim_v_gives_every_frame_its_partners_per_frame_style():
    x = clip()
    op = SkeleAdaIN(dim="V", record=True)
    y = op(x, gen())
    torch.testing.assert_close(y.mean(3), x[op.last["partner"]].mean(3), rtol=1e-10, atol=1e-10)


def test_the_recorded_draw_is_one_offset_in_1_to_n_minus_2_and_the_rolled_partner():
    x = clip(batch=8)
    seen = set()
    for seed in range(60):
        op = SkeleAdaIN(record=True)
        op(x, gen(seed))
        offset, partner = op.last["offset"], op.last["partner"]
        assert set(op.last) == {"offset", "partner"} and offset.shape == partner.shape == (8,)
        n = int(offset[0])
        assert bool((offset == n).all()) and 1 <= n <= 6
        assert torch.equal(partner, torch.roll(torch.arange(8), n))  # roll(x, n)[i] = x[partner[i]]
        seen.add(n)
    assert seen == set(range(1, 7))


def test_small_batches_two_swap_styles_and_one_keeps_its_own():
    op = SkeleAdaIN(record=True)
    x2 = clip(batch=2)
    torch.testing.assert_close(op(x2, gen()), written_out(x2, 1), rtol=1e-12, atol=1e-12)
    assert op.last["offset"].tolist() == [1, 1]
    x1 = clip(batch=1)
    torch.testing.assert_close(op(x1, gen()), x1, rtol=1e-10, atol=1e-10)
    assert op.last["offset"].tolist() == [0]


def test_same_seed_same_output_and_draw_whatever_the_global_rng():
    x = clip(dtype=torch.float32)
    a, b = SkeleAdaIN(record=True), SkeleAdaIN(record=True)
    torch.manual_seed(1)
    ya = a(x, gen(7))
    torch.manual_seed(2)
    yb = b(x, gen(7))
    assert torch.equal(ya, yb) and ya.dtype == x.dtype and ya.shape == x.shape
    assert all(torch.equal(a.last[k], b.last[k]) for k in a.last)
    offsets = set()
    for seed in range(10):
        a(x, gen(seed))
        offsets.add(int(a.last["offset"][0]))
    assert len(offsets) > 1  # the seed decides the offset


def test_draw_then_apply_with_the_same_generator_is_the_call_and_apply_leaves_x_alone():
    x = clip()
    op = SkeleAdaIN()
    before = x.clone()
    params = op.draw(B, gen(3), x)
    y = op.apply(x, params)
    assert torch.equal(x, before)
    assert torch.equal(y, op(x, gen(3)))


def test_bad_dim_is_a_clear_error():
    with pytest.raises(ValueError, match="'TV' or 'V'"):
        SkeleAdaIN(dim="T")
    with pytest.raises(ValueError, match="skele_adain"):
        GrowingPolicy.from_config([[{"name": "skele_adain", "axis": 1}]])


@pytest.mark.parametrize("concat, fuse", [(True, True), (True, False), (False, True)])
def test_views_concatenated_along_the_batch_each_roll_within_their_own_batch(concat, fuse):
    x = clip()
    policy = GrowingPolicy.from_config([[{"name": "skele_adain"}]], concat_views=concat, fuse_linear=fuse, record=True)
    views = policy.views(x, gen(2), [0, 0, 0])
    for view in views:
        p = view.params["skele_adain"]
        assert bool((p["partner"] >= 0).all()) and bool((p["partner"] < B).all())
        torch.testing.assert_close(view.x, written_out(x, int(p["offset"][0])), rtol=1e-12, atol=1e-12)


def test_the_strong_adain_config_puts_it_on_the_strongest_view_only():
    policy = GrowingPolicy.from_yaml(ADAIN, record=True)
    v0, key, v1, v2 = policy.views(clip(), gen(), HICLR_VIEWS)
    assert [name for name, _ in v2.params["ops"]][-1] == "skele_adain"
    assert all("skele_adain" not in v.params for v in (v0, key, v1))
    assert v2.mask is None and v2.params["skele_adain"]["offset"].shape == (B,)


def test_the_planned_path_gives_the_views_of_the_plain_one():
    x = clip()
    planned = GrowingPolicy.from_yaml(MASK_ADAIN, record=True).views(x, gen(4), HICLR_VIEWS)
    plain = GrowingPolicy.from_yaml(MASK_ADAIN, fuse_linear=False, record=True).views(x, gen(4), HICLR_VIEWS)
    for f, p in zip(planned, plain):
        torch.testing.assert_close(f.x, p.x, rtol=1e-10, atol=1e-10)
    drawn = [v.params["skele_adain"]["partner"] for v in (planned[3], plain[3])]
    assert torch.equal(*drawn)
    assert torch.equal(planned[3].mask, plain[3].mask)  # the joint mask still rides along


def test_a_pretraining_config_based_on_it_builds_the_policy(tmp_path):
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(f"base: {ADAIN}\n")
    cfg = load_config(cfg_path)
    policy = build_policy(cfg)
    assert isinstance(policy.stages[2][0], SkeleAdaIN) and policy.stages[2][0].dim == "TV"
    cfg["augment"]["stages"][2][0]["dim"] = "V"
    assert build_policy(cfg).stages[2][0].dim == "V"
