"""Hypothesis strategies: valid inputs of each grammar, then hostile edits of their bytes."""

from __future__ import annotations

from hypothesis import strategies as st

# tokens a hostile or broken file might hold where a number belongs
NASTY = [
    b"1e39",
    b"-1e39",
    b"1e400",
    b"99999999999999999999",
    b"9223372036854775808",
    b"18446744073709551616",
    b"1000000000000",
    b"200000000",
    b"-1",
    b"-0",
    b"0",
    b"25",
    b"26",
    b"150",
    b"nan",
    b"inf",
    b"-inf",
    b"1_0",
    b"0x10",
    b"+",
    b"-",
    b".",
    b"e5",
    b"1e",
    b"1.2.3",
    b"--1",
    b"+-1",
    b"\x00",
    b"\xff",
    b"\t",
    b"\r",
    b"\r\n",
    b"  ",
    b"\n",
    b"\n\n",
    b"\x0b",
    b"1e-400",
    b"0" * 40 + b"1",
    b"1" * 400,
    b"\xc3\xa9",
    b"1,2",
    b",",
    b"1e4",
    b"10000.5",
    b"3.4028236e38",
]

coordinate = st.one_of(
    st.floats(-9.0, 9.0, allow_nan=False, width=32).map(lambda v: repr(float(v)).encode()),
    st.integers(-9, 9).map(lambda v: str(v).encode()),
    st.sampled_from([b"1e-05", b"+0.5", b"-0", b".5", b"5.", b"-1.234567E+00", b"0.0000001", b"000000000001234"]),
)


@st.composite
def ntu_files(draw) -> bytes:
    """A valid NTU `.skeleton` file of 0-3 frames with 0-2 bodies each (LF or CRLF)."""
    newline = draw(st.sampled_from([b"\n", b"\r\n"]))
    frames = draw(st.integers(0, 3))
    lines = [str(frames).encode()]
    for _ in range(frames):
        bodies = draw(st.integers(0, 2))
        lines.append(str(bodies).encode())
        for _ in range(bodies):
            body_id = draw(st.integers(0, 2**64 - 1))
            lines.append(str(body_id).encode() + b" 0 1 1 1 1 0 0.01 -0.02 2")
            lines.append(b"25")
            for _ in range(25):
                xyz = [draw(coordinate) for _ in range(3)]
                lines.append(b" ".join(xyz) + b" 256.5 212.1 960.2 540.3 1 0 0 0 2")
    return newline.join(lines) + newline


@st.composite
def pku_files(draw) -> bytes:
    """A valid PKU-MMD skeleton file of 1-4 frames (150 numbers a line)."""
    rows = draw(st.integers(1, 4))
    lines = [b" ".join(draw(coordinate) for _ in range(150)) for _ in range(rows)]
    return b"\n".join(lines) + draw(st.sampled_from([b"\n", b""]))


@st.composite
def pku_label_files(draw) -> bytes:
    rows = draw(
        st.lists(st.tuples(st.integers(1, 51), st.integers(1, 400), st.integers(0, 300), st.integers(1, 2)), max_size=5)
    )
    return b"".join(f"{a},{s},{s + d},{c}\n".encode() for a, s, d, c in rows)


@st.composite
def split_files(draw) -> bytes:
    name = st.from_regex(r"\A[0-9]{4}-[LMR]\Z", fullmatch=True)
    train = draw(st.lists(name, min_size=1, max_size=4, unique=True))
    test = draw(st.lists(name.filter(lambda n: n not in train), max_size=3, unique=True))
    title = draw(st.sampled_from([b"Validation videos:", b"Validataion videos:"]))
    return (
        b"Training videos: \n" + ", ".join(train).encode() + b",\n" + title + b"\n" + ", ".join(test).encode() + b"\n"
    )


@st.composite
def mutated(draw, valid) -> bytes:
    """`valid` bytes with 0-4 hostile edits: a byte flipped, a span cut or doubled, a nasty token put in."""
    data = bytearray(draw(valid))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "double", "insert", "replace_line", "truncate"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut":
            del data[at : at + draw(st.integers(1, 64))]
        elif kind == "double":
            data[at:at] = data[at : at + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[at:at] = draw(st.sampled_from(NASTY))
        elif kind == "replace_line":
            lines = bytes(data).split(b"\n")
            k = draw(st.integers(0, len(lines) - 1))
            words = lines[k].split(b" ")
            words[draw(st.integers(0, len(words) - 1))] = draw(st.sampled_from(NASTY))
            lines[k] = b" ".join(words)
            data = bytearray(b"\n".join(lines))
        elif kind == "truncate":
            del data[at:]
    return bytes(data)
