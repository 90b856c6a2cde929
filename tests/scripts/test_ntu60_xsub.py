"""scripts/ntu60_xsub.sh, the documented real-data pipeline, runs end to end (smoke settings)."""

import os
import shutil
import subprocess

import pytest

from tests.helpers.paths import ROOT_DIR

ROOT = ROOT_DIR


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("hiclr") is None, reason="needs the installed console scripts")
def test_ntu60_xsub_script_prepares_pretrains_evaluates_and_ensembles(tmp_path):
    raw = tmp_path / "raw"
    subprocess.run(
        ["hiclr-prep", "synth", "--out", str(raw), "--subjects", "8", "--classes", "6", "--repeats", "1"],
        check=True,
        capture_output=True,
    )
    env = dict(
        os.environ,
        DATA=str(tmp_path / "ntu60.h5"),
        OUT=str(tmp_path / "runs"),
        OMP_NUM_THREADS="1",
        PRETRAIN_ARGS="--epochs 1 --set model.width=2 --set optim.batch_size=16 --set ssl.queue_size=32",
        EVAL_ARGS="--set eval.epochs=2 --set eval.milestones=[1] --set optim.epochs=1 "
        "--set optim.milestones=[1] --set optim.warmup_epochs=0 --set eval.seeds=[0] --no-plots",
    )
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "ntu60_xsub.sh"), str(raw), "cpu"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    runs = tmp_path / "runs"
    for stream in ("joint", "bone", "motion"):
        run = runs / f"ntu60_xsub_pretrain_{stream}"
        assert (run / "encoder.pt").is_file()
        for protocol in ("linear", "knn", "semi", "finetune"):
            assert (run / protocol / "report.json").is_file(), (stream, protocol)
    assert (runs / "ntu60_xsub_ensemble_linear" / "report.md").is_file()
    table = done.stdout.splitlines()
    assert any("ensemble" in line and "joint+bone+motion" in line for line in table)
