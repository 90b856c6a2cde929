"""`hiclr pretrain`: the run folder, the final line, errors as one sentence, SIGTERM from outside."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml

from hiclr.common.command_line import run_cli
from tests.helpers.paths import ROOT_DIR
from tests.helpers.tiny_store import write_tiny_store

ROOT = ROOT_DIR
TINY = ROOT / "configs" / "tiny" / "pretrain.yaml"
FAST = [
    "--set",
    "model.width=2",
    "--set",
    "optim.batch_size=8",
    "--set",
    "ssl.queue_size=16",
    "--set",
    "engine.progress=false",
    "--set",
    "engine.tensorboard=false",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A 24-clip store of the HDF5 contract (16 in the xsub training split)."""
    rng = np.random.default_rng(0)
    n = 24
    labels = np.arange(n) % 3
    performer = np.arange(n) % 3
    x = rng.normal(size=(n, 3, 50, 25, 2)).astype(np.float32)
    return write_tiny_store(
        tmp_path_factory.mktemp("data") / "tiny.h5", x, labels, performer, test_performer=2, num_classes=3
    )


def hiclr(*argv):
    return run_cli("hiclr", "", "hiclr.commands", ["pretrain"], "", list(map(str, argv)))


def test_tiny_pretraining_writes_the_run_folder_and_says_where_the_encoder_is(data, tmp_path, capsys):
    code = hiclr(
        "pretrain",
        "--config",
        TINY,
        "--data",
        data,
        "--out",
        tmp_path,
        "--epochs",
        2,
        *FAST,
        "--set",
        "optim.lr=0.02",
        "--device",
        "cpu",
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    run = tmp_path / "tiny_pretrain"
    assert len(out) == 2 and out[0].endswith(f"encoder: {run / 'encoder.pt'}") and "2 epochs" in out[0]
    assert out[1] == f"curves: {run / 'pretrain_curve.md'}"
    assert {
        "config.yaml",
        "last.pt",
        "epoch_001.pt",
        "epoch_002.pt",
        "encoder.pt",
        "metrics.jsonl",
        "pretrain_curve.md",
    } <= {p.name for p in run.iterdir()}
    curve = (run / "pretrain_curve.md").read_text()
    assert "| epoch |" in curve and "\n| 2 |" in curve
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["data"]["path"] == str(data) and cfg["optim"]["lr"] == 0.02 and cfg["optim"]["epochs"] == 2
    assert cfg["engine"]["device"] == "cpu" and cfg["model"]["width"] == 2
    encoder = torch.load(run / "encoder.pt", weights_only=True)
    assert encoder["format"] == "hiclr-encoder/1" and encoder["stream"] == "joint"
    assert encoder["encoder"]["width"] == 2 and any(k.startswith("st_gcn_networks") for k in encoder["state_dict"])
    last = torch.load(run / "last.pt", weights_only=True)
    backbone = {
        k[len("encoder_q.backbone.") :]: v for k, v in last["model"].items() if k.startswith("encoder_q.backbone.")
    }
    for key, value in encoder["state_dict"].items():
        assert torch.equal(value, backbone[key]), key
    epochs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"epoch"' in x]
    assert all(np.isfinite(r["loss"]) for r in epochs)


def test_errors_are_one_sentence_with_exit_status_1(data, tmp_path, capsys):
    assert hiclr("pretrain", "--config", TINY, "--data", data, "--set", "optim.lrr=0.1") == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown key `optim.lrr`" in err and "did you mean `optim.lr`" in err
    assert hiclr("pretrain", "--config", TINY, "--data", tmp_path / "none.h5", "--out", tmp_path) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("hiclr: error:") and "none.h5" in err and "\n" not in err
    assert hiclr("pretrain", "--config", TINY, "--data", data, "--out", tmp_path, "--resume") == 1
    assert "no checkpoint" in capsys.readouterr().err


def test_a_finished_run_is_kept_unless_resumed_or_overwritten(data, tmp_path, capsys):
    args = ["pretrain", "--config", TINY, "--data", data, "--out", tmp_path, "--epochs", 1, *FAST]
    assert hiclr(*args) == 0
    before = (tmp_path / "tiny_pretrain" / "last.pt").read_bytes()
    assert hiclr(*args) == 1
    assert "--resume" in capsys.readouterr().err
    assert (tmp_path / "tiny_pretrain" / "last.pt").read_bytes() == before
    assert hiclr(*args, "--resume") == 0  # nothing left to do: it only rewrites encoder.pt
    assert "1 epochs (2 steps)" in capsys.readouterr().out
    assert hiclr(*args, "--overwrite") == 0


def test_sigterm_from_outside_saves_last_pt_and_exits_with_one_line(data, tmp_path):
    code = (
        "import sys; from hiclr.common.command_line import run_cli; "
        "sys.exit(run_cli('hiclr', '', 'hiclr.commands', ['pretrain'], '', sys.argv[1:]))"
    )
    args = [
        sys.executable,
        "-c",
        code,
        "pretrain",
        "--config",
        str(TINY),
        "--data",
        str(data),
        "--out",
        str(tmp_path),
        "--epochs",
        "1000",
        *FAST,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "tiny_pretrain" / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and '"epoch"' in metrics.read_text():
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    last_line = err.strip().splitlines()[-1]
    assert last_line.startswith("hiclr: interrupted by SIGTERM") and "--resume" in last_line
    ckpt = torch.load(tmp_path / "tiny_pretrain" / "last.pt", weights_only=True)
    assert ckpt["step"] >= 2 and ckpt["epoch"] >= 1
    assert not (tmp_path / "tiny_pretrain" / "encoder.pt").exists()
    finish = ckpt["epoch"] + 1
    assert (
        hiclr("pretrain", "--config", TINY, "--data", data, "--out", tmp_path, "--epochs", finish, *FAST, "--resume")
        == 0
    )
    assert (tmp_path / "tiny_pretrain" / "encoder.pt").exists()
