"""`kill -9` and signals at random moments: a resumed run equals an uninterrupted one bit for bit, and
prep never leaves an incomplete file under the final name. The default run kills twice; `-m slow` 20 times."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch

from data_prep.store import verify_store
from hiclr.engine import load_checkpoint
from tests.helpers.paths import ROOT_DIR
from tests.helpers.tiny_store import write_random_store

ROOT = ROOT_DIR
CONFIG = ROOT / "configs" / "tiny" / "pretrain.yaml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def pretrain_cmd(data, out, *extra):
    return [
        sys.executable,
        "-m",
        "hiclr.cli",
        "pretrain",
        "--config",
        str(CONFIG),
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "3",
        "--set",
        "optim.batch_size=8",
        "--set",
        "model.width=2",
        "--set",
        "ssl.queue_size=24",
        "--set",
        "ssl.dim=8",
        "--set",
        "ssl.hidden=16",
        "--set",
        "run.name=r",
        "--set",
        "run.save_every=1",
        "--set",
        "run.monitor_every=0",
        "--set",
        "engine.tensorboard=false",
        "--set",
        "ssl.mining_epoch=1",
        *extra,
    ]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_random_store(tmp_path_factory.mktemp("data") / "tiny.h5")


class Reference(NamedTuple):
    """The uninterrupted run: its folder, and how long it took on this machine now."""

    run: Path
    seconds: float


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> Reference:
    out = tmp_path_factory.mktemp("straight")
    start = time.perf_counter()
    subprocess.run(pretrain_cmd(data, out), env=ENV, check=True, capture_output=True, timeout=600)
    return Reference(out / "r", time.perf_counter() - start)


def kill_then_resume(data, out: Path, delay: float) -> int:
    """Start the run, SIGKILL it after `delay` s, then `--resume` until it finishes; return the kills."""
    proc = subprocess.Popen(pretrain_cmd(data, out), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    killed = proc.poll() is None
    proc.kill()
    proc.wait()
    resume = "--resume" if (out / "r" / "last.pt").exists() else "--overwrite"
    done = subprocess.run(pretrain_cmd(data, out, resume), env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return int(killed)


def assert_same_run(a: Path, b: Path) -> None:
    ca, cb = load_checkpoint(a / "last.pt"), load_checkpoint(b / "last.pt")
    assert (ca["epoch"], ca["step"]) == (cb["epoch"], cb["step"])
    for key in ca["model"]:  # weights, EMA key encoder, queue keys, ids and pointer
        assert torch.equal(ca["model"][key], cb["model"][key]), key
    for ours, theirs in zip(ca["optimizer"]["state"].values(), cb["optimizer"]["state"].values()):
        assert torch.equal(ours["momentum_buffer"], theirs["momentum_buffer"])
    ea = torch.load(a / "encoder.pt", weights_only=True)["state_dict"]
    eb = torch.load(b / "encoder.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(ea[k], eb[k]) for k in ea)
    assert not list(b.glob("*.partial"))


def run_kills(data, reference: Reference, tmp_path, count: int, seed: int) -> None:
    rng = random.Random(seed)
    kills = 0
    for k in range(count):
        out = tmp_path / f"kill{k}"
        # a moment inside the reference run's duration
        kills += kill_then_resume(data, out, rng.uniform(0.3, 0.95) * reference.seconds)
        assert_same_run(reference.run, out / "r")
    assert kills >= 1  # the runs were really cut


def test_kill_9_of_pretraining_then_resume_equals_the_uninterrupted_run(data, reference, tmp_path):
    run_kills(data, reference, tmp_path, count=2, seed=0)


@pytest.mark.slow
def test_twenty_kills_of_pretraining(data, reference, tmp_path):
    run_kills(data, reference, tmp_path, count=20, seed=1)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_start_up_gives_one_line_and_its_exit_status(data, tmp_path, signum, code):
    # 100 epochs: however fast the machine, the signal lands while the command runs (at 0.3 s in its
    # imports, at 1.5 s in its start-up or, on a quick machine, its first epochs)
    for delay in (0.3, 1.5):
        proc = subprocess.Popen(
            pretrain_cmd(data, tmp_path / f"s{delay}", "--epochs", "100"),
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(delay)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == code, err
        lines = err.strip().splitlines()
        assert "Traceback" not in err and lines[-1].startswith("hiclr:"), err
        assert sum(line.startswith("hiclr:") for line in lines) == 1, err
        if delay == 0.3:
            assert len(lines) == 1, err  # in the imports: that one line and nothing else


def run_prep_kills(raw: Path, tmp_path: Path, count: int, seed: int) -> None:
    rng = random.Random(seed)
    cmd = [sys.executable, "-m", "data_prep.cli", "ntu60", "--raw", str(raw)]
    for k in range(count):
        out = tmp_path / f"p{k}.h5"
        proc = subprocess.Popen(
            cmd + ["--out", str(out)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(0.5, 4.0))
        proc.kill()
        proc.wait()
        if out.exists():
            assert verify_store(out) == []  # complete, or not there at all
        done = subprocess.run(cmd + ["--out", str(out)], env=ENV, capture_output=True, timeout=600)
        assert done.returncode == 0 and verify_store(out) == []


@pytest.fixture(scope="module")
def raw_ntu(tmp_path_factory):
    from data_prep.ntu import write_skeleton

    raw = tmp_path_factory.mktemp("raw")
    rng = np.random.default_rng(0)
    for k in range(40):
        frames = [[(1, rng.normal(size=(25, 3)))] for _ in range(60)]
        write_skeleton(
            raw
            / f"S001C00{1 + k % 3}P00{1 + k % 5}R001A{1 + k % 4:03d}.skeleton".replace("R001", f"R{1 + k // 12:03d}"),
            frames,
        )
    return raw


def test_kill_9_of_prep_never_leaves_an_incomplete_store(raw_ntu, tmp_path):
    run_prep_kills(raw_ntu, tmp_path, count=2, seed=0)


@pytest.mark.slow
def test_twenty_kills_of_prep(raw_ntu, tmp_path):
    run_prep_kills(raw_ntu, tmp_path, count=20, seed=1)
