"""Encoder checkpoints: ours round-trip, and the reference release's load and give the same features."""

import argparse

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from hiclr.common.errors import UserError
from hiclr.models import STGCN, load_encoder, load_encoder_state, save_encoder
from hiclr.models.encoder_files import FORMAT, infer_encoder_cfg
from hiclr.models.graph import ntu_graph

# --- a faithful copy of the reference's ST-GCN (AimCLR / HiCLR net/st_gcn.py) ----------------------


class ConvTemporalGraphical(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size):
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Conv2d(in_channels, out_channels * kernel_size, kernel_size=(1, 1))

    def forward(self, x, A):
        x = self.conv(x)
        n, kc, t, v = x.size()
        x = x.view(n, self.kernel_size, kc // self.kernel_size, t, v)
        x = torch.einsum("nkctv,kvw->nctw", (x, A))
        return x.contiguous(), A


class st_gcn(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, dropout=0, residual=True):
        super().__init__()
        padding = ((kernel_size[0] - 1) // 2, 0)
        self.gcn = ConvTemporalGraphical(in_channels, out_channels, kernel_size[1])
        self.tcn = nn.Sequential(
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, (kernel_size[0], 1), (stride, 1), padding),
            nn.BatchNorm2d(out_channels),
            nn.Dropout(dropout, inplace=True),
        )
        if not residual:
            self.residual = lambda x: 0
        elif in_channels == out_channels and stride == 1:
            self.residual = lambda x: x
        else:
            self.residual = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=(stride, 1)),
                nn.BatchNorm2d(out_channels),
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x, A):
        res = self.residual(x)
        x, A = self.gcn(x, A)
        x = self.tcn(x) + res
        return self.relu(x), A


class ReferenceModel(nn.Module):
    def __init__(
        self,
        in_channels=3,
        hidden_channels=16,
        hidden_dim=256,
        num_class=128,
        edge_importance_weighting=True,
        dropout=0.5,
    ):
        super().__init__()
        A = torch.tensor(ntu_graph(), dtype=torch.float32, requires_grad=False)
        self.register_buffer("A", A)
        kernel_size = (9, A.size(0))
        h = hidden_channels
        self.data_bn = nn.BatchNorm1d(in_channels * A.size(1))
        self.st_gcn_networks = nn.ModuleList(
            (
                st_gcn(in_channels, h, kernel_size, 1, residual=False),
                st_gcn(h, h, kernel_size, 1, dropout=dropout),
                st_gcn(h, h, kernel_size, 1, dropout=dropout),
                st_gcn(h, h, kernel_size, 1, dropout=dropout),
                st_gcn(h, h * 2, kernel_size, 2, dropout=dropout),
                st_gcn(h * 2, h * 2, kernel_size, 1, dropout=dropout),
                st_gcn(h * 2, h * 2, kernel_size, 1, dropout=dropout),
                st_gcn(h * 2, h * 4, kernel_size, 2, dropout=dropout),
                st_gcn(h * 4, h * 4, kernel_size, 1, dropout=dropout),
                st_gcn(h * 4, hidden_dim, kernel_size, 1, dropout=dropout),
            )
        )
        self.fc = nn.Linear(hidden_dim, num_class)
        if edge_importance_weighting:
            self.edge_importance = nn.ParameterList(
                [nn.Parameter(torch.ones(self.A.size())) for _ in self.st_gcn_networks]
            )
        else:
            self.edge_importance = [1] * len(self.st_gcn_networks)

    def features(self, x):
        N, C, T, V, M = x.size()
        x = x.permute(0, 4, 3, 1, 2).contiguous()
        x = x.view(N * M, V * C, T)
        x = self.data_bn(x)
        x = x.view(N, M, V, C, T)
        x = x.permute(0, 1, 3, 4, 2).contiguous()
        x = x.view(N * M, C, T, V)
        for gcn, importance in zip(self.st_gcn_networks, self.edge_importance):
            x, _ = gcn(x, self.A * importance)
        x = F.avg_pool2d(x, x.size()[2:])
        return x.view(N, M, -1).mean(dim=1)


# --- helpers ------------------------------------------------------------------------------------


def _randomised_reference(seed=0, **kwargs):
    torch.manual_seed(seed)
    ref = ReferenceModel(**kwargs)
    with torch.no_grad():  # conv weights keep their (seeded) default init
        for p in ref.edge_importance:
            p.copy_(1 + 0.3 * torch.randn_like(p))
        for module in ref.modules():
            if isinstance(module, nn.Conv2d):
                module.bias.copy_(0.05 * torch.randn_like(module.bias))
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.weight.copy_(1 + 0.2 * torch.randn_like(module.weight))
                module.bias.copy_(0.1 * torch.randn_like(module.bias))
                module.momentum = None  # cumulative average
        ref.train()
        for seed in range(2):  # running stats of real activations
            ref.features(_clips(100 + seed))
        for module in ref.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.mul_(1 + 0.1 * torch.randn_like(module.running_mean))
                module.running_var.mul_(1 + 0.1 * torch.rand_like(module.running_var))
    return ref.eval()


def _reference_release_state(ref, *, plain_importance=False):
    """What the release's MoCo wrapper saves: encoder_q.*, encoder_k.*, queue, queue_ptr, mask_param."""
    state = {}
    for k, v in ref.state_dict().items():
        if plain_importance and k.startswith("edge_importance."):
            k = f"edge_importance{int(k.split('.')[1]) + 1}"
        state[f"encoder_q.{k}"] = v.clone()
        state[f"encoder_k.{k}"] = torch.randn_like(v.float())
    state["encoder_q.fc.0.weight"] = torch.randn(256, 256)
    state["queue"] = torch.randn(128, 64)
    state["queue_ptr"] = torch.zeros(1, dtype=torch.long)
    state["mask_param"] = torch.zeros(1)
    return state


def _clips(seed=5, n=3):
    """A random pose per clip and person, plus motion."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 1, 25, 2, generator=g) + 0.3 * torch.randn(n, 3, 50, 25, 2, generator=g)


# --- tests --------------------------------------------------------------------------------------


@pytest.mark.parametrize("wrapper", [None, "state_dict", "model"])
def test_reference_checkpoint_gives_the_reference_features(tmp_path, wrapper):
    ref = _randomised_reference()
    state = _reference_release_state(ref)
    path = tmp_path / "hiclr_joint.pth.tar"
    torch.save(state if wrapper is None else {wrapper: state, "epoch": 300}, path)

    loaded, cfg, stream = load_encoder_state(path)
    assert cfg is None and stream is None
    ours = STGCN(width=16)
    ours.load_state_dict(loaded, strict=True)  # our layout takes the reference's directly
    ours.eval()
    x = _clips()
    with torch.no_grad():
        expected = ref.features(x)
        torch.testing.assert_close(ours(x), expected, atol=1e-5, rtol=1e-5)
        # the comparison has power: the features depend on the input far beyond the tolerance
        assert (ref.features(_clips(6)) - expected).abs().max() > 0.1


def test_plain_numbered_edge_importance_names_are_accepted(tmp_path):
    ref = _randomised_reference(seed=3, hidden_channels=8, hidden_dim=128)
    path = tmp_path / "ref.pt"
    torch.save({"state_dict": _reference_release_state(ref, plain_importance=True)}, path)
    model, cfg, stream = load_encoder(path)
    assert cfg == {"name": "stgcn", "in_channels": 3, "width": 8, "edge_importance": True, "temporal_kernel": 9}
    assert stream is None and not model.training
    x = _clips(7)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref.features(x), atol=1e-5, rtol=1e-5)


def test_infer_cfg_keeps_a_non_default_feature_dim_and_missing_edge_importance():
    ref = ReferenceModel(hidden_channels=4, hidden_dim=24, edge_importance_weighting=False)
    cfg = infer_encoder_cfg(ref.state_dict())
    assert cfg["width"] == 4 and cfg["feature_dim"] == 24 and cfg["edge_importance"] is False


def test_our_encoder_round_trips_with_config_and_stream(tmp_path):
    torch.manual_seed(4)
    cfg = {"name": "stgcn", "width": 4, "dropout": 0.5, "edge_importance": True}
    model = STGCN(width=4)
    model(torch.randn(4, 3, 10, 25, 2))  # move BN statistics away from their init
    path = save_encoder(tmp_path / "run" / "encoder.pt", model, cfg, "bone")
    assert path.is_file() and not list(path.parent.glob("*.partial"))
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT and raw["encoder"] == cfg and raw["stream"] == "bone"

    loaded, cfg2, stream = load_encoder_state(path)
    assert cfg2 == cfg and stream == "bone"
    assert loaded.keys() == model.state_dict().keys()
    for k, v in model.state_dict().items():
        assert torch.equal(loaded[k], v)
    again, _, _ = load_encoder(path)
    x = torch.randn(2, 3, 10, 25, 2)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))


def test_training_checkpoint_yields_the_query_backbone(tmp_path):
    torch.manual_seed(6)
    q, k = STGCN(width=2), STGCN(width=2)
    learner = {f"encoder_q.backbone.{n}": v for n, v in q.state_dict().items()}
    learner |= {f"encoder_k.backbone.{n}": v for n, v in k.state_dict().items()}
    learner |= {"encoder_q.head.0.weight": torch.randn(32, 32), "queue": torch.randn(8, 16)}
    config = {"model": {"name": "stgcn", "width": 2}, "data": {"stream": "motion"}}
    path = tmp_path / "last.pt"
    torch.save({"model": learner, "epoch": 3, "config": config}, path)
    state, cfg, stream = load_encoder_state(path)
    assert cfg == {"name": "stgcn", "width": 2} and stream == "motion"
    assert state.keys() == q.state_dict().keys()
    assert all(torch.equal(state[n], v) for n, v in q.state_dict().items())


def test_a_file_that_holds_no_encoder_is_refused_with_the_expected_keys(tmp_path):
    path = tmp_path / "classifier.pt"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2), "conv1.weight": torch.zeros(1)}}, path)
    with pytest.raises(UserError) as err:
        load_encoder_state(path)
    message = str(err.value)
    assert str(path) in message and "encoder_q.data_bn" in message and "conv1.weight" in message


def test_unreadable_missing_and_foreign_format_files_are_user_errors(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(UserError, match="notes.pt cannot be read"):
        load_encoder_state(text)
    with pytest.raises(UserError, match="does not exist"):
        load_encoder_state(tmp_path / "nowhere.pt")
    future = tmp_path / "future.pt"
    torch.save({"format": "hiclr-encoder/9", "state_dict": {}}, future)
    with pytest.raises(UserError, match="hiclr-encoder/9"):
        load_encoder_state(future)
    pickled = tmp_path / "pickled.pt"
    torch.save(
        {"state_dict": {"data_bn.weight": torch.zeros(3)}, "args": argparse.Namespace(a=1)}, pickled
    )  # arbitrary objects are not unpickled
    with pytest.raises(UserError, match="weights_only"):
        load_encoder_state(pickled)


def test_weights_that_do_not_fit_the_recorded_config_are_refused(tmp_path):
    model = STGCN(width=2)
    path = save_encoder(tmp_path / "encoder.pt", model, {"name": "stgcn", "width": 4}, "joint")
    with pytest.raises(UserError, match="does not fit"):
        load_encoder(path)


def test_a_reference_trained_on_another_graph_is_refused(tmp_path):
    ref = _randomised_reference(seed=8, hidden_channels=2, hidden_dim=32)
    state = _reference_release_state(ref)
    state["encoder_q.A"] = state["encoder_q.A"][:, torch.randperm(25)]
    path = tmp_path / "openpose.pt"
    torch.save(state, path)
    with pytest.raises(UserError, match="known graphs"):
        load_encoder_state(path)


def test_a_data_file_given_as_encoder_is_named_as_such(tmp_path):
    import h5py

    from hiclr.common.errors import UserError
    from hiclr.models import load_encoder_state

    path = tmp_path / "ntu60.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format_version"] = 1
    with pytest.raises(UserError, match="HDF5 data file from hiclr-prep"):
        load_encoder_state(path)
