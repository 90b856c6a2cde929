"""`hiclr sweep`: the sweep file's validation, the aggregation, and a tiny sweep end to end (with resume)."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from hiclr.common.command_line import run_cli
from hiclr.common.errors import UserError
from hiclr.sweep import aggregate, format_mean_std, format_table, load_sweep, step_cost
from tests.helpers.paths import ROOT_DIR
from tests.helpers.tiny_store import write_tiny_store

ROOT = ROOT_DIR
TINY = ROOT / "configs" / "tiny"
FAST = [
    "model.width=2",
    "optim.batch_size=8",
    "ssl.queue_size=16",
    "optim.epochs=1",
    "engine.progress=false",
    "engine.tensorboard=false",
    "engine.device=cpu",
]


def write_sweep(folder: Path, **changes) -> Path:
    spec = {
        "pretrain": str(TINY / "pretrain.yaml"),
        "linear": str(TINY / "linear.yaml"),
        "knn": str(TINY / "knn.yaml"),
        "seeds": [0],
        "variants": {"hiclr": {}, "skeletonclr": {"set": ["ssl.objective=skeletonclr"]}},
    }
    spec.update(changes)
    spec = {k: v for k, v in spec.items() if v is not None}
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


# ---------------------------------------------------------------- the sweep file


def test_the_demo_ablation_file_is_valid_and_names_the_eight_variants():
    sweep = load_sweep(ROOT / "configs" / "demo" / "ablation.yaml")
    assert list(sweep.variants) == [
        "hiclr",
        "skeletonclr",
        "equivariant",
        "transitive",
        "hough_dense",
        "hough_dense_oracle",
        "hough_dense_votes",
        "hough_dense_neighbour",
    ]
    assert sweep.baselines == ["raw", "random"] and sweep.seeds == [0, 1, 2]
    assert sweep.pretrain == (ROOT / "configs" / "demo" / "pretrain.yaml").resolve()
    assert 'ssl.objective="hough_dense"' in sweep.variants["hough_dense_oracle"].overrides
    assert any('"pairing": "oracle"' in o for o in sweep.variants["hough_dense_oracle"].overrides)


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"sed": [0]}, "unknown key `sed`"),
        ({"variants": {"hiclr": {"sett": []}}}, "unknown key `variants.hiclr.sett`"),
        ({"seeds": []}, "`seeds` is []"),
        ({"seeds": None}, "has no `seeds`"),
        ({"knn": "no_such_knn.yaml"}, "no_such_knn.yaml, which does not exist"),
        ({"variants": {"x": {"config": "missing.yaml"}}}, "`variants.x.config` names"),
        ({"variants": {}}, "`variants` must be a non-empty mapping"),
        ({"variants": {"raw": {}}}, "reserved for a baseline"),
        ({"variants": {"a/b": {}}}, "not a folder name"),
        ({"baselines": ["rand"]}, "`baselines` is ['rand']"),
        ({"variants": {"x": {"set": ["ssl.objective"]}}}, "each override is a KEY=VALUE"),
    ],
)
def test_sweep_file_mistakes_are_one_sentence_naming_the_file(tmp_path, changes, expected):
    path = write_sweep(tmp_path, **changes)
    with pytest.raises(UserError) as err:
        load_sweep(path)
    message = str(err.value)
    assert str(path) in message and expected in message and "\n" not in message


def test_a_bad_override_fails_at_planning_before_anything_runs(tmp_path):
    from hiclr.sweep import plan

    path = write_sweep(tmp_path, variants={"x": {"set": {"ssl.objectiv": "hiclr"}}})
    with pytest.raises(UserError, match="variant x.*unknown key `ssl.objectiv`"):
        plan(load_sweep(path), tmp_path / "s.h5", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_variant_config_replaces_the_pretrain_file_and_set_accepts_a_mapping(tmp_path):
    from hiclr.sweep import plan

    other = tmp_path / "other.yaml"
    other.write_text(f"base: {TINY / 'pretrain.yaml'}\nmodel: {{width: 3}}\n")
    path = write_sweep(
        tmp_path, variants={"w3": {"config": "other.yaml", "set": {"ssl.options": {"pairing": "oracle"}}}}
    )
    (run,) = plan(load_sweep(path), tmp_path / "s.h5", tmp_path / "out", overrides=["optim.epochs=1"])
    assert run.pretrain_cfg["model"]["width"] == 3 and run.pretrain_cfg["ssl"]["options"] == {"pairing": "oracle"}
    assert run.pretrain_cfg["optim"]["epochs"] == 1 and run.linear_cfg["model"]["width"] == 3
    assert run.pretrain_cfg["run"]["out"] == str(tmp_path / "out" / "w3" / "seed0")


# ---------------------------------------------------------------- aggregation


def rec(variant, seed, knn, lin, step=None, kind="variant"):
    return {
        "variant": variant,
        "seed": seed,
        "kind": kind,
        "knn_top1": knn,
        "linear_top1_last": lin,
        "linear_top1_best": lin,
        "step_s": step,
    }


def test_aggregation_means_sample_std_baselines_first_and_relative_step_cost():
    records = [
        rec("hiclr", 0, 70.0, 80.0, 0.100),
        rec("hiclr", 1, 74.0, 82.0, 0.300),
        rec("dense", 0, 50.0, 60.0, 0.300),
        rec("raw", 0, 30.0, 40.0, kind="baseline"),
        rec("raw", 1, 31.0, 41.0, kind="baseline"),
    ]
    rows = aggregate(records)
    assert [r["variant"] for r in rows] == ["raw", "hiclr", "dense"]
    hiclr = rows[1]
    assert hiclr["knn_top1_mean"] == pytest.approx(72.0)
    assert hiclr["knn_top1_std"] == pytest.approx(np.std([70.0, 74.0], ddof=1))
    assert hiclr["step_s_mean"] == pytest.approx(0.2) and hiclr["step_cost_rel"] == pytest.approx(1.0)
    assert rows[2]["step_cost_rel"] == pytest.approx(1.5) and rows[2]["knn_top1_std"] is None
    assert rows[0]["step_cost_rel"] is None and rows[0]["seeds"] == [0, 1]
    table = format_table(rows).splitlines()
    assert table[0].startswith("| run | kNN top-1") and "vs hiclr" in table[0] and len(table) == 5
    assert table[2] == "| raw (baseline) | 30.50 ± 0.71 | 40.50 ± 0.71 | — | — | n=2 (0, 1) |"
    assert table[3] == "| hiclr | 72.00 ± 2.83 | 81.00 ± 1.41 | 200.0 | 1.00× | n=2 (0, 1) |"
    assert table[4] == "| dense | 50.00 | 60.00 | 300.0 | 1.50× | n=1 (0) |"


def test_without_the_reference_variant_there_is_no_relative_cost():
    rows = aggregate([rec("a", 0, 1.0, 2.0, 0.1)], reference="hiclr")
    assert rows[0]["step_cost_rel"] is None and "| 100.0 | — |" in format_table(rows)
    assert format_mean_std(None, None) == "—" and format_mean_std(1.234, 0.5, 1) == "1.2 ± 0.5"


def test_step_cost_reads_the_epoch_records(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [
        {"kind": "step", "epoch": 0, "step": 2, "loss": 9.0},
        {"kind": "epoch", "epoch": 1, "step": 4, "time_s": 2.0, "loss": 5.0},
        {"kind": "epoch", "epoch": 2, "step": 8, "time_s": 6.0, "loss": 4.0},
    ]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    cost = step_cost(path)
    assert cost["step_s"] == pytest.approx(1.5) and cost["step_s_all"] == pytest.approx(1.0)  # 6 s / 4 steps
    assert cost["steps"] == 8 and cost["epochs"] == 2 and cost["final_loss"] == 4.0
    path.write_text(json.dumps(lines[1]) + "\n")
    assert step_cost(path)["step_s"] == pytest.approx(0.5)  # one epoch: that epoch
    assert step_cost(tmp_path / "none.jsonl")["step_s"] is None


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """24 clips of 50 frames, 3 classes told apart by the coordinate that is offset, 3 performers (2 in xsub training)."""
    rng = np.random.default_rng(0)
    n = 24
    labels = (np.arange(n) // 3) % 3
    performer = np.arange(n) % 3
    x = rng.normal(size=(n, 3, 50, 25, 2)).astype(np.float32) * 0.1
    x[np.arange(n), labels] += 1.0  # class c: an offset of coordinate c
    return write_tiny_store(
        tmp_path_factory.mktemp("data") / "tiny.h5", x, labels, performer, test_performer=2, num_classes=3
    )


def hiclr(*argv):
    return run_cli("hiclr", "", "hiclr.commands", ["sweep"], "", list(map(str, argv)))


def test_a_tiny_sweep_end_to_end_then_resumed_without_pretraining_again(tmp_path, store, capsys):
    sweep = write_sweep(tmp_path, baselines=["raw"])
    out = tmp_path / "out"
    sets = [a for s in FAST for a in ("--set", s)]
    assert hiclr("sweep", sweep, "--data", store, "--out", out, *sets) == 0
    printed = capsys.readouterr().out
    lines = [x for x in printed.splitlines() if " seed 0: kNN top-1 " in x]
    assert [x.split(" ")[0] for x in lines] == ["raw", "hiclr", "skeletonclr"]
    assert all("linear top-1" in x for x in lines) and "| hiclr |" in printed

    results = json.loads((out / "results.json").read_text())
    assert [(r["variant"], r["seed"]) for r in results["runs"]] == [("raw", 0), ("hiclr", 0), ("skeletonclr", 0)]
    for r in results["runs"]:
        assert 0 <= r["knn_top1"] <= 100 and 0 <= r["linear_top1_last"] <= r["linear_top1_best"] <= 100
    assert results["runs"][0]["knn_top1"] == 100.0  # raw clips: the offset gives the class away
    hiclr_run = results["runs"][1]
    assert hiclr_run["step_s"] > 0 and hiclr_run["pretrain_wall_s"] > 0 and np.isfinite(hiclr_run["final_loss"])
    assert [r["variant"] for r in results["summary"]] == ["raw", "hiclr", "skeletonclr"]
    table = (out / "results.md").read_text()
    assert "| raw (baseline) |" in table and "| skeletonclr |" in table and "1.00×" in table
    encoder = out / "hiclr" / "seed0" / "pretrain" / "encoder.pt"
    assert (out / "hiclr" / "seed0" / "eval" / "report.json").is_file()
    cfg = yaml.safe_load((out / "skeletonclr" / "seed0" / "pretrain" / "config.yaml").read_text())
    assert cfg["ssl"]["objective"] == "skeletonclr" and cfg["optim"]["epochs"] == 1 and cfg["run"]["seed"] == 0

    # the same command again: nothing is pre-trained or evaluated again, the table is the same
    mtime = encoder.stat().st_mtime_ns
    assert hiclr("sweep", sweep, "--data", store, "--out", out, *sets) == 0
    again = capsys.readouterr().out
    assert again.count("(done before, skipped)") == 3 and encoder.stat().st_mtime_ns == mtime
    assert json.loads((out / "results.json").read_text())["runs"] == results["runs"]

    # an evaluation lost after pre-training: reuses encoder.pt; --only limits what runs, not the table
    (out / "hiclr" / "seed0" / "result.json").unlink()
    assert hiclr("sweep", sweep, "--data", store, "--out", out, "--only", "hiclr", *sets) == 0
    again = capsys.readouterr().out
    assert encoder.stat().st_mtime_ns == mtime and "skipped" not in again
    assert len(json.loads((out / "results.json").read_text())["runs"]) == 3

    # a pre-training stopped before encoder.pt: resumed from its last.pt, not started afresh
    pre = out / "skeletonclr" / "seed0" / "pretrain"
    (pre / "encoder.pt").unlink()
    (out / "skeletonclr" / "seed0" / "result.json").unlink()
    assert hiclr("sweep", sweep, "--data", store, "--out", out, "--only", "skeletonclr", *sets) == 0
    assert "resuming" in capsys.readouterr().err and (pre / "encoder.pt").is_file()
    record = json.loads((out / "skeletonclr" / "seed0" / "result.json").read_text())
    assert record["pretrain_resumed"] is True and record["step_s"] > 0

    # another config into the same folder is refused in one sentence
    assert hiclr("sweep", sweep, "--data", store, "--out", out, *sets, "--set", "optim.lr=0.5") == 1
    err = capsys.readouterr().err
    assert "another pretrain config (optim.lr" in err and err.count("\n") == 1


def test_the_strong_augmentation_ablation_changes_only_the_strong_stage_of_the_demo():
    from hiclr.config import load_config

    sweep = load_sweep(ROOT / "configs" / "demo" / "strong_ablation.yaml")
    demo = load_config(ROOT / "configs" / "demo" / "pretrain.yaml")
    strong = {}
    for name, variant in sweep.variants.items():
        cfg = load_config(variant.config, variant.overrides)
        strong[name] = [item["name"] for item in cfg["augment"]["stages"][2]]
        assert cfg["augment"]["stages"][:2] == demo["augment"]["stages"][:2]
        assert {k: v for k, v in cfg.items() if k not in ("augment", "run")} == {
            k: v for k, v in demo.items() if k not in ("augment", "run")
        }
    assert strong == {
        "joint_mask": ["joint_mask"],
        "drop_add_edges": ["drop_add_edges"],
        "skele_adain": ["skele_adain"],
        "all_three": ["skele_adain", "joint_mask", "drop_add_edges"],
    }
    assert sweep.reference == "joint_mask" and sweep.seeds == [0, 1, 2]
