"""`--encoder raw | random`: the raw-input and random-init baselines of the frozen protocols."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from hiclr.augment.streams import to_stream
from hiclr.eval.baselines import Baseline, build_baseline
from hiclr.eval.common import state_checksum
from tests.hiclr.commands.test_evaluate import FAST, main
from tests.hiclr.eval.test_linear import tiny_config, write_tiny_store


@pytest.fixture
def store(tmp_path):
    """48 clips whose classes differ by a small x offset under larger noise: kNN on the raw
    coordinates is right for some test clips and wrong for others."""
    path = write_tiny_store(tmp_path / "tiny.h5", n=48)
    rng = np.random.default_rng(1)
    with h5py.File(path, "r+") as f:
        labels = f["samples/label"][:]
        x = rng.normal(size=f["views/frame50"].shape).astype(np.float32)
        x[:, 0] += 0.15 * labels[:, None, None, None]
        f["views/frame50"][...] = x
    return path


def read(run):
    return json.loads((run / "report.json").read_text()), (run / "report.md").read_text()


def parts(store):
    from hiclr.data import load_split

    return load_split(store, "xsub", "train"), load_split(store, "xsub", "test")


@pytest.mark.parametrize("stream", ["joint", "bone"])
def test_knn_on_raw_input_is_cosine_knn_on_the_flattened_coordinates(tmp_path, store, stream):
    from hiclr.eval.knn import knn_evaluate

    run = tmp_path / "raw"
    assert (
        main(
            [
                "knn",
                "--encoder",
                "raw",
                "--data",
                store,
                "--out",
                str(run),
                "--k",
                "5",
                "--set",
                f"data.stream={stream}",
                *FAST,
            ]
        )
        == 0
    )
    report, md = read(run)
    train, test = parts(store)
    flat = lambda x: to_stream(x, stream).reshape(len(x), -1)  # noqa: E731
    expected = knn_evaluate(flat(train.x), train.labels, flat(test.x), test.labels, 3, k=5, temperature=0.1)
    knn = report["protocols"]["knn"]
    assert 0 < expected["top1"] < 100  # the comparison has power
    for key in ("top1", "top5", "per_class", "confusion"):
        assert knn[key] == expected[key], key
    encoder = report["encoder"]
    assert encoder["path"] is None and encoder["description"] == f"raw input (frame50, {stream})"
    assert encoder["feature_dim"] == 3 * 12 * 25 * 2
    assert f"- encoder: raw input (frame50, {stream})" in md


def test_linear_probe_on_raw_input_is_the_probe_on_standardised_flattened_coordinates(tmp_path, store):
    from hiclr.eval.linear import fit_linear, run_linear, schedule_from_config, standardize

    cfg = tiny_config(store, standardize=True)
    entry = run_linear(cfg, Baseline("raw"), out=tmp_path / "r", progress=False, plots=False)
    train, test = parts(store)
    train_f, test_f = standardize(train.x.reshape(len(train), -1), test.x.reshape(len(test), -1))
    direct = fit_linear(train_f, train.labels, test_f, test.labels, 3, None, schedule_from_config(cfg), seed=0)
    assert entry["top1_last"] == direct.last["top1"] and entry["history"] == direct.history
    assert "standardised" in entry["mode"]
    assert read(tmp_path / "r")[0]["encoder"]["description"] == "raw input (frame50, joint)"


def test_random_baseline_is_the_seeded_architecture_with_batchnorm_re_estimated(store):
    from hiclr.features import recalibrate_batchnorm
    from hiclr.models import build_encoder

    cfg = tiny_config(store)
    train, _ = parts(store)
    module, description = build_baseline("random", cfg, train)
    assert description == "random init (reference), BatchNorm re-estimated" and not module.training
    bns = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert bns and all(m.running_mean.abs().sum() > 0 and int(m.num_batches_tracked) > 0 for m in bns)
    # the demo's recipe, which the baseline replaces: seed, build from model.*, re-estimate
    torch.manual_seed(0)
    recipe = recalibrate_batchnorm(build_encoder(cfg["model"]), train.x)
    assert state_checksum(module) == state_checksum(recipe)
    again, _ = build_baseline("random", cfg, train)
    assert state_checksum(again) == state_checksum(module)
    cfg["run"]["seed"] = 1
    other, _ = build_baseline("random", cfg, train)
    assert state_checksum(other) != state_checksum(module)
    # re-estimated on the stream the protocol evaluates
    cfg["run"]["seed"], cfg["data"]["stream"] = 0, "motion"
    motion, _ = build_baseline("random", cfg, train)
    torch.manual_seed(0)
    recipe = recalibrate_batchnorm(build_encoder(cfg["model"]), train.x, stream="motion")
    assert state_checksum(motion) == state_checksum(recipe) != state_checksum(module)


def test_knn_on_the_random_baseline_is_deterministic_per_seed_and_named_in_the_report(tmp_path, store):
    from hiclr.models import build_encoder

    reports = {}
    for label, seed in (("a", 0), ("b", 0), ("c", 1)):
        run = tmp_path / label
        assert (
            main(
                [
                    "knn",
                    "--encoder",
                    "random",
                    "--data",
                    store,
                    "--out",
                    str(run),
                    "--k",
                    "5",
                    "--set",
                    f"run.seed={seed}",
                    *FAST,
                ]
            )
            == 0
        )
        reports[label] = read(run)
    (a, md), (b, _), (c, _) = reports["a"], reports["b"], reports["c"]
    assert a["protocols"]["knn"]["top1"] == b["protocols"]["knn"]["top1"]
    assert a["protocols"]["knn"]["confusion"] == b["protocols"]["knn"]["confusion"]
    assert a["encoder"]["checksum"] == b["encoder"]["checksum"] != c["encoder"]["checksum"]
    # the CLI's encoder is the recalibrated one, not the bare random init
    torch.manual_seed(0)
    bare = build_encoder(tiny_config(store)["model"])
    assert a["encoder"]["checksum"] != state_checksum(bare)
    assert a["encoder"]["path"] is None and a["encoder"]["encoder_cfg"]["init"] == "reference"
    assert a["encoder"]["description"] == "random init (reference), BatchNorm re-estimated"
    assert "- encoder: random init (reference), BatchNorm re-estimated" in md
    run = tmp_path / "torch"
    assert (
        main(["knn", "--encoder", "random", "--data", store, "--out", str(run), "--set", "model.init=torch", *FAST])
        == 0
    )
    assert read(run)[0]["encoder"]["description"] == "random init (torch), BatchNorm re-estimated"


def test_raw_and_random_share_a_run_folder_without_sharing_features(tmp_path, store):
    run = tmp_path / "both"
    assert main(["knn", "--encoder", "raw", "--data", store, "--out", str(run), *FAST]) == 0
    raw = read(run)[0]["protocols"]["knn"]
    assert main(["linear", "--encoder", "random", "--data", store, "--out", str(run), *FAST]) == 0
    report = read(run)[0]
    assert len(list((run / "features").glob("*.pt"))) == 4  # train and test of each encoder
    assert report["encoder"]["description"].startswith("random init")
    assert report["protocols"]["knn"] == raw  # the earlier entry is kept


@pytest.mark.parametrize("protocol", ["finetune", "semi"])
def test_raw_input_with_a_protocol_that_trains_is_refused_in_one_sentence(tmp_path, store, capsys, protocol):
    run = tmp_path / "refused"
    assert main([protocol, "--encoder", "raw", "--data", store, "--out", str(run), *FAST]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("hiclr: error: --encoder raw has no network") and "\n" not in err
    assert "hiclr linear" in err and "--encoder random" in err
    assert not run.exists()


def test_finetune_from_scratch_with_the_random_baseline(tmp_path, store):
    run = tmp_path / "scratch"
    assert (
        main(
            [
                "finetune",
                "--encoder",
                "random",
                "--data",
                store,
                "--out",
                str(run),
                "--set",
                "optim.epochs=1",
                "--set",
                "optim.batch_size=12",
                "--set",
                "run.save_every=0",
                "--set",
                "engine.progress=false",
                "--set",
                "engine.tensorboard=false",
                *FAST,
            ]
        )
        == 0
    )
    report, md = read(run)
    assert report["encoder"]["description"] == "random init (reference)"  # trained, not re-estimated
    assert len(report["protocols"]["finetune"]["history"]) == 1
