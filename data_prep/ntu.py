"""NTU RGB+D `.skeleton` files: a vectorised reader, a writer of the same grammar, sample names.

The reader never builds a Python object per joint: token positions come from the file's bytes, the
frame and body layout is checked with array operations, and only the x y z tokens are converted (bit
for bit what `float()` gives). Any fault is reported with its file, line and what was expected. The
grammar and the reader's paths: docs/internals.md, 'data_prep/ntu.py'.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hiclr.common.atomic import atomic_write_bytes
from hiclr.common.errors import UserError

NUM_JOINTS = 25
BODY_FIELDS = 10
JOINT_FIELDS = 12
NAME_RE = re.compile(r"^S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})$")
COORD_LIMIT = 1.0e4  # metres: a Kinect sees under 10 m, so any larger |x|, |y|, |z| is corrupt


@dataclass
class SkeletonFile:
    """All body records of one `.skeleton` file, in file order.

    `body_counts` (T,) bodies listed per frame; per body record (B = sum of `body_counts`):
    `body_ids` (B,) uint64, `frame` (B,) int64 frame index, `slot` (B,) int64 position within its
    frame, `joints` (B, 25, 3) float32 camera-space x, y, z in metres.
    """

    name: str
    body_counts: np.ndarray
    body_ids: np.ndarray
    frame: np.ndarray
    slot: np.ndarray
    joints: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(self.body_counts.shape[0])


def parse_ntu_name(name: str) -> dict[str, int]:
    """`S001C002P003R002A013` (with or without `.skeleton`) -> setup, camera, performer, replication, action."""
    stem = Path(name).name
    if stem.endswith(".skeleton"):
        stem = stem[: -len(".skeleton")]
    match = NAME_RE.match(stem)
    if not match:
        raise UserError(
            f"{name}: not an NTU sample name; expected the pattern SsssCcccPpppRrrrAaaa "
            f"(e.g. S001C001P001R001A001), rename the file or remove it from the folder"
        )
    setup, camera, performer, replication, action = (int(g) for g in match.groups())
    return {"setup": setup, "camera": camera, "performer": performer, "replication": replication, "action": action}


# ---------------------------------------------------------------------------------------- reader


def _fail(path: str, line: int, expected: str, found: str) -> UserError:
    return UserError(
        f"{path}, line {line}: expected {expected} but found {found}; "
        f"the file is truncated or malformed, re-extract it or move it out of the folder"
    )


def _first_bad_token(raw: bytes) -> tuple[int, str]:
    """(1-based line, token) of the first token that is not a decimal number (error path only)."""
    for number, line in enumerate(raw.split(b"\n"), start=1):
        for token in line.split():
            if token.translate(None, _NUMBER_CHARS) or not _DECIMAL_RE.fullmatch(token):
                return number, token.decode("ascii", "replace")[:40]
    return 1, "a token that is not a number"


_NUMBER_CHARS = b"0123456789.-+eE \n\r"
_ROBUST_CHARS = _NUMBER_CHARS + b"\t\x0b\x0c"  # what bytes.split() also treats as whitespace
_DECIMAL_RE = re.compile(rb"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_COUNT_RE = re.compile(rb"[+-]?\d{1,30}")
_POW10 = np.array([10**k for k in range(20)], dtype=np.uint64)
_PAD = 24  # bytes of padding (newlines) around the buffer for the windows
_PADDING = b"\n" * _PAD
_LOW_BYTES = np.array([(1 << (8 * k)) - 1 for k in range(8)], dtype=np.uint64)  # the first k bytes of a word
_CHUNK = 2048  # tokens per block of the float parser
_SPACE_WINDOW = 24  # longest token before a space that the fast path looks for
_FLOAT_WIDTH = 16  # x y z tokens are read right-aligned in 16-byte windows
_FLOAT_RIGHT = np.arange(_FLOAT_WIDTH - 1, -1, -1, dtype=np.int16)[:, None]  # columns right of each
_FLOAT_RIGHT_U8 = _FLOAT_RIGHT.astype(np.uint8)
_POW10_F = 10.0 ** np.arange(_FLOAT_WIDTH + 1)
_SIGN = np.array([1.0, -1.0])


def _windows(padded: np.ndarray, width: int) -> np.ndarray:
    """Every `width`-byte window of `padded` as rows of a read-only view (no copy)."""
    return np.lib.stride_tricks.as_strided(
        padded, shape=(padded.size - width + 1, width), strides=(1, 1), writeable=False
    )


def _parse_uints(padded: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray | None:
    """Unsigned decimal integers in the byte spans [starts, ends) of the unpadded buffer (None if any
    is not one). `padded` holds `_PAD` bytes before the buffer."""
    if starts.size == 0:
        return np.zeros(0, dtype=np.uint64)
    lengths = ends - starts
    width = int(lengths.max())
    if width > 19 or int(lengths.min()) < 1:
        return None
    rows = _windows(padded, width)[ends + (_PAD - width)]  # right-aligned tokens
    inside = np.arange(width - 1, -1, -1) < lengths[:, None]
    digits = rows - np.uint8(48)
    if (digits[inside] > 9).any():
        return None
    digits[~inside] = 0
    return digits.astype(np.uint64) @ _POW10[width - 1 :: -1]


_WORK = threading.local()


def _work_buffers(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(bool mask of `size`, uint64 scratch of size // 8 + 1) reused by the calling thread."""
    have = getattr(_WORK, "buffers", None)
    if have is None or have[0].size < size:
        have = _WORK.buffers = (
            np.empty(size + (size >> 2), dtype=np.bool_),
            np.empty((size + (size >> 2)) // 8 + 2, dtype=np.uint64),
        )
    return have[0][:size], have[1][: size // 8 + 1]


def _first_space(padded: np.ndarray, starts: np.ndarray) -> np.ndarray | None:
    """Offset of the first space at or after each of `starts` (None if one is not within 24 bytes)."""
    width = _SPACE_WINDOW
    records = np.ndarray((padded.size - width + 1,), dtype=f"V{width}", buffer=padded, strides=(1,))
    window = records[starts + _PAD].view(np.uint8).reshape(-1, width) == 32
    offset = np.argmax(window, axis=1)
    if not window[np.arange(offset.size), offset].all():
        return None
    return offset


def _parse_floats(raw: bytes, padded: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray | None:
    """`_parse_chunk` over blocks of tokens: small temporaries stay in cache and reuse freed memory."""
    values = np.empty(starts.size, dtype=np.float64)
    for at in range(0, starts.size, _CHUNK):
        part = _parse_chunk(raw, padded, starts[at : at + _CHUNK], ends[at : at + _CHUNK])
        if part is None:
            return None
        values[at : at + _CHUNK] = part
    return values


def _parse_chunk(raw: bytes, padded: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray | None:
    """float64 of the decimal numbers in the byte spans [starts, ends) (None if any is not a finite number).

    Plain `[-]digits[.digits]` tokens of up to 15 characters are converted with array arithmetic on
    a (16, N) matrix of the right-aligned tokens (no BLAS, no Python loop): the digits form an
    integer m < 10**15, exact in float64, and the value is m / 10**k with k fractional digits, one
    correctly rounded division, so the result is bit for bit what `float()` gives. Any other token
    (exponent, '+', longer) goes through `float()` on its own.
    """
    width = _FLOAT_WIDTH
    lengths = ends - starts
    records = np.ndarray((padded.size - width + 1,), dtype=f"V{width}", buffer=padded, strides=(1,))
    rows = np.ascontiguousarray(records[ends + (_PAD - width)].view(np.uint8).reshape(-1, width).T)
    inside = _FLOAT_RIGHT < np.minimum(lengths, 127).astype(np.int16)  # (16, N) token bytes
    digits = rows - np.uint8(48)
    is_digit = digits < 10
    dot = rows == 46
    dot &= inside
    other = is_digit | dot
    np.logical_not(other, out=other)
    other &= inside
    nother = other.view(np.uint8).sum(axis=0, dtype=np.uint8)
    ndots = dot.view(np.uint8).sum(axis=0, dtype=np.uint8)
    neg = padded[starts + _PAD] == 45
    plain = (nother == neg) & (ndots <= 1) & (lengths < width) & (lengths > neg + ndots)
    is_digit &= inside
    digits *= is_digit
    # the digits as one integer (the dot read as a 0 digit), in exact steps of 2, 4, 8, 16 digits
    pairs = digits[0::2] * np.uint8(10)
    pairs += digits[1::2]
    quads = pairs[0::2].astype(np.uint16) * np.uint16(100)
    quads += pairs[1::2]
    octs = quads[0::2].astype(np.uint32) * np.uint32(10000)
    octs += quads[1::2]
    total = octs[0] * 1e8
    total += octs[1]
    frac = (dot.view(np.uint8) * _FLOAT_RIGHT_U8).sum(axis=0, dtype=np.uint8)  # digits after the dot
    scale = _POW10_F[np.minimum(frac, width)]  # (several dots: not plain, redone below)
    # total = I * 10**(k+1) + r with r < 10**k (exact in float64, total < 10**15): floor(total / 10**k)
    # is 10 * I exactly, and the digits read without the dot are m = I * 10**k + r = total - 9 I 10**k.
    whole = total / scale
    np.floor(whole, out=whole)
    whole /= 10.0
    whole *= 9.0
    whole *= scale
    whole *= ndots  # 0 for tokens without a dot
    values = total - whole
    values /= scale
    values *= _SIGN[neg.view(np.uint8)]
    odd = np.flatnonzero(~plain)
    for i in odd.tolist():
        try:
            values[i] = float(raw[int(starts[i]) : int(ends[i])])
        except ValueError:
            return None
    if odd.size and not np.isfinite(values[odd]).all():
        return None
    return values


class _Tokens:
    """Where the tokens of a file are: tokens per line, each line's first token, the x y z values.

    `fast` handles the grammar as the Kinect tools write it (single spaces, only number characters)
    with a few passes over the bytes and array arithmetic over the x y z tokens only; anything
    unusual (tabs, double spaces, a letter) returns None and `robust` takes over: it tokenises on
    any ASCII whitespace and names the line of a character or an x y z token that is not a number.
    Both read only what is stored (counts, bodyIDs, x y z); the other fields need number characters.
    """

    def __init__(
        self,
        raw: bytes,
        padded: np.ndarray,
        line_starts: np.ndarray,
        per_line: np.ndarray,
        first_start: np.ndarray,
        first_end: np.ndarray,
    ):
        self.raw, self.padded, self.line_starts, self.per_line = raw, padded, line_starts, per_line
        self.first_start, self.first_end = first_start, first_end  # byte span of each line's first token
        self.xyz_fn = None

    def first_token(self, line: int) -> bytes:
        return self.raw[int(self.first_start[line]) : int(self.first_end[line])]

    def first_uints(self, lines: np.ndarray) -> np.ndarray | None:
        return _parse_uints(self.padded, self.first_start[lines], self.first_end[lines])

    def describe(self, line: int) -> str:
        """Short quote of 0-based `line` for an error message."""
        if line >= len(self.line_starts):
            return "the end of the file"
        start = int(self.line_starts[line])
        end = self.raw.find(b"\n", start)
        text = self.raw[start : end if end >= 0 else len(self.raw)].strip().decode("ascii", "replace")
        if not text:
            return "the end of the file" if line >= len(self.line_starts) - 1 else "an empty line"
        return f"'{text[:60]}{'...' if len(text) > 60 else ''}'"

    @classmethod
    def fast(cls, raw: bytes, padded: np.ndarray) -> _Tokens | None:
        if raw.translate(None, _NUMBER_CHARS):
            return None
        size = len(raw)
        buf = padded[_PAD : _PAD + size]
        # Two per-thread work buffers of the padded size: fresh pages for every file cost more
        # (page faults) than the passes over them.
        mask, scratch = _work_buffers(padded.size)
        np.equal(padded, 10, out=mask)
        newlines = np.flatnonzero(mask[_PAD : _PAD + size])
        line_starts = np.empty(newlines.size + 1, dtype=np.int64)
        line_starts[0] = 0
        np.add(newlines, 1, out=line_starts[1:])
        line_ends = np.empty_like(line_starts)
        line_ends[:-1] = newlines
        line_ends[-1] = size
        if b"\r" in raw:  # CRLF: every CR must end a line
            crlf = buf[np.maximum(newlines - 1, 0)] == 13
            if raw.count(b"\r") != np.count_nonzero(crlf):
                return None
            line_ends[:-1] -= crlf
        # single spaces only between tokens: none doubled, none at the start or end of a line
        # (the padding around the buffer holds no spaces)
        space = np.equal(padded, 32, out=mask)
        words = space.view(np.uint64)  # 8 bytes of 0/1 per word: popcount = spaces
        pairs = np.right_shift(words, np.uint64(8), out=scratch[1:])
        pairs &= words
        if pairs.any():
            return None
        pairs = np.right_shift(words[:-1], np.uint64(56), out=scratch[2:])
        pairs &= words[1:]
        if pairs.any() or space[line_starts + _PAD].any() or space[line_ends + (_PAD - 1)].any():
            return None
        # spaces before byte p = spaces in the words before p's word + those in its first p % 8 bytes,
        # counted modulo 256 (uint8 sums, no casts): exact per line as no line is over 510 bytes
        if int((line_ends - line_starts).max()) > 510:
            return None
        before = scratch.view(np.uint8)[: words.size + 1]
        before[0] = 0
        np.cumsum(np.bitwise_count(words), dtype=np.uint8, out=before[1:])

        def spaces_before(positions: np.ndarray) -> np.ndarray:
            word = positions >> 3
            partial = words[word] & _LOW_BYTES[positions & 7]
            return before[word] + np.bitwise_count(partial)  # uint8, wraps

        bounds = spaces_before(line_starts + _PAD)
        spaces_per_line = np.empty(bounds.size, dtype=np.int64)
        np.subtract(bounds[1:], bounds[:-1], out=spaces_per_line[:-1], casting="unsafe")
        spaces_per_line[-1] = np.uint8(before[-1] - bounds[-1])
        per_line = spaces_per_line + (line_ends > line_starts)
        first_end = line_ends.copy()
        multi = np.flatnonzero(spaces_per_line)
        if multi.size:
            offset = _first_space(padded, line_starts[multi])
            if offset is None:
                return None
            first_end[multi] = line_starts[multi] + offset
        tokens = cls(raw, padded, line_starts, per_line, line_starts, first_end)

        def xyz(joint_lines: np.ndarray) -> np.ndarray | None:
            lines = joint_lines.reshape(-1)
            starts = np.empty((lines.size, 3), dtype=np.int64)
            ends = np.empty((lines.size, 3), dtype=np.int64)
            starts[:, 0] = line_starts[lines]
            ends[:, 0] = first_end[lines]
            for k in (1, 2):
                starts[:, k] = ends[:, k - 1] + 1
                offset = _first_space(padded, starts[:, k])
                if offset is None:
                    return None
                ends[:, k] = starts[:, k] + offset
            values = _parse_floats(raw, padded, starts.reshape(-1), ends.reshape(-1))
            return None if values is None else values.reshape(joint_lines.shape + (3,))

        tokens.xyz_fn = xyz
        return tokens

    @classmethod
    def robust(cls, raw: bytes, padded: np.ndarray, path: str) -> _Tokens:
        buf = padded[_PAD : _PAD + len(raw)]
        newlines = np.flatnonzero(buf == 10)
        line_starts = np.concatenate(([0], newlines + 1))
        space = buf <= 32  # space, tab, CR, LF ...
        token_starts = np.flatnonzero(~space & np.concatenate(([True], space[:-1])))
        token_ends = np.flatnonzero(~space & np.concatenate((space[1:], [True]))) + 1
        per_line = np.bincount(np.searchsorted(newlines, token_starts), minlength=len(line_starts))
        first = np.concatenate(([0], np.cumsum(per_line)[:-1]))
        safe = np.minimum(first, max(token_starts.size - 1, 0))
        if raw.translate(None, _ROBUST_CHARS):
            line, token = _first_bad_token(raw)
            raise _fail(path, line, "a number", f"'{token}'")
        tokens = cls(raw, padded, line_starts, per_line, token_starts[safe], token_ends[safe])

        def xyz(joint_lines: np.ndarray) -> np.ndarray:
            at = (first[joint_lines][..., None] + np.arange(3)).reshape(-1)
            values = _parse_floats(raw, padded, token_starts[at], token_ends[at])
            if values is None:  # name the first token that is not a number
                for k in at.tolist():
                    token = raw[int(token_starts[k]) : int(token_ends[k])]
                    try:
                        float(token)
                    except ValueError:
                        line = int(np.searchsorted(newlines, token_starts[k])) + 1
                        raise _fail(path, line, "a number", f"'{token.decode('ascii', 'replace')[:40]}'") from None
                # every token is a number Python reads, but not the fast parser (e.g. 0.1e390): read
                # them one by one; `_checked_coordinates` then refuses what is not finite or too large
                values = np.array([float(raw[int(token_starts[k]) : int(token_ends[k])]) for k in at.tolist()])
            return values.reshape(joint_lines.shape + (3,))

        tokens.xyz_fn = xyz
        return tokens


_LINES_PER_BODY = 2 + NUM_JOINTS


def _layout_vectorised(tokens: _Tokens):
    """(frames, body counts, body-info lines) when the whole layout checks out, else None."""
    per_line = tokens.per_line
    nlines = per_line.size
    ones = np.flatnonzero(per_line == 1)
    if ones.size == 0 or ones[0] != 0:
        return None
    values = tokens.first_uints(ones)
    if values is None:
        return None
    value_at = np.full(nlines, -1, dtype=np.int64)
    value_at[ones] = np.minimum(values, np.uint64(nlines + 1)).astype(np.int64)  # no count exceeds the lines
    num_frames = int(value_at[0])
    if num_frames > nlines:
        return None
    body_lines = np.flatnonzero(per_line == BODY_FIELDS)
    if body_lines.size and (
        body_lines[-1] + _LINES_PER_BODY > nlines or (value_at[body_lines + 1] != NUM_JOINTS).any()
    ):
        return None
    joint_lines = body_lines[:, None] + 2 + np.arange(NUM_JOINTS)
    if joint_lines.size and (per_line[joint_lines] != JOINT_FIELDS).any():
        return None
    is_count = np.zeros(nlines, dtype=bool)
    is_count[body_lines + 1] = True
    is_count[0] = True
    headers = ones[~is_count[ones]]
    if headers.size != num_frames:
        return None
    body_counts = value_at[headers]
    if int(body_counts.sum()) * _LINES_PER_BODY > nlines:  # before anything is sized by the counts
        return None
    step = 1 + _LINES_PER_BODY * body_counts
    expected = 1 + np.cumsum(step) - step
    if not np.array_equal(headers, expected):
        return None
    first_of_frame = np.cumsum(body_counts) - body_counts
    within = np.arange(int(body_counts.sum())) - np.repeat(first_of_frame, body_counts)
    if not np.array_equal(body_lines, np.repeat(headers + 1, body_counts) + _LINES_PER_BODY * within):
        return None
    end = 1 + int(step.sum())
    if per_line[end:].any():
        return None
    return num_frames, body_counts, body_lines


def _layout_walk(tokens: _Tokens, path: str):
    """The same as `_layout_vectorised`, frame by frame, raising `UserError` at the first fault."""
    counts = tokens.per_line.tolist()

    def integer(line: int, what: str) -> int:
        if line >= len(counts) or counts[line] != 1:
            raise _fail(path, line + 1, what, tokens.describe(line))
        token = tokens.first_token(line)
        value = int(token) if _COUNT_RE.fullmatch(token) else -1
        if value < 0:
            raise _fail(path, line + 1, what, tokens.describe(line))
        return value

    num_frames = integer(0, "the number of frames (one integer)")
    body_counts: list[int] = []  # grown per frame read: a huge count fails at the end of the file
    body_lines: list[int] = []
    line = 1
    for t in range(num_frames):
        n = integer(line, f"the number of bodies of frame {t + 1} of {num_frames} (one integer)")
        body_counts.append(n)
        line += 1
        for m in range(n):
            if line >= len(counts) or counts[line] != BODY_FIELDS:
                raise _fail(
                    path, line + 1, f"{BODY_FIELDS} body fields (frame {t + 1}, body {m + 1})", tokens.describe(line)
                )
            joints = integer(line + 1, f"the number of joints, {NUM_JOINTS} (frame {t + 1}, body {m + 1})")
            if joints != NUM_JOINTS:
                raise _fail(
                    path, line + 2, f"the number of joints, {NUM_JOINTS} (frame {t + 1}, body {m + 1})", f"{joints}"
                )
            for j in range(NUM_JOINTS):
                at = line + 2 + j
                if at >= len(counts) or counts[at] != JOINT_FIELDS:
                    raise _fail(
                        path,
                        at + 1,
                        f"{JOINT_FIELDS} joint fields (frame {t + 1}, body {m + 1}, joint {j + 1} of {NUM_JOINTS})",
                        tokens.describe(at),
                    )
            body_lines.append(line)
            line += _LINES_PER_BODY
    rest = np.flatnonzero(tokens.per_line[line:])
    if rest.size:
        bad = line + int(rest[0])
        raise _fail(path, bad + 1, f"the end of the file after {num_frames} frames", tokens.describe(bad))
    return num_frames, np.asarray(body_counts, dtype=np.int64), np.asarray(body_lines, dtype=np.int64)


def read_skeleton(path: str | os.PathLike) -> SkeletonFile:
    """Parse one NTU `.skeleton` file; raise `UserError` (file, line, what was expected) if malformed."""
    path = os.fspath(path)
    name = Path(path).name
    name = name[: -len(".skeleton")] if name.endswith(".skeleton") else Path(path).stem
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise UserError(f"{path}: cannot be read ({err.strerror}); check the path and permissions") from None
    if not raw or raw.isspace():
        raise _fail(path, 1, "the number of frames", "an empty file")
    if len(raw) >= 2**31:
        raise UserError(f"{path}: {len(raw)} bytes is too large for one skeleton file; check that it is one")
    tail = _PADDING + b"\n" * (-(2 * _PAD + len(raw)) % 8)  # a whole number of 8-byte words
    padded = np.frombuffer(b"".join((_PADDING, raw, tail)), dtype=np.uint8)
    tokens = _Tokens.fast(raw, padded) or _Tokens.robust(raw, padded, path)
    layout = _layout_vectorised(tokens) or _layout_walk(tokens, path)
    num_frames, body_counts, body_lines = layout

    joint_lines = body_lines[:, None] + 2 + np.arange(NUM_JOINTS)  # (B, 25)
    if joint_lines.size:
        xyz = tokens.xyz_fn(joint_lines)
        if xyz is None:  # an odd token among x y z: parse everything
            xyz = _Tokens.robust(raw, padded, path).xyz_fn(joint_lines)
        joints = _checked_coordinates(xyz, joint_lines, path)
    else:
        joints = np.zeros((0, NUM_JOINTS, 3), dtype=np.float32)

    # bodyID is a 64-bit integer: a float64 would lose its last digits, so parse it from the bytes.
    ids = tokens.first_uints(body_lines)
    if ids is None:
        ids = []
        for bl in body_lines.tolist():
            token = tokens.first_token(bl)
            try:
                value = int(token)
            except ValueError:
                raise _fail(path, bl + 1, "an integer bodyID", f"'{token.decode('ascii', 'replace')}'") from None
            if not 0 <= value < 2**64:
                raise _fail(path, bl + 1, "a bodyID between 0 and 2**64 - 1", str(value))
            ids.append(value)
        ids = np.array(ids, dtype=np.uint64)
    frame = np.repeat(np.arange(num_frames, dtype=np.int64), body_counts)
    first_of_frame = (np.cumsum(body_counts) - body_counts).astype(np.int64)
    slot = np.arange(frame.size, dtype=np.int64) - np.repeat(first_of_frame, body_counts)
    return SkeletonFile(name=name, body_counts=body_counts, body_ids=ids, frame=frame, slot=slot, joints=joints)


def _checked_coordinates(xyz: np.ndarray, joint_lines: np.ndarray, path: str) -> np.ndarray:
    """float32 x y z, after checking each is a finite number within `COORD_LIMIT` metres."""
    bad = ~(np.abs(xyz) <= COORD_LIMIT)  # NaN and inf fail too
    if bad.any():
        body, joint, axis = (int(i[0]) for i in np.nonzero(bad))
        raise _fail(
            path,
            int(joint_lines[body, joint]) + 1,
            f"a joint coordinate within +-{COORD_LIMIT:g} m (a Kinect sees under 10 m)",
            f"{'xyz'[axis]} = {float(xyz[body, joint, axis])!r}",
        )
    return xyz.astype(np.float32)


# ---------------------------------------------------------------------------------------- writer

_JOINT_FMT = " ".join(["%.7g"] * 11) + " %d"


def _joint_lines(joints: np.ndarray, newline: str) -> str:
    """Format one body's 25 joints with plausible Kinect v2 depth/colour projections and orientations."""
    joints = np.asarray(joints, dtype=np.float64)
    if joints.shape != (NUM_JOINTS, 3):
        raise ValueError(f"joints must be ({NUM_JOINTS}, 3), got {joints.shape}")
    x, y, z = joints[:, 0], joints[:, 1], joints[:, 2]
    depth = np.where(np.abs(z) > 1e-6, z, 1e-6)
    fields = np.zeros((NUM_JOINTS, 12))
    fields[:, :3] = joints
    fields[:, 3] = 256.0 + 365.5 * x / depth  # depthX (512 x 424 sensor)
    fields[:, 4] = 212.0 - 365.5 * y / depth  # depthY
    fields[:, 5] = 960.0 + 1060.0 * x / depth + 15.0  # colorX (1920 x 1080)
    fields[:, 6] = 540.0 - 1060.0 * y / depth + 25.0  # colorY
    angle = 0.1 * np.arange(NUM_JOINTS)  # a unit quaternion per joint
    fields[:, 7] = np.cos(angle)
    fields[:, 9] = np.sin(angle)
    fields[[3, 15, 19, 21, 22, 23, 24], 7:11] = 0.0  # end joints carry no orientation in real data
    fields[:, 11] = 2  # tracked
    rows = fields.tolist()
    return newline.join(_JOINT_FMT % tuple(r) for r in rows) + newline


def write_skeleton(path: str | os.PathLike, frames: list[list[tuple[int, np.ndarray]]], newline: str = "\n") -> None:
    """Write frames (each a list of `(body_id, joints (25, 3))`) as an NTU `.skeleton` file.

    The output follows the real grammar byte for byte (`%.7g` numbers, single spaces, `newline`
    after every line, including the last), so `read_skeleton` and the reference reader both accept it.
    """
    if newline not in ("\n", "\r\n"):
        raise ValueError("newline must be '\\n' or '\\r\\n'")
    parts = [f"{len(frames)}{newline}"]
    for bodies in frames:
        parts.append(f"{len(bodies)}{newline}")
        for body_id, joints in bodies:
            body_id = int(body_id)
            if not 0 <= body_id < 2**64:
                raise ValueError(f"body_id must fit in 64 bits unsigned, got {body_id}")
            lean = np.asarray(joints, dtype=np.float64)[:, :2].mean(axis=0) * 0.05
            parts.append(f"{body_id} 0 1 1 1 1 0 {lean[0]:.7g} {lean[1]:.7g} 2{newline}")
            parts.append(f"{NUM_JOINTS}{newline}")
            parts.append(_joint_lines(joints, newline))
    atomic_write_bytes(path, "".join(parts).encode("ascii"), durable=False)
