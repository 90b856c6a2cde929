"""A restricted unpickler for the label and annotation pickles of other toolkits.

`pickle.load` runs whatever callable a file names; this unpickler resolves only an allow-list of globals
(the builtin containers and numbers, `collections.OrderedDict`, numpy's globals for arrays, dtypes and
scalars) and refuses anything else with a `UserError` naming the file and the global. Memory stays
bounded by the file's size, and dtype states are checked before numpy applies them. The allow-list,
the memory budget and the dtype rule: docs/internals.md, 'data_prep/safe_pickle.py'.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import pickletools
import threading
from pathlib import Path

import numpy as np

from hiclr.common.errors import UserError

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]

import codecs

BUDGET_PER_BYTE = 16  # bytes the unpickled objects may take per byte of input ...
BUDGET_FLOOR = 64 << 20  # ... plus this much, whatever the input
_ENCODINGS = {"latin1", "latin-1", "iso-8859-1", "iso8859-1", "utf-8", "utf8", "ascii"}


_ACTIVE = threading.local()  # the `_Dtypes` of the load in progress on this thread


class SafeArray(np.ndarray):
    """The ndarray the unpickler builds: its `__setstate__` checks the state against the shape first."""

    def __setstate__(self, state):
        _check_array_state(state)
        dtypes = getattr(_ACTIVE, "dtypes", None)
        if dtypes is not None:
            dtypes.use(state[-3])
        super().__setstate__(state)


class _Dtypes:
    """The dtypes one load has made: which are still waiting for their state (BUILD)."""

    def __init__(self):
        self.unbuilt: dict[int, np.dtype] = {}  # id -> dtype; holding it keeps the id unique

    def make(self, spec, align=False, copy=True):
        """`numpy.dtype(...)` as numpy's pickles call it: a type string; always a fresh dtype."""
        if not isinstance(spec, str) or len(spec) > 64:
            raise _Refused(
                f"a numpy dtype built from {type(spec).__name__} {str(spec)[:30]!r} (numpy pickles "
                f"dtypes from a short type string)"
            )
        try:
            dtype = np.dtype(spec, bool(align), True)
        except (TypeError, ValueError) as err:
            raise _Refused(f"a numpy dtype of type string {spec[:30]!r} ({str(err)[:60]})") from None
        self.unbuilt[id(dtype)] = dtype
        return dtype

    def use(self, dtype) -> None:
        """`dtype` is used (by an array, a scalar, a field): its state can no longer change."""
        if isinstance(dtype, np.dtype):
            self.unbuilt.pop(id(dtype), None)

    def build(self, dtype: np.dtype, state) -> None:
        """Apply a pickled state to a dtype of this load that nothing has used yet, then check it."""
        if self.unbuilt.pop(id(dtype), None) is not dtype:
            raise _Refused("a second numpy dtype state, or one for a dtype already in use")
        _check_dtype_state(state, dtype.kind in "mM")
        for part in state[2:5]:  # subarray base, fields: dtypes used by this one
            for inner in part if isinstance(part, tuple) else part.values() if isinstance(part, dict) else ():
                for item in inner if isinstance(inner, tuple) else (inner,):
                    self.use(item)
        try:
            dtype.__setstate__(state)
        except (TypeError, ValueError, OverflowError, KeyError, IndexError) as err:
            raise _Refused(f"a numpy dtype state that numpy cannot apply ({str(err)[:80]})") from None
        check_dtype(dtype)


def _is_int(value, lo: int, hi: int) -> bool:
    return isinstance(value, int) and lo <= value <= hi


def _check_dtype_state(state, datetime: bool) -> None:
    """`_Refused` unless `state` has the form numpy (1.x and 2.x) writes: a malformed one can crash
    numpy's `dtype.__setstate__` outright (a wrong type where it expects a tuple or a dtype).

    (version 3, byte order, subarray, names, fields, itemsize, alignment, flags), version 4 adding
    the metadata: subarray None or (dtype, non-empty shape), never beside fields; names None or a tuple of str; fields None or
    {name or title: (dtype, offset[, title])}; metadata None or a dict, and for a datetime64 or
    timedelta64 dtype (`datetime`) always (dict or None, (unit bytes, num, den, events)): numpy
    crashes on a datetime state without it.
    """

    def refuse(what: str):
        raise _Refused(f"a numpy dtype state whose {what} is not of the form numpy writes")

    if not isinstance(state, tuple):
        raise _Refused(f"a numpy dtype state that is a {type(state).__name__}, not a tuple")
    if not (len(state) in (8, 9) and state[0] == len(state) - 5 and type(state[0]) is int):
        refuse(f"version or length ({str(state[0])[:10]}, {len(state)} items)")
    _, order, subarray, names, fields, itemsize, alignment, flags = state[:8]
    if not (isinstance(order, str) and len(order) == 1 and order in "<>|="):
        refuse("byte order")
    if subarray is not None and not (
        isinstance(subarray, tuple)
        and len(subarray) == 2
        and isinstance(subarray[0], np.dtype)
        and isinstance(subarray[1], tuple)
        and subarray[1]
        and all(_is_int(n, 0, 2**31) for n in subarray[1])
        and names is None
    ):
        refuse("subarray")
    if (names is None) != (fields is None):
        refuse("names and fields")
    if names is not None:
        if not (isinstance(names, tuple) and all(isinstance(n, str) for n in names) and isinstance(fields, dict)):
            refuse("names or fields")
        titles = set()
        for key, value in fields.items():
            if not (
                isinstance(key, str)
                and isinstance(value, tuple)
                and len(value) in (2, 3)
                and isinstance(value[0], np.dtype)
                and _is_int(value[1], 0, 2**31)
                and (len(value) == 2 or value[2] is None or isinstance(value[2], str))
            ):
                refuse(f"field {str(key)[:20]!r}")
            if len(value) == 3 and value[2] is not None:
                titles.add(value[2])
        if not set(names) <= set(fields) or not set(fields) <= set(names) | titles:
            refuse("names and fields")
    if not (_is_int(itemsize, -1, 2**31) and _is_int(alignment, -1, 4096) and _is_int(flags, 0, 255)):
        refuse("itemsize, alignment or flags")
    metadata = state[8] if len(state) == 9 else None
    if datetime != isinstance(metadata, tuple):
        refuse("datetime metadata" if datetime else "metadata")
    if metadata is not None:
        if datetime:
            if not (
                len(metadata) == 2
                and (metadata[0] is None or isinstance(metadata[0], dict))
                and isinstance(metadata[1], tuple)
                and len(metadata[1]) == 4
                and isinstance(metadata[1][0], bytes)
                and all(_is_int(v, -(2**31), 2**31) for v in metadata[1][1:])
            ):
                refuse("datetime metadata")
        elif not isinstance(metadata, dict):
            refuse("metadata")


def check_dtype(dtype: np.dtype, depth: int = 0) -> None:
    """`_Refused` unless `dtype` equals what numpy's constructor makes of its fields (itemsize, flags,
    alignment included), nested dtypes too: a pickled state can describe a dtype numpy would never build."""
    if depth > 32:
        raise _Refused("a numpy dtype nested more than 32 levels deep")
    try:
        if dtype.names is not None:
            fields = [dtype.fields[name] for name in dtype.names]
            for field_dtype, *_ in fields:
                check_dtype(field_dtype, depth + 1)
            spec = {
                "names": list(dtype.names),
                "formats": [f[0] for f in fields],
                "offsets": [f[1] for f in fields],
                "itemsize": dtype.itemsize,
            }
            if any(len(f) > 2 for f in fields):
                spec["titles"] = [f[2] if len(f) > 2 else None for f in fields]
            fresh = np.dtype(spec, align=dtype.isalignedstruct)
        elif dtype.subdtype is not None:
            check_dtype(dtype.subdtype[0], depth + 1)
            fresh = np.dtype(dtype.subdtype)
        else:
            fresh = np.dtype(dtype.str)
    except (TypeError, ValueError, OverflowError) as err:
        raise _Refused(f"a numpy dtype whose pickled state numpy's constructor rejects ({str(err)[:80]})") from None
    # the plain attributes first: comparing with `==` a dtype whose flags lie (objects not flagged) crashes numpy
    if not (
        (fresh.str, fresh.itemsize, fresh.flags, fresh.alignment)
        == (dtype.str, dtype.itemsize, dtype.flags, dtype.alignment)
        and fresh == dtype
    ):
        raise _Refused(
            f"a numpy dtype whose pickled state is inconsistent ({str(dtype)[:60]} with itemsize "
            f"{dtype.itemsize}, flags {dtype.flags}, alignment {dtype.alignment}; numpy builds "
            f"itemsize {fresh.itemsize}, flags {fresh.flags}, alignment {fresh.alignment})"
        )


def _check_array_state(state) -> None:
    if not (isinstance(state, tuple) and len(state) in (4, 5)):
        raise _Refused("an array state that is not (version, shape, dtype, fortran, data)")
    shape, dtype, _, data = state[-4:]
    if not (isinstance(shape, tuple) and all(isinstance(s, int) and s >= 0 for s in shape)):
        raise _Refused(f"an array shape {str(shape)[:40]}")
    if not isinstance(dtype, np.dtype):
        raise _Refused("an array state without a dtype")
    check_dtype(dtype)
    count = math.prod(shape)
    if dtype.hasobject:
        if not isinstance(data, list) or len(data) != count:
            raise _Refused(
                f"an object array of shape {shape} with {len(data) if isinstance(data, list) else 'no'} items"
            )
    elif not isinstance(data, (bytes, bytearray, str)) or len(data) != count * dtype.itemsize:
        raise _Refused(
            f"an array of shape {shape} and dtype {dtype} whose data holds "
            f"{len(data) if isinstance(data, (bytes, bytearray, str)) else 'no'} bytes"
        )


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


def _guarded(budget: _Budget, dtypes: _Dtypes) -> dict:
    """The allowed globals, each charging what it would allocate against `budget` (and telling
    `dtypes` which dtypes it uses)."""

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
        dtypes.use(dtype)
        _charge_array(shape, dtype)
        return _multiarray._reconstruct(SafeArray, shape, dtype)

    def ndarray(shape, dtype=float, *args, **kwargs):
        dtypes.use(dtype)
        _charge_array(shape, dtype)
        return np.ndarray.__new__(SafeArray, shape, dtype, *args, **kwargs)

    def scalar(dtype, *args):
        dtypes.use(dtype)
        dtype = np.dtype(dtype)
        check_dtype(dtype)
        budget.charge(dtype.itemsize, f"a scalar of {dtype.itemsize} bytes")
        return _multiarray.scalar(dtype, *args)

    def frombuffer(buffer, dtype, shape, order):
        dtypes.use(dtype)
        check_dtype(np.dtype(dtype))
        return _numeric._frombuffer(buffer, dtype, shape, order)

    def _charge_array(shape, dtype):
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        dtype = np.dtype(dtype)
        check_dtype(dtype)
        if not all(isinstance(s, int) and s >= 0 for s in shape):
            raise _Refused(f"an array shape {str(shape)[:40]}")
        budget.charge(math.prod(shape) * max(1, dtype.itemsize), f"an array of shape {shape[:6]}")

    table = {
        ("builtins", "set"): containers(set),
        ("builtins", "frozenset"): containers(frozenset),
        ("builtins", "list"): containers(list),
        ("builtins", "dict"): containers(dict),
        ("builtins", "tuple"): containers(tuple),
        ("builtins", "bytearray"): buffers(bytearray),
        ("builtins", "bytes"): buffers(bytes),
        ("builtins", "str"): strings,
        ("builtins", "complex"): complex,
        ("builtins", "int"): int,
        ("builtins", "float"): float,
        ("builtins", "bool"): bool,
        ("collections", "OrderedDict"): containers(collections.OrderedDict),
        ("_codecs", "encode"): encode,  # bytes in protocol 2 pickles (numpy arrays too)
        ("numpy", "ndarray"): ndarray,  # the subtype argument of _reconstruct
        ("numpy", "dtype"): dtypes.make,
    }
    for (module, attr), obj in list(table.items()):  # protocol <= 2 spells builtins "__builtin__"
        if module == "builtins":
            table[("__builtin__", attr)] = obj
    for prefix in ("numpy.core", "numpy._core"):
        table[(f"{prefix}.multiarray", "_reconstruct")] = reconstruct
        table[(f"{prefix}.multiarray", "scalar")] = scalar
        table[(f"{prefix}.numeric", "_frombuffer")] = frombuffer
    return table


ALLOWED = frozenset(_guarded(_Budget(0), _Dtypes()))  # the (module, name) pairs a pickle may name


class RestrictedUnpickler(pickle._Unpickler):
    """`pickle`'s Python unpickler whose `find_class` answers only from the allow-list, with a
    memory budget, and whose BUILD of a numpy dtype goes through `_Dtypes.build`."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, source: str, size: int):
        super().__init__(file, encoding="latin1")  # latin1: Python 2 pickles with numpy arrays
        self.source = source
        self.dtypes = _Dtypes()
        self.table = _guarded(_Budget(size), self.dtypes)

    def load_build(self):
        if isinstance(self.stack[-2] if len(self.stack) > 1 else None, np.dtype):
            state = self.stack.pop()
            self.dtypes.build(self.stack[-1], state)
        else:
            super().load_build()

    dispatch[pickle.BUILD[0]] = load_build

    def find_class(self, module: str, name: str):
        try:
            return self.table[(module, name)]
        except KeyError:
            raise UserError(
                f"{self.source}: refused to load the pickle global '{module}.{name}' (only "
                f"containers, numbers, strings and numpy arrays are allowed); re-save the file "
                f"with plain lists, dicts and numpy arrays, or check where it came from"
            ) from None

    def persistent_load(self, pid):
        raise UserError(
            f"{self.source}: refused a pickle persistent id ({str(pid)[:40]}); re-save the "
            f"file with plain lists, dicts and numpy arrays"
        )


def _scan_opcodes(data: bytes, source: str) -> None:
    """Walk the opcodes without building anything: every length must fit in the bytes that remain."""
    try:
        for op, arg, pos in pickletools.genops(data):
            if op.name == "FRAME" and arg > len(data) - pos:
                raise UserError(
                    f"{source}: a pickle frame at byte {pos} claims {arg} bytes but only "
                    f"{len(data) - pos} remain; the file is truncated or damaged"
                )
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - any malformed opcode stream
        raise UserError(
            f"{source}: not a readable pickle ({_short(err)}); check the file (it may be "
            f"truncated or of another format)"
        ) from None


def _short(err: Exception) -> str:
    return f"{type(err).__name__}: {str(err)[:80]}"


def safe_loads(data: bytes, source: str = "<bytes>"):
    """Unpickle `data` with the restricted unpickler; `source` names it in error messages."""
    _scan_opcodes(data, source)
    unpickler = RestrictedUnpickler(io.BytesIO(data), source, len(data))
    _ACTIVE.dtypes = unpickler.dtypes
    try:
        return unpickler.load()
    except UserError:
        raise
    except _Refused as err:
        raise UserError(
            f"{source}: refused {err} (the file is damaged or hostile); re-save it with "
            f"plain lists, dicts and numpy arrays"
        ) from None
    except (Exception, RecursionError) as err:  # truncated or not a pickle at all
        raise UserError(
            f"{source}: not a readable pickle ({_short(err)}); check the file (it may be "
            f"truncated or of another format)"
        ) from None
    finally:
        _ACTIVE.dtypes = None


def safe_load(path: str | os.PathLike):
    """Unpickle the file at `path` with the restricted unpickler."""
    path = os.fspath(path)
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise UserError(f"{path}: cannot be read ({err.strerror}); check the path") from None
    return safe_loads(data, source=path)
