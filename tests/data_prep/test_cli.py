"""`hiclr-prep ntu60|ntu120|info|verify` end to end, and every bad input: exit 1, one sentence, no file."""

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from data_prep.cli import main
from data_prep.ntu import write_skeleton
from tests.helpers.paths import FIXTURES_DIR

FIXTURES = FIXTURES_DIR / "ntu"
EXPECTED = np.load(FIXTURES / "expected_frame50.npz")


@pytest.fixture
def raw(tmp_path):
    folder = tmp_path / "raw"
    shutil.copytree(FIXTURES / "skeletons", folder)
    return folder


def add_file(folder, name, frames=30, bodies=1, seed=0):
    rng = np.random.default_rng(seed)
    joints = rng.normal(size=(bodies, frames, 25, 3)) + [0, 0, 3]
    write_skeleton(
        folder / f"{name}.skeleton",
        [[(72057594037927936 + b, joints[b, t]) for b in range(bodies)] for t in range(frames)],
    )


def one_error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert err.startswith("hiclr-prep: error: ") and "\n" not in err, err
    return err


def test_prep_fixtures_then_verify_and_info(raw, tmp_path, capsys):
    out = tmp_path / "ntu60.h5"
    assert main(["ntu60", "--raw", str(raw), "--out", str(out)]) == 0
    summary = capsys.readouterr().out
    assert "5 samples of ntu60" in summary and "xsub 5/0" in summary and "xview 0/5" in summary
    with h5py.File(out, "r") as f:
        assert f["samples/name"].asstr()[()].tolist() == EXPECTED["names"].tolist()
        np.testing.assert_array_equal(f["samples/label"][()], EXPECTED["label"])
        np.testing.assert_allclose(f["views/frame50"][()], EXPECTED["frame50"], atol=1e-4)
        assert f["raw/length"][()].tolist() == [103, 158, 104, 99, 54]
    assert main(["verify", str(out)]) == 0
    assert capsys.readouterr().out.strip().endswith("OK")
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ntu60" in text and "samples   5" in text and "xsub      train 5, test 0" in text
    assert main(["info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["protocols"]["xview"] == {"train": 0, "test": 5}


def test_the_library_function_writes_what_the_command_writes_and_summarises_it(raw, tmp_path, capsys):
    from data_prep.ntu_prepare import prepare_ntu, summary_line

    by_command, by_function = tmp_path / "command.h5", tmp_path / "function.h5"
    assert main(["ntu60", "--raw", str(raw), "--out", str(by_command)]) == 0
    printed = capsys.readouterr().out.strip()
    summary = prepare_ntu("ntu60", raw, by_function)
    assert summary["samples"] == 5 and summary["splits"]["xview"] == {"train": 0, "test": 5}
    assert summary_line(summary) == printed.replace(str(by_command), str(by_function))
    with h5py.File(by_command, "r") as a, h5py.File(by_function, "r") as b:
        assert a["samples/name"].asstr()[()].tolist() == b["samples/name"].asstr()[()].tolist()
        np.testing.assert_array_equal(a["views/frame50"][()], b["views/frame50"][()])


def test_parallel_prep_and_motion_bodies_give_a_sound_store(raw, tmp_path, capsys):
    add_file(raw, "S001C002P002R001A050", bodies=2)
    add_file(raw, "S018C001P008R001A100", bodies=1)  # NTU120 only
    one, many = tmp_path / "one.h5", tmp_path / "many.h5"
    assert main(["ntu120", "--raw", str(raw), "--out", str(one), "--bodies", "motion"]) == 0
    assert main(["ntu120", "--raw", str(raw), "--out", str(many), "--bodies", "motion", "--workers", "2"]) == 0
    with h5py.File(one, "r") as a, h5py.File(many, "r") as b:
        assert a["samples/name"].asstr()[()].tolist() == b["samples/name"].asstr()[()].tolist()
        np.testing.assert_array_equal(a["views/frame50"][()], b["views/frame50"][()])
        np.testing.assert_array_equal(a["raw/data"][()], b["raw/data"][()])
        assert a["samples/label"][()].max() == 99
        assert sorted(a["splits"]) == ["xset", "xsub"]
    assert main(["verify", str(many)]) == 0


def test_missing_list_samples_and_other_setups_are_skipped_and_counted(raw, tmp_path, capsys):
    add_file(raw, "S001C002P005R002A008")  # on the official missing list
    add_file(raw, "S018C001P008R001A001")  # setup 18: not NTU60
    out = tmp_path / "x.h5"
    assert main(["ntu60", "--raw", str(raw), "--out", str(out)]) == 0
    summary = capsys.readouterr().out
    assert "5 samples" in summary and "skipped 1 on the missing list" in summary and "1 outside ntu60" in summary
    with h5py.File(out, "r") as f:
        counts = json.loads(f.attrs["counts"])
    assert counts["skipped_missing"] == 1 and counts["outside_dataset"] == 1 and counts["files_found"] == 7
    own = tmp_path / "missing.txt"
    own.write_text("S001C001P001R001A001\n")
    assert main(["ntu60", "--raw", str(raw), "--out", str(out), "--missing-list", str(own), "--limit", "2"]) == 0
    with h5py.File(out, "r") as f:
        assert f["samples/name"].asstr()[()].tolist() == ["S001C001P001R001A002", "S001C001P001R001A003"]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_malformed_file_aborts_with_file_and_line_and_leaves_nothing(raw, tmp_path, capsys, workers):
    bad = raw / "S001C001P001R001A004.skeleton"
    bad.write_text("\n".join(bad.read_text().split("\n")[:100]))
    out = tmp_path / "out" / "x.h5"
    assert main(["ntu60", "--raw", str(raw), "--out", str(out), "--workers", workers]) == 1
    err = one_error_line(capsys)
    assert "S001C001P001R001A004.skeleton, line 101:" in err and "expected" in err
    assert not out.exists() and not Path(str(out) + ".partial").exists()


def test_skip_bad_counts_malformed_files(raw, tmp_path, capsys):
    (raw / "S001C001P001R001A004.skeleton").write_text("99\n1\n")
    out = tmp_path / "x.h5"
    assert main(["ntu60", "--raw", str(raw), "--out", str(out), "--skip-bad"]) == 0
    assert "and 1 malformed" in capsys.readouterr().out
    with h5py.File(out, "r") as f:
        assert json.loads(f.attrs["counts"])["skipped_bad"] == 1
        assert f["samples/name"].shape == (4,)


def test_all_files_malformed_with_skip_bad_is_an_error(tmp_path, capsys):
    (tmp_path / "S001C001P001R001A001.skeleton").write_text("")
    assert main(["ntu60", "--raw", str(tmp_path), "--out", str(tmp_path / "x.h5"), "--skip-bad"]) == 1
    assert "malformed" in one_error_line(capsys)
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.parametrize("case", ["empty", "absent", "bad_name", "workers", "suffix"])
def test_bad_command_lines_fail_with_one_sentence(tmp_path, capsys, case):
    folder = tmp_path / "raw"
    folder.mkdir()
    args = ["ntu60", "--raw", str(folder), "--out", str(tmp_path / "x.h5")]
    expected = {
        "empty": "no .skeleton files found",
        "absent": "not a folder",
        "bad_name": "clip.skeleton: not an NTU sample name",
        "workers": "--workers 0",
        "suffix": "must be an .h5",
    }[case]
    if case == "absent":
        args[2] = str(tmp_path / "nowhere")
    if case == "bad_name":
        add_file(folder, "clip")
    if case == "workers":
        add_file(folder, "S001C001P001R001A001")
        args += ["--workers", "0"]
    if case == "suffix":
        add_file(folder, "S001C001P001R001A001")
        args[4] = str(tmp_path / "x.txt")
    assert main(args) == 1
    assert expected in one_error_line(capsys)
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "x.txt").exists()


def test_verify_reports_problems_with_exit_1(raw, tmp_path, capsys):
    out = tmp_path / "x.h5"
    assert main(["ntu60", "--raw", str(raw), "--out", str(out)]) == 0
    with h5py.File(out, "r+") as f:
        f["views/frame50"][0, 0, 0, 0, 0] = np.inf
    capsys.readouterr()
    assert main(["verify", str(out)]) == 1
    text = capsys.readouterr().out
    assert "non-finite" in text and "/views/frame50 does not match its stored sha256" in text
    assert "2 problem(s) found" in text


def test_info_and_verify_on_bad_files_fail_with_one_sentence(tmp_path, capsys):
    assert main(["info", str(tmp_path / "absent.h5")]) == 1
    assert "no such file" in one_error_line(capsys)
    (tmp_path / "old.h5").touch()
    with h5py.File(tmp_path / "old.h5", "w") as f:
        f.attrs["format_version"] = 7
    assert main(["verify", str(tmp_path / "old.h5")]) == 1
    assert "format version 7" in one_error_line(capsys)


def test_streamed_prep_equals_the_whole_files_written_one_by_one(tmp_path, capsys):
    """Parallel, block-streamed prep of more files than a block holds gives exactly the serial store."""
    from data_prep import store

    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(40):
        add_file(folder, f"S001C00{1 + i % 3}P{1 + i % 7:03d}R001A{1 + i:03d}", frames=20 + i, bodies=1 + i % 2, seed=i)
    old_block = store._BLOCK
    store._BLOCK = 8
    try:
        assert main(["ntu60", "--raw", str(folder), "--out", str(tmp_path / "p.h5"), "--workers", "2", "--stats"]) == 0
    finally:
        store._BLOCK = old_block
    assert main(["ntu60", "--raw", str(folder), "--out", str(tmp_path / "s.h5")]) == 0
    printed = capsys.readouterr().out
    assert "stats: files=40, workers=2" in printed and "peak_tree_pss_mib=" in printed
    with h5py.File(tmp_path / "p.h5") as a, h5py.File(tmp_path / "s.h5") as b:
        for key in ("views/frame50", "raw/data", "raw/offset", "samples/label", "splits/xsub/train"):
            np.testing.assert_array_equal(a[key][()], b[key][()])


def test_motion_fixes_are_recorded_and_need_motion_bodies(raw, tmp_path, capsys):
    out = tmp_path / "m.h5"
    assert main(["ntu60", "--raw", str(raw), "--out", str(out), "--bodies", "motion", "--motion-fix", "all"]) == 0
    with h5py.File(out) as f:
        assert json.loads(f.attrs["preset"])["motion_fixes"] == ["empty-frames", "touching", "third-body", "gaps"]
    assert main(["ntu60", "--raw", str(raw), "--out", str(out), "--motion-fix", "touching"]) == 1
    assert "add --bodies motion" in one_error_line(capsys)


def test_synthetic_data_stores_its_own_class_names(tmp_path):
    data = tmp_path / "synth"
    assert main(["synth", "--out", str(data), "--subjects", "2", "--cameras", "1", "--repeats", "1"]) == 0
    out = tmp_path / "s.h5"
    assert main(["ntu60", "--raw", str(data), "--out", str(out)]) == 0
    with h5py.File(out) as f:
        names = f["classes/name"].asstr()[()].tolist()
    assert len(names) == 60 and names[:2] == ["raise and lower arms", "squat"] and names[18] == "class 18"
