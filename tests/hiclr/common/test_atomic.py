"""Atomic writes: a file appears complete or not at all, and a failed write leaves nothing behind."""

import pytest

from hiclr.common.atomic import atomic_path, atomic_write, atomic_write_text


def test_a_completed_write_replaces_the_old_file_and_leaves_no_partial(tmp_path):
    path = tmp_path / "sub" / "report.md"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    assert [p.name for p in path.parent.iterdir()] == ["report.md"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_partial(tmp_path):
    path = tmp_path / "last.pt"
    atomic_write_text(path, "good checkpoint")

    def crash(f):
        f.write(b"half a checkpo")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash)
    assert path.read_text() == "good checkpoint"
    assert not (tmp_path / "last.pt.partial").exists()


def test_atomic_path_hands_out_the_partial_name_until_the_block_succeeds(tmp_path):
    path = tmp_path / "store.h5"
    with atomic_path(path, durable=False) as tmp:
        assert tmp.name == "store.h5.partial"
        tmp.write_bytes(b"data")
        assert not path.exists()
    assert path.read_bytes() == b"data" and not tmp.exists()
