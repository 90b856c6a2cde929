"""The transformer encoder (DSTA-Net as in the HiCLR release): size, contract, graph perturbation,
checkpoints (ours and the release's), config, and its use in pre-training and the protocols."""

from __future__ import annotations

import inspect
import json
import math

import pytest
import torch
import torch.nn as nn

from hiclr.common.errors import UserError
from hiclr.config import ENCODER_KEYS, load_config
from hiclr.config_rules import Key
from hiclr.models import DSTA, ENCODERS, build_encoder, load_encoder, load_encoder_state, save_encoder
from hiclr.models.dsta import DSTA_BLOCKS, SpatialAttentionBlock
from tests.helpers.paths import ROOT_DIR

TINY_BLOCKS = [[8, 8, 4, 1], [8, 16, 4, 2]]


def _defaults(encoder):
    """The `model` defaults of `encoder` (`hiclr.config.ENCODER_KEYS`), by key."""
    return {key: declared.default for key, declared in ENCODER_KEYS[encoder].items()}


def _params(model):
    return sum(p.numel() for p in model.parameters())


def _clips(seed=5, n=3, t=50):
    """A random pose per clip and person, plus motion: (n, 3, t, 25, 2)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 1, 25, 2, generator=g) + 0.3 * torch.randn(n, 3, t, 25, 2, generator=g)


def _relative_error(a, b):
    return float((a - b).norm() / b.norm())


# --- an independent statement of the release's forward (net/dsta.py, spatial attention only) ----


class ReleasePositionalEncoding(nn.Module):
    """The release's `PositionalEncoding(channel, joint_num, time_len, 'spatial')`: a (1, C, T, V)
    buffer `pe` filled position by position, t-major, with the joint index as the position."""

    def __init__(self, channel, joint_num, time_len):
        super().__init__()
        positions = torch.tensor([float(j) for _ in range(time_len) for j in range(joint_num)])[:, None]
        pe = torch.zeros(time_len * joint_num, channel)
        div = torch.exp(torch.arange(0, channel, 2).float() * -(math.log(10000.0) / channel))
        pe[:, 0::2] = torch.sin(positions * div)
        pe[:, 1::2] = torch.cos(positions * div)
        self.register_buffer("pe", pe.view(time_len, joint_num, channel).permute(2, 0, 1).unsqueeze(0))


class ReleaseBlock(nn.Module):
    """`STAttentionBlock` at use_spatial_att, att_s, glo_reg_s, use_pes, no temporal attention."""

    def __init__(self, cin, cout, inter, stride, num_frame, subsets=3, joints=25):
        super().__init__()
        self.cin, self.inter, self.subsets = cin, inter, subsets
        self.register_buffer("atts", torch.zeros(1, subsets, joints, joints))
        self.pes = ReleasePositionalEncoding(cin, joints, num_frame)
        self.ff_nets = nn.Sequential(nn.Conv2d(cout, cout, 1), nn.BatchNorm2d(cout))
        self.in_nets = nn.Conv2d(cin, 2 * subsets * inter, 1)
        self.alphas = nn.Parameter(torch.ones(1, subsets, 1, 1))
        self.attention0s = nn.Parameter(torch.ones(1, subsets, joints, joints) / joints)
        self.out_nets = nn.Sequential(nn.Conv2d(cin * subsets, cout, 1), nn.BatchNorm2d(cout))
        self.out_nett = nn.Sequential(nn.Conv2d(cout, cout, (7, 1), (stride, 1), (3, 0)), nn.BatchNorm2d(cout))
        if cin != cout or stride != 1:
            self.downs1 = nn.Sequential(nn.Conv2d(cin, cout, 1), nn.BatchNorm2d(cout))
            self.downs2 = nn.Sequential(nn.Conv2d(cin, cout, 1), nn.BatchNorm2d(cout))
            self.downt2 = nn.Sequential(nn.Conv2d(cout, cout, (1, 1), (stride, 1)), nn.BatchNorm2d(cout))
        else:
            self.downs1 = self.downs2 = self.downt2 = lambda x: x

    def forward(self, x):
        relu = lambda y: nn.functional.leaky_relu(y, 0.1)  # noqa: E731
        N, C, T, V = x.size()
        y = x + self.pes.pe[:, :, :T]
        q, k = torch.chunk(self.in_nets(y).view(N, 2 * self.subsets, self.inter, T, V), 2, dim=1)
        attention = self.atts + torch.tanh(torch.einsum("nsctu,nsctv->nsuv", q, k) / (self.inter * T)) * self.alphas
        attention = attention + self.attention0s.repeat(N, 1, 1, 1)
        y = torch.einsum("nctu,nsuv->nsctv", x, attention).contiguous().view(N, self.subsets * self.cin, T, V)
        y = relu(self.downs1(x) + self.out_nets(y))
        y = relu(self.downs2(x) + self.ff_nets(y))
        return relu(self.downt2(y) + self.out_nett(y))  # dropout: identity in eval mode


class ReleaseDSTANet(nn.Module):
    """`DSTANet` of the release's transformer configs; `features` is its `return_feat=True` output."""

    def __init__(self, config=DSTA_BLOCKS, num_frame=50):
        super().__init__()
        self.proj = nn.Conv2d(3, config[0][0], 1)
        self.input_map = nn.Sequential(nn.BatchNorm2d(config[0][0]), nn.LeakyReLU(0.1))
        self.graph_layers = nn.ModuleList()
        for cin, cout, inter, stride in config:
            self.graph_layers.append(ReleaseBlock(cin, cout, inter, stride, num_frame))
            num_frame = int(num_frame / stride + 0.5)
        self.out_channels = config[-1][1]
        self.fc = nn.Linear(self.out_channels, 128)

    def features(self, x):
        N, C, T, V, M = x.shape
        x = x.permute(0, 4, 1, 2, 3).contiguous().view(N * M, C, T, V)
        x = self.input_map(self.proj(x))
        for layer in self.graph_layers:
            x = layer(x)
        x = x.view(N, M, self.out_channels, -1).permute(0, 1, 3, 2).contiguous().view(N, -1, self.out_channels, 1)
        return x.mean(3).mean(1)


def _randomised_release(seed=0, **kwargs):
    """A release DSTANet with every parameter and BN statistic moved away from its init."""
    torch.manual_seed(seed)
    ref = ReleaseDSTANet(**kwargs)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name.endswith("alphas"):
                p.copy_(0.5 + torch.rand_like(p))
            elif name.endswith("attention0s"):
                p.add_(0.05 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn_like(p))
            elif p.dim() == 1:  # BatchNorm weights
                p.copy_(1 + 0.2 * torch.randn_like(p))
        for m in ref.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = None
        ref.train()
        for s in range(2):
            ref.features(_clips(100 + s, n=4))  # statistics of real activations
    return ref.eval()


def _release_checkpoint(ref):
    """What the release's HiCLR saves: encoder_q.* (with the fc head), encoder_k.*, queue ..."""
    state = {f"encoder_q.{k}": v.clone() for k, v in ref.state_dict().items() if not k.startswith("fc.")}
    state |= {f"encoder_k.{k}": torch.randn_like(v.float()) for k, v in ref.state_dict().items()}
    state |= {
        "encoder_q.fc.0.weight": torch.randn(256, 256),
        "encoder_q.fc.0.bias": torch.zeros(256),
        "encoder_q.fc.2.weight": torch.randn(128, 256),
        "encoder_q.fc.2.bias": torch.zeros(128),
        "queue": torch.randn(128, 64),
        "queue_ptr": torch.zeros(1, dtype=torch.long),
        "mask_param": torch.zeros(1),
    }
    return state


# --- size and contract ---------------------------------------------------------------------------


def test_the_release_configuration_has_exactly_1546480_parameters():
    model = build_encoder({"name": "dsta"})
    assert isinstance(model, DSTA) and ENCODERS["dsta"] is DSTA
    assert _params(model) == 1_546_480 and model.feature_dim == 256
    assert [list(b) for b in DSTA_BLOCKS] == _defaults("dsta")["blocks"]


def test_blocks_follow_the_plan_with_7x1_temporal_convs_and_1_over_v_global_attention():
    model = DSTA()
    strides = [layer.out_nett[0].stride[0] for layer in model.graph_layers]
    assert strides == [b[3] for b in DSTA_BLOCKS]
    assert all(layer.out_nett[0].kernel_size == (7, 1) for layer in model.graph_layers)
    assert all(torch.equal(layer.attention0s, torch.full((1, 3, 25, 25), 1 / 25)) for layer in model.graph_layers)
    assert all(torch.equal(layer.alphas, torch.ones(1, 3, 1, 1)) for layer in model.graph_layers)
    assert [layer.drop.p for layer in model.graph_layers] == [0.5] * 8
    assert isinstance(model.graph_layers[0].downs1, nn.Identity)
    assert isinstance(model.graph_layers[2].downt2, nn.Sequential)
    assert model.input_map[1].negative_slope == 0.1
    assert not any("joint_encoding" in k for k in model.state_dict())  # rebuilt, never stored


def test_output_shapes_and_forward_equals_the_pooled_forward_features():
    torch.manual_seed(0)
    model = DSTA().eval()
    x = _clips(n=2)
    with torch.no_grad():
        pooled, block = model.forward_features(x, return_block=4)
        assert pooled.shape == (2, 256) and block.shape == (2, 2, 64, 25, 25)
        torch.testing.assert_close(model(x), pooled, rtol=0, atol=0)
        assert model.forward_features(x, return_block=8)[1].shape == (2, 2, 256, 13, 25)
    with pytest.raises(ValueError, match="1..8"):
        model.forward_features(x, return_block=9)


def test_features_are_the_mean_over_persons_and_any_clip_length_is_taken():
    torch.manual_seed(1)
    model = DSTA(blocks=TINY_BLOCKS).eval()
    x = _clips(n=2, t=64)  # longer than the release's 50-frame buffers
    with torch.no_grad():
        each = torch.stack([model(x[..., m : m + 1]) for m in range(2)]).mean(0)
        torch.testing.assert_close(model(x), each, atol=1e-6, rtol=1e-5)


def test_a_block_plan_whose_channels_do_not_chain_is_refused_in_one_sentence():
    with pytest.raises(UserError, match="block 2 takes 16 channels but block 1 gives 8"):
        build_encoder({"name": "dsta", "blocks": [[8, 8, 4, 1], [16, 16, 4, 1]]})
    with pytest.raises(UserError, match="unknown key model.width for encoder 'dsta'"):
        build_encoder({"name": "dsta", "width": 16})


# --- the graph perturbation (`edges`) ------------------------------------------------------------


class RecordingScale:
    """Test double of the edges interface: scales each block's attention by `factor`, records calls."""

    def __init__(self, factor):
        self.factor, self.calls = factor, []

    def perturb(self, adjacency, block):
        self.calls.append((block, tuple(adjacency.shape)))
        return adjacency * self.factor


class Replace:
    """Test double: every block aggregates with the given maps."""

    def __init__(self, maps):
        self.maps = maps

    def perturb(self, adjacency, block):
        return self.maps.expand_as(adjacency)


def test_no_edges_and_an_identity_perturbation_leave_the_features_unchanged():
    torch.manual_seed(2)
    model = DSTA(blocks=TINY_BLOCKS).eval()
    x = _clips(n=2, t=12)
    same = RecordingScale(1.0)
    with torch.no_grad():
        torch.testing.assert_close(model(x, edges=same), model(x), rtol=0, atol=0)
        torch.testing.assert_close(model(x, edges=None), model.forward_features(x, 2)[0], rtol=0, atol=0)
    assert same.calls == [(0, (4, 3, 25, 25)), (1, (4, 3, 25, 25))]  # every block, persons folded


def test_a_perturbation_changes_the_features_and_reaches_forward_features_too():
    torch.manual_seed(3)
    model = DSTA(blocks=TINY_BLOCKS).eval()
    x = _clips(n=2, t=12)
    with torch.no_grad():
        plain = model(x)
        halved = model(x, edges=RecordingScale(0.5))
        assert _relative_error(halved, plain) > 1e-2
        torch.testing.assert_close(model.forward_features(x, 1, edges=RecordingScale(0.5))[0], halved)


def test_a_block_aggregates_with_exactly_the_maps_the_perturbation_returns():
    torch.manual_seed(4)
    block = SpatialAttentionBlock(8, 16, 4, stride=2).eval()
    x = torch.randn(3, 8, 10, 25)
    maps = torch.rand(1, 3, 25, 25)
    with torch.no_grad():
        perturbed = block(x, Replace(maps))
        block.attention = lambda _: maps.expand(3, -1, -1, -1)  # the block with those maps built in
        torch.testing.assert_close(perturbed, block(x), rtol=0, atol=0)


# --- checkpoints ---------------------------------------------------------------------------------


def test_our_dsta_encoder_round_trips_with_config_and_stream(tmp_path):
    torch.manual_seed(5)
    cfg = {"name": "dsta", "blocks": TINY_BLOCKS, "attention_dropout": 0.5}
    model = build_encoder(cfg)
    model(_clips(n=4, t=12))  # BN statistics away from their init
    path = save_encoder(tmp_path / "encoder.pt", model, cfg, "motion")
    again, cfg2, stream = load_encoder(path)
    assert cfg2 == cfg and stream == "motion" and isinstance(again, DSTA) and not again.training
    x = _clips(6, n=2, t=12)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model.eval()(x), rtol=0, atol=0)


@pytest.mark.parametrize("wrapper", [None, "state_dict"])
def test_a_release_transformer_checkpoint_gives_the_release_features(tmp_path, wrapper):
    ref = _randomised_release()
    state = _release_checkpoint(ref)
    path = tmp_path / "hiclr_transformer_joint.pth.tar"
    torch.save(state if wrapper is None else {wrapper: state, "epoch": 300}, path)

    model, cfg, stream = load_encoder(path)
    assert cfg == {
        "name": "dsta",
        "in_channels": 3,
        "blocks": [list(b) for b in DSTA_BLOCKS],
        "num_subsets": 3,
        "num_joints": 25,
        "temporal_kernel": 7,
    }  # strides from the buffers
    assert stream is None and isinstance(model, DSTA) and not model.training
    x = _clips()
    with torch.no_grad():
        expected = ref.features(x)
        assert _relative_error(model(x), expected) < 1e-4
        # the comparison has power: other clips give features far outside the tolerance
        assert _relative_error(ref.features(_clips(6)), expected) > 1e-2


def test_a_release_state_without_its_buffers_takes_the_release_strides(tmp_path):
    ref = _randomised_release(seed=1)
    state = {k: v for k, v in _release_checkpoint(ref).items() if not k.endswith((".atts", ".pes.pe"))}
    torch.save(state, tmp_path / "bare.pt")
    model, cfg, _ = load_encoder(tmp_path / "bare.pt")
    assert [b[3] for b in cfg["blocks"]] == [1, 1, 2, 1, 2, 1, 1, 1]
    x = _clips(7, n=2)
    with torch.no_grad():
        assert _relative_error(model(x), ref.features(x)) < 1e-4


def test_release_checkpoints_the_encoder_cannot_reproduce_are_refused_by_name(tmp_path):
    state = _release_checkpoint(_randomised_release(seed=2))
    temporal = dict(state, **{"encoder_q.graph_layers.0.attention0t": torch.eye(50)[None, None]})
    torch.save(temporal, tmp_path / "temporal.pt")
    with pytest.raises(UserError, match="temporal attention"):
        load_encoder_state(tmp_path / "temporal.pt")
    nonzero = dict(state)
    nonzero["encoder_q.graph_layers.3.atts"] = torch.ones(1, 3, 25, 25)
    torch.save(nonzero, tmp_path / "atts.pt")
    with pytest.raises(UserError, match="graph_layers.3.atts is not zero"):
        load_encoder_state(tmp_path / "atts.pt")


def test_a_file_without_either_encoder_names_both_layouts(tmp_path):
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "head.pt")
    with pytest.raises(UserError) as err:
        load_encoder_state(tmp_path / "head.pt")
    assert "encoder_q.data_bn" in str(err.value) and "encoder_q.graph_layers" in str(err.value)


# --- config --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ENCODER_KEYS))
def test_config_defaults_are_the_constructors_and_every_key_has_a_rule(name):
    signature = inspect.signature(ENCODERS[name]).parameters
    for key, declared in ENCODER_KEYS[name].items():
        default = signature[key].default
        assert (list(map(list, default)) if key == "blocks" else default) == declared.default, key
        assert declared.rule.check(declared.default) == declared.default, key


def test_naming_dsta_gives_its_defaults_and_refuses_st_gcn_keys(tmp_path):
    cfg = load_config(None, ["model.name=dsta", "model.attention_dropout=0.0"])
    assert cfg["model"] == {
        "name": "dsta",
        **_defaults("dsta"),
        "attention_dropout": 0.0,
        "init": "reference",
        "sync_bn": False,
    }
    assert _params(build_encoder(cfg["model"])) == 1_546_480
    with pytest.raises(UserError, match="model.width is a key of encoder stgcn, not of model.name 'dsta'"):
        load_config(None, ["model.name=dsta", "model.width=4"])
    with pytest.raises(UserError, match="block 2 takes 16 channels, block 1 gives 8"):
        load_config(None, ["model.name=dsta", "model.blocks=[[8, 8, 4, 1], [16, 16, 4, 1]]"])
    with pytest.raises(UserError, match="`model.blocks` is .* block 1 is not"):
        load_config(None, ["model.name=dsta", "model.blocks=[[8, 8, 4]]"])
    path = tmp_path / "c.yaml"
    path.write_text("model: {name: dsta, blocks: [[8, 8, 4, 1]], edge_importance: true}\n")
    with pytest.raises(UserError, match="model.edge_importance"):
        load_config(path)


def test_a_file_naming_dsta_on_an_st_gcn_base_starts_the_model_section_afresh(tmp_path):
    (tmp_path / "base.yaml").write_text("model: {name: stgcn, width: 8, dropout: 0.1, init: torch}\n")
    (tmp_path / "t.yaml").write_text("base: base.yaml\nmodel: {name: dsta, blocks: [[8, 8, 4, 1]]}\n")
    model = load_config(tmp_path / "t.yaml")["model"]
    assert model["blocks"] == [[8, 8, 4, 1]] and model["init"] == "torch" and "width" not in model
    (tmp_path / "s.yaml").write_text("base: t.yaml\nmodel: {attention_dropout: 0.0}\n")
    assert load_config(tmp_path / "s.yaml")["model"]["blocks"] == [[8, 8, 4, 1]]  # same encoder: merged


CONFIGS = ROOT_DIR / "configs"
TRANSFORMER_CONFIGS = sorted(CONFIGS.glob("*/*/transformer_*.yaml"))


def test_every_st_gcn_dataset_config_has_a_transformer_twin():
    twins = [
        p
        for p in CONFIGS.glob("*/*/*.yaml")
        if p.parts[-3] in ("ntu60", "ntu120", "pku1", "pku2") and not p.name.startswith("transformer_")
    ]
    assert twins and all(p.with_name(f"transformer_{p.name}").is_file() for p in twins)
    assert len(TRANSFORMER_CONFIGS) == len(twins) == 3 * (4 * 5 + 1)  # 5 protocol folders x 4 kinds, pku1 pre-training


@pytest.mark.parametrize("path", TRANSFORMER_CONFIGS, ids=lambda p: "/".join(p.parts[-3:]))
def test_each_transformer_config_builds_the_release_encoder_on_its_twins_data(path):
    cfg = load_config(path)
    twin = load_config(path.with_name(path.name.removeprefix("transformer_")))
    kind = path.stem.split("_")[1]
    assert cfg["model"] == {
        "name": "dsta",
        **_defaults("dsta"),
        "init": "reference",
        "sync_bn": False,
        "attention_dropout": 0.5 if kind == "pretrain" else 0.0,
    }
    assert cfg["data"] == twin["data"] and cfg["run"]["name"] != twin["run"]["name"]
    assert cfg["eval"]["freeze"] == ([] if kind == "pretrain" else ["proj"])


def test_the_ntu60_transformer_configs_hold_the_release_hyperparameters():
    pre = load_config(CONFIGS / "ntu60" / "xsub" / "transformer_pretrain_joint.yaml")
    o = pre["optim"]
    assert (o["lr"], o["weight_decay"], o["milestones"], o["epochs"], o["batch_size"], o["nesterov"]) == (
        0.1,
        5e-4,
        [250],
        300,
        128,
        False,
    )
    assert pre["augment"]["stages"][2] == [{"name": "joint_mask", "ratio": 0.2}]
    assert pre["ssl"]["mining_epoch"] == 150 and pre["ssl"]["queue_size"] == 32768
    lin = load_config(CONFIGS / "ntu60" / "xsub" / "transformer_linear_joint.yaml")["eval"]
    assert (lin["lr"], lin["weight_decay"], lin["epochs"], lin["milestones"]) == (3.0, 0.0, 100, [30, 80])
    ft = load_config(CONFIGS / "ntu60" / "xsub" / "transformer_finetune_joint.yaml")
    o = ft["optim"]
    assert (
        o["lr"],
        o["nesterov"],
        o["weight_decay"],
        o["batch_size"],
        o["epochs"],
        o["warmup_epochs"],
        o["milestones"],
    ) == (0.1, True, 5e-4, 128, 80, 5, [35, 55])
    assert [a["name"] for a in ft["eval"]["augment"][0]] == ["stream", "temporal_crop", "shear"]  # after the stream
    semi = load_config(CONFIGS / "ntu60" / "xsub" / "transformer_semi_joint.yaml")
    assert semi["eval"]["protocol"] == "semi" and semi["optim"]["milestones"] == [15, 25]
    assert load_config(CONFIGS / "base" / "transformer_knn.yaml")["model"]["name"] == "dsta"


# --- in use: pre-training, embed, protocols -----------------------------------------------------


def _tiny_store(tmp_path, n=24):
    from tests.hiclr.eval.test_linear import write_tiny_store

    return write_tiny_store(tmp_path / "tiny.h5", n=n, frames=12)


def _tiny_dsta_config(data, *sets, base=None):
    return load_config(
        base,
        [
            f"data.path={data}",
            "model.name=dsta",
            f"model.blocks={json.dumps(TINY_BLOCKS)}",
            "engine.device=cpu",
            "engine.progress=false",
            "engine.tensorboard=false",
            *sets,
        ],
    )


def test_the_encoder_pre_trains_with_hiclr_and_writes_a_loadable_encoder(tmp_path):
    from hiclr.pretrain import pretrain

    data = _tiny_store(tmp_path)
    tiny = ROOT_DIR / "configs" / "tiny" / "pretrain.yaml"  # ST-GCN width 4
    cfg = _tiny_dsta_config(
        data,
        "ssl.queue_size=16",
        "ssl.dim=8",
        "ssl.hidden=16",
        "optim.batch_size=8",
        "optim.epochs=1",
        "run.monitor_every=0",
        f"run.out={tmp_path}",
        "run.name=pre",
        "data.max_samples=null",
        base=tiny,
    )
    result = pretrain(cfg)
    assert math.isfinite(result.metrics["loss"])
    model, enc_cfg, stream = load_encoder(result.outputs["encoder"])
    assert isinstance(model, DSTA) and enc_cfg["blocks"] == TINY_BLOCKS and stream == "joint"
    last = torch.load(tmp_path / "pre" / "last.pt", weights_only=True)["model"]
    assert not torch.equal(
        last["encoder_q.backbone.graph_layers.0.attention0s"], torch.full((1, 3, 25, 25), 1 / 25)
    )  # the global attention learned


def test_hiclr_embed_and_the_linear_probe_take_a_dsta_encoder(tmp_path):
    import numpy as np

    from hiclr.common.command_line import run_cli
    from hiclr.eval.linear import run_linear

    data = _tiny_store(tmp_path)
    torch.manual_seed(6)
    path = save_encoder(
        tmp_path / "encoder.pt",
        build_encoder({"name": "dsta", "blocks": TINY_BLOCKS}),
        {"name": "dsta", "blocks": TINY_BLOCKS},
        "joint",
    )
    out = tmp_path / "f.npz"
    assert (
        run_cli(
            "hiclr",
            "test",
            "hiclr.commands",
            ["embed"],
            "",
            ["embed", "--encoder", str(path), "--data", data, "--split", "all", "--out", str(out), "--device", "cpu"],
        )
        == 0
    )
    with np.load(out) as z:
        assert z["features"].shape == (24, 16) and np.isfinite(z["features"]).all()
    cfg = _tiny_dsta_config(data, "eval.epochs=2", "eval.milestones=[1]", "eval.freeze=[proj]")
    entry = run_linear(cfg, str(path), out=tmp_path / "lin", progress=False, plots=False)
    assert 0 <= entry["top1_last"] <= 100 and len(entry["history"]) == 2


def test_fine_tune_keeps_the_frozen_projection_and_takes_the_configs_attention_dropout(tmp_path, monkeypatch):
    from hiclr.eval import finetune

    data = _tiny_store(tmp_path)
    torch.manual_seed(7)
    encoder = build_encoder({"name": "dsta", "blocks": TINY_BLOCKS})  # attention dropout 0.5 recorded
    path = save_encoder(tmp_path / "encoder.pt", encoder, {"name": "dsta", "blocks": TINY_BLOCKS}, "joint")
    seen = {}
    real = finetune.FineTuneTask

    def spy(model, *args, **kwargs):
        seen["p"] = [layer.drop.p for layer in model.encoder.graph_layers]
        return real(model, *args, **kwargs)

    monkeypatch.setattr(finetune, "FineTuneTask", spy)
    cfg = _tiny_dsta_config(
        data,
        "model.attention_dropout=0.0",
        "eval.freeze=[proj]",
        "optim.epochs=1",
        "optim.batch_size=8",
        "optim.warmup_epochs=0",
        "optim.milestones=[1]",
        "run.save_every=0",
        "engine.precision=fp32",
    )
    entry = finetune.run_finetune(cfg, str(path), out=tmp_path / "ft", plots=False)
    assert seen["p"] == [0.0, 0.0]
    assert entry["frozen_parameters"] == ["proj.weight", "proj.bias"] and "but proj (frozen)" in entry["mode"]
    trained = torch.load(tmp_path / "ft" / "last.pt", weights_only=True)["model"]
    assert torch.equal(trained["encoder.proj.weight"], encoder.proj.weight.detach())
    assert not torch.equal(
        trained["encoder.graph_layers.0.in_nets.weight"], encoder.graph_layers[0].in_nets.weight.detach()
    )


def test_freezing_a_module_the_encoder_lacks_is_refused_naming_its_modules():
    from hiclr.eval.common import freeze_modules

    with pytest.raises(UserError, match="does not have; its modules are proj, input_map, graph_layers"):
        freeze_modules(DSTA(blocks=TINY_BLOCKS), ["conv1"])


def test_fused_views_with_per_view_batchnorm_equal_separate_calls():
    from hiclr.models.view_norm import convert_to_view_batchnorm, plain_batchnorm_count, views_in_batch

    torch.manual_seed(8)
    model = convert_to_view_batchnorm(DSTA(blocks=TINY_BLOCKS, attention_dropout=0.0)).train()
    assert plain_batchnorm_count(model) == 0
    a, b = _clips(1, n=3, t=12), _clips(2, n=3, t=12)
    with torch.no_grad():
        separate = torch.cat([model(a), model(b)])
        with views_in_batch(model, 2):
            fused = model(torch.cat([a, b]))
    torch.testing.assert_close(fused, separate, atol=1e-5, rtol=1e-5)


def test_the_reference_init_redraws_convs_and_batchnorms_and_keeps_the_attention_parameters():
    from hiclr.models import init_weights

    model = init_weights(DSTA(), "reference", torch.Generator().manual_seed(0))
    convs = torch.cat([m.weight.detach().flatten() for m in model.modules() if isinstance(m, nn.Conv2d)])
    assert abs(float(convs.std()) - 0.02) < 1e-3
    assert all(not m.bias.detach().any() for m in model.modules() if isinstance(m, nn.Conv2d))
    layer = model.graph_layers[5]
    assert torch.equal(layer.alphas, torch.ones(1, 3, 1, 1)) and torch.equal(
        layer.attention0s, torch.full((1, 3, 25, 25), 0.04)
    )


def test_bench_train_puts_the_transformers_step_cost_beside_st_gcns(monkeypatch):
    from tests.helpers.bench import run_tiny_bench_train

    blocks = ENCODER_KEYS["dsta"]["blocks"]  # a tiny DSTA: seconds, not minutes
    monkeypatch.setitem(ENCODER_KEYS["dsta"], "blocks", Key(TINY_BLOCKS, blocks.rule, blocks.doc))
    result = run_tiny_bench_train("--repeats", "1", "--variants", "none", "--encoder", "dsta")
    rows = {v["name"]: v for v in result["variants"]}
    assert list(rows) == ["reference", "ours", "encoder=dsta"]
    assert rows["encoder=dsta"]["settings"]["encoder"] == "dsta" and rows["encoder=dsta"]["exact"] is False
    cost = result["encoder_step_cost"]
    assert cost["stgcn_ms_per_step"] == rows["ours"]["ms_per_step"]
    assert cost["dsta_ms_per_step"] == rows["encoder=dsta"]["ms_per_step"] > 0
    assert cost["dsta_over_stgcn"] == pytest.approx(cost["dsta_ms_per_step"] / cost["stgcn_ms_per_step"])


def test_hiclr_embed_and_knn_take_a_release_transformer_checkpoint(tmp_path):
    import h5py
    import numpy as np

    from hiclr.common.command_line import run_cli
    from hiclr.eval.knn import run_knn

    data = _tiny_store(tmp_path, n=12)
    ref = _randomised_release(seed=3)
    ckpt = tmp_path / "release_transformer.pth.tar"
    torch.save(_release_checkpoint(ref), ckpt)
    out = tmp_path / "f.npz"
    assert (
        run_cli(
            "hiclr",
            "test",
            "hiclr.commands",
            ["embed"],
            "",
            ["embed", "--encoder", str(ckpt), "--data", data, "--split", "all", "--out", str(out), "--device", "cpu"],
        )
        == 0
    )
    with h5py.File(data) as f:
        clips = torch.from_numpy(f["views/frame50"][:])
    with np.load(out) as z, torch.no_grad():
        assert _relative_error(torch.from_numpy(z["features"]), ref.features(clips)) < 1e-4
    entry = run_knn(_tiny_dsta_config(data, "eval.k=3"), str(ckpt), out=tmp_path / "knn", plots=False)
    assert 0 <= entry["top1"] <= 100


@pytest.mark.parametrize("sets", [["model.name=dsta", "model.attention_dropout=0.0"], ["model.width=4"]])
def test_a_sweep_or_the_demo_gives_the_evaluation_configs_the_pre_trained_encoder(sets):
    from hiclr.config import describe_encoder, model_overrides

    pre = load_config(None, sets)["model"]
    assert load_config(None, model_overrides(pre))["model"] == pre
    assert describe_encoder(pre) in ("DSTA-Net transformer, 8 blocks, 256-d", "ST-GCN width 4")


def test_the_random_init_baseline_of_a_transformer_config_is_a_dsta_with_recalibrated_batchnorm(tmp_path):
    from hiclr.eval.baselines import Baseline
    from hiclr.eval.linear import run_linear

    data = _tiny_store(tmp_path)
    cfg = _tiny_dsta_config(data, "eval.epochs=2", "eval.milestones=[1]")
    entry = run_linear(cfg, Baseline("random"), out=tmp_path / "random", progress=False, plots=False)
    report = json.loads((tmp_path / "random" / "report.json").read_text())
    assert (
        report["encoder"]["encoder_cfg"]["name"] == "dsta"
        and "BatchNorm re-estimated" in report["encoder"]["description"]
    )
    assert len(entry["history"]) == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_release_features_hold_and_fused_bf16_steps_are_finite():
    from hiclr.augment import GrowingPolicy
    from hiclr.bench.train import DEFAULT_POLICY
    from hiclr.ssl import ContrastiveLearner

    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    ref = _randomised_release(seed=4).cuda()
    ours = DSTA().cuda().eval()
    ours.load_state_dict(
        {k: v for k, v in ref.state_dict().items() if not k.startswith("fc.") and not k.endswith((".atts", ".pes.pe"))}
    )
    x = _clips().cuda()
    with torch.no_grad():
        assert _relative_error(ours(x), ref.features(x)) < 1e-4
    torch.manual_seed(0)
    learner = ContrastiveLearner({"name": "dsta"}, "hiclr", queue_size=256, fused_views="per_view").cuda().train()
    g = torch.Generator(device="cuda").manual_seed(0)
    views = GrowingPolicy.from_yaml(DEFAULT_POLICY).views(
        0.3 * torch.randn(8, 3, 50, 25, 2, device="cuda", generator=g), g, list(learner.view_stages)
    )
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss, _ = learner(views, torch.arange(8, device="cuda"), mining=True)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(learner.encoder_q.backbone.proj.weight.grad).all()
