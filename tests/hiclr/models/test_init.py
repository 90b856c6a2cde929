"""`model.init`: the reference release's N(0, 0.02) initialisation by default, PyTorch's on request."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hiclr.common.errors import UserError
from hiclr.config import defaults, load_config
from hiclr.models import build_encoder, init_weights, load_encoder, save_encoder
from hiclr.ssl import ContrastiveLearner

WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Linear)


def pooled(module: nn.Module):
    """(conv / linear weights, their biases, BN weights, BN biases), each flattened into one tensor."""
    parts = {"w": [], "b": [], "bn_w": [], "bn_b": []}
    for m in module.modules():
        if isinstance(m, WEIGHTED):
            parts["w"].append(m.weight.detach().flatten())
            if m.bias is not None:
                parts["b"].append(m.bias.detach().flatten())
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            parts["bn_w"].append(m.weight.detach().flatten())
            parts["bn_b"].append(m.bias.detach().flatten())
    return {k: torch.cat(v) for k, v in parts.items()}


def assert_reference_init(module: nn.Module) -> None:
    p = pooled(module)
    assert p["w"].numel() > 5000  # enough draws for 3 % on the std
    assert abs(float(p["w"].mean())) < 0.002
    assert float(p["w"].std()) == pytest.approx(0.02, rel=0.03)
    assert torch.count_nonzero(p["b"]) == 0 and torch.count_nonzero(p["bn_b"]) == 0
    assert float(p["bn_w"].mean()) == pytest.approx(1.0, abs=0.005)
    assert float(p["bn_w"].std()) == pytest.approx(0.02, rel=0.2)  # a few hundred BN channels


def stgcn(init=None, width=4):
    cfg = {"name": "stgcn", "width": width}
    return build_encoder(cfg if init is None else {**cfg, "init": init})


def test_the_default_is_the_reference_init():
    assert defaults()["model"]["init"] == "reference"
    torch.manual_seed(0)
    assert_reference_init(build_encoder(defaults()["model"]))


def test_reference_init_of_a_built_encoder_and_torch_init_differs():
    torch.manual_seed(0)
    ref = stgcn("reference")
    assert_reference_init(ref)
    torch.manual_seed(0)
    default = stgcn("torch")
    first = default.st_gcn_networks[0].gcn.conv.weight  # fan-in 3: kaiming-uniform std 1/3
    assert float(first.detach().std()) > 0.1
    assert float(ref.st_gcn_networks[0].gcn.conv.weight.detach().std()) < 0.05
    bn = pooled(default)["bn_w"]
    assert torch.equal(bn, torch.ones_like(bn))  # PyTorch's BN weight: ones
    assert torch.count_nonzero(pooled(default)["b"]) > 0  # and uniform conv biases
    # without `init` (an older checkpoint's encoder cfg) the encoder keeps PyTorch's init too
    torch.manual_seed(0)
    assert all(torch.equal(a, b) for a, b in zip(stgcn().state_dict().values(), default.state_dict().values()))


def test_edge_importance_is_not_redrawn():
    torch.manual_seed(0)
    model = stgcn("reference")
    assert all(torch.equal(p, torch.ones_like(p)) for p in model.edge_importance)


def test_same_seed_same_weights_other_seed_other_weights():
    torch.manual_seed(3)
    a = stgcn("reference").state_dict()
    torch.manual_seed(3)
    b = stgcn("reference").state_dict()
    torch.manual_seed(4)
    c = stgcn("reference").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["st_gcn_networks.0.gcn.conv.weight"], c["st_gcn_networks.0.gcn.conv.weight"])


def test_a_generator_gives_the_draws_without_touching_the_global_rng():
    net = nn.Sequential(nn.Linear(40, 50), nn.BatchNorm1d(50))
    state = torch.get_rng_state()
    init_weights(net, "reference", torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), state)
    again = init_weights(
        nn.Sequential(nn.Linear(40, 50), nn.BatchNorm1d(50)), "reference", torch.Generator().manual_seed(1)
    )
    assert torch.equal(net[0].weight, again[0].weight) and torch.equal(net[1].weight, again[1].weight)


def test_an_unknown_scheme_is_one_user_error_naming_the_key_and_the_known_values():
    for build in (
        lambda: stgcn("xavier"),
        lambda: init_weights(nn.Linear(2, 2), "xavier"),
        lambda: ContrastiveLearner({"name": "stgcn", "width": 2}, "skeletonclr", init="xavier"),
    ):
        with pytest.raises(UserError) as err:
            build()
        message = str(err.value)
        assert "model.init" in message and "'xavier'" in message
        assert "reference" in message and "torch" in message and "\n" not in message
    with pytest.raises(UserError, match="model.init`? is 'xavier'"):  # at load time, before any data
        load_config(None, ["model.init=xavier"])


def learner_cfg(init, key_init="random"):
    return load_config(
        None,
        [
            "model.width=4",
            f"model.init={init}",
            f"ssl.key_init={key_init}",
            "ssl.objective=skeletonclr",
            "ssl.queue_size=16",
            "ssl.dim=32",
            "ssl.hidden=64",
        ],
    )


def test_pretraining_initialises_both_encoders_and_their_heads():
    torch.manual_seed(0)
    learner = ContrastiveLearner.from_config(learner_cfg("reference"))
    for encoder in (learner.encoder_q, learner.encoder_k):
        assert_reference_init(encoder)
        head = torch.cat([m.weight.detach().flatten() for m in encoder.head if isinstance(m, nn.Linear)])
        assert float(head.std()) == pytest.approx(0.02, rel=0.05)
        assert all(torch.count_nonzero(m.bias) == 0 for m in encoder.head if isinstance(m, nn.Linear))
    q, k = learner.encoder_q.state_dict(), learner.encoder_k.state_dict()
    # key_init random (the reference's quirk): the key encoder has its own draw
    assert not torch.equal(
        q["backbone.st_gcn_networks.0.gcn.conv.weight"], k["backbone.st_gcn_networks.0.gcn.conv.weight"]
    )
    assert not torch.equal(q["head.0.weight"], k["head.0.weight"])


def test_key_init_copy_copies_the_initialised_query_encoder():
    torch.manual_seed(0)
    learner = ContrastiveLearner.from_config(learner_cfg("reference", key_init="copy"))
    assert_reference_init(learner.encoder_k)
    for (name, q), k in zip(learner.encoder_q.state_dict().items(), learner.encoder_k.state_dict().values()):
        assert torch.equal(q, k), name


def test_pretraining_under_torch_keeps_pytorchs_init_and_runs_are_deterministic():
    torch.manual_seed(0)
    learner = ContrastiveLearner.from_config(learner_cfg("torch"))
    assert float(learner.encoder_q.backbone.st_gcn_networks[0].gcn.conv.weight.detach().std()) > 0.1
    bn = pooled(learner.encoder_q)["bn_w"]
    assert torch.equal(bn, torch.ones_like(bn))
    states = []
    for _ in range(2):
        torch.manual_seed(5)
        states.append(ContrastiveLearner.from_config(learner_cfg("reference")).state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_an_encoder_cfg_with_or_without_init_loads_its_weights(tmp_path):
    torch.manual_seed(0)
    model = stgcn("reference")
    for name, cfg in (
        ("new", {"name": "stgcn", "width": 4, "init": "reference"}),
        ("old", {"name": "stgcn", "width": 4}),
    ):
        path = save_encoder(tmp_path / name / "encoder.pt", model, cfg, "joint")
        loaded, loaded_cfg, _ = load_encoder(path)
        assert loaded_cfg == cfg
        assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


def test_classifier_heads_follow_the_reference_per_protocol():
    from hiclr.eval.linear import new_linear_head

    probe = new_linear_head(256, 60, seed=0, init="reference", protocol="linear")
    assert float(probe.weight.detach().std()) == pytest.approx(0.02, rel=0.03)
    assert torch.count_nonzero(probe.bias) == 0
    finetune = new_linear_head(256, 60, seed=0, init="reference", protocol="finetune")
    bound = 1 / 256**0.5  # PyTorch's Linear: kaiming-uniform, uniform bias
    assert float(finetune.weight.detach().abs().max()) <= bound
    assert float(finetune.weight.detach().std()) == pytest.approx(bound / 3**0.5, rel=0.03)
    assert torch.count_nonzero(finetune.bias) > 0 and float(finetune.bias.detach().abs().max()) <= bound
    for protocol in ("linear", "finetune"):  # torch: an N(0, 0.01) head
        head = new_linear_head(256, 60, seed=0, init="torch", protocol=protocol)
        assert float(head.weight.detach().std()) == pytest.approx(0.01, rel=0.03)
        assert torch.count_nonzero(head.bias) == 0
    state = torch.get_rng_state()
    for init, protocol in (("reference", "finetune"), ("reference", "linear"), ("torch", "linear")):
        new_linear_head(256, 60, seed=0, init=init, protocol=protocol)
        assert torch.equal(torch.get_rng_state(), state)  # seeded apart from the global stream
    assert torch.equal(new_linear_head(256, 60, seed=0, init="reference", protocol="finetune").weight, finetune.weight)
    assert not torch.equal(
        new_linear_head(256, 60, seed=1, init="reference", protocol="finetune").weight, finetune.weight
    )
