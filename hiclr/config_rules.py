"""The type and range of every config key, checked when a config is loaded.

Each rule says what a value must be (`Int`, `Num`, `Flag`, `Choice`, `Text`, `ListOf`, `Mapping`,
`Stages`) and, on failure, gives one sentence naming the dotted key, the value and what is allowed,
so that `optim.lr=-1` or `model.width=0` stops at load instead of deep inside training (or, worse,
runs: a negative `optim.grad_clip` would flip every gradient). `check_values(cfg)` applies `RULES`;
a number written as text (`--set optim.lr=1e-3`, which YAML reads as a string) becomes the number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from data_prep.errors import UserError

_MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class Int:
    lo: int | None = None
    hi: int | None = None
    none: bool = False

    def check(self, value):
        if isinstance(value, int) and not isinstance(value, bool) and \
                (self.lo is None or value >= self.lo) and (self.hi is None or value <= self.hi):
            return value
        raise ValueError(f"an integer{_bounds(self.lo, self.hi)}")


@dataclass(frozen=True)
class Num:
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    none: bool = False

    def check(self, value):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok and self.lo is not None:
            ok = value > self.lo if self.lo_open else value >= self.lo
        if ok and self.hi is not None:
            ok = value <= self.hi
        if ok:
            return value
        low = "" if self.lo is None else f" {'>' if self.lo_open else '>='} {self.lo:g}"
        high = "" if self.hi is None else f"{' and' if low else ''} <= {self.hi:g}"
        raise ValueError(f"a finite number{low}{high}")


@dataclass(frozen=True)
class Flag:
    none: bool = False

    def check(self, value):
        if isinstance(value, bool):
            return value
        raise ValueError("true or false")


@dataclass(frozen=True)
class Choice:
    options: tuple
    none: bool = False

    def check(self, value):
        if any(value == o and type(value) is type(o) for o in self.options):
            return value
        raise ValueError("one of " + ", ".join(map(str, self.options)))


@dataclass(frozen=True)
class Text:
    none: bool = False

    def check(self, value):
        if isinstance(value, str) and value:
            return value
        raise ValueError("a non-empty string")


@dataclass(frozen=True)
class ListOf:
    item: Any
    none: bool = False

    def check(self, value):
        if not isinstance(value, list):
            raise ValueError(f"a list (e.g. [...]) of {_what(self.item)}")
        try:
            return [self.item.check(v) for v in value]
        except ValueError as err:
            raise ValueError(f"a list whose items are each {err}") from None


@dataclass(frozen=True)
class Mapping:
    """A mapping; `values` checks each value when given (its keys are checked by the schema)."""
    values: Any = None
    none: bool = False

    def check(self, value):
        if not isinstance(value, dict):
            raise ValueError("a mapping of keys to values")
        if self.values is None:
            return value
        try:
            return {k: self.values.check(v) for k, v in value.items()}
        except ValueError as err:
            raise ValueError(f"a mapping to {err}") from None


@dataclass(frozen=True)
class Stages:
    """An augmentation policy: a list of stages, each a list of {name: ..., ...} (checked by its owner)."""
    none: bool = True

    def check(self, value):
        if isinstance(value, list) and all(isinstance(s, list) and all(isinstance(a, dict) for a in s)
                                           for s in value):
            return value
        raise ValueError("a list of stages, each a list of {name: ..., ...} mappings (see configs/augment/)")


@dataclass(frozen=True)
class Either:
    first: Any
    second: Any
    none: bool = False

    def check(self, value):
        try:
            return self.first.check(value)
        except ValueError as one:
            try:
                return self.second.check(value)
            except ValueError as other:
                raise ValueError(f"{one} or {other}") from None


@dataclass(frozen=True)
class BlockPlan:
    """A DSTA block plan: a list of [in, out, inter channels, stride], each of four positive integers,
    each block's in equal to the previous block's out."""
    none: bool = False

    def check(self, value):
        what = ("a non-empty list of blocks [in, out, inter channels, stride] (four positive integers "
                "each, every block's in equal to the previous block's out)")
        if not isinstance(value, list) or not value:
            raise ValueError(what)
        for i, block in enumerate(value):
            if not (isinstance(block, list) and len(block) == 4 and
                    all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 65536 for n in block)):
                raise ValueError(f"{what}; block {i + 1} is not")
            if i and block[0] != value[i - 1][1]:
                raise ValueError(f"{what}; block {i + 1} takes {block[0]} channels, block {i} gives {value[i - 1][1]}")
        return value


def _bounds(lo, hi) -> str:
    if lo is not None and hi is not None:
        return f" from {lo} to {hi}"
    if lo is not None:
        return f" >= {lo}"
    return f" <= {hi}" if hi is not None else ""


def _what(rule) -> str:
    try:
        rule.check(object())
    except ValueError as err:
        return str(err)
    return "values"


POSITIVE = Int(1)
COUNT = Int(0)
ONOFF = Choice(("auto", True, False, "true", "false"))

RULES: dict[str, dict[str, Any]] = {
    "run": {
        "name": Text(none=True), "out": Text(), "seed": Int(0, _MAX_SEED), "save_every": COUNT,
        "log_every": POSITIVE, "monitor_every": COUNT, "monitor_samples": Int(1, none=True),
        "collapse_warning": Num(0, 1),
    },
    "data": {
        "path": Text(), "protocol": Text(), "view": Text(), "stream": Choice(("joint", "motion", "bone")),
        "max_samples": Int(1, none=True),
    },
    "model": {
        "name": Text(), "in_channels": Int(1, 1024), "width": Int(1, 4096), "dropout": Num(0, 1, ),
        "edge_importance": Flag(), "graph": Text(), "temporal_kernel": Int(1, 99),
        "init": Choice(("reference", "torch")),
        "graph_conv": Choice(("auto", "conv_first", "aggregate_first")),
        "blocks": BlockPlan(), "num_subsets": Int(1, 64), "num_joints": Int(1, 1024),
        "attention_dropout": Num(0, 1),
    },
    "ssl": {
        "objective": Text(), "dim": Int(1, 65536), "hidden": Int(1, 65536), "queue_size": Int(1, 2**24),
        "momentum": Num(0, 1), "temperature": Num(0, 100, lo_open=True), "mining_epoch": COUNT,
        "fused_views": Either(Choice(("auto", "separate", "per_view", "shared")), Flag()), "topk": POSITIVE, "key_init": Choice(("random", "copy")),
        "head_norm": Choice(("none", "batch")), "options": Mapping(),
    },
    "augment": {
        "stages": Stages(), "reference_quirks": Flag(), "concat_views": Flag(), "fuse_linear": Flag(),
        "record": Flag(),
    },
    "optim": {
        "name": Choice(("sgd",)), "lr": Num(0, 1e4, lo_open=True), "momentum": Num(0, 1),
        "weight_decay": Num(0, 1), "nesterov": Flag(), "batch_size": Int(1, 2**20),
        "epochs": Int(1, 100_000), "schedule": Choice(("step", "cosine", "constant")),
        "milestones": ListOf(COUNT), "gamma": Num(0, 1e4, lo_open=True), "warmup_epochs": COUNT,
        "min_lr": Num(0, 1e4), "drop_last": Flag(), "grad_clip": Num(0),
    },
    "engine": {
        "device": Text(), "precision": Choice(("auto", "bf16", "fp32")),
        "compile": Either(Flag(), Text()),                   # true / false, or a torch.compile backend
        "resident": ONOFF, "resident_fraction": Num(0, 1, lo_open=True), "tensorboard": ONOFF,
        "progress": Flag(), "deterministic": Flag(), "find_unused_parameters": Flag(),
    },
    "eval": {
        "protocol": Text(none=True), "k": POSITIVE, "knn_temperature": Num(0, 100, lo_open=True),
        "lr": Num(0, 1e4, lo_open=True), "weight_decay": Num(0, 1), "batch_size": Int(1, 2**20),
        "epochs": Int(1, 100_000), "milestones": ListOf(COUNT), "fractions": ListOf(Num(0, 1, lo_open=True)),
        "seeds": ListOf(Int(0, _MAX_SEED)), "streams": ListOf(Choice(("joint", "motion", "bone"))),
        "ensemble": Mapping(Num(0)), "cache_features": Flag(),
    },
}


@dataclass(frozen=True)
class Anything:
    none: bool = True

    def check(self, value):
        return value


def rule_from_default(value) -> Any:
    """The rule a key added without one gets: the type of its default (any value for a null default)."""
    if isinstance(value, bool):
        return Flag()
    if isinstance(value, int):
        return Int()
    if isinstance(value, float):
        return Num()
    if isinstance(value, str):
        return Text()
    if isinstance(value, list):
        return ListOf(Anything())
    if isinstance(value, dict):
        return Mapping()
    return Anything()


def add_rules(section: str, defaults: dict[str, Any], rules: dict[str, Any] | None = None) -> None:
    """Rules for keys another module adds to the schema (`hiclr.config.extend_schema`): the ones
    given, else one from each default's type; a key that already has a rule keeps it."""
    target = RULES.setdefault(section, {})
    for key, value in defaults.items():
        target.setdefault(key, (rules or {}).get(key) or rule_from_default(value))


def check_values(cfg: dict, schema: dict) -> None:
    """Check every value of `cfg` with its rule, in place (numbers written as text become numbers);
    a `UserError` names the first bad key, its value and what is allowed."""
    for section, keys in schema.items():
        values = cfg.get(section)
        if not isinstance(values, dict):
            raise UserError(f"config section `{section}` is {values!r}; it must be a mapping of keys")
        for key in keys:
            rule = RULES.get(section, {}).get(key)
            if rule is None:
                raise UserError(f"config key `{section}.{key}` has no rule in hiclr/config_rules.py; "
                                f"add one (a bug of the module that added the key)")
            if key not in values:
                continue
            value = values[key]
            if value is None and rule.none:
                continue
            try:
                values[key] = rule.check(value)
            except ValueError as err:
                raise UserError(f"`{section}.{key}` is {value!r}; it must be {err}"
                                f"{' or null' if rule.none else ''}; fix it in the config or with "
                                f"--set {section}.{key}=...") from None
