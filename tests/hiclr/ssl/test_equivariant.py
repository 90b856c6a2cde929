"""Equivariant contrast (variant A): canonicalisation Z(Ax) A^-T, singular views, L_eq."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hiclr.augment import GrowingPolicy, View
from hiclr.ssl import ContrastiveLearner
from hiclr.ssl.equivariant import EquivariantContrast, canonicalize, equivariance_error, invert_view
from hiclr.ssl.learner import ContrastiveInputs, build_objective

V, K = 25, 42
GEOMETRIC = [
    [{"name": "shear", "amplitude": 0.5}],
    [{"name": "rotate", "max_angle": 60.0, "minor_angle": 20.0, "symmetric": True}],
]


def clip(n=6, seed=0):
    return torch.randn(n, 3, 8, V, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def joint_features(x):
    """h = the mean position of every joint, flattened (v, c): (N, 3, T, V, M) -> (N, 3V)."""
    return x.mean(dim=(2, 4)).transpose(1, 2).reshape(x.shape[0], 3 * V)


def equivariant_linear_head(seed=0):
    """Z = W X for X (V, 3): Linear(3V -> 3K) with weight kron(W, I3), so Z(Ax) = Z(x) A^T exactly."""
    W = torch.randn(K, V, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    head = nn.Linear(3 * V, 3 * K, bias=False).double()
    with torch.no_grad():
        head.weight.copy_(torch.kron(W, torch.eye(3, dtype=torch.float64)))
    return head


def geometric_views(x, seed=1):
    policy = GrowingPolicy.from_config(GEOMETRIC, record=True)
    g = torch.Generator().manual_seed(seed)
    return policy.views(x, g, [1, 1, 1, 1])


def points(head, x):
    return head(joint_features(x)).reshape(x.shape[0], K, 3)


def test_an_exactly_equivariant_head_is_canonicalised_back_and_a_random_mlp_is_not():
    x = clip()
    view = geometric_views(x)[0]
    A = view.params["matrix"]
    assert not torch.allclose(A @ A.transpose(1, 2), torch.eye(3, dtype=A.dtype).expand_as(A))  # shear
    head = equivariant_linear_head()
    assert equivariance_error(points(head, view.x), A, points(head, x)) < 1e-5
    mlp = nn.Sequential(nn.Linear(3 * V, 64), nn.ReLU(), nn.Linear(64, 3 * K)).double()
    assert equivariance_error(points(mlp, view.x), A, points(mlp, x)) > 0.2


def test_the_inverse_of_the_recorded_matrix_returns_the_clip():
    x = clip(n=8)
    for view in geometric_views(x, seed=3):
        assert not torch.allclose(view.x, x)
        torch.testing.assert_close(invert_view(view.x, view.params["matrix"]), x, atol=1e-9, rtol=0)


def test_singular_rows_are_left_as_they_are():
    z = torch.randn(3, K, 3, dtype=torch.float64)
    A = torch.diag_embed(torch.tensor([[1.0, 0, 1], [2, 1, 1], [1, 1, 0]], dtype=torch.float64))
    singular = torch.tensor([True, False, True])
    out = canonicalize(z, A, singular)
    torch.testing.assert_close(out[[0, 2]], z[[0, 2]])
    torch.testing.assert_close(out[1], z[1] @ torch.linalg.inv(A[1]).T)


def objective_with(head, **kwargs):
    obj = EquivariantContrast(feature_dim=3 * V, queue_size=16, eq_branches=(0, 1, 2), **kwargs).double()
    obj.head, obj.key_head = head, copy.deepcopy(head).requires_grad_(False)
    return obj


def inputs_for(views, queries, key, queue, ids):
    """ContrastiveInputs of HiCLR's four views (v0, key, v1, v2) with joint-feature backbones."""
    feats = [joint_features(v.x) for v in views]
    return ContrastiveInputs(
        queries=queries,
        key=key,
        queue_keys=queue,
        queue_ids=torch.full((16,), -1),
        ids=ids,
        query_features=[feats[0], feats[2], feats[3]],
        key_features=feats[1],
        views=views,
    )


def test_l_eq_of_rotated_and_sheared_views_equals_l_eq_of_identical_views():
    x, n = clip(), 6
    g = torch.Generator().manual_seed(5)
    queries = [F.normalize(torch.randn(n, 8, generator=g, dtype=torch.float64), dim=1) for _ in range(3)]
    key = F.normalize(torch.randn(n, 8, generator=g, dtype=torch.float64), dim=1)
    queue = F.normalize(torch.randn(16, 8, generator=g, dtype=torch.float64), dim=1)
    ids = torch.arange(n)
    transformed = geometric_views(x, seed=7)
    identity = torch.eye(3, dtype=torch.float64).expand(n, 3, 3)
    plain = [View(x, None, {"matrix": identity, "singular": torch.zeros(n, dtype=torch.bool)}) for _ in range(4)]
    obj = objective_with(equivariant_linear_head())
    twin = copy.deepcopy(obj)  # same queue of canonicalised keys
    loss_t, metrics_t = obj(inputs_for(transformed, queries, key, queue, ids))
    loss_p, metrics_p = twin(inputs_for(plain, queries, key, queue, ids))
    torch.testing.assert_close(metrics_t["loss_eq"], metrics_p["loss_eq"], atol=1e-10, rtol=0)
    torch.testing.assert_close(loss_t, loss_p, atol=1e-10, rtol=0)
    assert metrics_t["eq_error"] < 1e-6
    # a random MLP head does not see through the transform
    mlp = nn.Sequential(nn.Linear(3 * V, 64), nn.ReLU(), nn.Linear(64, 3 * K)).double()
    obj, twin = objective_with(mlp), objective_with(copy.deepcopy(mlp))
    twin.eq_queue.keys.copy_(obj.eq_queue.keys)
    _, metrics_t = obj(inputs_for(transformed, queries, key, queue, ids))
    _, metrics_p = twin(inputs_for(plain, queries, key, queue, ids))
    assert abs(float(metrics_t["loss_eq"] - metrics_p["loss_eq"])) > 1e-4


def test_axis_masked_views_never_enter_l_eq():
    x, n = clip(), 6
    views = geometric_views(x, seed=2)
    singular = torch.tensor([False, True, False, False, True, False])
    views[2].params = {**views[2].params, "singular": singular}  # v1 (query branch 1)
    g = torch.Generator().manual_seed(0)
    queries = [F.normalize(torch.randn(n, 8, generator=g, dtype=torch.float64), dim=1) for _ in range(3)]
    key = F.normalize(torch.randn(n, 8, generator=g, dtype=torch.float64), dim=1)
    queue = F.normalize(torch.randn(16, 8, generator=g, dtype=torch.float64), dim=1)
    mlp = nn.Sequential(nn.Linear(3 * V, 64), nn.ReLU(), nn.Linear(64, 3 * K)).double()
    obj = EquivariantContrast(feature_dim=3 * V, queue_size=16, eq_branches=(1,)).double()
    obj.head, obj.key_head = mlp, copy.deepcopy(mlp)
    twin = copy.deepcopy(obj)
    inputs = inputs_for(views, queries, key, queue, torch.arange(n))
    _, m1 = obj(inputs)
    altered = inputs_for(views, queries, key, queue, torch.arange(n))
    altered.query_features[1] = altered.query_features[1].clone()
    altered.query_features[1][singular] = 1e3 * torch.randn(2, 3 * V, dtype=torch.float64)
    _, m2 = twin(altered)
    torch.testing.assert_close(m1["loss_eq"], m2["loss_eq"])
    assert m1["eq_valid"] == pytest.approx(4 / 6)


def test_with_lambda_zero_the_loss_is_hiclrs():
    x, n = clip(), 6
    views = geometric_views(x)
    g = torch.Generator().manual_seed(1)
    queries = [F.normalize(torch.randn(n, 8, generator=g, dtype=torch.float64), dim=1) for _ in range(3)]
    key = F.normalize(torch.randn(n, 8, generator=g, dtype=torch.float64), dim=1)
    queue = F.normalize(torch.randn(16, 8, generator=g, dtype=torch.float64), dim=1)
    inputs = inputs_for(views, queries, key, queue, torch.arange(n))
    loss, _ = EquivariantContrast(feature_dim=3 * V, queue_size=16, lambda_eq=0.0).double()(inputs)
    expected, _ = build_objective("hiclr")(inputs)
    assert torch.equal(loss, expected)


def test_a_learner_step_trains_the_aux_head_and_fills_its_queue():
    from hiclr.models.stgcn import STGCN

    policy = GrowingPolicy.from_yaml("configs/augment/hiclr_default.yaml", record=True)
    learner = ContrastiveLearner(lambda: STGCN(width=2), "equivariant", dim=8, hidden=16, queue_size=8, eq_hidden=16)
    assert learner.objective.needs_view_params
    x = torch.randn(4, 3, 12, V, 2, generator=torch.Generator().manual_seed(0))
    views = policy.views(x, torch.Generator().manual_seed(1), learner.view_stages)
    loss, metrics = learner(views, torch.arange(4))
    assert torch.isfinite(loss) and {"loss_eq", "eq_error", "eq_valid"} <= set(metrics)
    loss.backward()
    assert learner.objective.head[0].weight.grad.abs().sum() > 0
    assert learner.objective.key_head[0].weight.grad is None
    assert learner.objective.eq_queue.ids[:4].tolist() == [0, 1, 2, 3]
    unrecorded = GrowingPolicy.from_yaml("configs/augment/hiclr_default.yaml")
    with pytest.raises(ValueError, match="record=True"):
        learner(unrecorded.views(x, torch.Generator().manual_seed(1), learner.view_stages), torch.arange(4))
