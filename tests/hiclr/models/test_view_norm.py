"""Fused query views with per-view BatchNorm statistics compute what separate encoder calls do:
one HiCLR step's loss, every gradient and every BatchNorm running statistic, to float tolerance."""

import copy
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from hiclr.models.view_norm import (
    ViewBatchNorm2d,
    convert_to_view_batchnorm,
    fused_views_mode,
    plain_batchnorm_count,
    resolve_fused_views,
    views_in_batch,
)
from hiclr.ssl import ContrastiveLearner
from tests.helpers.closeness import assert_relatively_close


@dataclass
class View:
    x: torch.Tensor
    mask: torch.Tensor | None = None


def _views(batch=3, frames=20, seed=0):
    gen = torch.Generator().manual_seed(seed)
    views = [View(torch.randn(batch, 3, frames, 25, 2, generator=gen)) for _ in range(4)]
    views[3].mask = torch.rand(batch, 1, frames, 25, 1, generator=gen) < 0.1
    return views


def _step(learner, views, epoch):
    learner.train()
    loss, metrics = learner(views, torch.arange(len(views[0].x)), **learner.switches(epoch))
    loss.backward()
    return loss, {k: p.grad for k, p in learner.named_parameters() if p.requires_grad}


def _twins(mode, dtype=torch.float32, **kwargs):
    torch.manual_seed(0)
    separate = ContrastiveLearner(
        {"name": "stgcn", "width": 4, "dropout": 0.0}, "hiclr", queue_size=64, fused_views="separate", **kwargs
    ).to(dtype)
    fused = copy.deepcopy(separate)
    fused.fused_views = mode
    return separate, fused


@pytest.mark.parametrize("head_norm", ["none", "batch"])
@pytest.mark.parametrize("epoch", [0, 200], ids=["infonce", "mining"])
def test_per_view_fusion_gives_the_loss_and_gradients_of_separate_calls(head_norm, epoch):
    separate, fused = _twins("per_view", head_norm=head_norm)
    views = _views()
    loss_separate, grads_separate = _step(separate, views, epoch)
    loss_fused, grads_fused = _step(fused, views, epoch)
    assert_relatively_close(loss_fused, loss_separate, what="loss")
    flat = lambda g: torch.cat([v.flatten() for _, v in sorted(g.items())])
    assert_relatively_close(flat(grads_fused), flat(grads_separate), what="all gradients as one vector")
    for name in ("mask_token", "encoder_q.backbone.data_bn.weight"):  # the two ends of the graph
        assert_relatively_close(grads_fused[name], grads_separate[name], what=name)


def test_per_view_fusion_matches_every_gradient_and_running_statistic_in_float64():
    """Per tensor, in float64 (some gradients are small differences of large sums, where float32
    rounding alone differs by more than 1e-5 between any two orders of summation)."""
    separate, fused = _twins("per_view", dtype=torch.float64, head_norm="batch")
    views = [View(v.x.double(), v.mask) for v in _views()]
    (_, grads_separate), (_, grads_fused) = _step(separate, views, 0), _step(fused, views, 0)
    for name, grad in grads_separate.items():
        if name.endswith(("tcn.2.bias", "residual.0.bias", "head.0.bias")):  # 0 before a training BN
            assert grads_fused[name].abs().max() < 1e-12 and grad.abs().max() < 1e-12, name
        else:
            assert_relatively_close(grads_fused[name], grad, what=name)
    state_separate, state_fused = separate.state_dict(), fused.state_dict()
    for name, value in state_separate.items():
        if name.endswith(("running_mean", "running_var", "num_batches_tracked")) or name.startswith("queue."):
            assert_relatively_close(state_fused[name].double(), value.double(), what=name)
    assert int(state_fused["encoder_q.backbone.data_bn.num_batches_tracked"]) == 3  # once per view


def test_shared_fusion_normalises_all_views_together_and_changes_the_loss():
    separate, shared = _twins("shared")
    views = _views()
    loss_separate, _ = _step(separate, views, 0)
    loss_shared, _ = _step(shared, views, 0)
    assert int(shared.encoder_q.backbone.data_bn.num_batches_tracked) == 1
    assert abs(float(loss_shared.detach() - loss_separate.detach())) > 1e-4


def test_converted_batchnorms_keep_the_parameter_objects_and_state_dict_keys():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm1d(4)))
    weight, keys = model[1].weight, list(model.state_dict())
    converted = convert_to_view_batchnorm(model)
    assert isinstance(converted[1], ViewBatchNorm2d) and converted[1].weight is weight
    assert list(converted.state_dict()) == keys and plain_batchnorm_count(converted) == 0
    learner, _ = _twins("per_view")
    assert plain_batchnorm_count(learner) == 0


def test_a_view_batchnorm_splits_only_inside_the_block_and_only_with_batch_statistics():
    bn = convert_to_view_batchnorm(nn.BatchNorm1d(2, momentum=None))
    x = torch.cat([torch.randn(5, 2), 3 + torch.randn(5, 2)])
    with views_in_batch(bn, 2):
        y = bn(x)
        assert bn.views == 2
        with pytest.raises(ValueError, match="equal views"):
            bn(x[:7])
    assert bn.views == 1
    torch.testing.assert_close(y[5:].mean(0), torch.zeros(2), atol=1e-6, rtol=0)  # each view centred
    torch.testing.assert_close(bn.running_mean, x.view(2, 5, 2).mean(1).mean(0))  # cumulative, per view
    bn.eval()
    with views_in_batch(bn, 2):
        torch.testing.assert_close(
            bn(x), nn.functional.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        )


def test_fused_views_modes_are_named_and_anything_else_is_refused():
    assert [fused_views_mode(v) for v in ("auto", "per_view", "separate", "shared")] == [
        "auto",
        "per_view",
        "separate",
        "shared",
    ]
    for wrong in (True, False, "sometimes"):
        with pytest.raises(ValueError, match="auto, separate, per_view, shared"):
            fused_views_mode(wrong)
    assert [resolve_fused_views("auto", torch.device(d)) for d in ("cpu", "cuda")] == ["separate", "per_view"]
    assert resolve_fused_views("per_view", torch.device("cpu")) == "per_view"
    with pytest.raises(ValueError, match="per_view"):
        fused_views_mode("sometimes")
    from hiclr.config import load_config

    assert load_config(None, [])["ssl"]["fused_views"] == "auto"  # the default
    assert ContrastiveLearner.from_config(load_config(None, ["ssl.queue_size=8"])).fused_views == "auto"
