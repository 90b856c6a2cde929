"""The NTU `.skeleton` reader and writer: real files, line endings, odd frames, and malformed input."""

from pathlib import Path

import numpy as np
import pytest

from data_prep.ntu import parse_ntu_name, read_skeleton, write_skeleton
from hiclr.common.errors import UserError
from tests.helpers.paths import FIXTURES_DIR

FIXTURES = FIXTURES_DIR / "ntu" / "skeletons"
REAL = FIXTURES / "S001C001P001R001A001.skeleton"
BIG_ID = 72057594037931101


def reference_parse(path):
    """A plain per-line reader used as the oracle: (body counts, ids, xyz per body record)."""
    lines = Path(path).read_text().splitlines()
    pos, counts, ids, xyz = 1, [], [], []
    for _ in range(int(lines[0])):
        n = int(lines[pos])
        pos += 1
        counts.append(n)
        for _ in range(n):
            ids.append(int(lines[pos].split()[0]))
            pos += 2
            xyz.append([[float(v) for v in lines[pos + j].split()[:3]] for j in range(25)])
            pos += 25
    return counts, ids, np.array(xyz, dtype=np.float32).reshape(-1, 25, 3)


def make_frames(bodies_per_frame, seed=0):
    rng = np.random.default_rng(seed)
    return [[(BIG_ID + b, rng.normal(size=(25, 3))) for b in range(n)] for n in bodies_per_frame]


def test_real_file_known_values_and_exact_body_id():
    skel = read_skeleton(REAL)
    assert skel.name == "S001C001P001R001A001"
    assert skel.num_frames == 103
    np.testing.assert_allclose(skel.joints[0, 0], [0.2181153, 0.1725972, 3.785547], rtol=0, atol=1e-7)
    np.testing.assert_allclose(skel.joints[0, 1], [0.2323292, 0.4326636, 3.714767], rtol=0, atol=1e-7)
    assert int(skel.body_ids[0]) == BIG_ID


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.skeleton")), ids=lambda p: p.stem)
def test_real_files_match_a_per_line_reader(path):
    counts, ids, xyz = reference_parse(path)
    skel = read_skeleton(path)
    assert skel.body_counts.tolist() == counts
    assert [int(i) for i in skel.body_ids] == ids
    np.testing.assert_array_equal(skel.joints, xyz)


def test_writer_round_trips_and_matches_the_real_grammar(tmp_path):
    real = read_skeleton(REAL)
    out = tmp_path / "S001C001P001R001A001.skeleton"
    write_skeleton(out, [[(int(real.body_ids[t]), real.joints[t])] for t in range(real.num_frames)])
    again = read_skeleton(out)
    np.testing.assert_array_equal(again.joints, real.joints)
    assert again.body_ids.tolist() == real.body_ids.tolist()
    written, original = out.read_text().splitlines(), REAL.read_text().splitlines()
    assert len(written) == len(original)
    for mine, theirs in zip(written, original):  # same fields per line, same x y z text
        assert len(mine.split()) == len(theirs.split())
    assert written[3].split()[:3] == original[3].split()[:3]
    assert not (tmp_path / (out.name + ".partial")).exists()


def test_crlf_and_lf_give_the_same_result(tmp_path):
    frames = make_frames([1, 2, 2, 1])
    write_skeleton(tmp_path / "lf.skeleton", frames)
    write_skeleton(tmp_path / "crlf.skeleton", frames, newline="\r\n")
    assert b"\r\n" in (tmp_path / "crlf.skeleton").read_bytes()
    lf, crlf = read_skeleton(tmp_path / "lf.skeleton"), read_skeleton(tmp_path / "crlf.skeleton")
    np.testing.assert_array_equal(lf.joints, crlf.joints)
    assert lf.body_counts.tolist() == crlf.body_counts.tolist() == [1, 2, 2, 1]
    assert lf.body_ids.tolist() == crlf.body_ids.tolist()


def test_zero_body_frames_and_more_than_two_bodies(tmp_path):
    frames = make_frames([0, 3, 0, 4, 1])
    write_skeleton(tmp_path / "x.skeleton", frames)
    skel = read_skeleton(tmp_path / "x.skeleton")
    assert skel.body_counts.tolist() == [0, 3, 0, 4, 1]
    assert skel.frame.tolist() == [1, 1, 1, 3, 3, 3, 3, 4]
    assert skel.slot.tolist() == [0, 1, 2, 0, 1, 2, 3, 0]
    expected = np.stack([j for f in frames for _, j in f]).astype(np.float32)
    np.testing.assert_allclose(skel.joints, expected, atol=1e-6)
    assert [int(i) for i in skel.body_ids] == [
        BIG_ID,
        BIG_ID + 1,
        BIG_ID + 2,
        BIG_ID,
        BIG_ID + 1,
        BIG_ID + 2,
        BIG_ID + 3,
        BIG_ID,
    ]


def test_unusual_whitespace_is_still_read(tmp_path):
    """Tabs, double spaces and trailing blanks take the robust path and give the same numbers."""
    frames = make_frames([2, 1])
    write_skeleton(tmp_path / "a.skeleton", frames)
    text = (tmp_path / "a.skeleton").read_text()
    (tmp_path / "b.skeleton").write_text(text.replace(" ", "  ", 5).replace("\n", " \n", 3).replace(" ", "\t", 7))
    a, b = read_skeleton(tmp_path / "a.skeleton"), read_skeleton(tmp_path / "b.skeleton")
    np.testing.assert_array_equal(a.joints, b.joints)
    assert a.body_ids.tolist() == b.body_ids.tolist()


def test_all_zero_frame_count_file(tmp_path):
    (tmp_path / "z.skeleton").write_text("0\n")
    skel = read_skeleton(tmp_path / "z.skeleton")
    assert skel.num_frames == 0 and skel.joints.shape == (0, 25, 3)


def _lines(tmp_path, bodies=(1, 1)):
    write_skeleton(tmp_path / "ok.skeleton", make_frames(list(bodies)))
    return (tmp_path / "ok.skeleton").read_text().split("\n")


def _expect_error(tmp_path, text, line, words):
    path = tmp_path / "bad.skeleton"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        read_skeleton(path)
    message = str(info.value)
    assert str(path) in message and f"line {line}:" in message, message
    for word in words:
        assert word in message, message
    assert message.count(". ") == 0 and "\n" not in message  # one sentence


def test_empty_file_is_an_error(tmp_path):
    _expect_error(tmp_path, "", 1, ["empty file"])


def test_truncated_file_is_an_error(tmp_path):
    lines = _lines(tmp_path)
    _expect_error(tmp_path, "\n".join(lines[:40]) + "\n", 41, ["joint fields", "end of the file"])


def test_missing_frames_are_an_error(tmp_path):
    lines = _lines(tmp_path)
    lines[0] = "3"
    _expect_error(tmp_path, "\n".join(lines), 58, ["number of bodies of frame 3", "end of the file"])


def test_extra_data_after_the_last_frame_is_an_error(tmp_path):
    lines = _lines(tmp_path)
    lines[0] = "1"
    _expect_error(tmp_path, "\n".join(lines), 30, ["end of the file after 1 frames"])


def test_non_number_is_an_error(tmp_path):
    lines = _lines(tmp_path)
    fields = lines[10].split(" ")
    fields[5] = "abc"  # a non-x y z field
    lines[10] = " ".join(fields)
    _expect_error(tmp_path, "\n".join(lines), 11, ["a number", "'abc'"])


def test_non_number_in_coordinates_is_an_error(tmp_path):
    lines = _lines(tmp_path)
    fields = lines[6].split(" ")
    fields[1] = "0.2x"
    lines[6] = " ".join(fields)
    _expect_error(tmp_path, "\n".join(lines), 7, ["a number", "0.2x"])


def test_nan_is_an_error(tmp_path):
    lines = _lines(tmp_path)
    lines[8] = "nan " + lines[8].split(" ", 1)[1]
    _expect_error(tmp_path, "\n".join(lines), 9, ["a number", "nan"])


def test_24_joints_is_an_error(tmp_path):
    lines = _lines(tmp_path)
    lines[3] = "24"
    _expect_error(tmp_path, "\n".join(lines), 4, ["number of joints, 25", "24"])


def test_a_missing_joint_line_is_an_error(tmp_path):
    lines = _lines(tmp_path)
    del lines[10]
    _expect_error(tmp_path, "\n".join(lines), 29, ["joint fields"])


def test_wrong_field_count_is_an_error(tmp_path):
    lines = _lines(tmp_path)
    lines[12] = lines[12].rsplit(" ", 1)[0]
    _expect_error(tmp_path, "\n".join(lines), 13, ["12 joint fields", "frame 1"])
    lines = _lines(tmp_path)
    lines[2] = lines[2] + " 7"
    _expect_error(tmp_path, "\n".join(lines), 3, ["10 body fields"])


def test_body_count_that_is_not_an_integer_is_an_error(tmp_path):
    lines = _lines(tmp_path)
    lines[1] = "1.5"
    _expect_error(tmp_path, "\n".join(lines), 2, ["number of bodies of frame 1"])


def test_parse_ntu_name():
    assert parse_ntu_name("S017C002P040R002A060.skeleton") == {
        "setup": 17,
        "camera": 2,
        "performer": 40,
        "replication": 2,
        "action": 60,
    }
    with pytest.raises(UserError, match="SsssCcccPpppRrrrAaaa"):
        parse_ntu_name("clip_0001.skeleton")


def test_prep_benchmark_readers_agree_and_report_the_contract_fields(tmp_path):
    import argparse

    from hiclr.bench import prep

    paths = prep.generate_files(tmp_path, 3, seed=1)
    for path in paths:
        np.testing.assert_array_equal(prep.reference_read_xyz(str(path)), prep.ours_read_xyz(str(path)))
    parser = argparse.ArgumentParser()
    prep.add_arguments(parser)
    result = prep.run(parser.parse_args(["--files", "2", "--repeat", "1"]))
    for key in ("baseline_samples_per_s", "samples_per_s", "speedup", "files_per_s", "mb_per_s", "baseline_mb_per_s"):
        assert result[key] > 0
    assert result["speedup"] == pytest.approx(result["samples_per_s"] / result["baseline_samples_per_s"])


def test_unusual_number_spellings_in_coordinates_match_float(tmp_path):
    """Exponents, '+', no leading/trailing digit, long mantissas and integers give float()'s value."""
    spellings = [
        "1e-05",
        "-1.234567E+02",
        "+0.5",
        "-0",
        "12",
        ".5",
        "5.",
        "-0.1234567890123456789",
        "000000000001234",
        "0.000000000000001",
        "-7.25",
        "3.785547",
        "0.0000001",
    ]
    write_skeleton(tmp_path / "a.skeleton", make_frames([1, 1]))
    lines = (tmp_path / "a.skeleton").read_text().split("\n")
    expected = []
    for k in range(25):
        fields = lines[4 + k].split(" ")
        for c in range(3):
            fields[c] = spellings[(3 * k + c) % len(spellings)]
        lines[4 + k] = " ".join(fields)
        expected.append([float(v) for v in fields[:3]])
    (tmp_path / "b.skeleton").write_text("\n".join(lines))
    skel = read_skeleton(tmp_path / "b.skeleton")
    np.testing.assert_array_equal(skel.joints[0], np.array(expected, dtype=np.float32))
    assert np.signbit(skel.joints[0].reshape(-1)[3]) == np.signbit(np.float32(float("-0")))


def test_a_very_long_line_is_still_checked(tmp_path):
    """A line too long for the fast path's counters takes the strict path and is reported."""
    lines = _lines(tmp_path)
    lines[6] = lines[6] + " 1" * 300
    _expect_error(tmp_path, "\n".join(lines), 7, ["12 joint fields"])


def test_a_coordinate_only_python_reads_as_a_number_is_refused_in_one_sentence(tmp_path):
    """`0.1e390` is a number to Python (inf) but not to the fast parser: one sentence naming the line."""
    row = b"0.0 0.0 0.0 256.5 212.1 960.2 540.3 1 0 0 0 2\r\n"
    path = tmp_path / "S001C001P001R001A001.skeleton"
    path.write_bytes(b"1\r\n1\r\n0 0 1 1 1 1 0 0.01 -0.02 2\r\n25\r\n" + row * 6 + b"0.1e390" + row[3:] + row * 18)
    with pytest.raises(UserError, match=r"line 11: expected a joint coordinate within \+-10000 m .* x = inf"):
        read_skeleton(path)
