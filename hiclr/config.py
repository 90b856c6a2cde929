"""Run configuration: YAML files with `base:` inheritance, `--set` overrides, a schema of known keys.

A config is a dict of sections (`run`, `data`, `model`, `ssl`, `augment`, `optim`, `engine`,
`eval`). `SCHEMA` below holds every known key with its default; `load_config` merges, in order,

    defaults  <-  base file(s) (recursively, paths relative to the file naming them)  <-  file  <-  --set

and rejects any key the schema does not know with one sentence naming it (file and dotted key) and
suggesting the closest known key. The `model` keys depend on the encoder (`ENCODER_DEFAULTS`): a
file or `--set model.name=...` that names another encoder than what it builds on starts that
encoder's section afresh (only `model.init` is kept), the encoder's defaults fill what is not set,
and a key of another encoder is refused. Values inside a dict-valued default (e.g. `eval.ensemble`) are
checked the same way, except an empty-dict default (e.g. `ssl.options`), which is an open mapping;
lists (e.g. `augment.stages`) are opaque here and validated by their owner.

Other modules may add a section or keys with `extend_schema(section, defaults)` at import time
(e.g. an evaluation module with protocol-specific keys); the resolved config, saved with every run
by `save_config`, then holds them too.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
from pathlib import Path
from typing import Any

import yaml

from data_prep.errors import UserError
from data_prep.atomic import atomic_write_text
from hiclr.config_rules import add_rules, check_values

#: Each encoder's `model` keys and their defaults; `model.name` picks the encoder, `model.init`
#: (the initialisation) is shared. A config naming another encoder than its base starts that
#: encoder's section afresh (see `load_config`). Kept equal to the constructors' defaults by a test.
ENCODER_DEFAULTS: dict[str, dict[str, Any]] = {
    "stgcn": {
        "in_channels": 3,
        "width": 16,
        "dropout": 0.5,
        "edge_importance": True,
        "graph": "ntu",
        "temporal_kernel": 9,
        "graph_conv": "auto",    # auto (per block, the cheaper order: aggregate over the graph first when
        #                          channels grow; the same function) | conv_first (reference) | aggregate_first
    },
    "dsta": {                    # DSTA-Net, the release's transformer (hiclr/models/dsta.py)
        "in_channels": 3,
        "blocks": [[32, 32, 16, 1], [32, 32, 16, 1], [32, 64, 16, 2], [64, 64, 16, 1],
                   [64, 128, 32, 2], [128, 128, 32, 1], [128, 128, 32, 1], [128, 256, 32, 1]],
        #                          (in, out, inter channels, stride) per block
        "num_subsets": 3,        # attention maps per block
        "num_joints": 25,
        "temporal_kernel": 7,
        "attention_dropout": 0.5,  # dropout on each block's temporal residual (release: 0.5 in
        #                            pre-training, 0 in its linear and fine-tune configs)
    },
}
SHARED_MODEL_KEYS = ("name", "init")

SCHEMA: dict[str, dict[str, Any]] = {
    "run": {
        "name": None,            # run directory name under `out`; None: derived from the config path
        "out": "checkpoints",    # output root; the run writes <out>/<name>/
        "seed": 0,
        "save_every": 50,        # epoch_XXX.pt every N epochs (0: never); last.pt every epoch
        "log_every": 50,         # one metrics.jsonl line every N steps (plus one per epoch)
        "monitor_every": 2,      # pre-training: kNN top-1 of the query backbone every N epochs and after
        #                          the last (`monitor_knn_top1`; 0: off). One look costs about 6 % of a
        #                          demo epoch on CPU (643 clips; negligible at NTU scale): every 2, 2.7 %
        "monitor_samples": 256,  # ... on this many fixed (seeded) training clips and as many test clips
        #                          of data.protocol; None: all of both
        "collapse_warning": 0.2,  # warn once when an epoch's embed_std * sqrt(dim) falls below this
        #                           (about 1 when spread, 0 at collapse); 0: never
    },
    "data": {
        "path": "data/ntu60.h5",
        "protocol": "xsub",
        "view": "frame50",
        "stream": "joint",       # joint | motion | bone
        "max_samples": None,     # a seeded random subset of the training split (quick runs); None: all
    },
    "model": {"name": "stgcn", **copy.deepcopy(ENCODER_DEFAULTS["stgcn"]),
              "init": "reference"},   # reference (the HiCLR release: conv / linear N(0, 0.02), BN
    #                                   N(1, 0.02), biases 0) | torch (PyTorch's default); see hiclr/models/init.py
    "ssl": {
        "objective": "hiclr",
        "dim": 128,
        "hidden": 256,
        "queue_size": 32768,
        "momentum": 0.999,
        "temperature": 0.07,
        "mining_epoch": 150,
        "fused_views": "auto",   # auto: per_view on CUDA, separate on CPU (fusing measured slower there) |
        #                          per_view: the query views in one encoder call, BatchNorm statistics per
        #                          view (separate calls' results) | separate (reference: a call per view) |
        #                          shared (one call, statistics shared: changes results)
        "topk": 1,               # mined positives per branch
        "key_init": "random",    # random (reference: own init) | copy (key encoder = query encoder)
        "head_norm": "none",     # none (reference MoCo v2 head) | batch (BatchNorm in the head, as SimCLR)
        "options": {},           # objective-specific extras (the further objectives), passed through
    },
    "augment": {
        "stages": None,          # list of stages (see configs/augment/); None: the policy's default
        "reference_quirks": True,
        "concat_views": True,    # run each stage once on all views that need it
        "fuse_linear": True,     # compose consecutive per-joint linear maps into one
        "record": False,         # keep what each augmentation drew (on when the objective needs it)
    },
    "optim": {
        "name": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 1.0e-4,
        "nesterov": False,
        "batch_size": 128,       # global batch; each of W DDP ranks takes batch_size // W
        "epochs": 300,
        "schedule": "step",      # step | cosine | constant
        "milestones": [250],     # epochs after which lr *= gamma (schedule: step)
        "gamma": 0.1,
        "warmup_epochs": 0,      # linear warm-up, per step, before any schedule
        "min_lr": 0.0,           # cosine floor
        "drop_last": True,
        "grad_clip": 0.0,        # max gradient norm; 0: off
    },
    "engine": {
        "device": "auto",        # auto | cpu | cuda | cuda:N
        "precision": "auto",     # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp32
        "compile": False,        # false | true (inductor) | default | reduce-overhead (CUDA graphs: needs
        #                          optim.drop_last) | max-autotune | a backend name (eager, ...)
        "resident": "auto",      # training split on the device: auto (if it fits) | true | false
        "resident_fraction": 0.5,  # auto: resident when the split takes under this share of free memory
        "tensorboard": "auto",   # auto (when installed) | true | false
        "progress": True,        # tqdm bar (only on a terminal, only on rank 0)
        "deterministic": False,  # torch.use_deterministic_algorithms on CUDA
        "find_unused_parameters": False,  # DDP
    },
    "eval": {
        "protocol": None,
        "k": 20,                 # kNN neighbours (InstDisc used 200)
        "knn_temperature": 0.1,
        "lr": 3.0,
        "weight_decay": 0.0,
        "batch_size": 128,
        "epochs": 100,
        "milestones": [80],
        "fractions": [0.01, 0.1],
        "seeds": [0],
        "streams": ["joint", "bone", "motion"],
        "ensemble": {"joint": 0.6, "bone": 0.6, "motion": 0.4},
        "cache_features": True,
    },
}

STREAMS = ("joint", "motion", "bone")


def extend_schema(section: str, defaults: dict[str, Any], rules: dict[str, Any] | None = None) -> None:
    """Add keys (with defaults and their `hiclr.config_rules` rules) to a section, creating it if new;
    existing defaults are kept."""
    add_rules(section, defaults, rules)
    target = SCHEMA.setdefault(section, {})
    for key, value in defaults.items():
        target.setdefault(key, copy.deepcopy(value))


def defaults() -> dict[str, Any]:
    """A fresh copy of every default."""
    return copy.deepcopy(SCHEMA)


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Defaults <- file (with its bases) <- `--set` overrides, validated; `None` path: defaults only."""
    cfg = defaults()
    if path is not None:
        cfg = layer(cfg, _read_with_bases(Path(path), chain=()))
    for item in overrides or []:
        apply_override(cfg, item)
    if cfg["run"].get("name") is None:
        cfg["run"]["name"] = run_name_from_path(path) if path is not None else "run"
    fill_model_defaults(cfg)
    validate_values(cfg)
    return cfg


def key_schema() -> dict[str, dict[str, Any]]:
    """The keys a config may name: `SCHEMA`, with the `model` keys of every encoder."""
    model = {key: None for key in SHARED_MODEL_KEYS}
    for keys in ENCODER_DEFAULTS.values():
        model.update(dict.fromkeys(keys))
    return {**SCHEMA, "model": {**model, **SCHEMA["model"]}}


def layer(base: dict, update: dict) -> dict:
    """`merge(base, update)`, except that a `model` section naming another encoder than `base`'s
    replaces `base`'s (keeping only `model.init`): another encoder's keys never leak into it."""
    model = update.get("model")
    if isinstance(model, dict) and _switches_encoder(base, model.get("name")):
        base = {**base, "model": {k: v for k, v in base["model"].items() if k == "init"}}
    return merge(base, update)


def _switches_encoder(cfg: dict, name) -> bool:
    current = cfg.get("model")
    return name is not None and isinstance(current, dict) and current.get("name", "stgcn") != name


def fill_model_defaults(cfg: dict) -> None:
    """Give the `model` section the defaults of its encoder (`ENCODER_DEFAULTS[model.name]`) for the
    keys it does not set, in place."""
    model = cfg.get("model")
    if not isinstance(model, dict):
        return
    name = model.get("name", "stgcn")
    if isinstance(name, str) and name in ENCODER_DEFAULTS:
        cfg["model"] = {"name": name, **copy.deepcopy(ENCODER_DEFAULTS[name]), **model}


def check_model_keys(cfg: dict) -> None:
    """Refuse a `model` key that the named encoder does not take, in one sentence."""
    model = cfg.get("model") or {}
    name = model.get("name", "stgcn")
    if not isinstance(name, str) or name not in ENCODER_DEFAULTS:
        close = difflib.get_close_matches(str(name), list(ENCODER_DEFAULTS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"model.name is {name!r}{hint}; known encoders: {', '.join(ENCODER_DEFAULTS)}")
    known = set(ENCODER_DEFAULTS[name]) | set(SHARED_MODEL_KEYS)
    for key in model:
        if key not in known:
            owners = [other for other, keys in ENCODER_DEFAULTS.items() if key in keys]
            whose = f" (a key of {', '.join(owners)})" if owners else ""
            raise UserError(f"model.{key}{whose} is not a key of encoder {name!r}; its keys are "
                            f"{', '.join(sorted(known))}. Remove it, or set model.name first: "
                            "naming another encoder starts its model section afresh")


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
        check_keys(raw, key_schema(), source="")
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
                raise UnknownKey(f"{source}: `{dotted}` must be a mapping of keys "
                                 f"({', '.join(sorted(known))}), not {value!r}", dotted)
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
    schema: Any = key_schema()
    node = cfg
    if parts == ["model", "name"] and _switches_encoder(cfg, value):
        cfg["model"] = {k: v for k, v in cfg["model"].items() if k == "init"}  # another encoder's section
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
    """The type and range of every key (`hiclr.config_rules`), then checks across keys."""
    check_values(cfg, key_schema())
    check_model_keys(cfg)
    stream = cfg["data"].get("stream")
    if stream not in STREAMS:
        raise UserError(f"data.stream is {stream!r}; use one of {', '.join(STREAMS)}")
    optim = cfg["optim"]
    if optim["schedule"] not in ("step", "cosine", "constant"):
        raise UserError(f"optim.schedule is {optim['schedule']!r}; use step, cosine or constant")
    if optim["name"] != "sgd":
        raise UserError(f"optim.name is {optim['name']!r}; only sgd is available")
    for key in ("epochs", "batch_size"):
        if not isinstance(optim[key], int) or optim[key] < 1:
            raise UserError(f"optim.{key} is {optim[key]!r}; it must be a positive integer")
    if "init" in cfg.get("model", {}):
        from hiclr.models.init import check_init   # the registry of schemes (INIT_SCHEMES)
        check_init(cfg["model"]["init"])
    run = cfg["run"]
    every, samples = run.get("monitor_every"), run.get("monitor_samples")
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise UserError(f"run.monitor_every is {every!r}; use a number of epochs (0: off)")
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
        raise UserError(f"run.monitor_samples is {samples!r}; use a positive number of clips or null (all)")
    if cfg["engine"]["precision"] not in ("auto", "bf16", "fp32"):
        raise UserError(f"engine.precision is {cfg['engine']['precision']!r}; use auto, bf16 or fp32")


def model_overrides(model: dict) -> list[str]:
    """`--set` items that give another config the encoder of this `model` section (its name first:
    naming another encoder starts the section afresh); `model.init` is left to that config."""
    items = [f"model.name={model.get('name', 'stgcn')}"]
    return items + [f"model.{k}={json.dumps(v)}" for k, v in model.items() if k not in SHARED_MODEL_KEYS]


def describe_encoder(model: dict) -> str:
    """A few words naming the encoder of a `model` section, e.g. "ST-GCN width 4"."""
    name = model.get("name", "stgcn")
    if name == "stgcn":
        return f"ST-GCN width {model.get('width', ENCODER_DEFAULTS['stgcn']['width'])}"
    if name == "dsta":
        blocks = model.get("blocks", ENCODER_DEFAULTS["dsta"]["blocks"])
        return f"DSTA-Net transformer, {len(blocks)} blocks, {blocks[-1][1]}-d"
    return str(name)


def run_name_from_path(path: str | os.PathLike) -> str:
    """configs/ntu60/xsub/pretrain_joint.yaml -> ntu60_xsub_pretrain_joint; elsewhere parent_stem."""
    parts = Path(path).with_suffix("").parts
    if "configs" in parts:
        last = len(parts) - 1 - parts[::-1].index("configs")
        return "_".join(parts[last + 1:])
    return "_".join(parts[-2:])


def dump_config(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None)


def save_config(cfg: dict, path: str | os.PathLike) -> None:
    """Write the resolved config atomically (tmp, fsync, rename)."""
    atomic_write_text(path, dump_config(cfg))
