"""Protocols of NTU60/120 reproduce the official split sizes; the bundled missing lists are complete."""

import numpy as np
import pytest

from data_prep.missing import load_missing_list, missing_samples, parse_missing_list
from data_prep.ntu import parse_ntu_name
from data_prep.splits import NTU60_MAX_SETUP, ntu_splits
from hiclr.common.errors import UserError
from tests.helpers.paths import FIXTURES_DIR

LISTS = FIXTURES_DIR / "ntu" / "lists"


@pytest.fixture(scope="module")
def available():
    names = (LISTS / "ntu120_skes_available_name.txt").read_text().split()
    meta = [parse_ntu_name(n) for n in names]
    return names, {k: np.array([m[k] for m in meta]) for k in ("setup", "camera", "performer", "replication", "action")}


def sizes(splits):
    return {p: (len(s["train"]), len(s["test"])) for p, s in splits.items()}


def subset(meta, mask):
    return {k: v[mask] for k, v in meta.items()}


def test_ntu60_split_sizes_are_official(available):
    _, meta = available
    ntu60 = subset(meta, meta["setup"] <= NTU60_MAX_SETUP)
    assert len(ntu60["setup"]) == 56578
    assert sizes(ntu_splits(ntu60, "ntu60")) == {"xsub": (40091, 16487), "xview": (37646, 18932)}


def test_ntu120_split_sizes_are_official(available):
    _, meta = available
    assert sizes(ntu_splits(meta, "ntu120")) == {"xsub": (63026, 50919), "xset": (54468, 59477)}


def test_splits_are_sorted_disjoint_and_cover_every_sample(available):
    _, meta = available
    for parts in ntu_splits(meta, "ntu120").values():
        train, test = parts["train"], parts["test"]
        assert train.dtype == test.dtype == np.int64
        assert (np.diff(train) > 0).all() and (np.diff(test) > 0).all()
        assert np.intersect1d(train, test).size == 0
        assert train.size + test.size == meta["setup"].size
    xsub = ntu_splits(meta, "ntu120")["xsub"]
    assert not set(meta["performer"][xsub["train"]]) & set(meta["performer"][xsub["test"]])


def test_bundled_missing_lists_match_the_official_files(available):
    names, _ = available
    ntu60, ntu120 = missing_samples("ntu60"), missing_samples("ntu120")
    assert len(ntu60) == 302 and len(ntu120) == 535 and ntu60 <= ntu120
    assert ntu120 == load_missing_list(LISTS / "NTU_RGBD120_samples_with_missing_skeletons.txt")
    assert ntu60 == load_missing_list(LISTS / "samples_with_missing_skeletons.stgcn_noheader.txt")
    assert not ntu120 & set(names)  # the available list excludes them all
    assert len(names) + len(ntu120) == 114480  # the full NTU120 count


def test_missing_list_parser_ignores_headers_and_suffixes(tmp_path):
    text = "302 of the captured samples ...\n\nS001C002P005R002A008.skeleton\n S001C002P006R001A008 \n"
    assert parse_missing_list(text) == {"S001C002P005R002A008", "S001C002P006R001A008"}
    (tmp_path / "empty.txt").write_text("nothing here\n")
    with pytest.raises(UserError, match="empty.txt"):
        load_missing_list(tmp_path / "empty.txt")
