"""On a CUDA device (skipped without one): the exact switches equal the reference formulation there
too, bf16 steps stay finite, and a step compiled with CUDA graphs gives the eager step's loss."""

import copy

import pytest
import torch

from closeness import assert_relatively_close
from hiclr.models import STGCN

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _learner(mode, **kwargs):
    from hiclr.ssl import ContrastiveLearner
    torch.manual_seed(0)
    return ContrastiveLearner({"name": "stgcn", "width": 4, "dropout": 0.0}, "hiclr", queue_size=256,
                              fused_views=mode, **kwargs).cuda().train()


def _views(batch=8):
    from hiclr.augment import GrowingPolicy
    from hiclr.bench.train import DEFAULT_POLICY
    g = torch.Generator(device="cuda").manual_seed(0)
    x = 0.3 * torch.randn(batch, 3, 50, 25, 2, device="cuda", generator=g)
    return GrowingPolicy.from_yaml(DEFAULT_POLICY).views(x, g, [0, 0, 1, 2])


def test_aggregate_first_graph_conv_equals_the_reference_on_cuda():
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(1)
    reference = STGCN(width=8, dropout=0.0, graph_conv="conv_first").double().cuda()
    ours = STGCN(width=8, dropout=0.0, graph_conv="auto").double().cuda()
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(4, 3, 20, 25, 2, dtype=torch.float64, device="cuda")
    assert_relatively_close(ours(x), reference(x), what="features")


def test_per_view_fusion_equals_separate_calls_on_cuda():
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    separate = _learner("separate").double()
    fused = copy.deepcopy(separate)
    fused.fused_views = "per_view"
    views = [type(v)(v.x.double(), v.mask) for v in _views()]
    losses = []
    for learner in (separate, fused):
        loss, _ = learner(views, torch.arange(8, device="cuda"), epoch=200)
        loss.backward()
        losses.append(loss)
    assert_relatively_close(losses[1], losses[0], what="loss")
    assert_relatively_close(fused.mask_token.grad, separate.mask_token.grad, what="mask token grad")


def test_a_bf16_step_is_finite():
    learner = _learner("per_view")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss, metrics = learner(_views(), torch.arange(8, device="cuda"), epoch=200)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(learner.mask_token.grad)


def test_a_step_compiled_with_cuda_graphs_gives_the_eager_loss():
    eager = _learner("per_view")
    compiled_learner = copy.deepcopy(eager)
    compiled = torch.compile(compiled_learner, mode="reduce-overhead")
    views = _views()
    for step in range(3):            # warm-up, record, replay
        ids = torch.arange(8, device="cuda") + 8 * step
        loss_eager, _ = eager(views, ids, epoch=0)
        loss_compiled, _ = compiled(views, ids, epoch=0)
        torch.testing.assert_close(loss_compiled.detach().clone(), loss_eager.detach(), rtol=1e-4, atol=1e-4)
