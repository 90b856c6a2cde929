"""Property-based fuzzing of every reader of outside input: NTU and PKU-MMD files, split and label
files, label pickles, CTR-GCN archives, .npy arrays and config overrides.

For every input, valid or hostile, a reader either returns what the grammar says (checked value for
value against the plain-Python oracles of `reference_readers.py`) or raises the tool's own
one-sentence `UserError`; never another exception, never a hang, never more memory than a small
multiple of the input. The default run tries a few hundred inputs per reader; `-m slow` runs the
long campaign (docs/faults.md).
"""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import tests.helpers.reference_readers as ref
from data_prep import importers, ntu, pkummd
from data_prep.store import verify_store
from hiclr.common.errors import UserError
from tests.helpers.fault_harness import run_reader
from tests.helpers.fault_strategies import NASTY, mutated, ntu_files, pku_files, pku_label_files, split_files

SCALE = float(os.environ.get("HICLR_FUZZ_SCALE", "1"))  # multiplies the long campaign's sizes


def campaign(examples: int, derandomize: bool = False):
    return settings(
        max_examples=max(1, int(examples)),
        deadline=None,
        database=None,
        print_blob=True,
        derandomize=derandomize,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


def short(n):
    """The default run's share: a fixed sample (derandomized), so CI is reproducible; the long
    campaign (-m slow) draws new inputs every time."""
    return campaign(n, derandomize=True)


def long(n):
    return campaign(n * SCALE)


# ----------------------------------------------------------------------------------- NTU .skeleton


def check_ntu(raw: bytes) -> None:
    got = run_reader(ntu.read_skeleton, raw, "S001C001P001R001A001.skeleton")
    want = ref.ntu_skeleton(raw)
    if want is None:
        assert isinstance(got, UserError), "accepted a file outside the grammar"
        return
    assert not isinstance(got, UserError), f"refused a valid file: {got}"
    counts, ids, frame, slot, joints = want
    np.testing.assert_array_equal(got.body_counts, counts)
    np.testing.assert_array_equal(got.body_ids, ids)
    np.testing.assert_array_equal(got.frame, frame)
    np.testing.assert_array_equal(got.slot, slot)
    assert got.joints.dtype == np.float32 and got.joints.shape == joints.shape
    np.testing.assert_array_equal(got.joints, joints)


@short(300)
@given(mutated(ntu_files()))
def test_ntu_reader_returns_the_grammar_or_one_sentence(raw):
    check_ntu(raw)


@pytest.mark.slow
@long(40_000)
@given(mutated(ntu_files()))
def test_ntu_reader_long_campaign(raw):
    check_ntu(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"1000000000000\n0\n",
        b"99999999999999999999\n0\n",
        b"1\n99999999999999999999\n",
        b"9223372036854775808\n0\n",
        b"1\n200000000\n",
        b"1\n9223372036854775808\n",
        b"18446744073709551615\n1\n",
    ],
)
def test_ntu_counts_beyond_the_file_are_refused_without_allocating_them(raw):
    assert isinstance(run_reader(ntu.read_skeleton, raw, "counts.skeleton"), UserError)


def test_an_ntu_coordinate_that_float32_cannot_hold_is_refused_by_line(tmp_path):
    frames = [[(7, np.full((25, 3), 0.5))]]
    ntu.write_skeleton(tmp_path / "a.skeleton", frames)
    lines = (tmp_path / "a.skeleton").read_bytes().split(b"\n")
    lines[3 + 4] = b"1e39" + lines[3 + 4][lines[3 + 4].index(b" ") :]
    err = run_reader(ntu.read_skeleton, b"\n".join(lines), "big.skeleton")
    assert isinstance(err, UserError) and "line 8" in str(err) and "1e+39" in str(err)


# ---------------------------------------------------------------------------------------- PKU-MMD


def check_pku(raw: bytes) -> None:
    got = run_reader(pkummd.read_skeleton, raw, "0002-L.txt")
    want = ref.pku_skeleton(raw)
    if want is None:
        assert isinstance(got, UserError), "accepted a file outside the grammar"
    else:
        assert not isinstance(got, UserError), f"refused a valid file: {got}"
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)


def check_labels(raw: bytes) -> None:
    got = run_reader(pkummd.read_labels, raw, "0002-L-labels.txt")
    want = ref.pku_labels(raw.decode("ascii", "replace"))
    if want is None:
        assert isinstance(got, UserError), "accepted a label file outside the grammar"
    else:
        assert not isinstance(got, UserError), f"refused a valid label file: {got}"
        np.testing.assert_array_equal(got, want)


def check_split(raw: bytes) -> None:
    got = run_reader(pkummd.read_split, raw, "cross-subject.txt")
    if not isinstance(got, UserError):
        train, test = got
        assert all(isinstance(n, str) and n and n == n.strip() and "," not in n for n in train + test)
        assert not set(train) & set(test)


@short(150)
@given(mutated(pku_files()))
def test_pku_skeleton_reader_returns_the_grammar_or_one_sentence(raw):
    check_pku(raw)


@short(200)
@given(mutated(pku_label_files()))
def test_pku_label_reader_returns_the_grammar_or_one_sentence(raw):
    check_labels(raw)


@short(200)
@given(mutated(split_files()))
def test_split_reader_returns_disjoint_name_lists_or_one_sentence(raw):
    check_split(raw)


@pytest.mark.slow
@long(15_000)
@given(mutated(pku_files()))
def test_pku_skeleton_reader_long_campaign(raw):
    check_pku(raw)


@pytest.mark.slow
@long(15_000)
@given(mutated(pku_label_files()))
def test_pku_label_reader_long_campaign(raw):
    check_labels(raw)


@pytest.mark.slow
@long(10_000)
@given(mutated(split_files()))
def test_split_reader_long_campaign(raw):
    check_split(raw)


@pytest.mark.parametrize(
    "line",
    [b"inf,43,127,2", b"1,1e400,5,1", b"nan,1,2,1", b"1,99999999999999999999,5,1", b"52,1,2,1", b"1,2", b"a,b,c,d"],
)
def test_pku_label_lines_that_are_not_bounded_integers_are_refused(line):
    assert isinstance(run_reader(pkummd.read_labels, line + b"\n", "labels.txt"), UserError)


def test_pku_rows_are_checked_one_by_one_not_by_their_total():
    rows = b" ".join([b"0.5"] * 160) + b"\n" + b" ".join([b"0.5"] * 140) + b"\n"
    err = run_reader(pkummd.read_skeleton, rows, "rows.txt")
    assert isinstance(err, UserError) and "line 1" in str(err) and "found 160" in str(err)


# ------------------------------------------------------------------------------- label pickles

names = st.lists(st.text("SCPRA0123456789", min_size=1, max_size=20), max_size=6)


@st.composite
def label_pickles(draw) -> bytes:
    n = draw(st.integers(0, 6))
    picked = draw(st.lists(st.text("SCPRA0123456789", min_size=1, max_size=20), min_size=n, max_size=n))
    labels = draw(st.lists(st.integers(0, 59), min_size=n, max_size=n))
    as_array = draw(st.booleans())
    obj = (picked, np.array(labels, dtype=np.int64) if as_array else labels)
    return pickle.dumps(obj, protocol=draw(st.integers(0, 5)))


ALLOWED_GLOBALS = [
    b"c__builtin__\nbytearray\n",
    b"cbuiltins\nlist\n",
    b"cbuiltins\nset\n",
    b"cbuiltins\nstr\n",
    b"cnumpy\nndarray\n",
    b"cnumpy\ndtype\n",
    b"cnumpy.core.multiarray\n_reconstruct\n",
    b"cnumpy.core.multiarray\nscalar\n",
    b"c_codecs\nencode\n",
    b"ccollections\nOrderedDict\n",
    b"cbuiltins\nbytes\n",
    b"cbuiltins\ntuple\n",
]
ARGS = [
    b"J\x00\x94\x35\x77",
    b"J\xff\xff\xff\x7f",
    b"K\x05",
    b"N",
    b"U\x02V9",
    b"U\x0bV1000000000",
    b"U\x02O8",
    b"U\x02<f",
    b"(K\x00t",
    b"(J\x00\xe1\xf5\x05t",
    b"]",
    b"}",
    b"C\x03abc",
    b"\x88",
    b"\x89",
    b"G" + b"\x7f" * 8,
]
OPS = [
    b"R",
    b"t",
    b"(",
    b"\x85",
    b"\x86",
    b"b",
    b"a",
    b"e",
    b"s",
    b"2",
    b"0",
    b"q\x00",
    b"h\x00",
    b"\x94",
    b"\x94\x8c\x01a",
    b"B\xff\xff\xff\x7f",
    b"\x8e" + (2**40).to_bytes(8, "little"),
    b"\x95" + (2**40).to_bytes(8, "little"),
]


@st.composite
def hostile_pickles(draw) -> bytes:
    """Opcode soup from the allowed globals, nasty sizes and stack ops: allocation bombs and crashes."""
    parts = [b"\x80\x04"]
    for _ in range(draw(st.integers(1, 24))):
        parts.append(draw(st.sampled_from(ALLOWED_GLOBALS + ARGS + OPS)))
    return b"".join(parts) + b"."


def check_label_pickle(raw: bytes) -> None:
    got = run_reader(lambda p: importers.read_label_pickle(p), raw, "train_label.pkl")
    if not isinstance(got, UserError):
        got_names, labels = got
        assert len(got_names) == labels.size and labels.dtype == np.int64
        assert all(isinstance(n, str) for n in got_names) and (labels >= 0).all()


@short(250)
@given(st.one_of(mutated(label_pickles()), hostile_pickles()))
def test_label_pickles_load_or_give_one_sentence_within_bounded_memory(raw):
    check_label_pickle(raw)


@pytest.mark.slow
@long(12_000)
@given(st.one_of(mutated(label_pickles()), hostile_pickles()))
def test_label_pickle_long_campaign(raw):
    check_label_pickle(raw)


class _PickledDtype:
    """Pickles as numpy pickles a dtype (`numpy.dtype(spec, False, True)` then BUILD) with any state."""

    def __init__(self, spec, state):
        self.spec, self.state = spec, state

    def __reduce__(self):
        return np.dtype, (self.spec, False, True), self.state


_DTYPES = [np.dtype(x) for x in ("f8", "<i4", "O", "V8", "U2", "M8[s]", ("i4", (2,)), [("a", "u1"), ("b", "O")])]
_STATE_PARTS = st.one_of(
    st.sampled_from(
        [
            None,
            -1,
            0,
            1,
            3,
            4,
            8,
            12,
            16,
            63,
            144,
            255,
            2**40,
            "x",
            "<",
            ">",
            "|",
            b"s",
            ("x",),
            ("x", "y"),
            (None, (b"s", 1, 1, 1)),
            (None, ("ms", 25, 1, 1)),
            {"a": 1},
        ]
    ),
    st.sampled_from(_DTYPES),
    st.tuples(st.sampled_from(_DTYPES), st.sampled_from([(), (2,), (3, 2)])),
    st.dictionaries(
        st.sampled_from(["x", "y", 2]),
        st.tuples(st.sampled_from(_DTYPES), st.sampled_from([0, 4, 8, 12, -4])),
        max_size=2,
    ),
)


@st.composite
def dtype_state_pickles(draw) -> bytes:
    """numpy dtypes with states changed part by part: numpy's own `__setstate__` accepts many that
    crash it later (a datetime without metadata, objects not flagged, a field past the end)."""
    template = draw(st.sampled_from(_DTYPES))
    state = list(template.__reduce__()[2])
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(state)))
        part = draw(_STATE_PARTS)
        state[at : at + 1] = [part]
    spec = draw(st.sampled_from(["f8", "V8", "M8", "m8", "O8", "U3", "V16", "i4", "S2", "c16"]))
    return pickle.dumps(_PickledDtype(spec, tuple(state)), protocol=2)


def check_dtype_pickle(raw: bytes) -> None:
    from data_prep.safe_pickle import safe_load

    got = run_reader(safe_load, raw, "dtype.pkl")
    if not isinstance(got, UserError):
        array = np.zeros(3, got)  # a dtype that loads is one numpy can use safely
        assert array.copy().tobytes() == array.tobytes()
        assert array.dtype == (got.subdtype[0] if got.subdtype else got)  # a subarray becomes axes


@short(200)
@given(dtype_state_pickles())
def test_pickled_dtype_states_load_as_usable_dtypes_or_give_one_sentence(raw):
    check_dtype_pickle(raw)


@pytest.mark.slow
@long(10_000)
@given(dtype_state_pickles())
def test_pickled_dtype_state_long_campaign(raw):
    check_dtype_pickle(raw)


def test_a_29_byte_pickle_of_a_2_gb_bytearray_is_refused_before_allocating():
    raw = b"\x80\x02c__builtin__\nbytearray\nJ\x00\x94\x35\x77\x85R."
    err = run_reader(lambda p: importers.read_label_pickle(p), raw, "bomb.pkl")
    assert isinstance(err, UserError) and "2000000000 bytes" in str(err)


def test_an_object_array_whose_items_do_not_match_its_shape_is_refused_not_crashed():
    raw = pickle.dumps(np.array([1, "x"], dtype=object), protocol=2).replace(b"K\x02\x85", b"J\x00\xe1\xf5\x05\x85")
    assert isinstance(run_reader(lambda p: importers.read_label_pickle(p), raw, "obj.pkl"), UserError)


# ------------------------------------------------------------------------- CTR-GCN .npz, .npy arrays


def _npz_bytes(n_train=2, n_test=1, frames=4, compressed=False) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    save = np.savez_compressed if compressed else np.savez
    save(
        buf,
        x_train=rng.normal(size=(n_train, frames, 150)).astype(np.float32),
        y_train=np.eye(n_train, 3),
        x_test=rng.normal(size=(n_test, frames, 150)).astype(np.float32),
        y_test=np.eye(n_test, 3),
    )
    return buf.getvalue()


NPZ = [_npz_bytes(), _npz_bytes(compressed=True)]


@st.composite
def npz_files(draw) -> bytes:
    return draw(st.sampled_from(NPZ))


def _import_ctrgcn(path):
    """What `hiclr-prep import ctrgcn` does: read the archive and stream it into a store."""
    out = path.with_suffix(".h5")
    summary = importers.write_imported(importers.import_ctrgcn(str(path), "xsub"), out, "custom", "ctrgcn", 3)
    return summary, out


def check_ctrgcn(raw: bytes) -> None:
    got = run_reader(_import_ctrgcn, raw, "NTU60_CS.npz")
    if not isinstance(got, UserError):
        summary, out = got
        assert verify_store(out) == [] and summary["samples"] >= 1


def _npy_bytes(shape=(2, 3, 4)) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape))
    return buf.getvalue()


def check_npy(raw: bytes) -> None:
    got = run_reader(lambda p: importers.load_array(p, "ST-GCN data"), raw, "train_data_joint.npy")
    if not isinstance(got, UserError):
        assert isinstance(got, np.ndarray)


@short(120)
@given(mutated(npz_files()))
def test_ctrgcn_archives_import_or_give_one_sentence(raw):
    check_ctrgcn(raw)


@short(150)
@given(mutated(st.just(_npy_bytes())))
def test_npy_arrays_load_or_give_one_sentence(raw):
    check_npy(raw)


@pytest.mark.slow
@long(5_000)
@given(mutated(npz_files()))
def test_ctrgcn_long_campaign(raw):
    check_ctrgcn(raw)


@pytest.mark.slow
@long(5_000)
@given(mutated(st.just(_npy_bytes())))
def test_npy_long_campaign(raw):
    check_npy(raw)


def test_a_truncated_ctrgcn_archive_gives_one_sentence():
    err = run_reader(_import_ctrgcn, NPZ[0][: len(NPZ[0]) // 2], "cut.npz")
    assert isinstance(err, UserError) and ("truncated" in str(err) or "expected an .npz archive" in str(err))


def test_an_npy_header_claiming_more_than_the_file_holds_is_refused():
    raw = _npy_bytes().replace(b"(2, 3, 4)", b"(2000000, 3000, 4)")
    err = run_reader(lambda p: importers.load_array(p, "ST-GCN data"), raw, "huge.npy")
    assert isinstance(err, UserError) and "holds" in str(err)


@pytest.mark.parametrize(
    "shape",
    [
        b"(999999999999999999992, 3, 4)",
        b"(2, 3, 99999999999999999999999)",
        b"(4611686018427387904, 3, 4)",
        b"(-2, 3, 4)",
    ],
)
def test_an_npy_header_with_a_shape_beyond_any_file_is_one_sentence(shape):
    """A dimension past int64 is an impossible shape in one sentence, not an overflow."""
    raw = _npy_bytes().replace(b"(2, 3, 4)", shape)
    err = run_reader(lambda p: importers.load_array(p, "ST-GCN data"), raw, "huge.npy")
    assert isinstance(err, UserError) and "impossible shape" in str(err)


def test_nasty_tokens_are_a_list_of_bytes():
    assert all(isinstance(t, bytes) and t for t in NASTY)
