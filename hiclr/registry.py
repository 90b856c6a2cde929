"""One registry helper for everything built by name from a config (timm-style).

    ENCODERS = Registry("encoder", config_key="model.name")

    @ENCODERS.register("stgcn")
    class STGCN(nn.Module): ...

    cls = ENCODERS.lookup("stgcn")  # an unknown name raises UnknownName, listing the known ones

A registry is a dict (name -> class or factory), so `name in R`, `R[name]` and iteration work as
usual; it is complete once the module that fills it has been imported.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class UnknownName(ValueError):
    """A name that no entry of a registry carries."""


class Registry(dict):
    """Name -> entry, filled by the `register` decorator; `get` explains an unknown name."""

    def __init__(self, kind: str, config_key: str | None = None):
        super().__init__()
        self.kind = kind
        self.config_key = config_key

    def register(self, name: str, check: Callable[[object], None] | None = None):
        """Decorator (or plain call) that adds an entry under `name`; `check(entry)` may refuse it."""

        def add(entry: T) -> T:
            if name in self and self[name] is not entry:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            if check is not None:
                check(entry)
            self[name] = entry
            return entry

        return add

    def lookup(self, name: str):
        """The entry registered as `name`; `UnknownName` (a ValueError) explains a miss."""
        if name in self:
            return self[name]
        raise UnknownName(self.unknown(name))

    def unknown(self, name: str) -> str:
        """The sentence for a name that is not registered: the closest name and every known one."""
        where = f" in {self.config_key}" if self.config_key else ""
        close = difflib.get_close_matches(str(name), list(self), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown {self.kind} {name!r}{where}{hint}; known {self.kind}s: {', '.join(sorted(self))}"
