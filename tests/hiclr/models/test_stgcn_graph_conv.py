"""The aggregate-first graph convolution computes the reference's conv-first function exactly
(to float tolerance), forward and backward, in every ST-GCN block and in the whole network, with
the reference's parameter names and shapes."""

import copy

import pytest
import torch

from hiclr.models import STGCN
from hiclr.models.graph import ntu_graph
from hiclr.models.stgcn import GraphConv, cheaper_graph_conv_order
from tests.helpers.closeness import assert_relatively_close, relative_error

WIDTH = 16
PLAN = [(3, 16), (16, 16), (16, 32), (32, 32), (32, 64), (64, 64), (64, 256)]  # every (in, out) of width 16


def _randomised(module, seed):
    """Non-trivial biases and weights (the reference init zeroes biases, which would hide them)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p + 0.1 * torch.randn(p.shape, generator=g))
    return module


def _graph(seed):
    """A times an edge importance that is not all ones, so column sums differ per subset."""
    g = torch.Generator().manual_seed(seed)
    return torch.from_numpy(ntu_graph()) * (1 + 0.3 * torch.rand(3, 25, 25, generator=g))


def test_the_cheaper_order_aggregates_first_exactly_when_channels_grow():
    assert [cheaper_graph_conv_order(i, o) for i, o in PLAN] == [
        "aggregate_first",
        "conv_first",
        "aggregate_first",
        "conv_first",
        "aggregate_first",
        "conv_first",
        "aggregate_first",
    ]
    assert cheaper_graph_conv_order(64, 32) == "conv_first"
    assert GraphConv(3, 16, 3, "auto").order == "aggregate_first"
    assert GraphConv(16, 16, 3, "auto").order == "conv_first"


@pytest.mark.parametrize("channels", PLAN, ids=[f"{i}to{o}" for i, o in PLAN])
def test_aggregate_first_equals_conv_first_with_its_gradients(channels):
    c_in, c_out = channels
    torch.manual_seed(0)
    reference = _randomised(GraphConv(c_in, c_out, 3, "conv_first"), seed=1)
    ours = GraphConv(c_in, c_out, 3, "aggregate_first")
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(4, c_in, 6, 25)
    outputs, grads = [], []
    for module in (reference, ours):
        xi = x.clone().requires_grad_(True)
        A = _graph(2).requires_grad_(True)
        y = module(xi, A)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        outputs.append(y)
        grads.append([xi.grad, A.grad, module.conv.weight.grad, module.conv.bias.grad])
    assert_relatively_close(outputs[1], outputs[0], what="output")
    assert_relatively_close(grads[1], grads[0], what="grads (x, A, weight, bias)")


def test_every_order_keeps_the_reference_parameter_names_and_shapes():
    shapes = {
        order: {k: tuple(v.shape) for k, v in GraphConv(16, 32, 3, order).state_dict().items()}
        for order in ("conv_first", "aggregate_first")
    }
    assert shapes["conv_first"] == shapes["aggregate_first"] == {"conv.weight": (96, 16, 1, 1), "conv.bias": (96,)}
    assert (
        STGCN(width=4, graph_conv="auto").state_dict().keys()
        == STGCN(width=4, graph_conv="conv_first").state_dict().keys()
    )


def _twin_networks(dtype):
    torch.manual_seed(3)
    reference = _randomised(STGCN(width=WIDTH, dropout=0.0, graph_conv="conv_first"), seed=4).to(dtype)
    ours = STGCN(width=WIDTH, dropout=0.0, graph_conv="auto").to(dtype)
    ours.load_state_dict(reference.state_dict())
    return reference, ours


def _features_and_grads(model, x):
    features = model(x)
    (features * torch.linspace(-1, 1, features.numel(), dtype=x.dtype).view_as(features)).sum().backward()
    return features, {k: p.grad for k, p in model.named_parameters()}


def _precedes_a_training_batchnorm(name):
    """Biases of the convs that feed a BatchNorm directly (a constant per channel, which the
    BatchNorm removes): in training mode their exact gradient is 0. (The graph conv's bias is not
    one of them: it enters times A's column sums, which differ between joints.)"""
    return name.endswith(("tcn.2.bias", "residual.0.bias"))


def test_the_network_chooses_aggregate_first_in_the_blocks_whose_channels_grow():
    _, ours = _twin_networks(torch.float32)
    assert [b.gcn.order for b in ours.st_gcn_networks] == [
        "aggregate_first",
        "conv_first",
        "conv_first",
        "conv_first",
        "aggregate_first",
        "conv_first",
        "conv_first",
        "aggregate_first",
        "conv_first",
        "aggregate_first",
    ]


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_the_whole_network_gives_the_reference_features_gradients_and_statistics(mode):
    """In float64, so that the comparison shows the function, not float32 cancellation: a few of
    the network's gradients are small differences of large sums (BatchNorm removes the mean), and
    even the reference's own float32 gradient of those is 1e-3 away from its float64 value."""
    reference, ours = _twin_networks(torch.float64)
    x = torch.randn(3, 3, 20, 25, 2, dtype=torch.float64)
    (ref_features, ref_grads), (features, grads) = (
        _features_and_grads(m.train(mode == "train"), x) for m in (reference, ours)
    )
    assert_relatively_close(features, ref_features, what="features")
    scale = max(g.abs().max() for g in ref_grads.values())
    for name, ref_grad in ref_grads.items():
        if mode == "train" and _precedes_a_training_batchnorm(name):
            assert grads[name].abs().max() <= 1e-10 * scale and ref_grad.abs().max() <= 1e-10 * scale, name
        else:
            assert_relatively_close(grads[name], ref_grad, what=name)
    for name, buffer in reference.state_dict().items():  # BN running statistics
        assert_relatively_close(ours.state_dict()[name].double(), buffer.double(), what=name)


def test_in_float32_the_whole_network_is_as_close_to_the_exact_result_as_the_reference():
    """float32 against the float64 result of the same weights: features and the whole gradient
    (one vector) within 1e-5. The reference formulation's own float32 gradient is not always that
    close (2e-4 on this input), so ours is also never farther from the exact result than it is."""
    reference, ours = _twin_networks(torch.float32)
    exact = copy.deepcopy(reference).double()
    x = torch.randn(3, 3, 20, 25, 2, generator=torch.Generator().manual_seed(1))
    flat = lambda g: torch.cat([v.flatten() for _, v in sorted(g.items())])
    exact_features, exact_grads = _features_and_grads(exact.train(), x.double())
    errors = {}
    for name, model in (("reference", reference), ("ours", ours)):
        features, grads = _features_and_grads(model.train(), x)
        assert_relatively_close(features, exact_features, what=f"{name} features")
        errors[name] = relative_error(flat(grads), flat(exact_grads))
    assert errors["ours"] <= max(1e-5, errors["reference"]), errors


def test_an_unknown_order_is_refused():
    with pytest.raises(ValueError, match="aggregate_first"):
        GraphConv(3, 16, 3, "sideways")
