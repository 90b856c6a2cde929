"""Behaviour of the batched skeleton augmentations (hiclr.augment.ops)."""

import math

import numpy as np
import pytest
import torch

from hiclr.augment import (
    AUGMENTATIONS,
    KINDS,
    NTU_FLIP_ORDER,
    AxisMask,
    GaussianBlur,
    GaussianNoise,
    JointMask,
    Rotate,
    Shear,
    SpatialFlip,
    TemporalCrop,
    apply_matrix,
    take_indices,
)

B, C, T, V, M = 6, 3, 50, 25, 2


def clip(seed=0, dtype=torch.float32, batch=B):
    """Random clips; tests of per-sample probabilities use batch=32 so both outcomes occur."""
    return torch.randn(batch, C, T, V, M, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def gen(seed=1):
    return torch.Generator().manual_seed(seed)


ALL_OPS = [
    lambda: TemporalCrop(record=True),
    lambda: TemporalCrop(mode="crop_resize", record=True),
    lambda: Shear(record=True),
    lambda: SpatialFlip(record=True),
    lambda: SpatialFlip(mirror=True, record=True),
    lambda: Rotate(record=True),
    lambda: Rotate(symmetric=True, record=True),
    lambda: GaussianNoise(record=True),
    lambda: GaussianBlur(record=True),
    lambda: GaussianBlur(normalize=True, record=True),
    lambda: AxisMask(record=True),
    lambda: JointMask(record=True),
    lambda: JointMask(per_sample=True, record=True),
]


@pytest.mark.parametrize("make", ALL_OPS)
def test_same_seed_gives_identical_output_and_draws_and_shape_is_kept(make):
    x = clip()
    a, b = make(), make()
    torch.manual_seed(123)  # the global RNG must not matter
    ya = a(x, gen(7))
    torch.manual_seed(999)
    yb = b(x, gen(7))
    assert ya.shape == x.shape and ya.dtype == x.dtype and ya.device == x.device
    assert torch.equal(ya, yb)
    assert a.last.keys() == b.last.keys() and a.last
    for key in a.last:
        assert torch.equal(a.last[key], b.last[key])
        assert a.last[key].shape[0] == B


@pytest.mark.parametrize("make", ALL_OPS[:-2])
def test_a_different_seed_gives_different_draws(make):
    x = clip()
    op = make()
    ya = op(x, gen(1))
    yb = op(x, gen(2))
    assert not torch.equal(ya, yb)


def test_without_record_nothing_is_kept():
    op = Rotate()
    op(clip(), gen())
    assert op.last == {}


def test_crop_offset_is_in_range_and_the_crop_is_the_mirror_padded_slice():
    x = clip()
    crop = TemporalCrop(padding_ratio=6, record=True)
    y = crop(x, gen(3))
    pad = T // 6
    offset = crop.last["offset"]
    assert offset.dtype == torch.int64
    assert bool(((offset >= 0) & (offset <= 2 * pad)).all())
    xn = x.numpy()
    padded = np.concatenate([xn[:, :, :pad][:, :, ::-1], xn, xn[:, :, -pad:][:, :, ::-1]], axis=2)
    for b in range(B):
        o = int(offset[b])
        np.testing.assert_array_equal(y[b].numpy(), padded[b, :, o : o + T])


def test_crop_params_drawn_for_a_repeated_batch_gather_its_crops_from_the_clip():
    x = clip()
    crop = TemporalCrop()
    params = crop.draw(3 * B, gen(8), x)
    direct = take_indices(x, params, torch.arange(3 * B) % B)
    assert torch.equal(direct, crop(x.repeat(3, 1, 1, 1, 1), gen(8)))


def test_crop_offsets_cover_the_whole_range():
    crop = TemporalCrop(record=True)
    x = torch.zeros(4000, 1, T, 1, 1)
    crop(x, gen(0))
    assert set(crop.last["offset"].tolist()) == set(range(0, 2 * (T // 6) + 1))


def test_crop_resize_samples_the_recorded_source_frames():
    # a clip whose value is its frame number: linear resampling returns the source positions
    x = torch.arange(T, dtype=torch.float32).view(1, 1, T, 1, 1).expand(B, C, T, V, M).contiguous()
    crop = TemporalCrop(mode="crop_resize", scale_range=(0.5, 1.0), size=40, record=True)
    y = crop(x, gen(4))
    assert y.shape == (B, C, 40, V, M)
    pos = crop.last["time_index"]
    torch.testing.assert_close(y[:, 0, :, 0, 0], pos, rtol=0, atol=1e-4)
    assert bool((crop.last["scale"] >= 0.5 * T / 40 - 1e-6).all() & (crop.last["scale"] <= T / 40 + 1e-6).all())
    assert bool((pos >= 0).all() & (pos <= T - 1).all())


@pytest.mark.parametrize(
    "make",
    [
        lambda: Shear(record=True),
        lambda: Rotate(record=True),
        lambda: Rotate(symmetric=True, record=True),
        lambda: SpatialFlip(p=1.0, mirror=True, record=True),
    ],
)
def test_geometric_matrix_is_what_was_applied_and_its_inverse_recovers_the_clip(make):
    x = clip(dtype=torch.float64)
    op = make()
    y = op(x, gen(5))
    A = op.last["matrix"]
    assert A.shape == (B, 3, 3)
    base = x.index_select(3, torch.as_tensor(NTU_FLIP_ORDER)) if isinstance(op, SpatialFlip) else x
    expected = torch.einsum("bij,bjtvm->bitvm", A, base)
    torch.testing.assert_close(y, expected)
    back = apply_matrix(torch.linalg.inv(A), y)
    torch.testing.assert_close(back, base, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("make", ALL_OPS)
def test_every_op_is_draw_then_apply_with_the_same_generator(make):
    x = clip()
    op, called = make(), make()
    params = op.draw(B, gen(2), x)
    assert torch.equal(op.apply(x, params), called(x, gen(2)))
    assert called.last.keys() == op.recorded(params).keys()  # what recording keeps


def test_a_linear_op_applies_exactly_its_drawn_matrix():
    x = clip()
    params = Shear().draw(B, gen(2), x)
    assert set(params) == {"matrix"}
    assert torch.equal(Shear().apply(x, params), apply_matrix(params["matrix"], x))


def test_every_registered_op_declares_a_known_kind():
    for name, cls in AUGMENTATIONS.items():
        assert cls().kind in KINDS, name
    assert {cls().kind for cls in AUGMENTATIONS.values()} == {"index", "linear", "values", "model_side"}


def test_shear_matrix_is_identity_plus_bounded_off_diagonals():
    op = Shear(amplitude=0.5, record=True)
    op(torch.zeros(500, 3, 2, 1, 1), gen(0))
    A = op.last["matrix"]
    eye = torch.eye(3, dtype=torch.bool)
    assert torch.equal(A[:, eye], torch.ones(500, 3))
    off = A[:, ~eye]
    assert bool((off.abs() < 0.5).all()) and off.min() < -0.4 and off.max() > 0.4


def _reference_rotation(angles_deg):
    """Rz Ry Rx with the release's matrices (x' = R x), built independently in numpy."""
    ax, ay, az = np.radians(angles_deg)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), math.sin(ax)], [0, -math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, -math.sin(ay)], [0, 1, 0], [math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), math.sin(az), 0], [-math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def test_rotation_angles_follow_the_reference_and_compose_x_then_y_then_z():
    op = Rotate(record=True)
    op(torch.zeros(2000, 3, 1, 1, 1, dtype=torch.float64), gen(0))
    axis, angles, A = op.last["axis"], op.last["angles"], op.last["matrix"]
    main = torch.nn.functional.one_hot(axis, 3).bool()
    assert bool((angles >= 0).all())
    assert bool((angles[main] <= 30).all()) and angles[main].max() > 29
    assert bool((angles[~main] <= 1).all())
    assert set(axis.tolist()) == {0, 1, 2}
    for b in range(5):
        np.testing.assert_allclose(A[b].numpy(), _reference_rotation(angles[b].numpy()), atol=1e-12)
    torch.testing.assert_close(A @ A.transpose(1, 2), torch.eye(3, dtype=A.dtype).expand_as(A))


def test_symmetric_rotation_draws_negative_angles_too():
    op = Rotate(symmetric=True, record=True)
    op(torch.zeros(500, 3, 1, 1, 1), gen(0))
    angles = op.last["angles"]
    assert angles.min() < -20 and angles.max() > 20 and bool((angles.abs() <= 30).all())


def test_flip_swaps_exactly_the_left_and_right_joints():
    pairs = [(a, a + 4) for a in range(5, 9)] + [(a, a + 4) for a in range(13, 17)] + [(22, 24), (23, 25)]
    expected = list(range(25))
    for left, right in pairs:  # 1-based pairs -> 0-based swap
        expected[left - 1], expected[right - 1] = right - 1, left - 1
    assert list(NTU_FLIP_ORDER) == expected

    x = clip(batch=32)
    flip = SpatialFlip(p=0.5, record=True)
    y = flip(x, gen(3))
    flipped = flip.last["flipped"]
    assert flipped.any() and (~flipped).any()
    assert torch.equal(y[flipped], x[flipped][:, :, :, expected])
    assert torch.equal(y[~flipped], x[~flipped])
    unchanged = [v for v in range(25) if expected[v] == v]
    assert unchanged == [0, 1, 2, 3, 20]


def test_mirror_flip_also_negates_x():
    x = clip()
    flip = SpatialFlip(p=1.0, mirror=True, record=True)
    y = flip(x, gen(0))
    swapped = x[:, :, :, list(NTU_FLIP_ORDER)]
    assert torch.equal(y[:, 0], -swapped[:, 0]) and torch.equal(y[:, 1:], swapped[:, 1:])


def test_noise_is_added_to_the_chosen_samples_only():
    x = clip(batch=32)
    noise = GaussianNoise(p=0.5, std=0.01, record=True)
    y = noise(x, gen(3))
    applied = noise.last["applied"]
    assert applied.any() and (~applied).any()
    assert torch.equal(y[~applied], x[~applied])
    std = (y[applied] - x[applied]).std().item()
    assert 0.009 < std < 0.011


def test_noise_draws_as_many_numbers_whichever_samples_are_chosen():
    x = clip()
    states = []
    for p in (0.0, 0.5, 1.0):
        g = gen(3)
        GaussianNoise(p=p).draw(B, g, x)
        states.append(g.get_state())
    assert torch.equal(states[0], states[1]) and torch.equal(states[1], states[2])


def test_blur_kernel_is_unnormalised_in_reference_mode_and_sums_to_one_when_normalised():
    sigma = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    ref = GaussianBlur().kernels(sigma)
    norm = GaussianBlur(normalize=True).kernels(sigma)
    assert ref.shape == (3, 15)
    assert bool((ref.sum(1) > 1).all()) and ref.sum(1)[-1] > 4.9
    torch.testing.assert_close(norm.sum(1), torch.ones(3, dtype=torch.float64))
    i = np.arange(-7, 8)
    np.testing.assert_allclose(ref[1].numpy(), np.exp(-(i**2) / 2.0))


@pytest.mark.parametrize("normalize", [False, True])
def test_blur_is_a_zero_padded_temporal_convolution_on_the_chosen_samples(normalize):
    x = clip(dtype=torch.float64, batch=32)
    blur = GaussianBlur(p=0.5, normalize=normalize, record=True)
    y = blur(x, gen(11))
    applied, sigma = blur.last["applied"], blur.last["sigma"]
    assert applied.any() and (~applied).any()
    assert torch.equal(y[~applied], x[~applied])
    if not normalize:
        assert bool((blur.last["kernel_sum"] >= 1).all())
    kernels = blur.kernels(sigma)
    for b in torch.nonzero(applied).flatten().tolist():
        k = kernels[b].numpy()
        series = x[b, 1, :, 4, 0].numpy()
        np.testing.assert_allclose(y[b, 1, :, 4, 0].numpy(), np.convolve(series, k, mode="same"), atol=1e-12)


def test_axis_mask_zeros_exactly_one_axis_of_the_chosen_samples():
    x = clip(batch=32) + 5.0
    mask = AxisMask(p=0.5, record=True)
    y = mask(x, gen(2))
    applied, axis = mask.last["applied"], mask.last["axis"]
    assert applied.any() and (~applied).any()
    for b in range(x.shape[0]):
        zero_axes = [c for c in range(C) if bool((y[b, c] == 0).all())]
        if applied[b]:
            assert zero_axes == [int(axis[b])]
            keep = [c for c in range(C) if c != int(axis[b])]
            assert torch.equal(y[b, keep], x[b, keep])
        else:
            assert zero_axes == [] and torch.equal(y[b], x[b])


def test_joint_mask_masks_two_joints_per_frame_shared_by_the_batch_in_reference_mode():
    x = clip()
    jm = JointMask(ratio=0.1, record=True)
    y = jm(x, gen(0))
    mask = jm.last["mask"]
    assert torch.equal(y, x)  # the data are untouched: the model fills the token
    assert mask.shape == (B, 1, T, V, 1) and mask.dtype == torch.bool
    assert bool((mask.sum(dim=3) == 2).all())
    assert bool((mask == mask[:1]).all())
    assert not bool((mask[:, :, :1] == mask[:, :, 1:]).all())  # frames differ


def test_per_sample_joint_masks_differ_between_samples():
    jm = JointMask(ratio=0.1, per_sample=True)
    mask = jm.draw(B, gen(0), clip())["mask"]
    assert bool((mask.sum(dim=3) == 2).all())
    assert not bool((mask == mask[:1]).all())
    counts = JointMask(per_sample=True).draw(400, gen(1), torch.zeros(1, 3, T, V, 1))["mask"].sum((0, 1, 2, 4))
    assert counts.min() > 0  # every joint gets masked sometimes: a uniform choice
