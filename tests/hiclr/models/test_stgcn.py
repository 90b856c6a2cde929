"""The ST-GCN backbone: size, layout, pooling over persons, registry."""

import pytest
import torch

from hiclr.common.errors import UserError
from hiclr.models import ENCODERS, STGCN, build_encoder
from hiclr.models.graph import ntu_graph


def _params(model):
    return sum(p.numel() for p in model.parameters())


def test_width16_backbone_has_exactly_821380_parameters():
    assert _params(build_encoder({"name": "stgcn", "width": 16})) == 821_380


def test_disabling_edge_importance_removes_one_a_sized_parameter_per_block():
    with_imp = _params(STGCN(width=4))
    without = _params(STGCN(width=4, edge_importance=False))
    assert with_imp - without == 10 * 3 * 25 * 25


def test_forward_gives_16_times_width_features():
    torch.manual_seed(0)
    model = STGCN(width=4).eval()
    out = model(torch.randn(3, 3, 20, 25, 2))
    assert out.shape == (3, 64) and model.feature_dim == 64
    assert STGCN(width=4, feature_dim=32).eval()(torch.randn(1, 3, 8, 25, 2)).shape == (1, 32)


def test_blocks_follow_the_channel_and_stride_plan():
    w = 8
    model = STGCN(width=w, dropout=0.5)
    blocks = model.st_gcn_networks
    outs = [b.tcn[2].out_channels for b in blocks]
    strides = [b.tcn[2].stride[0] for b in blocks]
    assert outs == [w, w, w, w, 2 * w, 2 * w, 2 * w, 4 * w, 4 * w, 16 * w]
    assert strides == [1, 1, 1, 1, 2, 1, 1, 2, 1, 1]
    assert all(b.tcn[2].kernel_size == (9, 1) for b in blocks)
    assert blocks[0].residual is None
    assert [b.tcn[4].p for b in blocks] == [0.0] + [0.5] * 9
    assert isinstance(blocks[1].residual, torch.nn.Identity)
    assert isinstance(blocks[4].residual, torch.nn.Sequential)  # 1x1 conv + BN where shape changes
    assert model.data_bn.num_features == 75
    assert all(torch.equal(p, torch.ones(3, 25, 25)) for p in model.edge_importance)
    torch.testing.assert_close(model.A, torch.from_numpy(ntu_graph()))
    assert "A" not in model.state_dict()


def test_input_batchnorm_folds_joints_and_channels_as_v_times_3_plus_c():
    model = STGCN(width=2).eval()
    with torch.no_grad():
        model.data_bn.running_mean.copy_(torch.arange(75.0))
        model.data_bn.running_var.fill_(1.0)
    v, c = torch.meshgrid(torch.arange(25.0), torch.arange(3.0), indexing="ij")
    x = (v * 3 + c).T[None, :, None, :, None].expand(2, 3, 6, 25, 2).contiguous()
    seen = {}
    model.st_gcn_networks[0].register_forward_pre_hook(lambda m, args: seen.update(x=args[0]))
    model(x)
    assert seen["x"].shape == (4, 3, 6, 25)  # persons folded into the batch
    torch.testing.assert_close(seen["x"], torch.zeros_like(seen["x"]), atol=1e-4, rtol=0)


def test_features_are_the_mean_over_persons_of_per_person_features():
    torch.manual_seed(1)
    model = STGCN(width=4).eval()
    x = torch.randn(2, 3, 16, 25, 2)
    both = model(x)
    each = torch.stack([model(x[..., m : m + 1]) for m in range(2)]).mean(0)
    torch.testing.assert_close(both, each, atol=1e-5, rtol=1e-5)


def test_training_step_reaches_edge_importance_and_first_block():
    torch.manual_seed(2)
    model = STGCN(width=2).train()
    model(torch.randn(4, 3, 12, 25, 2)).square().mean().backward()
    assert model.edge_importance[3].grad.abs().sum() > 0
    assert model.st_gcn_networks[0].gcn.conv.weight.grad.abs().sum() > 0


def test_registry_builds_by_name_and_rejects_unknown_names_and_keys():
    assert ENCODERS["stgcn"] is STGCN
    model = build_encoder({"name": "stgcn", "width": 2, "dropout": 0.1, "edge_importance": False})
    assert isinstance(model, STGCN) and model.edge_importance is None
    with pytest.raises(UserError, match="unknown encoder 'stgnc'.*'stgcn'"):
        build_encoder({"name": "stgnc"})
    with pytest.raises(UserError, match="model.widht.*'width'"):
        build_encoder({"name": "stgcn", "widht": 16})
