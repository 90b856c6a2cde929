"""A restricted unpickler for the label and annotation pickles of other toolkits.

`pickle.load` runs whatever callable a file names, so a downloaded `.pkl` could run any code. This
unpickler resolves only an allow-list of globals: the builtin containers and numbers (most are
built by opcodes and need no global at all), `collections.OrderedDict`, and exactly the globals
numpy uses to pickle arrays, dtypes and scalars (both the `numpy.core` and the numpy 2
`numpy._core` spellings). Anything else is refused with a `UserError` naming the file and the global.

Memory stays bounded by the file's size: the opcodes are scanned first (a length field larger than
the bytes that remain is refused before CPython's unpickler would allocate it), every allowed
callable is charged against a budget of `BUDGET_PER_BYTE` bytes per input byte (plus
`BUDGET_FLOOR`), and the array state numpy restores is checked against its shape before numpy sees
it (a mismatched object array would crash numpy).
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import pickletools
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

BUDGET_PER_BYTE = 16            # bytes the unpickled objects may take per byte of input ...
BUDGET_FLOOR = 64 << 20         # ... plus this much, whatever the input
_ENCODINGS = {"latin1", "latin-1", "iso-8859-1", "iso8859-1", "utf-8", "utf8", "ascii"}


class SafeArray(np.ndarray):
    """The ndarray the unpickler builds: its `__setstate__` checks the state against the shape first."""

    def __setstate__(self, state):
        _check_array_state(state)
        super().__setstate__(state)


def _check_array_state(state) -> None:
    if not (isinstance(state, tuple) and len(state) in (4, 5)):
        raise _Refused("an array state that is not (version, shape, dtype, fortran, data)")
    shape, dtype, _, data = state[-4:]
    if not (isinstance(shape, tuple) and all(isinstance(s, int) and s >= 0 for s in shape)):
        raise _Refused(f"an array shape {str(shape)[:40]}")
    if not isinstance(dtype, np.dtype):
        raise _Refused("an array state without a dtype")
    count = math.prod(shape)
    if dtype.hasobject:
        if not isinstance(data, list) or len(data) != count:
            raise _Refused(f"an object array of shape {shape} with {len(data) if isinstance(data, list) else 'no'} items")
    elif not isinstance(data, (bytes, bytearray, str)) or len(data) != count * dtype.itemsize:
        raise _Refused(f"an array of shape {shape} and dtype {dtype} whose data holds "
                       f"{len(data) if isinstance(data, (bytes, bytearray, str)) else 'no'} bytes")


class _Refused(Exception):
    """Raised inside the unpickler; `safe_loads` turns it into one sentence naming the file."""


class _Budget:
    """Bytes the allowed callables may still create for this one load."""

    def __init__(self, size: int):
        self.left = BUDGET_PER_BYTE * size + BUDGET_FLOOR

    def charge(self, nbytes: int, what: str) -> None:
        self.left -= max(0, int(nbytes))
        if self.left < 0:
            raise _Refused(f"{what}, more memory than a pickle of this size can describe")


def _sized(obj) -> int:
    try:
        return len(obj)
    except TypeError:
        return 1


def _guarded(budget: _Budget) -> dict:
    """The allowed globals, each charging what it would allocate against `budget`."""

    def containers(kind):
        def build(*args):
            budget.charge(64 * sum(_sized(a) for a in args), f"a {kind.__name__} of that size")
            return kind(*args)
        return build

    def buffers(kind):
        def build(*args):
            size = args[0] if args and isinstance(args[0], int) else (_sized(args[0]) if args else 0)
            budget.charge(size, f"a {kind.__name__} of {size} bytes")
            return kind(*args)
        return build

    def strings(*args):
        budget.charge(8 * sum(_sized(a) for a in args), "a string of that size")
        return str(*args)

    def encode(obj, encoding="utf-8", errors="strict"):
        if str(encoding).lower() not in _ENCODINGS:
            raise _Refused(f"the codec {str(encoding)[:20]!r}")
        budget.charge(4 * _sized(obj), "an encoded string of that size")
        return codecs.encode(obj, encoding, errors)

    def reconstruct(subtype, shape, dtype):
        if subtype is not ndarray:
            raise _Refused("an array of a subtype")
        _charge_array(shape, dtype)
        return _multiarray._reconstruct(SafeArray, shape, dtype)

    def ndarray(shape, dtype=float, *args, **kwargs):
        _charge_array(shape, dtype)
        return np.ndarray.__new__(SafeArray, shape, dtype, *args, **kwargs)

    def scalar(dtype, *args):
        dtype = np.dtype(dtype)
        budget.charge(dtype.itemsize, f"a scalar of {dtype.itemsize} bytes")
        return _multiarray.scalar(dtype, *args)

    def _charge_array(shape, dtype):
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        dtype = np.dtype(dtype)
        if not all(isinstance(s, int) and s >= 0 for s in shape):
            raise _Refused(f"an array shape {str(shape)[:40]}")
        budget.charge(math.prod(shape) * max(1, dtype.itemsize), f"an array of shape {shape[:6]}")

    table = {
        ("builtins", "set"): containers(set), ("builtins", "frozenset"): containers(frozenset),
        ("builtins", "list"): containers(list), ("builtins", "dict"): containers(dict),
        ("builtins", "tuple"): containers(tuple), ("builtins", "bytearray"): buffers(bytearray),
        ("builtins", "bytes"): buffers(bytes), ("builtins", "str"): strings,
        ("builtins", "complex"): complex, ("builtins", "int"): int, ("builtins", "float"): float,
        ("builtins", "bool"): bool,
        ("collections", "OrderedDict"): containers(collections.OrderedDict),
        ("_codecs", "encode"): encode,                  # bytes in protocol 2 pickles (numpy arrays too)
        ("numpy", "ndarray"): ndarray,                  # the subtype argument of _reconstruct
        ("numpy", "dtype"): np.dtype,
    }
    for (module, attr), obj in list(table.items()):     # protocol <= 2 spells builtins "__builtin__"
        if module == "builtins":
            table[("__builtin__", attr)] = obj
    for prefix in ("numpy.core", "numpy._core"):
        table[(f"{prefix}.multiarray", "_reconstruct")] = reconstruct
        table[(f"{prefix}.multiarray", "scalar")] = scalar
        table[(f"{prefix}.numeric", "_frombuffer")] = _numeric._frombuffer
    return table


ALLOWED = frozenset(_guarded(_Budget(0)))              # the (module, name) pairs a pickle may name


class RestrictedUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` whose `find_class` answers only from the allow-list, with a memory budget."""

    def __init__(self, file, source: str, size: int):
        super().__init__(file, encoding="latin1")        # latin1: Python 2 pickles with numpy arrays
        self.source = source
        self.table = _guarded(_Budget(size))

    def find_class(self, module: str, name: str):
        try:
            return self.table[(module, name)]
        except KeyError:
            raise UserError(f"{self.source}: refused to load the pickle global '{module}.{name}' (only "
                            f"containers, numbers, strings and numpy arrays are allowed); re-save the file "
                            f"with plain lists, dicts and numpy arrays, or check where it came from") from None

    def persistent_load(self, pid):
        raise UserError(f"{self.source}: refused a pickle persistent id ({str(pid)[:40]}); re-save the "
                        f"file with plain lists, dicts and numpy arrays")


def _scan_opcodes(data: bytes, source: str) -> None:
    """Walk the opcodes without building anything: every length must fit in the bytes that remain."""
    try:
        for op, arg, pos in pickletools.genops(data):
            if op.name == "FRAME" and arg > len(data) - pos:
                raise UserError(f"{source}: a pickle frame at byte {pos} claims {arg} bytes but only "
                                f"{len(data) - pos} remain; the file is truncated or damaged")
    except UserError:
        raise
    except Exception as err:                              # noqa: BLE001 - any malformed opcode stream
        raise UserError(f"{source}: not a readable pickle ({_short(err)}); check the file (it may be "
                        f"truncated or of another format)") from None


def _short(err: Exception) -> str:
    return f"{type(err).__name__}: {str(err)[:80]}"


def safe_loads(data: bytes, source: str = "<bytes>"):
    """Unpickle `data` with the restricted unpickler; `source` names it in error messages."""
    _scan_opcodes(data, source)
    try:
        return RestrictedUnpickler(io.BytesIO(data), source, len(data)).load()
    except UserError:
        raise
    except _Refused as err:
        raise UserError(f"{source}: refused {err} (the file is damaged or hostile); re-save it with "
                        f"plain lists, dicts and numpy arrays") from None
    except (Exception, RecursionError) as err:             # truncated or not a pickle at all
        raise UserError(f"{source}: not a readable pickle ({_short(err)}); check the file (it may be "
                        f"truncated or of another format)") from None


def safe_load(path: str | os.PathLike):
    """Unpickle the file at `path` with the restricted unpickler."""
    path = os.fspath(path)
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise UserError(f"{path}: cannot be read ({err.strerror}); check the path") from None
    return safe_loads(data, source=path)
