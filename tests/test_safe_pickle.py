"""The restricted unpickler: data comes back, code never runs."""

from __future__ import annotations

import collections
import os
import pickle

import numpy as np
import pytest

from data_prep.errors import UserError
from data_prep.safe_pickle import safe_load, safe_loads


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


@pytest.mark.parametrize("obj, refused", [
    (_Custom(), "_Custom"),
    (eval, "builtins.eval"),
    (getattr, "builtins.getattr"),
    (collections.Counter(a=1), "collections.Counter"),
])
def test_every_other_global_is_refused_by_name(obj, refused):
    with pytest.raises(UserError, match=refused):
        safe_loads(pickle.dumps(obj), source="x.pkl")


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_containers_numbers_strings_and_numpy_data_round_trip(protocol):
    obj = {
        "names": ["S001C001P001R001A001", b"bytes", "ünï"],
        "labels": [np.int64(3), np.int32(-1), 7, 2.5, True, None, 1 + 2j],
        "arrays": (np.arange(12, dtype=np.float32).reshape(3, 4), np.array(["a", "bc"]),
                   np.zeros((2, 0)), np.array([1, "x"], dtype=object), np.float16(0.5)),
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
