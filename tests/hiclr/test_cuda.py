"""On a CUDA device (skipped without one): the exact switches equal the reference formulation there
too, bf16 steps stay finite, and training steps compiled with CUDA graphs follow the eager steps."""

import copy

import pytest
import torch

from hiclr.models import STGCN
from tests.helpers.closeness import assert_relatively_close

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _learner(mode, **kwargs):
    from hiclr.ssl import ContrastiveLearner

    torch.manual_seed(0)
    return (
        ContrastiveLearner(
            {"name": "stgcn", "width": 4, "dropout": 0.0}, "hiclr", queue_size=256, fused_views=mode, **kwargs
        )
        .cuda()
        .train()
    )


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
        loss, _ = learner(views, torch.arange(8, device="cuda"), mining=True)
        loss.backward()
        losses.append(loss)
    assert_relatively_close(losses[1], losses[0], what="loss")
    assert_relatively_close(fused.mask_token.grad, separate.mask_token.grad, what="mask token grad")


def test_a_bf16_step_is_finite():
    learner = _learner("per_view")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss, metrics = learner(_views(), torch.arange(8, device="cuda"), mining=True)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(learner.mask_token.grad)


def test_a_step_compiled_with_cuda_graphs_gives_the_eager_loss():
    eager = _learner("per_view")
    compiled_learner = copy.deepcopy(eager)
    compiled = torch.compile(compiled_learner, mode="reduce-overhead")
    views = _views()
    for step in range(3):  # warm-up, record, replay
        ids = torch.arange(8, device="cuda") + 8 * step
        loss_eager, _ = eager(views, ids)
        loss_compiled, _ = compiled(views, ids)
        torch.testing.assert_close(loss_compiled.detach().clone(), loss_eager.detach(), rtol=1e-4, atol=1e-4)


def test_training_steps_compiled_with_cuda_graphs_follow_the_eager_steps():
    """Backward and optimizer steps too: a graph replay overwrites the previous step's outputs, so
    the queue, the weights and the losses would drift from eager if anything kept them."""
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    eager = _learner("per_view")
    compiled_learner = copy.deepcopy(eager)
    compiled = torch.compile(compiled_learner, mode="reduce-overhead")
    optimizers = [
        torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1, momentum=0.9, weight_decay=1e-4)
        for m in (eager, compiled_learner)
    ]
    g = torch.Generator(device="cuda").manual_seed(1)
    for step in range(6):  # warm-up, record, replays
        views = _views()
        for v in views:
            v.x.add_(0.01 * torch.randn(v.x.shape, device="cuda", generator=g))
        ids = torch.arange(8, device="cuda") + 8 * step
        losses = []
        for model, optimizer in zip((eager, compiled), optimizers):
            loss, _ = model(views, ids)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.detach().clone())
        torch.testing.assert_close(losses[1], losses[0], rtol=1e-4, atol=1e-4)
    queue, expected = compiled_learner.queue, eager.queue
    torch.testing.assert_close(queue.keys, expected.keys, rtol=1e-4, atol=1e-4)
    assert torch.equal(queue.ids, expected.ids) and torch.equal(queue.ptr, expected.ptr)
    for name, value in eager.state_dict().items():
        torch.testing.assert_close(compiled_learner.state_dict()[name], value, rtol=1e-3, atol=1e-4, msg=name)
