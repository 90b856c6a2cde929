"""Damaged files and interrupted runs: refused by name or recovered, never silently used."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from data_prep.store import store_summary, verify_store
from hiclr.common.errors import UserError
from hiclr.config import load_config
from hiclr.data import load_split
from hiclr.engine import NonFiniteLoss, load_checkpoint
from hiclr.models import load_encoder
from hiclr.pretrain import pretrain
from tests.helpers.paths import ROOT_DIR
from tests.helpers.tiny_store import random_clips, write_random_store

CONFIG = ROOT_DIR / "configs" / "tiny" / "pretrain.yaml"


def tiny_data(path, n=40, seed=0, nan_at=None):
    x = random_clips(n, seed)
    if nan_at is not None:
        x[nan_at, 0, 0, 0, 0] = np.nan
    return write_random_store(path, x)


def cfg_for(data, out, epochs=2, *extra):
    return load_config(
        CONFIG,
        [
            f"data.path={data}",
            f"run.out={out}",
            f"optim.epochs={epochs}",
            "optim.batch_size=8",
            "model.width=2",
            "ssl.queue_size=24",
            "ssl.dim=8",
            "ssl.hidden=16",
            "run.name=r",
            "run.save_every=1",
            "run.monitor_every=0",
            "engine.progress=false",
            "engine.tensorboard=false",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("data") / "tiny.h5")


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory):
    """An uninterrupted 2-epoch run (the reference every recovered run must equal)."""
    out = tmp_path_factory.mktemp("straight")
    pretrain(cfg_for(data, out))
    return out / "r"


def flip_middle(path: Path, count: int = 64) -> None:
    """Flip up to `count` bytes in the middle of every tensor storage of the checkpoint (a flip at
    the file's middle may land in the zip's alignment padding, which no reader looks at)."""
    import zipfile

    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        members = [m for m in archive.infolist() if "/data/" in m.filename and m.file_size >= 16]
    for m in members:
        head = m.header_offset
        start = (
            head
            + 30
            + int.from_bytes(raw[head + 26 : head + 28], "little")
            + int.from_bytes(raw[head + 28 : head + 30], "little")
        )
        n = min(count, m.file_size // 2)
        for k in range(n):
            raw[start + m.file_size // 2 - n // 2 + k] ^= 0xFF
    path.write_bytes(bytes(raw))


def same_model(a: Path, b: Path) -> bool:
    sa, sb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------------------------- checkpoints


def test_a_checkpoint_with_flipped_bytes_is_refused_by_name(finished, tmp_path):
    for name in ("last.pt", "encoder.pt"):
        copy = tmp_path / name
        shutil.copy(finished / name, copy)
        flip_middle(copy)
        with pytest.raises(UserError, match=str(copy)):
            load_checkpoint(copy) if name == "last.pt" else load_encoder(copy)


def test_resume_falls_back_to_the_newest_good_snapshot_with_a_warning(data, finished, tmp_path, capsys):
    pretrain(cfg_for(data, tmp_path, 2))
    run = tmp_path / "r"
    (run / "encoder.pt").unlink()
    flip_middle(run / "last.pt")  # epoch 2 lost; epoch_001.pt is good
    (run / "epoch_002.pt").unlink()
    result = pretrain(cfg_for(data, tmp_path, 2), resume=True)
    assert result.epoch == 2
    err = capsys.readouterr().err
    assert "warning:" in err and "last.pt is damaged" in err and "epoch_001.pt" in err
    assert same_model(run / "last.pt", finished / "last.pt")


def test_a_kill_between_the_snapshot_and_last_pt_loses_nothing(data, finished, tmp_path):
    """The snapshot is written first: a kill before last.pt's rename leaves last.pt one epoch behind."""
    pretrain(cfg_for(data, tmp_path, 1))
    run = tmp_path / "r"
    (run / "epoch_001.pt").unlink()  # as if killed between last.pt's and the snapshot's rename
    (run / "stale.pt.partial").write_bytes(b"half a file")
    pretrain(cfg_for(data, tmp_path, 2), resume=True)
    assert (run / "epoch_001.pt").is_file() and (run / "epoch_002.pt").is_file()  # completed on resume
    assert not list(run.glob("*.partial"))
    assert same_model(run / "last.pt", finished / "last.pt")
    assert same_model(run / "epoch_001.pt", finished / "epoch_001.pt")


def test_a_torn_last_line_of_metrics_is_dropped_on_resume(data, finished, tmp_path):
    pretrain(cfg_for(data, tmp_path, 1))
    metrics = tmp_path / "r" / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"kind": "step", "ep')
    pretrain(cfg_for(data, tmp_path, 2), resume=True)
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["epoch"] for r in rows if r["kind"] == "epoch"] == [1, 2]


@pytest.mark.parametrize(
    "change",
    ["optim.lr=0.01", "run.seed=3", "ssl.objective=skeletonclr", "model.width=3", "ssl.queue_size=32", "ssl.dim=16"],
)
def test_resume_with_a_changed_config_is_refused_naming_the_key(data, tmp_path, change):
    pretrain(cfg_for(data, tmp_path, 1))
    config_before = (tmp_path / "r" / "config.yaml").read_text()
    with pytest.raises(UserError) as err:
        pretrain(cfg_for(data, tmp_path, 2, change), resume=True)
    message = str(err.value)
    assert change.split("=")[0] in message and "--force" in message and "\n" not in message
    assert (tmp_path / "r" / "config.yaml").read_text() == config_before  # not overwritten


def test_force_resumes_a_changed_lr_and_records_it_but_not_a_changed_shape(data, tmp_path):
    pretrain(cfg_for(data, tmp_path, 1))
    pretrain(cfg_for(data, tmp_path, 2, "optim.lr=0.01"), resume=True, force=True)
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    forced = [r for r in rows if r["kind"] == "resume"]
    assert forced and forced[0]["forced"] is True and "optim.lr" in forced[0]["changed"]
    with pytest.raises(UserError, match="shape cannot change"):
        pretrain(cfg_for(data, tmp_path, 3, "optim.lr=0.01", "model.width=3"), resume=True, force=True)


# ------------------------------------------------------------------------------------------ stores


@pytest.fixture()
def store(tmp_path):
    return tiny_data(tmp_path / "s.h5")


@pytest.mark.parametrize("damage", ["flip_frame50_byte", "value_1e6", "swap_labels"])
def test_verify_finds_a_changed_value_that_stays_finite(store, damage):
    assert verify_store(store) == []
    with h5py.File(store, "r+") as f:
        if damage == "flip_frame50_byte":
            row = f["views/frame50"][3]
            raw = bytearray(row.tobytes())
            raw[1001] ^= 0x01
            f["views/frame50"][3] = np.frombuffer(bytes(raw), dtype=np.float32).reshape(row.shape)
        elif damage == "value_1e6":
            f["views/frame50"][5, 1, 2, 3, 0] = 1e6
        else:
            labels = f["samples/label"][()]
            labels[[0, 1]] = labels[[1, 0]]
            f["samples/label"][...] = labels
    problems = "\n".join(verify_store(store))
    where = "/samples/label" if damage == "swap_labels" else "/views/frame50"
    assert f"{where} does not match its stored sha256" in problems


def test_a_flip_in_the_hdf5_metadata_gives_one_sentence_everywhere(store, tmp_path):
    raw = store.read_bytes()
    readers = [verify_store, store_summary, lambda p: load_split(p, "xsub", "train")]
    foreign = []
    for pos in range(0, 2048, 7):  # the superblock and the root group's metadata
        damaged = bytearray(raw)
        damaged[pos] ^= 0x5A
        path = tmp_path / "m.h5"
        path.write_bytes(bytes(damaged))
        for read in readers:
            try:
                read(path)
            except UserError as err:
                assert "\n" not in str(err)
            except Exception as err:  # noqa: BLE001 - what the test is looking for
                foreign.append((pos, type(err).__name__))
    assert foreign == []


# --------------------------------------------------------------------------------- data and losses


def test_a_nan_in_the_data_is_named_as_the_cause_of_a_non_finite_loss(tmp_path):
    bad = tiny_data(tmp_path / "nan.h5", nan_at=[0, 1, 2, 3, 5, 6, 7, 8, 10, 11, 12, 13])
    with pytest.raises(NonFiniteLoss) as err:
        pretrain(cfg_for(bad, tmp_path, 1, "engine.precision=fp32"))
    message = str(err.value)
    assert "non-finite input values" in message and "hiclr-prep verify" in message and "bf16" not in message


def test_empty_clips_never_reach_pretraining(tmp_path, capsys):
    x = random_clips()
    x[[0, 5]] = 0.0
    path = write_random_store(tmp_path / "z.h5", x)
    from hiclr.pretrain import load_training_data

    data = load_training_data(cfg_for(path, tmp_path))
    assert len(data.x) == 30 and data.x.flatten(1).ne(0).any(dim=1).all()
    assert "leaving out 2 empty training clips" in capsys.readouterr().err
