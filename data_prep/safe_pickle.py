"""A restricted unpickler for the label and annotation pickles of other toolkits.

`pickle.load` runs whatever callable a file names, so a downloaded `.pkl` could run any code. This
unpickler resolves only an allow-list of globals: the builtin containers and numbers (most are
built by opcodes and need no global at all), `collections.OrderedDict`, and exactly the globals
numpy uses to pickle arrays, dtypes and scalars (both the `numpy.core` and the numpy 2
`numpy._core` spellings). Anything else is refused with a `UserError` naming the file and the global.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
from pathlib import Path

import numpy as np

from data_prep.errors import UserError

try:                                                    # numpy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:                                     # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray    # type: ignore[no-redef]
    from numpy.core import numeric as _numeric          # type: ignore[no-redef]

import codecs

_NUMPY = {
    "multiarray._reconstruct": _multiarray._reconstruct,
    "multiarray.scalar": _multiarray.scalar,
    "numeric._frombuffer": _numeric._frombuffer,
}

ALLOWED: dict[tuple[str, str], object] = {
    ("builtins", "set"): set, ("builtins", "frozenset"): frozenset, ("builtins", "list"): list,
    ("builtins", "dict"): dict, ("builtins", "tuple"): tuple, ("builtins", "bytearray"): bytearray,
    ("builtins", "complex"): complex, ("builtins", "int"): int, ("builtins", "float"): float,
    ("builtins", "str"): str, ("builtins", "bytes"): bytes, ("builtins", "bool"): bool,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("_codecs", "encode"): codecs.encode,               # bytes in protocol 2 pickles (numpy arrays too)
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
for (_module, _attr), _obj in list(ALLOWED.items()):     # protocol <= 2 spells builtins "__builtin__"
    if _module == "builtins":
        ALLOWED[("__builtin__", _attr)] = _obj
for _prefix in ("numpy.core", "numpy._core"):
    for _name, _obj in _NUMPY.items():
        _module, _attr = _name.split(".")
        ALLOWED[(f"{_prefix}.{_module}", _attr)] = _obj


class RestrictedUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` whose `find_class` answers only from `ALLOWED`."""

    def __init__(self, file, source: str):
        super().__init__(file, encoding="latin1")        # latin1: Python 2 pickles with numpy arrays
        self.source = source

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise UserError(f"{self.source}: refused to load the pickle global '{module}.{name}' (only "
                            f"containers, numbers, strings and numpy arrays are allowed); re-save the file "
                            f"with plain lists, dicts and numpy arrays, or check where it came from") from None

    def persistent_load(self, pid):
        raise UserError(f"{self.source}: refused a pickle persistent id ({str(pid)[:40]}); re-save the "
                        f"file with plain lists, dicts and numpy arrays")


def safe_loads(data: bytes, source: str = "<bytes>"):
    """Unpickle `data` with the restricted unpickler; `source` names it in error messages."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), source).load()
    except UserError:
        raise
    except Exception as err:                              # truncated or not a pickle at all
        raise UserError(f"{source}: not a readable pickle ({type(err).__name__}: {str(err)[:80]}); "
                        f"check the file (it may be truncated or of another format)") from None


def safe_load(path: str | os.PathLike):
    """Unpickle the file at `path` with the restricted unpickler."""
    path = os.fspath(path)
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise UserError(f"{path}: cannot be read ({err.strerror}); check the path") from None
    return safe_loads(data, source=path)
