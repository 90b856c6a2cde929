"""Plain-Python oracles of the raw grammars: what the vectorised readers must return, or refuse.

Slow and obvious on purpose (one token at a time, straight from the grammar in the readers'
docstrings), so that a fuzzed file that the fast reader accepts can be checked value for value.
Each returns None where the input is not in the grammar. NTU: every token is made of number
characters; the stored ones (counts, bodyIDs, x y z) must be numbers of their kind.
"""

from __future__ import annotations

import re

import numpy as np

ALLOWED = b"0123456789.-+eE \t\r\n\x0b\x0c"
DECIMAL = re.compile(rb"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
COUNT = re.compile(rb"[+-]?\d{1,30}")
INTEGER = re.compile(rb"[+-]?\d+")
COORD_LIMIT = 1.0e4


def _tokens(raw: bytes, every_token_a_number: bool = True):
    if raw.translate(None, ALLOWED):
        return None
    lines = [line.split() for line in raw.split(b"\n")]
    if every_token_a_number and not all(DECIMAL.fullmatch(t) for line in lines for t in line):
        return None
    return lines


def ntu_skeleton(raw: bytes):
    """(body_counts, body_ids, frame, slot, joints (B, 25, 3) float32) of an NTU `.skeleton` file, or None."""
    if not raw or raw.isspace():
        return None
    lines = _tokens(raw, every_token_a_number=False)  # fields that are not stored need number characters
    if lines is None:
        return None

    def count(i):
        if i >= len(lines) or len(lines[i]) != 1 or not COUNT.fullmatch(lines[i][0]):
            return None
        value = int(lines[i][0])
        return value if value >= 0 else None

    frames = count(0)
    if frames is None:
        return None
    counts, ids, frame, slot, joints = [], [], [], [], []
    i = 1
    for t in range(frames):
        bodies = count(i)
        if bodies is None:
            return None
        i += 1
        counts.append(bodies)
        for m in range(bodies):
            if i >= len(lines) or len(lines[i]) != 10 or not INTEGER.fullmatch(lines[i][0]):
                return None
            try:
                body_id = int(lines[i][0])
            except ValueError:  # more digits than int() reads
                return None
            if not 0 <= body_id < 2**64 or count(i + 1) != 25:
                return None
            xyz = []
            for j in range(25):
                row = lines[i + 2 + j] if i + 2 + j < len(lines) else []
                if len(row) != 12:
                    return None
                if not all(DECIMAL.fullmatch(v) for v in row[:3]):
                    return None
                values = [float(v) for v in row[:3]]
                if not all(abs(v) <= COORD_LIMIT for v in values):
                    return None
                xyz.append(values)
            ids.append(body_id)
            frame.append(t)
            slot.append(m)
            joints.append(xyz)
            i += 27
    if any(lines[i:]):
        return None
    return (
        np.array(counts, dtype=np.int64),
        np.array(ids, dtype=np.uint64),
        np.array(frame, dtype=np.int64),
        np.array(slot, dtype=np.int64),
        np.array(joints, dtype=np.float64).reshape(-1, 25, 3).astype(np.float32),
    )


def pku_skeleton(raw: bytes):
    """(T, 25, 3, 2) float32 of a PKU-MMD skeleton file (150 numbers a line), or None."""
    lines = _tokens(raw)
    if lines is None:
        return None
    if raw.endswith(b"\n"):
        lines = lines[:-1]
    if lines and not lines[-1]:
        lines = lines[:-1]  # one empty last line is allowed
    if not lines or any(len(line) != 150 for line in lines):
        return None
    values = np.array([[float(v) for v in line] for line in lines])
    if not (np.abs(values) <= COORD_LIMIT).all():
        return None
    return np.ascontiguousarray(values.reshape(-1, 2, 25, 3).astype(np.float32).transpose(0, 2, 3, 1))


LABEL_FIELD = re.compile(r"[+-]?\d{1,12}(\.0*)?")


def pku_labels(text: str):
    """(K, 4) int64 rows label, start, end, confidence of a PKU-MMD label file, or None."""
    rows = []
    for line in text.splitlines():
        line = line.strip().rstrip(",")
        if not line:
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 4 or not all(LABEL_FIELD.fullmatch(f) for f in fields):
            return None
        label, start, end, conf = (int(f.split(".")[0]) for f in fields)
        if not (1 <= label <= 51 and 1 <= start <= end):
            return None
        rows.append([label, start, end, conf])
    return np.array(rows, dtype=np.int64).reshape(-1, 4)
