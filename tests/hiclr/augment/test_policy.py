"""Behaviour of the growing augmentation policy (hiclr.augment.policy)."""

import pytest
import torch
import yaml

from hiclr.augment import (
    AUGMENTATIONS,
    HICLR_VIEWS,
    Augmentation,
    GaussianBlur,
    GrowingPolicy,
    JointMask,
    Rotate,
    Shear,
    SpatialFlip,
    View,
    apply_matrix,
)
from tests.helpers.paths import ROOT_DIR

ROOT = ROOT_DIR
DEFAULT = ROOT / "configs" / "augment" / "hiclr_default.yaml"
CORRECTED = ROOT / "configs" / "augment" / "corrected.yaml"
B = 8


def clip(dtype=torch.float32):
    return torch.randn(B, 3, 50, 25, 2, generator=torch.Generator().manual_seed(0), dtype=dtype)


def gen(seed=1):
    return torch.Generator().manual_seed(seed)


def names(view: View) -> list[str]:
    return [name for name, _ in view.params["ops"]]


def test_default_policy_gives_hiclr_four_views_with_the_mask_on_the_strongest_only():
    policy = GrowingPolicy.from_yaml(DEFAULT, record=True)
    assert policy.num_stages == 3
    views = dict(zip(HICLR_VIEWS.names, policy.views(clip(), gen(), HICLR_VIEWS)))
    assert list(views) == ["v0", "key", "v1", "v2"] and HICLR_VIEWS.key_index == 1
    for view in views.values():
        assert view.x.shape == (B, 3, 50, 25, 2)
    ba = ["temporal_crop", "shear"]
    na = ["spatial_flip", "rotate", "gaussian_noise", "gaussian_blur", "axis_mask"]
    assert names(views["v0"]) == ba and names(views["key"]) == ba
    assert names(views["v1"]) == ba + na
    assert names(views["v2"]) == ba + na + ["joint_mask"]
    assert views["v0"].mask is None and views["key"].mask is None and views["v1"].mask is None
    mask = views["v2"].mask
    assert mask.shape == (B, 1, 50, 25, 1) and bool((mask.sum(3) == 2).all())
    assert bool((mask == mask[:1]).all())  # reference: one mask per batch
    # every view is an independent draw from the same clip
    assert not torch.equal(views["v0"].x, views["key"].x)
    assert not torch.equal(views["v0"].params["matrix"], views["key"].params["matrix"])


def test_a_layout_and_its_list_of_stages_give_the_same_views_and_apply_gives_one():
    policy = GrowingPolicy.from_yaml(DEFAULT, record=True)
    listed = policy.views(clip(), gen(), [0, 0, 1, 2])
    assert [v.params["stage"] for v in listed] == [0, 0, 1, 2]
    for a, b in zip(listed, policy.views(clip(), gen(), HICLR_VIEWS)):
        assert torch.equal(a.x, b.x)
    single = policy.apply(clip(), gen())
    assert single.params["stage"] == 2 and torch.equal(single.x, policy.views(clip(), gen(), [2])[0].x)
    assert policy.apply(clip(), gen(), stage=0).params["stage"] == 0
    with pytest.raises(ValueError, match="out of range"):
        policy.views(clip(), gen(), [3])


@pytest.mark.parametrize("concat", [True, False])
def test_same_seed_gives_identical_views(concat):
    policy = GrowingPolicy.from_yaml(DEFAULT, concat_views=concat, record=True)
    a = policy.views(clip(), gen(5), [0, 0, 1, 2])
    b = policy.views(clip(), gen(5), [0, 0, 1, 2])
    c = policy.views(clip(), gen(6), [0, 0, 1, 2])
    for va, vb, vc in zip(a, b, c):
        assert torch.equal(va.x, vb.x) and torch.equal(va.params["matrix"], vb.params["matrix"])
        assert not torch.equal(va.x, vc.x)
    assert torch.equal(a[3].mask, b[3].mask)


@pytest.mark.parametrize("path", [DEFAULT, CORRECTED])
def test_fusing_linear_maps_gives_the_same_views_as_applying_them_one_by_one(path):
    x = clip(torch.float64)
    fused = GrowingPolicy.from_yaml(path, fuse_linear=True, record=True).views(x, gen(3), [0, 0, 1, 2])
    plain = GrowingPolicy.from_yaml(path, fuse_linear=False, record=True).views(x, gen(3), [0, 0, 1, 2])
    for f, p in zip(fused, plain):
        torch.testing.assert_close(f.x, p.x, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(f.params["matrix"], p.params["matrix"])


def test_composed_matrix_is_applied_in_stage_order_and_its_inverse_recovers_the_cropped_clip():
    cfg = [[{"name": "temporal_crop"}, {"name": "shear"}], [{"name": "spatial_flip", "p": 0.5}, {"name": "rotate"}]]
    x = clip(torch.float64)
    for concat in (True, False):
        policy = GrowingPolicy.from_config(cfg, concat_views=concat, record=True)
        view = policy.views(x, gen(4), [1])[0]
        p = view.params
        H, R = p["shear"]["matrix"], p["rotate"]["matrix"]
        torch.testing.assert_close(p["matrix"], R @ H)  # shear first, then the rotation
        cropped = torch.gather(x, 2, p["temporal_crop"]["time_index"][:, None, :, None, None].expand(B, 3, 50, 25, 2))
        flipped = p["spatial_flip"]["flipped"]
        order = torch.as_tensor(SpatialFlip().order)
        base = torch.where(flipped[:, None, None, None, None], cropped.index_select(3, order), cropped)
        torch.testing.assert_close(view.x, apply_matrix(R @ H, base))
        torch.testing.assert_close(apply_matrix(torch.linalg.inv(p["matrix"]), view.x), base)


def test_order_within_a_stage_is_the_listed_order():
    x = clip() + 3.0
    mask_then_noise = [[{"name": "axis_mask", "p": 1.0}, {"name": "gaussian_noise", "p": 1.0}]]
    noise_then_mask = [[{"name": "gaussian_noise", "p": 1.0}, {"name": "axis_mask", "p": 1.0}]]
    a = GrowingPolicy.from_config(mask_then_noise, record=True).views(x, gen(), [0])[0]
    b = GrowingPolicy.from_config(noise_then_mask, record=True).views(x, gen(), [0])[0]
    zeroed_a = (a.x == 0).all(dim=(2, 3, 4)).sum(1)
    zeroed_b = (b.x == 0).all(dim=(2, 3, 4)).sum(1)
    assert bool((zeroed_a == 0).all())  # noise after the mask refills the axis
    assert bool((zeroed_b == 1).all())
    assert bool(b.params["singular"].all())


def test_yaml_can_move_an_augmentation_to_another_stage_and_add_a_stage(tmp_path):
    cfg = yaml.safe_load(DEFAULT.read_text())
    stages = cfg["augment"]["stages"]
    blur = next(item for item in stages[1] if item["name"] == "gaussian_blur")
    stages[1].remove(blur)
    stages[0].append(blur)  # blur becomes basic
    stages.append([{"name": "rotate", "max_angle": 90.0}])  # a fourth stage
    path = tmp_path / "moved.yaml"
    path.write_text(yaml.safe_dump(cfg))

    policy = GrowingPolicy.from_yaml(path, record=True)
    assert policy.num_stages == 4
    views = policy.views(clip(), gen(), [0, 1, 3])
    assert names(views[0]) == ["temporal_crop", "shear", "gaussian_blur"]
    assert "gaussian_blur" not in names(views[1])[3:]
    assert names(views[2])[-2:] == ["joint_mask", "rotate"]
    assert isinstance(policy.stages[3][0], Rotate) and policy.stages[3][0].max_angle == 90.0


def test_reference_quirks_off_fixes_them_and_explicit_items_still_win():
    items = [
        [
            {"name": "spatial_flip"},
            {"name": "rotate"},
            {"name": "gaussian_blur"},
            {"name": "joint_mask"},
            {"name": "Shear", "amplitude": 0.3},
        ]
    ]
    ref = GrowingPolicy.from_config(items, reference_quirks=True).stages[0]
    fixed = GrowingPolicy.from_config(items, reference_quirks=False).stages[0]
    assert not ref[0].mirror and not ref[1].symmetric and not ref[2].normalize and not ref[3].per_sample
    assert fixed[0].mirror and fixed[1].symmetric and fixed[2].normalize and fixed[3].per_sample
    assert isinstance(fixed[4], Shear) and fixed[4].amplitude == 0.3  # class names work too
    kept = GrowingPolicy.from_config([[{"name": "gaussian_blur", "normalize": False}]], reference_quirks=False).stages[
        0
    ][0]
    assert isinstance(kept, GaussianBlur) and not kept.normalize
    corrected = GrowingPolicy.from_yaml(CORRECTED)
    assert corrected.stages[1][0].mirror and corrected.stages[2][0].per_sample


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown augmentation 'twirl'"):
        GrowingPolicy.from_config([[{"name": "twirl"}]])
    with pytest.raises(ValueError, match="'rotate'"):
        GrowingPolicy.from_config([[{"name": "rotate", "angle": 3}]])
    with pytest.raises(ValueError, match="non-empty list"):
        GrowingPolicy.from_config([])


def test_a_batch_shared_mask_is_drawn_once_per_view_even_when_views_are_concatenated():
    cfg = [[{"name": "temporal_crop"}, {"name": "joint_mask"}]]
    policy = GrowingPolicy.from_config(cfg, concat_views=True)
    views = policy.views(clip(), gen(), [0, 0, 0])
    for view in views:
        assert bool((view.mask == view.mask[:1]).all()) and bool((view.mask.sum(3) == 2).all())
    assert not torch.equal(views[0].mask, views[1].mask)
    assert isinstance(policy.stages[0][1], JointMask)


def test_masks_of_two_stages_are_combined():
    cfg = [[{"name": "joint_mask", "ratio": 0.1}], [{"name": "joint_mask", "ratio": 0.2}]]
    view = GrowingPolicy.from_config(cfg).views(clip(), gen(), [1])[0]
    per_frame = view.mask.sum(3)
    assert bool((per_frame >= 5).all()) and bool((per_frame <= 7).all())


def test_a_policy_with_an_empty_first_stage_still_gives_every_view():
    cfg = [[], [{"name": "shear"}]]
    views = GrowingPolicy.from_config(cfg, record=True).views(clip(), gen(), [0, 0, 1])
    assert torch.equal(views[0].x, clip()) and torch.equal(views[1].x, clip())
    assert views[2].x.shape == clip().shape and not torch.equal(views[2].x, clip())


@pytest.mark.parametrize("path", [DEFAULT, CORRECTED])
def test_views_are_not_touched_by_a_later_call_reusing_work_buffers(path):
    policy = GrowingPolicy.from_yaml(path)
    first = policy.views(clip(), gen(1), [0, 0, 1, 2])
    saved = [v.x.clone() for v in first]
    policy.views(clip() * 2, gen(2), [0, 0, 1, 2])
    for v, s in zip(first, saved):
        assert torch.equal(v.x, s)


def test_unsorted_view_stages_still_give_every_view_its_stages():
    policy = GrowingPolicy.from_yaml(DEFAULT, record=True)
    views = policy.views(clip(), gen(), [2, 0, 1])
    assert [v.params["stage"] for v in views] == [2, 0, 1]
    assert views[0].mask is not None and views[1].mask is None


class _Scale(Augmentation):
    """A `values` op from outside the package: each sample scaled by a drawn factor."""

    kind = "values"

    def draw(self, n, generator, like):
        return {"factor": 0.5 + torch.rand(n, generator=generator, device=like.device, dtype=like.dtype)}

    def apply_(self, x, params):
        return x.mul_(params["factor"].view(-1, 1, 1, 1, 1))


class _Reverse(Augmentation):
    """A `general` op from outside the package: time reversed with probability 1/2."""

    def draw(self, n, generator, like):
        return {"reversed": torch.rand(n, generator=generator, device=like.device) < 0.5}

    def apply(self, x, params):
        return torch.where(params["reversed"].view(-1, 1, 1, 1, 1), x.flip(2), x)


@pytest.fixture
def outside_ops(monkeypatch):
    monkeypatch.setitem(AUGMENTATIONS, "scale", _Scale)
    monkeypatch.setitem(AUGMENTATIONS, "reverse", _Reverse)


def _no_plain_path(*args, **kwargs):
    raise AssertionError("the plain path ran")


def test_a_new_op_of_a_planned_kind_takes_the_planned_path_and_matches_the_plain_one(outside_ops, monkeypatch):
    cfg = [[{"name": "temporal_crop"}, {"name": "shear"}], [{"name": "rotate"}, {"name": "scale"}]]
    x = clip(torch.float64)
    plain = GrowingPolicy.from_config(cfg, fuse_linear=False, record=True).views(x, gen(3), [0, 1, 1])
    planned_policy = GrowingPolicy.from_config(cfg, record=True)
    monkeypatch.setattr(GrowingPolicy, "_run", _no_plain_path)
    planned = planned_policy.views(x, gen(3), [0, 1, 1])
    for f, p in zip(planned, plain):
        torch.testing.assert_close(f.x, p.x, rtol=1e-10, atol=1e-12)
    assert torch.equal(planned[2].params["scale"]["factor"], plain[2].params["scale"]["factor"])
    assert names(planned[1]) == ["temporal_crop", "shear", "rotate", "scale"]


def test_a_new_general_op_falls_back_to_applying_each_op_in_turn(outside_ops):
    cfg = [[{"name": "temporal_crop"}, {"name": "shear"}, {"name": "reverse"}, {"name": "axis_mask"}]]
    policy = GrowingPolicy.from_config(cfg)
    assert not policy._plannable(clip(), [0])
    view = policy.apply(clip(), gen(4))
    g, y = gen(4), clip()
    for op in policy.stages[0]:  # the same draws in the same order, applied one by one
        y = op.apply(y, op.draw(B, g, y))
    assert torch.equal(view.x, y)


class _JointRoll(Augmentation):
    """An index op from outside the package: the joints rolled by a drawn shift in 0 .. shifts-1;
    with ``listed`` it lists its orders (``joint_orders``) and gives each row's ``joint_choice``."""

    kind = "index"
    not_recorded = ("joint_order", "joint_choice")

    def __init__(self, shifts: int, listed: bool, record: bool = False):
        super().__init__(record)
        self.shifts, self.listed = shifts, listed

    def joint_orders(self, V):
        if not self.listed:
            return None
        return tuple(tuple((v + s) % V for v in range(V)) for s in range(self.shifts))

    def draw(self, n, generator, like):
        shift = torch.randint(0, self.shifts, (n,), generator=generator, device=like.device)
        params = {"shift": shift, "joint_order": (torch.arange(like.shape[3]) + shift[:, None]) % like.shape[3]}
        return {**params, "joint_choice": shift} if self.listed else params


@pytest.mark.parametrize(
    "shifts, listed",
    [(3, True), (5, True), (3, False)],
    ids=["few_listed_orders", "more_orders_than_copies", "orders_not_listed"],
)
def test_joint_reorderings_of_several_ops_compose_in_the_planned_path_as_in_the_plain_one(shifts, listed):
    def stages():
        make = lambda name, **kw: AUGMENTATIONS[name](record=True, **kw)
        return [
            [make("temporal_crop"), make("spatial_flip", p=0.5), make("shear")],
            [
                _JointRoll(shifts, listed),
                make("rotate"),
                make("gaussian_noise"),
                make("spatial_flip", p=0.5, mirror=True),
            ],
            [_JointRoll(shifts, listed), make("axis_mask")],
        ]

    x = clip(torch.float64)
    planned = GrowingPolicy(stages(), record=True).views(x, gen(6), [0, 1, 1, 2, 2])
    plain = GrowingPolicy(stages(), fuse_linear=False, record=True).views(x, gen(6), [0, 1, 1, 2, 2])
    for f, p in zip(planned, plain):
        torch.testing.assert_close(f.x, p.x, rtol=1e-10, atol=1e-12)
    flips = [planned[3].params["ops"][i][1]["flipped"] for i in (1, 6)]
    assert all(f.any() and (~f).any() for f in flips)  # both orders of both flips occur
    assert planned[3].params["ops"][3][1]["shift"].unique().numel() == shifts
