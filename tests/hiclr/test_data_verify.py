"""Stores are verified when they are read: every command that reads one checks the stored sha256 of
what it reads, once per process, and refuses a mismatch in one sentence naming file and dataset."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import data_prep.checksums
from hiclr.common.command_line import run_cli
from hiclr.common.errors import UserError
from hiclr.config import load_config
from hiclr.data import load_split, store_identity, verify_store_of
from tests.helpers.paths import ROOT_DIR
from tests.helpers.tiny_store import write_tiny_store

ROOT = ROOT_DIR
TINY = ROOT / "configs" / "tiny" / "pretrain.yaml"
EVAL = [
    "--set",
    "eval.epochs=1",
    "--set",
    "eval.milestones=[1]",
    "--set",
    "eval.batch_size=8",
    "--set",
    "optim.epochs=1",
    "--set",
    "optim.milestones=[1]",
    "--set",
    "optim.batch_size=8",
    "--set",
    "optim.warmup_epochs=0",
    "--set",
    "run.save_every=0",
    "--set",
    "engine.progress=false",
    "--set",
    "engine.tensorboard=false",
    "--set",
    "engine.device=cpu",
    "--set",
    "model.width=2",
    "--no-plots",
]
PRETRAIN = [
    "--config",
    TINY,
    "--epochs",
    1,
    "--device",
    "cpu",
    "--set",
    "model.width=2",
    "--set",
    "optim.batch_size=8",
    "--set",
    "ssl.queue_size=16",
    "--set",
    "run.monitor_every=0",
    "--set",
    "engine.progress=false",
    "--set",
    "engine.tensorboard=false",
]


def store(path: Path) -> Path:
    """24 clips, 3 classes, xsub: performers 0 and 1 train (16 clips), performer 2 tests."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 3, 50, 25, 2)).astype(np.float32)
    return write_tiny_store(path, x, np.arange(24) % 3, np.arange(24) % 3, test_performer=2, num_classes=3)


def damage(path: Path, what: str) -> str:
    """Change the store in place as a bad disk or copy would; returns the dataset it touched."""
    with h5py.File(path, "r+") as f:
        if what == "value":
            f["views/frame50"][5, 1, 2, 3, 0] = 0.5  # finite, plausible
            return "/views/frame50"
        if what == "label":
            labels = f["samples/label"][()]
            labels[[0, 1]] = labels[[1, 0]]
            f["samples/label"][...] = labels
            return "/samples/label"
        index = f["splits/xsub/train"][()]
        index[-1] += 1  # still sorted: a test clip joins training
        f["splits/xsub/train"][...] = index
        return "/splits/xsub/train"


def encoder_file(folder: Path) -> str:
    from hiclr.models import build_encoder, save_encoder

    torch.manual_seed(0)
    path = folder / "encoder.pt"
    save_encoder(path, build_encoder({"name": "stgcn", "width": 2}), {"name": "stgcn", "width": 2}, "joint")
    return str(path)


def command(name: str, data: Path, out: Path, encoder: str) -> list:
    """The argv of `hiclr NAME` reading `data` and writing under `out`."""
    if name == "pretrain":
        return ["pretrain", "--data", data, "--out", out, *PRETRAIN]
    if name == "embed":
        return [
            "embed",
            "--encoder",
            encoder,
            "--data",
            data,
            "--split",
            "xsub/train",
            "--out",
            out / "f.npz",
            "--device",
            "cpu",
        ]
    extra = {"semi": ["--fractions", "0.5", "--seeds", "0"], "knn": ["--k", "3"]}.get(name, [])
    chosen = "raw" if name in ("linear", "knn") else encoder
    return [name, "--encoder", chosen, "--data", data, "--out", out / "run", *EVAL, *extra]


def hiclr(argv) -> int:
    return run_cli("hiclr", "", "hiclr.commands", ["pretrain", "embed", "evaluate"], "", [str(a) for a in argv])


COMMANDS = ["pretrain", "linear", "knn", "semi", "finetune", "embed"]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return encoder_file(tmp_path_factory.mktemp("encoder"))


@pytest.mark.parametrize("what", ["value", "label", "split"])
@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_refuses_a_changed_store_in_one_sentence_and_writes_nothing(
    tmp_path, capsys, encoder, name, what
):
    data = store(tmp_path / "s.h5")
    dataset = damage(data, what)
    out = tmp_path / "out"
    assert hiclr(command(name, data, out, encoder)) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("hiclr: error:")
    assert str(data) in err and f"dataset {dataset} does not match" in err and "--no-verify" in err
    assert not out.exists()


@pytest.mark.parametrize("name", COMMANDS)
def test_no_verify_runs_on_a_changed_store(tmp_path, capsys, encoder, name):
    data = store(tmp_path / "s.h5")
    damage(data, "value")
    out = tmp_path / "out"
    assert hiclr(command(name, data, out, encoder) + ["--no-verify"]) == 0, capsys.readouterr().err
    assert out.exists()


def test_the_config_key_turns_verification_off_like_the_flag(tmp_path, capsys, encoder):
    data = store(tmp_path / "s.h5")
    damage(data, "label")
    argv = command("knn", data, tmp_path / "out", encoder)
    assert hiclr(argv) == 1
    assert hiclr(argv + ["--set", "data.verify=false"]) == 0
    assert load_config(None, [])["data"]["verify"] is True


def test_a_sound_store_is_hashed_once_per_process_and_again_once_it_changes(tmp_path, monkeypatch):
    data = store(tmp_path / "s.h5")
    hashed = []
    real = data_prep.checksums.dataset_sha256
    monkeypatch.setattr(data_prep.checksums, "dataset_sha256", lambda ds: hashed.append(ds.name) or real(ds))
    load_split(data, "xsub", "train")
    assert sorted(hashed) == ["/samples/label", "/samples/name", "/splits/xsub/train", "/views/frame50"]
    load_split(data, "xsub", "train")
    load_split(data, "xsub", "test")  # only the test index is new
    assert sorted(hashed[4:]) == ["/splits/xsub/test"]
    damage(data, "value")  # a new modification time: a new identity
    with pytest.raises(UserError, match="dataset /views/frame50 does not match"):
        load_split(data, "xsub", "test")
    assert load_split(data, "xsub", "test", verify=False).x.shape[0] == 8


def test_the_run_folder_check_covers_both_parts_and_is_off_with_the_key(tmp_path):
    data = store(tmp_path / "s.h5")
    damage(data, "split")
    cfg = load_config(None, [f"data.path={data}"])
    with pytest.raises(UserError, match="/splits/xsub/train"):
        verify_store_of(cfg)
    cfg["data"]["verify"] = False
    verify_store_of(cfg)


def test_a_store_without_stored_checksums_is_read_with_one_note(tmp_path, capsys):
    data = store(tmp_path / "s.h5")
    with h5py.File(data, "r+") as f:
        del f.attrs[data_prep.checksums.ATTR]
    assert len(load_split(data, "xsub", "train")) == 16
    err = capsys.readouterr().err
    assert err.count("note:") == 1 and "no stored sha256" in err and "/views/frame50" in err
    assert "/splits/xsub/train" not in err  # the split index still has its split_sha256
    load_split(data, "xsub", "train")
    assert capsys.readouterr().err == ""


def test_hashing_streams_in_blocks_with_bounded_memory(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    n = 1200  # frame50: 36 MB
    x = rng.normal(size=(n, 3, 50, 25, 2)).astype(np.float32)
    data = write_tiny_store(tmp_path / "big.h5", x, np.arange(n) % 3, np.arange(n) % 3, test_performer=2, num_classes=3)
    del x
    with h5py.File(data, "r") as f:
        whole = data_prep.checksums.dataset_sha256(f["views/frame50"])
        monkeypatch.setattr(data_prep.checksums, "_BLOCK_BYTES", 1 << 20)
        tracemalloc.start()
        try:
            assert data_prep.checksums.dataset_sha256(f["views/frame50"]) == whole
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 8 << 20, peak


def test_the_cache_key_is_the_files_identity_size_and_modification_time(tmp_path):
    data = store(tmp_path / "s.h5")
    before = store_identity(data)
    assert store_identity(data) == before and before[0] == str(data.resolve())
    os.utime(data, ns=(before[4] + 1_000_000, before[4] + 1_000_000))
    assert store_identity(data) != before
    copy = tmp_path / "copy.h5"
    copy.write_bytes(data.read_bytes())
    assert store_identity(copy) != store_identity(data)


def test_a_sweeps_no_verify_reaches_its_evaluations_too(tmp_path):
    from hiclr.sweep import load_sweep, plan

    data = store(tmp_path / "s.h5")
    sweep = load_sweep(ROOT / "configs" / "demo" / "ablation.yaml")
    runs = plan(sweep, data, tmp_path / "out", seeds=[0], overrides=["data.verify=false"])
    assert runs and all(not cfg["data"]["verify"] for r in runs for cfg in (r.pretrain_cfg, r.linear_cfg, r.knn_cfg))
    runs = plan(sweep, data, tmp_path / "out", seeds=[0])
    assert all(cfg["data"]["verify"] for r in runs for cfg in (r.pretrain_cfg, r.linear_cfg, r.knn_cfg))
