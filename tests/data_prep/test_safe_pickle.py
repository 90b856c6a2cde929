"""The restricted unpickler: data comes back, code never runs."""

from __future__ import annotations

import collections
import os
import pickle
import pickletools
import struct

import numpy as np
import pytest

from data_prep.safe_pickle import safe_load, safe_loads
from hiclr.common.errors import UserError


class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Custom:
    pass


def test_a_pickle_calling_os_system_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps((["S001C001P001R001A001"], [_RunsShell(marker)])))
    with pytest.raises(UserError) as info:
        safe_load(path)
    message = str(info.value)
    assert str(path) in message and ("posix.system" in message or "os.system" in message)
    assert not marker.exists()


@pytest.mark.parametrize(
    "obj, refused",
    [
        (_Custom(), "_Custom"),
        (eval, "builtins.eval"),
        (getattr, "builtins.getattr"),
        (collections.Counter(a=1), "collections.Counter"),
    ],
)
def test_every_other_global_is_refused_by_name(obj, refused):
    with pytest.raises(UserError, match=refused):
        safe_loads(pickle.dumps(obj), source="x.pkl")


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_containers_numbers_strings_and_numpy_data_round_trip(protocol):
    obj = {
        "names": ["S001C001P001R001A001", b"bytes", "ünï"],
        "labels": [np.int64(3), np.int32(-1), 7, 2.5, True, None, 1 + 2j],
        "arrays": (
            np.arange(12, dtype=np.float32).reshape(3, 4),
            np.array(["a", "bc"]),
            np.zeros((2, 0)),
            np.array([1, "x"], dtype=object),
            np.float16(0.5),
        ),
        "sets": ({1, 2}, frozenset({"a"})),
        "ordered": collections.OrderedDict([("b", 1), ("a", 2)]),
        "dtype": np.dtype("<f8"),
        "structured": np.zeros(2, dtype=[("x", "<i4"), ("y", "<f4")]),
        "buffer": bytearray(b"abc"),
    }
    back = safe_loads(pickle.dumps(obj, protocol=protocol))
    assert back["names"] == obj["names"] and back["labels"][:6] == obj["labels"][:6]
    assert back["labels"][6] == 1 + 2j and isinstance(back["labels"][0], np.int64)
    for got, want in zip(back["arrays"], obj["arrays"]):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype
    assert back["sets"] == obj["sets"] and list(back["ordered"]) == ["b", "a"]
    assert back["dtype"] == obj["dtype"] and back["structured"].dtype == obj["structured"].dtype
    assert back["buffer"] == bytearray(b"abc")


def test_truncated_or_foreign_files_give_one_sentence(tmp_path):
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps(list(range(100)))[:-5])
    with pytest.raises(UserError, match="not a readable pickle"):
        safe_load(path)
    with pytest.raises(UserError, match="cannot be read"):
        safe_load(tmp_path / "absent.pkl")


def _respell_numpy(data: bytes, prefix: str) -> bytes:
    """The same pickle with every `numpy._core` / `numpy.core` module named `prefix` (as numpy 2 or
    numpy 1.x write it); frames are dropped since the lengths change (they are optional)."""
    ops = list(pickletools.genops(data))
    ends = [pos for _, _, pos in ops[1:]] + [len(data)]
    out = bytearray()
    for (op, arg, pos), end in zip(ops, ends):
        if op.name == "FRAME":
            continue
        if isinstance(arg, str) and arg.startswith(("numpy._core", "numpy.core")):
            text = prefix + arg.split("core", 1)[1]
            raw = text.encode()
            if op.name == "GLOBAL":
                out += b"c" + raw.replace(b" ", b"\n", 1) + b"\n"
            elif op.name == "SHORT_BINUNICODE":
                out += b"\x8c" + bytes([len(raw)]) + raw
            else:
                assert op.name == "BINUNICODE"
                out += b"X" + struct.pack("<I", len(raw)) + raw
            continue
        out += data[pos:end]
    return bytes(out)


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("prefix", ["numpy.core", "numpy._core"])
def test_numpy_1_and_numpy_2_spellings_of_arrays_dtypes_and_scalars_load_alike(protocol, prefix):
    obj = {
        "keypoint": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
        "label": [np.int64(7), np.int32(-1)],
        "dtype": np.dtype(">i4"),
        "structured": np.ones(3, dtype=[("x", "<i4"), ("y", "<f4", (2,))]),
        "names": np.array(["S001C001P001R001A001", "S001C001P001R001A002"]),
    }
    data = _respell_numpy(pickle.dumps(obj, protocol=protocol), prefix)
    other = "numpy.core" if prefix == "numpy._core" else "numpy._core"
    assert prefix.encode() in data and other.encode() + b"." not in data
    back = safe_loads(data, source="labels.pkl")
    for key in ("keypoint", "structured", "names"):
        np.testing.assert_array_equal(back[key], obj[key])
        assert back[key].dtype == obj[key].dtype
    assert back["label"] == [7, -1] and type(back["label"][0]) is np.int64
    assert back["dtype"] == np.dtype(">i4")


DTYPES = [
    "f8",
    ">i4",
    "U3",
    "S2",
    "O",
    "M8[s]",
    "m8[25ms]",
    "c16",
    "?",
    "V8",
    ("i4", (2, 3)),
    [("a", "u1"), ("b", "<f8")],
    [(("title", "a"), "i4")],
    [("n", [("x", "f4"), ("y", "O")])],
    {"names": ["a", "b"], "formats": ["i4", "f4"], "offsets": [0, 8], "itemsize": 16},
]


@pytest.mark.parametrize("protocol", [2, 5])
def test_every_kind_of_dtype_numpy_pickles_round_trips(protocol):
    dtypes = [np.dtype(d) for d in DTYPES] + [
        np.dtype([("a", "u1"), ("b", "<f8")], align=True),
        np.dtype("f8", metadata={"unit": "m"}),
    ]
    data = pickle.dumps([(d, np.zeros(2, d)) for d in dtypes], protocol=protocol)
    back, reference = safe_loads(data), pickle.loads(data)  # the same as pickle's own loader
    for want, (dtype, array), (ref_dtype, ref_array) in zip(dtypes, back, reference):
        assert dtype == want == ref_dtype and (dtype.itemsize, dtype.flags, dtype.alignment) == (
            want.itemsize,
            want.flags,
            want.alignment,
        )
        assert array.dtype == ref_array.dtype and array.shape == ref_array.shape
    assert back[-1][0].metadata == {"unit": "m"}


class _Dtype:
    """Pickles as numpy does a dtype (`numpy.dtype(spec, False, True)`, then BUILD), with any state."""

    def __init__(self, spec, state):
        self.spec, self.state = spec, state

    def __reduce__(self):
        return np.dtype, (self.spec, False, True), self.state


@pytest.mark.parametrize(
    "spec, state, why",
    [
        ("f8", "not a tuple", "not a tuple"),
        ("f8", (9, "<", None, None, None, -1, -1, 0), "version or length"),
        ("f8", (3, "<", None, None, None, "x", -1, 0), "itemsize, alignment or flags"),
        ("f8", (4, "<", None, None, None, -1, -1, 0, "x"), "metadata"),
        ("M8", (3, "<", None, None, None, -1, -1, 0), "datetime metadata"),  # crashes numpy
        ("M8", (4, "<", None, None, None, -1, -1, 0, (None, (b"zz", 1, 1, 1))), "numpy cannot apply"),
        ("U3", (3, "<", None, None, None, 7, 4, 8), "inconsistent"),  # 7 bytes: not UCS4
        ("O8", (3, "|", None, None, None, -1, -1, 0), "inconsistent"),  # objects, not flagged
        ("O8", (3, ">", None, None, None, -1, 1, 0), "inconsistent"),  # == on it crashes numpy
        ("V8", (3, "|", None, ("x",), {"x": (np.dtype("<i8"), 0)}, 2, 1, 16), "rejects"),  # field past the end
        ("V8", (3, "|", (np.dtype("<i4"), (4,)), None, None, 8, 4, 0), "inconsistent"),  # 16 bytes in 8
        ("f8", (3, "<", None, None, None, -1, -1, 63), "inconsistent"),  # claims object refs
        (
            "V12",
            (3, "|", None, ("x",), {"x": (np.dtype("<i4"), 0), 2: (np.dtype("<i4"), 4)}, 12, 1, 16),
            "not of the form",
        ),  # a wrong type where numpy expects a name: crashes numpy
        ("V8", (3, "|", (np.dtype("<i4"), 2), None, None, 8, 4, 0), "not of the form"),
    ],
)
def test_a_malformed_dtype_state_is_refused_in_one_sentence(spec, state, why):
    data = pickle.dumps({"labels": [1, 2], "dtype": _Dtype(spec, state)}, protocol=2)
    with pytest.raises(UserError) as info:
        safe_loads(data, source="train_label.pkl")
    message = str(info.value)
    assert message.startswith("train_label.pkl: refused a") and "numpy dtype" in message and why in message
    assert "\n" not in message


class _Array:
    """Pickles as numpy does an array (`_reconstruct`, then BUILD with shape, dtype and bytes)."""

    def __init__(self, shape, dtype, data):
        self.shape, self.dtype, self.data = shape, dtype, data

    def __reduce__(self):
        reconstruct, args, _ = np.zeros(1).__reduce__()
        return reconstruct, args, (1, self.shape, self.dtype, False, self.data)


def test_an_array_whose_dtype_state_would_read_past_its_bytes_is_refused():
    """numpy itself accepts this dtype state: an 8-byte field in a 2-byte dtype, so 4 rows in 8 bytes
    would read 6 bytes past the end."""
    bad = _Dtype("V8", (3, "|", None, ("x",), {"x": (np.dtype("<i8"), 0)}, 2, 1, 16))
    assert safe_loads(pickle.dumps(_Array((4,), np.dtype("<i2"), b"\0" * 8), protocol=2)).shape == (4,)
    with pytest.raises(UserError, match="ann.pkl: refused a numpy dtype"):
        safe_loads(pickle.dumps(_Array((4,), bad, b"\0" * 8), protocol=2), source="ann.pkl")


def test_a_dtype_cannot_get_a_new_state_once_an_array_uses_it():
    """Protocol 2 by hand: d = dtype('V8'); a = array of d (8 bytes); then a BUILD that would make
    d 64 bytes long under the existing 8-byte array."""
    data = (
        b"\x80\x02"
        + b"cnumpy\ndtype\nX\x02\x00\x00\x00V8\x89\x88\x87Rq\x00"
        + b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x01\x85C\x01b\x87R"
        + b"(K\x01K\x01\x85h\x00\x89C\x08abcdefght"
        + b"b"  # a.__setstate__
        + b"h\x00(K\x03X\x01\x00\x00\x00|NN}K@K\x01K\x00tb"  # d.__setstate__, 64 bytes
        + b"\x86."
    )
    with pytest.raises(UserError, match="already in use"):
        safe_loads(data, source="ann.pkl")
    ok = data.replace(b"h\x00(K\x03X\x01\x00\x00\x00|NN}K@K\x01K\x00tb", b"h\x00")
    array, dtype = safe_loads(ok, source="ann.pkl")
    assert array.tobytes() == b"abcdefgh" and dtype == np.dtype("V8")
