"""Run configuration: one schema, inheritance, overrides, validation, the shipped configs."""

import ast
import inspect
from pathlib import Path

import pytest
import yaml

from hiclr.common.errors import UserError
from hiclr.config import ENCODER_KEYS, SCHEMA, STREAMS, defaults, load_config, save_config, schema_for
from hiclr.config_rules import Choice, Either, Int, Key, ListOf, Mapping, Num
from tests.helpers.paths import ROOT_DIR

ROOT = ROOT_DIR
CONFIGS = ROOT / "configs"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_hold_the_reference_pretraining_hyperparameters():
    cfg = load_config(None)
    assert cfg["optim"] == {
        **cfg["optim"],
        "name": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "batch_size": 128,
        "epochs": 300,
        "schedule": "step",
        "milestones": [250],
    }
    assert cfg["ssl"]["queue_size"] == 32768 and cfg["ssl"]["temperature"] == 0.07
    assert cfg["ssl"]["mining_epoch"] == 150 and cfg["ssl"]["momentum"] == 0.999
    assert cfg["model"]["width"] == 16 and cfg["engine"]["precision"] == "auto"


def test_base_is_inherited_relative_to_the_file_and_the_child_wins(tmp_path):
    write(tmp_path / "base" / "common.yaml", "optim: {lr: 0.5, epochs: 7}\nmodel: {width: 8}\n")
    write(tmp_path / "aug.yaml", "augment: {stages: [[{name: shear}]]}\n")
    child = write(tmp_path / "exp" / "run.yaml", "base: [../base/common.yaml, ../aug.yaml]\noptim: {epochs: 9}\n")
    cfg = load_config(child)
    assert cfg["optim"]["lr"] == 0.5 and cfg["optim"]["epochs"] == 9 and cfg["model"]["width"] == 8
    assert cfg["optim"]["momentum"] == 0.9  # untouched defaults stay
    assert cfg["augment"]["stages"] == [[{"name": "shear"}]]
    assert cfg["run"]["name"] == "exp_run"  # derived from the path


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
    with pytest.raises(
        UserError,
        match=r"typo.yaml line 4: unknown key `optim.weight_decy`; "
        r"did you mean `optim.weight_decay`\?",
    ):
        load_config(typo)
    section = write(tmp_path / "section.yaml", "optimizer: {lr: 0.1}\n")
    with pytest.raises(UserError, match="unknown key `optimizer`; did you mean `optim`"):
        load_config(section)
    nested = write(tmp_path / "nested.yaml", "eval: {ensemble: {joint: 1.0, bones: 0.5}}\n")
    with pytest.raises(UserError, match="eval.ensemble.bones.*did you mean `eval.ensemble.bone`"):
        load_config(nested)


def test_set_overrides_parse_yaml_values_and_check_keys():
    cfg = load_config(
        None,
        [
            "optim.lr=0.05",
            "optim.milestones=[10, 20]",
            "ssl.fused_views=shared",
            "data.path=data/x.h5",
            "run.name=my run",
            "data.max_samples=null",
        ],
    )
    assert cfg["optim"]["lr"] == 0.05 and cfg["optim"]["milestones"] == [10, 20]
    assert cfg["ssl"]["fused_views"] == "shared" and cfg["data"]["path"] == "data/x.h5"
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


@pytest.mark.parametrize(
    "dataset,protocol",
    [("ntu60", "xsub"), ("ntu60", "xview"), ("ntu120", "xsub"), ("ntu120", "xset"), ("pku1", "xsub"), ("pku2", "xsub")],
)
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


# ---------------------------------------------------------------- the schema


def every_key():
    """(dotted name, Key) of every declared key: the sections', then each encoder's model keys."""
    yield from ((f"{section}.{name}", key) for section, keys in SCHEMA.items() for name, key in keys.items())
    yield from (
        (f"model.{name} ({encoder})", key) for encoder, keys in ENCODER_KEYS.items() for name, key in keys.items()
    )


def numeric_rules(rule):
    """The Int / Num rules inside `rule` (lists, mappings and alternatives included)."""
    if isinstance(rule, (Int, Num)):
        yield rule
    elif isinstance(rule, ListOf):
        yield from numeric_rules(rule.item)
    elif isinstance(rule, Mapping) and rule.values is not None:
        yield from numeric_rules(rule.values)
    elif isinstance(rule, Either):
        yield from numeric_rules(rule.first)
        yield from numeric_rules(rule.second)


def test_every_key_is_declared_once_with_a_default_its_rule_accepts_and_a_range_when_numeric():
    for dotted, key in every_key():
        assert isinstance(key, Key), dotted
        accepted = (key.default is None and key.rule.none) or key.rule.check(key.default) == key.default
        assert accepted, f"{dotted}: the default {key.default!r} breaks its own rule"
        for rule in numeric_rules(key.rule):
            assert rule.lo is not None or rule.hi is not None, f"{dotted}: a number without a range"
    for encoder, keys in ENCODER_KEYS.items():  # an encoder key never shadows a key of every encoder
        assert not set(keys) & set(SCHEMA["model"]), encoder


def test_evaluation_keys_are_in_the_schema_without_importing_the_evaluation_modules():
    assert {"feature_batch_size", "through_encoder", "standardize", "augment", "ensemble_runs"} <= set(SCHEMA["eval"])
    assert SCHEMA["eval"]["feature_batch_size"].default == 256 and SCHEMA["run"]["seed"].default == 0
    assert load_config(None, ["eval.feature_batch_size=64"])["eval"]["feature_batch_size"] == 64


def test_the_stream_names_are_the_ones_every_stream_key_allows():
    assert STREAMS == ("joint", "motion", "bone")
    assert SCHEMA["data"]["stream"].rule == Choice(STREAMS)
    assert SCHEMA["eval"]["streams"].rule == ListOf(Choice(STREAMS))
    from hiclr.augment.streams import STREAMS as converted

    assert converted is STREAMS


@pytest.mark.parametrize(
    "path",
    [
        None,
        CONFIGS / "ntu60" / "xsub" / "pretrain_bone.yaml",
        CONFIGS / "demo" / "pretrain.yaml",
        CONFIGS / "tiny" / "pretrain.yaml",
    ],
)
def test_a_loaded_config_holds_every_key_of_the_schema_and_nothing_else(path):
    cfg = load_config(path)
    schema = schema_for(cfg["model"]["name"])
    assert list(cfg) == list(schema)
    for section, keys in schema.items():
        assert list(cfg[section]) == list(keys), section  # every key, in the schema's order
    untouched = load_config(None)
    assert untouched == {**defaults(), "run": {**defaults()["run"], "name": "run"}}


@pytest.mark.parametrize(
    "override",
    [
        "eval.feature_batch_size=0",
        "model.width=abc",
        "eval.through_encoder=3",
        "run.seed=1.5",
        "optim.lr=0",
        "engine.resident_fraction=2",
        "eval.streams=[joint, skeleton]",
        "eval.ensemble.joint=-1",
    ],
)
def test_a_wrong_type_or_range_is_one_sentence_naming_the_key(override):
    dotted = override.split("=")[0]
    section, key = dotted.split(".")[:2]
    with pytest.raises(UserError) as err:
        load_config(None, [override])
    message = str(err.value)
    assert "\n" not in message and message.count(". ") == 0
    assert f"`{section}.{key}` is" in message and "must be" in message and f"--set {section}.{key}=" in message


def test_a_section_that_is_not_a_mapping_is_named():
    with pytest.raises(UserError, match="config section `optim` is 5; it must be a mapping of keys"):
        load_config(None, ["optim=5"])


def test_the_encoder_tables_match_the_registry_and_the_constructors():
    from hiclr.models import ENCODERS, build_encoder

    assert set(ENCODER_KEYS) == set(ENCODERS)
    for name, keys in ENCODER_KEYS.items():
        parameters = inspect.signature(ENCODERS[name]).parameters
        assert set(keys) <= set(parameters), name
        assert build_encoder({k: v for k, v in defaults(name)["model"].items() if k != "init"}) is not None


def test_the_model_section_holds_the_named_encoders_keys_only(monkeypatch):
    monkeypatch.setitem(ENCODER_KEYS, "toy", {"depth": Key(2, Int(1, 8), "blocks")})
    toy = load_config(None, ["model.name=toy"])
    assert toy["model"] == {"name": "toy", "depth": 2, "sync_bn": False, "init": "reference"}
    assert load_config(None, ["model.name=toy", "model.depth=5"])["model"]["depth"] == 5
    with pytest.raises(UserError, match=r"model.depth is a key of encoder toy, not of model.name 'stgcn'"):
        load_config(None, ["model.depth=3"])
    with pytest.raises(UserError, match=r"model.width is a key of encoder stgcn, not of model.name 'toy'"):
        load_config(None, ["model.name=toy", "model.width=3"])
    with pytest.raises(UserError, match=r"`model.depth` is 9; it must be an integer from 1 to 8"):
        load_config(None, ["model.name=toy", "model.depth=9"])
    with pytest.raises(
        UserError,
        match=r"unknown encoder 'stgnc' in model.name \(did you mean 'stgcn'\?\); known encoders: dsta, stgcn",
    ):
        load_config(None, ["model.name=stgnc"])


def config_reads_with_get(path: Path) -> list[str]:
    """`.get(` calls on a resolved config: on `cfg`, on `cfg[...]`, or on a name a function bound to
    `cfg[...]` (e.g. `ev = cfg["eval"]`), as "file:line: call"."""

    def on_config(node, bound):
        if isinstance(node, ast.Name):
            return node.id == "cfg" or node.id in bound
        if isinstance(node, ast.Subscript):
            return on_config(node.value, bound)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and node.args:
            return on_config(node.args[0], bound)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            return on_config(node.func.value, bound)
        return False

    found = []
    for function in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        bound = {a.arg for a in function.args.args if a.arg in SCHEMA}  # e.g. `optim` of lr_factor_fn
        for node in ast.walk(function):
            if isinstance(node, ast.Assign):
                targets = node.targets[0].elts if isinstance(node.targets[0], ast.Tuple) else node.targets
                values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value] * len(targets)
                bound |= {
                    t.id
                    for t, v in zip(targets, values)
                    if isinstance(t, ast.Name) and isinstance(v, ast.Subscript) and on_config(v, set())
                }
        found += [
            f"{path.as_posix()}:{node.lineno}: {ast.unparse(node)}"
            for node in ast.walk(function)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and on_config(node.func.value, bound)
        ]
    return found


def test_config_reads_with_get_are_found(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def f(cfg, optim):\n    ev = cfg['eval']\n    return (ev.get('k', 20), cfg['run'].get('seed'),"
        " optim.get('gamma', 0.1), cfg.get('data', {}), report.get('stream'))\n"
    )
    assert len(config_reads_with_get(sample)) == 4  # all but the report's


def test_no_code_reads_a_resolved_config_with_get_and_a_repeated_default():
    """The loaded config is complete, so `cfg[section][key]`; a `.get(key, default)` would state a
    default a second time (and mask a key missing from the schema)."""
    found = [hit for path in sorted((ROOT / "hiclr").rglob("*.py")) for hit in config_reads_with_get(path)]
    assert found == []
