"""The `hiclr linear | knn | ensemble | report` commands end to end on a tiny store."""

from __future__ import annotations

import json

import pytest
import torch

from hiclr.common.command_line import run_cli
from tests.hiclr.eval.test_linear import write_tiny_store


def main(argv):
    """`hiclr` with the evaluation and report commands (as hiclr.cli registers them)."""
    return run_cli("hiclr", "", "hiclr.commands", ["evaluate", "report"], "", argv)


FAST = [
    "--set",
    "eval.epochs=2",
    "--set",
    "eval.milestones=[1]",
    "--set",
    "eval.batch_size=16",
    "--set",
    "engine.device=cpu",
    "--set",
    "model.width=4",
    "--no-plots",
]


@pytest.fixture
def store(tmp_path):
    return write_tiny_store(tmp_path / "tiny.h5", n=24)


def encoder_file(tmp_path, stream="joint"):
    from hiclr.models import build_encoder, save_encoder

    torch.manual_seed(0)
    path = tmp_path / f"pre_{stream}" / "encoder.pt"
    save_encoder(path, build_encoder({"name": "stgcn", "width": 4}), {"name": "stgcn", "width": 4}, stream)
    return str(path)


def test_linear_then_knn_into_one_run_then_report(tmp_path, store, capsys):
    enc = encoder_file(tmp_path)
    run = str(tmp_path / "run")
    assert main(["linear", "--encoder", enc, "--data", store, "--out", run, *FAST]) == 0
    out = capsys.readouterr().out
    assert "linear: top-1" in out and "best epoch" in out and "report.md" in out
    assert main(["knn", "--encoder", enc, "--data", store, "--out", run, "--k", "3", *FAST]) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert set(report["protocols"]) == {"linear", "knn"} and report["protocols"]["knn"]["k"] == 3
    assert main(["report", run]) == 0
    table = capsys.readouterr().out
    assert "linear top-1" in table and "kNN (k=3) top-1" in table


def linear_per_stream(tmp_path, store, capsys, *extra) -> tuple[list[str], list[str]]:
    """`hiclr linear` of one encoder per stream into tmp_path/<stream>: the run folders and what
    each run printed."""
    runs, printed = [], []
    for stream in ("joint", "bone", "motion"):
        runs.append(str(tmp_path / stream))
        args = ["--encoder", encoder_file(tmp_path, stream), "--data", store, "--out", runs[-1]]
        assert main(["linear", *args, "--set", f"data.stream={stream}", *extra, *FAST]) == 0
        printed.append(capsys.readouterr().out)
    return runs, printed


def test_three_streams_then_ensemble(tmp_path, store, capsys):
    runs, _ = linear_per_stream(tmp_path, store, capsys)
    assert main(["ensemble", *runs, "--out", str(tmp_path / "ens"), "--no-plots"]) == 0
    assert "ensemble (weights 0.6 0.6 0.4)" in capsys.readouterr().out
    report = json.loads((tmp_path / "ens" / "report.json").read_text())
    assert list(report["protocols"]["ensemble"]["streams"]) == ["joint", "bone", "motion"]


def test_errors_are_one_sentence_and_exit_1(tmp_path, store, capsys):
    assert main(["linear", "--encoder", str(tmp_path / "missing.pt"), "--data", store, *FAST]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("hiclr: error:") and "missing.pt does not exist" in err and "\n" not in err
    enc = encoder_file(tmp_path, "bone")
    assert main(["knn", "--encoder", enc, "--data", store, "--out", str(tmp_path / "r"), *FAST]) == 1
    assert "--set data.stream=bone" in capsys.readouterr().err
    assert main(["linear", "--encoder", enc, "--data", store, "--set", "eval.kk=3", *FAST]) == 1
    assert "eval.k" in capsys.readouterr().err


def test_every_registered_protocol_is_a_subcommand_and_a_new_one_needs_no_command_change(
    tmp_path, store, capsys, monkeypatch
):
    from hiclr.eval.protocols import PROTOCOLS, EncoderProtocol

    assert list(PROTOCOLS) == ["linear", "knn", "semi", "finetune", "ensemble"]

    class TrainingSize(EncoderProtocol):
        name, help = "train-size", "count the training clips"

        def add_protocol_arguments(self, parser):
            parser.add_argument("--scale", type=int, default=1)

        def evaluate(self, cfg, encoder, args):
            from hiclr.eval.common import load_eval_data

            return {"n": args.scale * len(load_eval_data(cfg).train), "run_dir": str(tmp_path)}

        def summary(self, entry):
            return f"train-size: {entry['n']}"

    monkeypatch.setitem(PROTOCOLS, "train-size", TrainingSize())
    assert main(["train-size", "--encoder", "raw", "--data", store, "--scale", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("train-size: ") and int(line.split()[1].rstrip(";")) % 2 == 0
    assert line.endswith(f"report: {tmp_path / 'report.md'}")


def test_report_paper_adds_the_release_figures_labelled_and_leaves_the_default_alone(tmp_path, store, capsys):
    runs, printed = linear_per_stream(tmp_path, store, capsys, "--report", "paper")
    assert all("selected on the test set" in out for out in printed)
    assert main(["ensemble", *runs, "--out", str(tmp_path / "ens"), "--no-plots", "--report", "paper"]) == 0
    out = capsys.readouterr().out
    assert "ensemble (weights 0.6 0.6 0.4)" in out and "selected on the test set" in out
    report = json.loads((tmp_path / "ens" / "report.json").read_text())["protocols"]["ensemble"]
    assert report["paper"]["selection"] == "selected on the test set"
    assert main(["report", runs[0], str(tmp_path / "ens")]) == 0
    assert "(paper, selected on the test set)" in capsys.readouterr().out
    assert (
        main(["linear", "--encoder", encoder_file(tmp_path), "--data", store, "--out", str(tmp_path / "std"), *FAST])
        == 0
    )
    assert "selected on the test set" not in capsys.readouterr().out
    assert "paper" not in json.loads((tmp_path / "std" / "report.json").read_text())["protocols"]["linear"]
