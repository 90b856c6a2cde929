"""Exact resume of a real HiCLR pre-training (learner, EMA, queue, policy, mining) on CPU."""

import os
import signal

import numpy as np
import pytest
import torch

from hiclr.config import load_config
from hiclr.engine import Interrupted, load_checkpoint
from hiclr.pretrain import PretrainTask, pretrain
from tests.helpers.paths import ROOT_DIR
from tests.helpers.tiny_store import write_tiny_store

CONFIG = ROOT_DIR / "configs" / "tiny" / "pretrain.yaml"


def tiny_store(path, n=40, classes=4, seed=0):
    """A small HDF5 file of the store contract: smooth class-dependent motions plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    t = np.linspace(0, 2 * np.pi, 50, dtype=np.float32)
    pose = rng.normal(size=(classes, 3, 1, 25, 1)).astype(np.float32)
    x = pose[labels] * np.sin((labels + 1)[:, None, None, None, None] * t[None, None, :, None, None])
    x = (x + 0.05 * rng.normal(size=(n, 3, 50, 25, 2))).astype(np.float32)
    performer = np.arange(n) % 5
    return write_tiny_store(path, x, labels, performer, test_performer=4, num_classes=classes)


def tiny_cfg(data, out, epochs):
    # batch 8 of 32 training clips: 4 steps an epoch; mining from the second epoch on
    return load_config(
        CONFIG,
        [
            f"data.path={data}",
            f"run.out={out}",
            f"optim.epochs={epochs}",
            "optim.batch_size=8",
            "model.width=2",
            "ssl.queue_size=24",
            "ssl.mining_epoch=1",
            "run.name=r",
            "engine.progress=false",
            "engine.tensorboard=false",
        ],
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_store(tmp_path_factory.mktemp("data") / "tiny.h5")


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_two_epochs_straight_equal_one_plus_resume_plus_one(data, tmp_path):
    pretrain(tiny_cfg(data, tmp_path / "straight", 2))
    pretrain(tiny_cfg(data, tmp_path / "split", 1))
    first = load_checkpoint(tmp_path / "split" / "r" / "last.pt")
    assert first["epoch"] == 1 and first["step"] == 4
    result = pretrain(tiny_cfg(data, tmp_path / "split", 2), resume=True)
    assert result.epoch == 2 and result.step == 8
    a = load_checkpoint(tmp_path / "straight" / "r" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "r" / "last.pt")
    # query and EMA key encoders, heads, mask token, queue keys, ids and pointer
    assert any(k.startswith("encoder_k.") for k in a["model"]) and "queue.ptr" in a["model"]
    assert_same_state(a["model"], b["model"])
    assert int(a["model"]["queue.ptr"]) == (8 * 8) % 24
    assert not torch.equal(a["model"]["queue.keys"], first["model"]["queue.keys"])
    for ours, theirs in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(ours["momentum_buffer"], theirs["momentum_buffer"])
    enc_a = torch.load(tmp_path / "straight" / "r" / "encoder.pt", weights_only=True)
    enc_b = torch.load(tmp_path / "split" / "r" / "encoder.pt", weights_only=True)
    assert_same_state(enc_a["state_dict"], enc_b["state_dict"])


def test_sigterm_inside_an_epoch_of_pretraining_then_resume_is_exact(data, tmp_path, monkeypatch):
    pretrain(tiny_cfg(data, tmp_path / "straight", 2))
    calls = {"n": 0}
    original = PretrainTask.step

    def step(self, model, batch, generator, epoch):
        calls["n"] += 1
        if calls["n"] == 6:  # the second step of epoch 2 (mining on)
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, model, batch, generator, epoch)

    monkeypatch.setattr(PretrainTask, "step", step)
    with pytest.raises(Interrupted):
        pretrain(tiny_cfg(data, tmp_path / "cut", 2))
    monkeypatch.setattr(PretrainTask, "step", original)
    ckpt = load_checkpoint(tmp_path / "cut" / "r" / "last.pt")
    assert (ckpt["epoch"], ckpt["step"]) == (1, 6)
    pretrain(tiny_cfg(data, tmp_path / "cut", 2), resume=True)
    assert_same_state(
        load_checkpoint(tmp_path / "straight" / "r" / "last.pt")["model"],
        load_checkpoint(tmp_path / "cut" / "r" / "last.pt")["model"],
    )
