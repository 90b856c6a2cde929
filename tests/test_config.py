"""Run configuration: inheritance, overrides, validation, the shipped configs."""

from pathlib import Path

import pytest
import yaml

from data_prep.errors import UserError
from hiclr.config import SCHEMA, defaults, extend_schema, load_config, save_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_hold_the_reference_pretraining_hyperparameters():
    cfg = load_config(None)
    assert cfg["optim"] == {**cfg["optim"], "name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4,
                            "batch_size": 128, "epochs": 300, "schedule": "step", "milestones": [250]}
    assert cfg["ssl"]["queue_size"] == 32768 and cfg["ssl"]["temperature"] == 0.07
    assert cfg["ssl"]["mining_epoch"] == 150 and cfg["ssl"]["momentum"] == 0.999
    assert cfg["model"]["width"] == 16 and cfg["engine"]["precision"] == "auto"


def test_base_is_inherited_relative_to_the_file_and_the_child_wins(tmp_path):
    write(tmp_path / "base" / "common.yaml", "optim: {lr: 0.5, epochs: 7}\nmodel: {width: 8}\n")
    write(tmp_path / "aug.yaml", "augment: {stages: [[{name: shear}]]}\n")
    child = write(tmp_path / "exp" / "run.yaml",
                  "base: [../base/common.yaml, ../aug.yaml]\noptim: {epochs: 9}\n")
    cfg = load_config(child)
    assert cfg["optim"]["lr"] == 0.5 and cfg["optim"]["epochs"] == 9 and cfg["model"]["width"] == 8
    assert cfg["optim"]["momentum"] == 0.9                       # untouched defaults stay
    assert cfg["augment"]["stages"] == [[{"name": "shear"}]]
    assert cfg["run"]["name"] == "exp_run"                       # derived from the path


def test_inheritance_loops_and_missing_bases_are_clear_errors(tmp_path):
    write(tmp_path / "a.yaml", "base: b.yaml\n")
    write(tmp_path / "b.yaml", "base: a.yaml\n")
    with pytest.raises(UserError, match="loops"):
        load_config(tmp_path / "a.yaml")
    write(tmp_path / "c.yaml", "base: nowhere.yaml\n")
    with pytest.raises(UserError, match="nowhere.yaml does not exist"):
        load_config(tmp_path / "c.yaml")


def test_an_unknown_key_names_file_and_key_and_suggests_the_closest(tmp_path):
    bad = write(tmp_path / "bad.yaml", "optim: {learning_rate: 0.1, lr: 0.2}\n")
    with pytest.raises(UserError) as err:
        load_config(bad)
    assert "bad.yaml" in str(err.value) and "optim.learning_rate" in str(err.value)
    typo = write(tmp_path / "typo.yaml", "run: {seed: 1}\noptim:\n  lr: 0.1\n  weight_decy: 0.1\n")
    with pytest.raises(UserError, match=r"typo.yaml line 4: unknown key `optim.weight_decy`; "
                                        r"did you mean `optim.weight_decay`\?"):
        load_config(typo)
    section = write(tmp_path / "section.yaml", "optimizer: {lr: 0.1}\n")
    with pytest.raises(UserError, match="unknown key `optimizer`; did you mean `optim`"):
        load_config(section)
    nested = write(tmp_path / "nested.yaml", "eval: {ensemble: {joint: 1.0, bones: 0.5}}\n")
    with pytest.raises(UserError, match="eval.ensemble.bones.*did you mean `eval.ensemble.bone`"):
        load_config(nested)


def test_set_overrides_parse_yaml_values_and_check_keys():
    cfg = load_config(None, ["optim.lr=0.05", "optim.milestones=[10, 20]", "ssl.fused_views=true",
                             "data.path=data/x.h5", "run.name=my run", "data.max_samples=null"])
    assert cfg["optim"]["lr"] == 0.05 and cfg["optim"]["milestones"] == [10, 20]
    assert cfg["ssl"]["fused_views"] is True and cfg["data"]["path"] == "data/x.h5"
    assert cfg["run"]["name"] == "my run" and cfg["data"]["max_samples"] is None
    with pytest.raises(UserError, match="did you mean `optim.momentum`"):
        load_config(None, ["optim.momentun=0.8"])
    with pytest.raises(UserError, match="key.sub=value"):
        load_config(None, ["optim.lr"])
    # an open mapping (objective-specific options) takes any key
    assert load_config(None, ["ssl.options.lambda_eq=0.5"])["ssl"]["options"] == {"lambda_eq": 0.5}


def test_bad_values_are_rejected_with_the_key():
    with pytest.raises(UserError, match="data.stream"):
        load_config(None, ["data.stream=skeleton"])
    with pytest.raises(UserError, match="optim.schedule"):
        load_config(None, ["optim.schedule=linear"])
    with pytest.raises(UserError, match="optim.epochs"):
        load_config(None, ["optim.epochs=0"])


def test_invalid_yaml_reports_the_line(tmp_path):
    bad = write(tmp_path / "broken.yaml", "optim:\n  lr: 0.1\n  epochs: [1, 2\n")
    with pytest.raises(UserError, match="broken.yaml line"):
        load_config(bad)


def test_resolved_config_round_trips_through_the_saved_file(tmp_path):
    cfg = load_config(CONFIGS / "ntu60" / "xsub" / "pretrain_joint.yaml", ["optim.lr=0.2"])
    save_config(cfg, tmp_path / "run" / "config.yaml")
    assert load_config(tmp_path / "run" / "config.yaml") == cfg
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["optim"]["lr"] == 0.2


def test_extend_schema_adds_keys_without_touching_existing_defaults():
    extend_schema("eval", {"test_only_key_for_schema": 3, "k": 5})
    try:
        assert load_config(None, ["eval.test_only_key_for_schema=4"])["eval"]["test_only_key_for_schema"] == 4
        assert defaults()["eval"]["k"] == 20    # the kNN default, not the extension's 5
    finally:
        SCHEMA["eval"].pop("test_only_key_for_schema")


@pytest.mark.parametrize("dataset,protocol", [("ntu60", "xsub"), ("ntu60", "xview"), ("ntu120", "xsub"),
                                              ("ntu120", "xset"), ("pku1", "xsub"), ("pku2", "xsub")])
def test_every_shipped_pretraining_config_loads_with_the_reference_schedule(dataset, protocol):
    for stream in ("joint", "motion", "bone"):
        cfg = load_config(CONFIGS / dataset / protocol / f"pretrain_{stream}.yaml")
        assert cfg["data"]["stream"] == stream and cfg["data"]["protocol"] == protocol
        assert cfg["run"]["name"] == f"{dataset}_{protocol}_pretrain_{stream}"
        optim = cfg["optim"]
        assert (optim["lr"], optim["momentum"], optim["weight_decay"], optim["batch_size"]) == (0.1, 0.9, 1e-4, 128)
        expected = (1500, [1250], 750) if dataset == "pku2" else (300, [250], 150)
        assert (optim["epochs"], optim["milestones"], cfg["ssl"]["mining_epoch"]) == expected
        assert len(cfg["augment"]["stages"]) == 3 and cfg["augment"]["reference_quirks"] is True


def test_tiny_and_demo_configs_load_small():
    tiny = load_config(CONFIGS / "tiny" / "pretrain.yaml")
    demo = load_config(CONFIGS / "demo" / "pretrain.yaml")
    for cfg in (tiny, demo):
        assert cfg["augment"]["stages"] and cfg["data"]["max_samples"] is not None
    assert tiny["model"]["width"] < 16 and tiny["optim"]["epochs"] <= 3
