"""The rules of config values (type and range), and `Key`, one schema entry (default, rule, meaning).

`hiclr.config.SCHEMA` declares every key once as a `Key`. Each rule (`Int`, `Num`, `Flag`,
`Choice`, `Text`, `ListOf`, `Mapping`, `Stages`, `Either`, `BlockPlan`) says what a value must be
and, on failure, gives one sentence naming the dotted key, the value and what is allowed, so that
`optim.lr=-1` or `model.width=0` stops at load instead of deep inside training (or, worse, runs: a
negative `optim.grad_clip` would flip every gradient). `check_values(cfg, SCHEMA)` applies them;
a number written as text (`--set optim.lr=1e-3`, which YAML reads as a string) becomes the number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hiclr.common.errors import UserError


@dataclass(frozen=True)
class Int:
    lo: int | None = None
    hi: int | None = None
    none: bool = False

    def check(self, value):
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and (self.lo is None or value >= self.lo)
            and (self.hi is None or value <= self.hi)
        ):
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
        if isinstance(value, list) and all(isinstance(s, list) and all(isinstance(a, dict) for a in s) for s in value):
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
        what = (
            "a non-empty list of blocks [in, out, inter channels, stride] (four positive integers "
            "each, every block's in equal to the previous block's out)"
        )
        if not isinstance(value, list) or not value:
            raise ValueError(what)
        for i, block in enumerate(value):
            if not (
                isinstance(block, list)
                and len(block) == 4
                and all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 65536 for n in block)
            ):
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
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class Key:
    """One config key of `hiclr.config.SCHEMA`: its default, its rule (type and range), what it means."""

    default: Any
    rule: Any
    doc: str = ""


def check_values(cfg: dict, schema: dict[str, dict[str, Key]]) -> None:
    """Check every value of `cfg` with its `Key`'s rule, in place (numbers written as text become
    numbers); a `UserError` names the first bad key, its value and what is allowed."""
    for section, keys in schema.items():
        values = cfg[section]
        if not isinstance(values, dict):
            raise UserError(f"config section `{section}` is {values!r}; it must be a mapping of keys")
        for key, declared in keys.items():
            if key not in values:  # a key of another encoder (`hiclr.config.ENCODER_KEYS`)
                continue
            rule, value = declared.rule, values[key]
            if value is None and rule.none:
                continue
            try:
                values[key] = rule.check(value)
            except ValueError as err:
                raise UserError(
                    f"`{section}.{key}` is {value!r}; it must be {err}"
                    f"{' or null' if rule.none else ''}; fix it in the config or with "
                    f"--set {section}.{key}=..."
                ) from None
