"""Behaviour of the joint / motion / bone streams (hiclr.augment.streams)."""

import pytest
import torch

from hiclr.augment import NTU_BONES, to_stream

# The reference release's 24 NTU edges, 1-based (child, parent)
SPEC_EDGES = [
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
]


def clip():
    return torch.randn(4, 3, 50, 25, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_joint_stream_is_the_input():
    x = clip()
    assert to_stream(x, "joint") is x


def test_motion_is_the_next_frame_minus_this_one_with_the_last_frame_zero():
    x = clip()
    m = to_stream(x, "motion")
    assert m.shape == x.shape
    for t in range(49):
        assert torch.equal(m[:, :, t], x[:, :, t + 1] - x[:, :, t])
    assert bool((m[:, :, 49] == 0).all())


def test_bone_is_child_minus_parent_for_the_spec_edges_and_zero_at_the_centre():
    assert sorted(NTU_BONES) == sorted(SPEC_EDGES + [(21, 21)])
    x = clip()
    b = to_stream(x, "bone")
    assert b.shape == x.shape
    for child, parent in SPEC_EDGES:
        assert torch.equal(b[:, :, :, child - 1], x[:, :, :, child - 1] - x[:, :, :, parent - 1])
    assert bool((b[:, :, :, 20] == 0).all())


@pytest.mark.parametrize("stream", ["motion", "bone"])
def test_streams_are_differentiable(stream):
    x = clip().requires_grad_()
    to_stream(x, stream).pow(2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert torch.autograd.gradcheck(
        lambda y: to_stream(y, stream), (torch.randn(1, 3, 4, 25, 1, dtype=torch.float64, requires_grad=True),)
    )


def test_unknown_stream_is_an_error():
    with pytest.raises(ValueError, match="unknown stream 'velocity'"):
        to_stream(clip(), "velocity")
