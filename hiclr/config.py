"""Run configuration: YAML files with `base:` inheritance, `--set` overrides, one schema of every key.

`SCHEMA` declares every key once, as a `Key` (its default, its rule from `hiclr.config_rules`, its
meaning); `ENCODER_KEYS` holds the `model` keys of each encoder. `load_config` merges

    defaults  <-  base file(s) (recursively, paths relative to the file naming them)  <-  file  <-  --set

and returns a complete config, so code reads `cfg[section][key]` and never repeats a default. Unknown
keys, encoder switches and nested values: docs/internals.md, 'Configuration'; every key: docs/configs.md.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import os
from pathlib import Path
from typing import Any

import yaml

from hiclr.common.atomic import atomic_write_text
from hiclr.common.errors import UserError
from hiclr.config_rules import (
    COUNT,
    MAX_SEED,
    ONOFF,
    POSITIVE,
    BlockPlan,
    Choice,
    Either,
    Flag,
    Int,
    Key,
    ListOf,
    Mapping,
    Num,
    Stages,
    Text,
    check_values,
)

#: The input streams (`data.stream`, `eval.streams`; `hiclr.augment.streams.to_stream` derives them).
STREAMS = ("joint", "motion", "bone")

SCHEMA: dict[str, dict[str, Key]] = {
    "run": {
        "name": Key(None, Text(none=True), "run directory name under `out`; None: derived from the config path"),
        "out": Key("checkpoints", Text(), "output root; the run writes <out>/<name>/"),
        "seed": Key(0, Int(0, MAX_SEED)),
        "save_every": Key(50, COUNT, "epoch_XXX.pt every N epochs (0: never)"),
        "checkpoint_every": Key(
            1,
            POSITIVE,
            "last.pt every N epochs, and after the last one or a stop "
            "(each write hashes, copies and fsyncs the whole state: on a GPU, where "
            "an epoch is short, a larger N is cheaper; a kill loses up to N epochs)",
        ),
        "log_every": Key(50, POSITIVE, "one metrics.jsonl line every N steps (plus one per epoch)"),
        "monitor_every": Key(
            2,
            COUNT,
            "pre-training: kNN top-1 of the query backbone every N epochs and "
            "after the last (`monitor_knn_top1`; 0: off; its cost: docs/benchmarks.md)",
        ),
        "monitor_samples": Key(
            256,
            Int(1, none=True),
            "... on this many fixed (seeded) training clips and as many test clips of data.protocol; None: all of both",
        ),
        "collapse_warning": Key(
            0.2,
            Num(0, 1),
            "warn once when an epoch's embed_std * sqrt(dim) falls "
            "below this (about 1 when spread, 0 at collapse); 0: never",
        ),
    },
    "data": {
        "path": Key("data/ntu60.h5", Text()),
        "protocol": Key("xsub", Text()),
        "view": Key("frame50", Text()),
        "stream": Key("joint", Choice(STREAMS), " | ".join(STREAMS)),
        "max_samples": Key(
            None, Int(1, none=True), "a seeded random subset of the training split (quick runs); None: all"
        ),
        "verify": Key(
            True,
            Flag(),
            "check the stored sha256 of every dataset read before training or "
            "evaluating, once per process (false or --no-verify: skip; docs/data_integrity.md)",
        ),
    },
    "model": {  # the keys of every encoder; the named encoder's own: ENCODER_KEYS
        "name": Key("stgcn", Text(), "the encoder (`hiclr.models.ENCODERS`), whose keys follow"),
        "sync_bn": Key(
            False,
            Flag(),
            "under DDP, BatchNorm statistics over all ranks' clips (false: "
            "per rank, as on one GPU and in the reference)",
        ),
        "init": Key(
            "reference",
            Text(),
            "reference (the HiCLR release: conv / linear N(0, 0.02), BN "
            "N(1, 0.02), biases 0) | torch (PyTorch's default); see hiclr/models/init.py",
        ),
    },
    "ssl": {
        "objective": Key("hiclr", Text(), "a registered objective (`hiclr.ssl.OBJECTIVES`)"),
        "dim": Key(128, Int(1, 65536)),
        "hidden": Key(256, Int(1, 65536)),
        "queue_size": Key(32768, Int(1, 2**24)),
        "momentum": Key(0.999, Num(0, 1)),
        "temperature": Key(0.07, Num(0, 100, lo_open=True)),
        "mining_epoch": Key(150, COUNT),
        "fused_views": Key(
            "auto",
            Choice(("auto", "separate", "per_view", "shared")),
            "auto: per_view on CUDA, separate on CPU (one fused call is no faster there) | "
            "per_view: the query views in one encoder call, BatchNorm statistics per view "
            "(separate calls' results) | separate (reference: a call per view) | shared "
            "(one call, statistics shared: changes results)",
        ),
        "topk": Key(1, POSITIVE, "mined positives per branch"),
        "key_init": Key(
            "random", Choice(("random", "copy")), "random (reference: own init) | copy (key encoder = query encoder)"
        ),
        "head_norm": Key(
            "none",
            Choice(("none", "batch")),
            "none (reference MoCo v2 head) | batch (BatchNorm in the head, as SimCLR)",
        ),
        "options": Key({}, Mapping(), "objective-specific extras (the further objectives), passed through"),
    },
    "augment": {
        "stages": Key(None, Stages(), "list of stages (see configs/augment/); None: the policy's default"),
        "reference_quirks": Key(True, Flag()),
        "concat_views": Key(True, Flag(), "run each stage once on all views that need it"),
        "fuse_linear": Key(True, Flag(), "compose consecutive per-joint linear maps into one"),
        "record": Key(False, Flag(), "keep what each augmentation drew (on when the objective needs it)"),
    },
    "optim": {
        "name": Key("sgd", Choice(("sgd", "adamw")), "sgd (reference) | adamw (momentum is beta1)"),
        "lr": Key(0.1, Num(0, 1e4, lo_open=True)),
        "momentum": Key(0.9, Num(0, 1)),
        "weight_decay": Key(1.0e-4, Num(0, 1)),
        "nesterov": Key(False, Flag()),
        "batch_size": Key(128, Int(1, 2**20), "global batch; each of W DDP ranks takes batch_size // W"),
        "epochs": Key(300, Int(1, 100_000)),
        "schedule": Key(
            "step",
            Choice(("step", "cosine", "constant", "release")),
            "step | cosine | constant | release (the HiCLR release's fine-tune rule: per-epoch "
            "warm-up, milestones in 1-based epochs; hiclr/engine/schedule.py)",
        ),
        "milestones": Key([250], ListOf(COUNT), "epochs after which lr *= gamma (schedule: step)"),
        "gamma": Key(0.1, Num(0, 1e4, lo_open=True)),
        "warmup_epochs": Key(0, COUNT, "linear warm-up, per step, before any schedule"),
        "min_lr": Key(0.0, Num(0, 1e4), "cosine floor"),
        "drop_last": Key(True, Flag()),
        "grad_clip": Key(0.0, Num(0), "max gradient norm; 0: off"),
    },
    "engine": {
        "device": Key("auto", Text(), "auto | cpu | cuda | cuda:N"),
        "precision": Key("auto", Choice(("auto", "bf16", "fp32")), "auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp32"),
        "compile": Key(
            False,
            Either(Flag(), Text()),
            "false | true (inductor) | default | reduce-overhead "
            "(CUDA graphs: needs optim.drop_last) | max-autotune | a backend name (eager, ...)",
        ),
        "resident": Key("auto", ONOFF, "training split on the device: auto (if it fits) | true | false"),
        "resident_fraction": Key(
            0.5, Num(0, 1, lo_open=True), "auto: resident when the split takes under this share of free memory"
        ),
        "tensorboard": Key("auto", ONOFF, "auto (when installed) | true | false"),
        "progress": Key(True, Flag(), "tqdm bar (only on a terminal, only on rank 0)"),
        "deterministic": Key(False, Flag(), "torch.use_deterministic_algorithms on CUDA"),
        "cudnn_benchmark": Key(
            True, Flag(), "CUDA: cuDNN picks the fastest convolution algorithm per shape (off under deterministic)"
        ),
        "tf32": Key(True, Flag(), "CUDA: TensorFloat-32 tensor cores for fp32 matmuls and convolutions"),
        "find_unused_parameters": Key(False, Flag(), "DDP"),
    },
    "eval": {
        "protocol": Key(None, Text(none=True)),
        "k": Key(20, POSITIVE, "kNN neighbours (InstDisc used 200)"),
        "knn_temperature": Key(0.1, Num(0, 100, lo_open=True)),
        "lr": Key(3.0, Num(0, 1e4, lo_open=True)),
        "weight_decay": Key(0.0, Num(0, 1)),
        "batch_size": Key(128, Int(1, 2**20)),
        "epochs": Key(100, Int(1, 100_000)),
        "milestones": Key([80], ListOf(COUNT)),
        "fractions": Key([0.01, 0.1], ListOf(Num(0, 1, lo_open=True))),
        "epoch_length": Key(
            "dataset",
            Choice(("dataset", "subset")),
            "semi: dataset (the release: an epoch as long as the training split, the "
            "labelled subset cycled) | subset (one pass over the subset)",
        ),
        "test_every": Key(
            1,
            POSITIVE,
            "fine-tune / semi: test after every N-th epoch and after the last; the best epoch (and "
            "`--report paper`'s) is chosen among the tested ones",
        ),
        "seeds": Key([0], ListOf(Int(0, MAX_SEED))),
        "streams": Key(["joint", "bone", "motion"], ListOf(Choice(STREAMS))),
        "ensemble": Key({"joint": 0.6, "bone": 0.6, "motion": 0.4}, Mapping(Num(0))),
        "cache_features": Key(True, Flag()),
        "feature_batch_size": Key(256, Int(1, 2**20), "clips per forward when extracting features"),
        "through_encoder": Key(False, Flag(), "linear probe through the frozen encoder every epoch"),
        "standardize": Key(False, Flag(), "linear probe on features standardised by the training mean / std"),
        "augment": Key(
            [[{"name": "temporal_crop", "padding_ratio": 6}, {"name": "shear", "amplitude": 0.5}]],
            Stages(),
            "the augmentation of the fine-tune and of `--through-encoder`, stages "
            "in the format of configs/augment/; null or []: none",
        ),
        "ensemble_runs": Key([], ListOf(Text())),
        "freeze": Key(
            [],
            ListOf(Text()),
            "encoder sub-modules (e.g. [proj]: the release's fix_conv1) whose "
            "parameters stay fixed in the fine-tune / semi protocols; dotted names as in its "
            "state_dict",
        ),
    },
}

#: The `model` keys of each encoder of `hiclr.models.ENCODERS` (its constructor's keyword arguments).
ENCODER_KEYS: dict[str, dict[str, Key]] = {
    "stgcn": {
        "in_channels": Key(3, Int(1, 1024)),
        "width": Key(16, Int(1, 4096)),
        "dropout": Key(0.5, Num(0, 1)),
        "edge_importance": Key(True, Flag()),
        "graph": Key("ntu", Text()),
        "temporal_kernel": Key(9, Int(1, 99)),
        "graph_conv": Key(
            "auto",
            Choice(("auto", "conv_first", "aggregate_first")),
            "auto (per block, the cheaper order: aggregate over the graph first when channels "
            "grow; the same function) | conv_first (reference) | aggregate_first",
        ),
    },
    "dsta": {  # DSTA-Net, the release's transformer (hiclr/models/dsta.py)
        "in_channels": Key(3, Int(1, 1024)),
        "blocks": Key(
            [
                [32, 32, 16, 1],
                [32, 32, 16, 1],
                [32, 64, 16, 2],
                [64, 64, 16, 1],
                [64, 128, 32, 2],
                [128, 128, 32, 1],
                [128, 128, 32, 1],
                [128, 256, 32, 1],
            ],
            BlockPlan(),
            "(in, out, inter channels, stride) per block (the release's plan)",
        ),
        "num_subsets": Key(3, Int(1, 64), "attention maps per block"),
        "num_joints": Key(25, Int(1, 1024)),
        "temporal_kernel": Key(7, Int(1, 99), "the 7x1 temporal convolution of each block"),
        "attention_dropout": Key(
            0.5,
            Num(0, 1),
            "dropout on each block's temporal residual (release: 0.5 "
            "in pre-training, 0 in its linear and fine-tune configs)",
        ),
    },
}


def schema_for(encoder: str) -> dict[str, dict[str, Key]]:
    """`SCHEMA` with the `model` section of `encoder`: its name (defaulting to `encoder`), its own
    keys, then `init` (the order of a resolved config)."""
    common = SCHEMA["model"]
    model = {
        "name": dataclasses.replace(common["name"], default=encoder),
        **ENCODER_KEYS[encoder],
        **{k: v for k, v in common.items() if k != "name"},
    }
    return {**SCHEMA, "model": model}


def defaults(encoder: str = "stgcn") -> dict[str, Any]:
    """A fresh copy of every default (the `model` section of `encoder`)."""
    return {
        section: {key: copy.deepcopy(declared.default) for key, declared in keys.items()}
        for section, keys in schema_for(encoder).items()
    }


def known_keys() -> dict[str, dict[str, Any]]:
    """The tree of key names a config may hold (every encoder's `model` keys), as `check_keys` reads
    it: a dict-valued default stands for its own keys."""
    model = dict(SCHEMA["model"])
    for keys in ENCODER_KEYS.values():
        model.update(keys)
    return {
        section: {key: declared.default for key, declared in keys.items()}
        for section, keys in {**SCHEMA, "model": model}.items()
    }


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Defaults <- file (with its bases) <- `--set` overrides, validated and complete (every key of
    the schema, with the named encoder's `model` keys); `None` path: defaults only."""
    cfg = {
        section: {key: copy.deepcopy(declared.default) for key, declared in keys.items()}
        for section, keys in SCHEMA.items()
    }  # the encoder's own keys follow its name
    if path is not None:
        cfg = layer(cfg, _read_with_bases(Path(path), chain=()))
    for item in overrides or []:
        apply_override(cfg, item)
    _check_sections(cfg)
    if cfg["run"]["name"] is None:
        cfg["run"]["name"] = run_name_from_path(path) if path is not None else "run"
    cfg["model"] = _complete_model(cfg["model"])
    validate_values(cfg)
    return cfg


def layer(base: dict, update: dict) -> dict:
    """`merge(base, update)`, except that a `model` section naming another encoder than `base`'s
    replaces `base`'s (keeping only `model.init`): another encoder's keys never leak into it."""
    model, current = update.get("model"), base.get("model")
    if isinstance(model, dict) and isinstance(current, dict) and _switches_encoder(current, model.get("name")):
        base = {**base, "model": {k: v for k, v in current.items() if k in ("init", "sync_bn")}}
    return merge(base, update)


def _switches_encoder(current: dict, name) -> bool:
    """Whether setting `model.name` to `name` changes the encoder of the (partial: a base file's)
    `model` section `current`; a section without a name is the default encoder's."""
    return name is not None and current.get("name", SCHEMA["model"]["name"].default) != name


def _check_sections(cfg: dict) -> None:
    for section in SCHEMA:
        if not isinstance(cfg[section], dict):
            raise UserError(f"config section `{section}` is {cfg[section]!r}; it must be a mapping of keys")


def _complete_model(model: dict) -> dict:
    """The `model` section in schema order, the named encoder's missing keys at their defaults;
    a key of another encoder is refused."""
    name = model["name"]
    if not isinstance(name, str) or name not in ENCODER_KEYS:
        close = difflib.get_close_matches(str(name), list(ENCODER_KEYS), n=1)
        raise UserError(
            f"unknown encoder {name!r} in model.name{f' (did you mean {close[0]!r}?)' if close else ''}"
            f"; known encoders: {', '.join(sorted(ENCODER_KEYS))}"
        )
    schema = schema_for(name)["model"]
    for key in model:
        if key not in schema:
            owners = " / ".join(e for e, keys in ENCODER_KEYS.items() if key in keys)
            raise UserError(
                f"model.{key} is a key of encoder {owners}, not of model.name {name!r}; remove it or change model.name"
            )
    return {key: model[key] if key in model else copy.deepcopy(declared.default) for key, declared in schema.items()}


def _read_with_bases(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise UserError(f"config inheritance loops ({cycle}); remove one of the `base:` entries")
    if not path.is_file():
        where = f" (named as base by {chain[-1]})" if chain else ""
        raise UserError(f"config file {path} does not exist{where}; check the path")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}{line}: not valid YAML ({getattr(err, 'problem', err)}); fix the syntax") from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a config must be a mapping of sections, not {type(raw).__name__}")
    bases = raw.pop("base", None)
    merged: dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else (bases or []):
        merged = layer(merged, _read_with_bases(path.parent / base, chain + (path,)))
    try:
        check_keys(raw, known_keys(), source="")
    except UnknownKey as err:
        line = _line_of(path.read_text(encoding="utf-8"), err.dotted)
        raise UserError(f"{path}{f' line {line}' if line else ''}{err}") from None
    return layer(merged, raw)


class UnknownKey(UserError):
    """A key the schema does not know; `dotted` is its full name."""

    def __init__(self, message: str, dotted: str):
        super().__init__(message)
        self.dotted = dotted


def _line_of(text: str, dotted: str) -> int | None:
    """1-based line of `dotted` (a.b.c) in a YAML text, or None."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in dotted.split("."):
        if not isinstance(node, yaml.MappingNode):
            return line
        for key, value in node.value:
            if getattr(key, "value", None) == part:
                line, node = key.start_mark.line + 1, value
                break
        else:
            return line
    return line


def merge(base: dict, update: dict) -> dict:
    """Recursive dict merge: dicts merge key by key, anything else (lists included) replaces."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def check_keys(tree: dict, schema: dict, source: str, prefix: str = "") -> None:
    """Raise `UserError` on the first key of `tree` not in `schema`, suggesting the closest."""
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if key not in schema:
            raise UnknownKey(f"{source}: unknown key `{dotted}`{_suggest(key, schema, prefix)}", dotted)
        known = schema[key]
        if isinstance(known, dict) and known:
            if not isinstance(value, dict):
                raise UnknownKey(
                    f"{source}: `{dotted}` must be a mapping of keys ({', '.join(sorted(known))}), not {value!r}",
                    dotted,
                )
            check_keys(value, known, source, prefix=f"{dotted}.")


def _suggest(key: str, schema: dict, prefix: str) -> str:
    close = difflib.get_close_matches(str(key), [str(k) for k in schema], n=1, cutoff=0.5)
    if close:
        return f"; did you mean `{prefix}{close[0]}`?"
    return f"; known keys here: {', '.join(sorted(map(str, schema)))}"


def apply_override(cfg: dict, item: str) -> None:
    """Apply one `key.sub=value` (value parsed as YAML) to `cfg`, checking the key is known."""
    if "=" not in item:
        raise UserError(f"--set {item!r}: expected key.sub=value, e.g. --set optim.lr=0.05")
    dotted, text = item.split("=", 1)
    parts = dotted.strip().split(".")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    schema: Any = known_keys()
    node = cfg
    if parts == ["model", "name"] and isinstance(cfg["model"], dict) and _switches_encoder(cfg["model"], value):
        cfg["model"] = {k: v for k, v in cfg["model"].items() if k in ("init", "sync_bn")}  # another encoder's section
    for depth, part in enumerate(parts):
        prefix = ".".join(parts[:depth]) + ("." if depth else "")
        last = depth == len(parts) - 1
        if isinstance(schema, dict) and schema:
            if part not in schema:
                raise UserError(f"--set {dotted}: unknown key `{prefix}{part}`{_suggest(part, schema, prefix)}")
            schema = schema[part]
        else:
            schema = None
        if last:
            if isinstance(value, dict) and isinstance(schema, dict) and schema:
                check_keys(value, schema, f"--set {dotted}", prefix=f"{dotted}.")
            node[part] = value
        else:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]


def validate_values(cfg: dict) -> None:
    """The type and range of every key (its `Key`'s rule), and `model.init` by its registry."""
    _check_sections(cfg)
    check_values(cfg, schema_for(_complete_model(cfg["model"])["name"]))
    from hiclr.models.init import check_init  # the registry of schemes (INIT_SCHEMES)

    check_init(cfg["model"]["init"])


def model_overrides(model: dict) -> list[str]:
    """`--set` items that give another config the encoder of this (resolved) `model` section, its
    name first (naming another encoder starts the section afresh); `model.init` is left to that config."""
    items = [f"model.name={model['name']}"]
    return items + [f"model.{k}={json.dumps(v)}" for k, v in model.items() if k not in SCHEMA["model"]]


def describe_encoder(model: dict) -> str:
    """A few words naming the encoder of a (resolved) `model` section, e.g. "ST-GCN width 4"."""
    if model["name"] == "stgcn":
        return f"ST-GCN width {model['width']}"
    if model["name"] == "dsta":
        return f"DSTA-Net transformer, {len(model['blocks'])} blocks, {model['blocks'][-1][1]}-d"
    return str(model["name"])


def run_name_from_path(path: str | os.PathLike) -> str:
    """configs/ntu60/xsub/pretrain_joint.yaml -> ntu60_xsub_pretrain_joint; elsewhere parent_stem."""
    parts = Path(path).with_suffix("").parts
    if "configs" in parts:
        last = len(parts) - 1 - parts[::-1].index("configs")
        return "_".join(parts[last + 1 :])
    return "_".join(parts[-2:])


def dump_config(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None)


def save_config(cfg: dict, path: str | os.PathLike) -> None:
    """Write the resolved config atomically (tmp, fsync, rename)."""
    atomic_write_text(path, dump_config(cfg))
