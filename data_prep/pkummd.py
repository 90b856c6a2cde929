"""PKU-MMD phase 1 and 2: skeleton files, label files, the official split files, labelled segments.

Layout: `skeletons/NAME.txt` (one frame per line, 150 numbers: body 1 then body 2, 25 joints x 3;
body 2 all zeros when absent), `labels/NAME.txt` (`label,start,end,confidence` per line, frames
1-based inclusive), split files (`Training videos:` line, a comma-separated list, `Validation
videos:` line, a list; the originals spell it `Validataion`). Each labelled segment is a sample:
rows start-1 .. end-1, the centre 300 frames when longer, label - 1.

Both phases write action ids of one id space, 1..51: phase 2's 41 actions keep the ids they have
in phase 1, so its label files hold ids above 41. A store of either phase therefore has 51 classes
(heads of 51 outputs, as the public phase-2 pipelines build them) and records the ids present
(`action_ids_present`); reports show only the classes that occur.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from data_prep.empty import empty_counts, is_empty
from hiclr.common.errors import UserError

V, C, M = 25, 3, 2
ROW = V * C * M  # 150 numbers per frame
MAX_FRAMES = 300
PKU_CLASSES = {1: 51, 2: 41}  # actions each phase holds
NUM_LABELS = 51  # PKU-MMD's action ids run from 1 to 51 (both phases): the stores' classes
PROTOCOL_FILES = {
    1: {"xsub": "cross-subject.txt", "xview": "cross-view.txt"},
    2: {"xsub": "cross_subject_v2.txt", "xview": "cross_view_v2.txt"},
}
VIEW_CODES = {"L": 1, "M": 2, "R": 3}  # 0: the name carries no view suffix
_VIEW_RE = re.compile(r"-([LMR])$")
_TRAIN_RE = re.compile(r"^\s*training\s+videos?\s*:\s*(.*)$", re.I)
_TEST_RE = re.compile(r"^\s*valid(?:ation|ataion)\s+videos?\s*:\s*(.*)$", re.I)


def video_view(name: str) -> int:
    """View code of a video name: `0002-L` -> 1, `-M` -> 2, `-R` -> 3, no suffix -> 0."""
    match = _VIEW_RE.search(name)
    return VIEW_CODES[match.group(1)] if match else 0


_NUMBER_CHARS = b"0123456789.-+eE \t\r\n\x0b\x0c"
_DECIMAL_RE = re.compile(rb"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_INTEGER_RE = re.compile(r"[+-]?\d{1,12}(\.0*)?")
COORD_LIMIT = 1.0e4  # metres: a Kinect sees under 10 m, so any larger value is corrupt


def _bad_token(raw: bytes, path: str) -> UserError:
    """The first token that is not a decimal number, by line (error path only)."""
    for number, line in enumerate(raw.split(b"\n"), start=1):
        for token in line.split():
            if token.translate(None, _NUMBER_CHARS) or not _DECIMAL_RE.fullmatch(token):
                return UserError(
                    f"{path}, line {number}: expected a number but found "
                    f"'{token.decode('ascii', 'replace')[:40]}'; re-extract the file or remove it"
                )
    return UserError(f"{path}: could not be parsed as numbers; re-extract the file or remove it")


def _tokens_per_line(raw: bytes) -> np.ndarray:
    """Whitespace-separated tokens on each line (lines split at LF; a final line without LF counts)."""
    buf = np.frombuffer(raw, dtype=np.uint8)
    space = buf <= 32
    starts = np.flatnonzero(~space & np.concatenate(([True], space[:-1])))
    newlines = np.flatnonzero(buf == 10)
    lines = newlines.size + (0 if raw.endswith(b"\n") else 1)
    return np.bincount(np.searchsorted(newlines, starts), minlength=lines)


def _numbers(raw: bytes, path: str) -> np.ndarray:
    """Every whitespace-separated number of the file, parsed in one call; `UserError` at a bad token."""
    if raw.translate(None, _NUMBER_CHARS):
        raise _bad_token(raw, path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = np.fromstring(raw.decode("ascii"), sep=" ")
    except ValueError:
        values = None
    if values is None or values.size != len(raw.split()):
        raise _bad_token(raw, path)
    return values


def read_skeleton(path: str | os.PathLike) -> np.ndarray:
    """One PKU-MMD skeleton file -> (T, 25, 3, 2) float32 (body slot m = body m + 1 of the file)."""
    path = os.fspath(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise UserError(f"{path}: cannot be read ({err.strerror}); check the path and permissions") from None
    values = _numbers(raw, path)
    if values.size == 0:
        raise UserError(
            f"{path}, line 1: expected {ROW} numbers per frame but the file is empty; "
            f"re-extract it or remove it (and its label file)"
        )
    per_line = _tokens_per_line(raw)
    wrong = np.flatnonzero(per_line != ROW)
    if wrong.size:  # every line holds one frame; only a last empty line may differ
        number = int(wrong[0])
        if per_line[number] or number < per_line.size - 1:
            raise UserError(
                f"{path}, line {number + 1}: expected {ROW} numbers (2 bodies x 25 joints x 3) "
                f"but found {int(per_line[number])}; the file is truncated or malformed, re-extract it"
            )
    bad = ~(np.abs(values) <= COORD_LIMIT)  # NaN and inf fail too
    if bad.any():
        at = int(np.argmax(bad))
        raise UserError(
            f"{path}, line {at // ROW + 1}: expected joint coordinates within +-{COORD_LIMIT:g} m "
            f"(a Kinect sees under 10 m) but found {float(values[at])!r}; the file is corrupt, "
            f"re-extract it or remove it (and its label file)"
        )
    frames = values.reshape(-1, M, V, C).astype(np.float32)
    return np.ascontiguousarray(frames.transpose(0, 2, 3, 1))


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """One label file -> (K, 4) int64 rows `label, start, end, confidence` (start, end 1-based)."""
    path = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="ascii", errors="replace")
    except OSError as err:
        raise UserError(f"{path}: cannot be read ({err.strerror}); check the path and permissions") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip().rstrip(",")
        if not line:
            continue
        fields = [f.strip() for f in line.split(",")]
        ok = len(fields) == 4 and all(_INTEGER_RE.fullmatch(f) for f in fields)
        if ok:
            values = [int(f.split(".")[0]) for f in fields]
            label, start, end, _ = values
            if not 1 <= label <= NUM_LABELS:
                raise UserError(
                    f"{path}, line {number}: action id {label} is outside 1..{NUM_LABELS}, the action "
                    f"ids of PKU-MMD (both phases); fix or remove the line"
                )
            ok = 1 <= start <= end
        if not ok:
            raise UserError(
                f"{path}, line {number}: expected 'label,start,end,confidence' (integers of up to "
                f"12 digits, 1 <= label <= {NUM_LABELS}, 1 <= start <= end) but found '{line[:60]}'; fix or remove "
                f"the line"
            )
        rows.append(values)
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def read_split(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """An official split file -> (training videos, validation videos)."""
    path = os.fspath(path)
    try:
        lines = Path(path).read_text(encoding="ascii", errors="replace").splitlines()
    except FileNotFoundError:
        raise UserError(
            f"{path}: split file not found; pass --splits the folder that holds the official "
            f"split files (cross-subject.txt, cross-view.txt, or the _v2 ones for phase 2)"
        ) from None
    except OSError as err:
        raise UserError(f"{path}: cannot be read ({err.strerror}); check the path and permissions") from None
    parts: dict[str, list[str]] = {}
    current = None
    for number, line in enumerate(lines, start=1):
        for key, pattern in (("train", _TRAIN_RE), ("test", _TEST_RE)):
            match = pattern.match(line)
            if match:
                if key in parts:
                    raise UserError(f"{path}, line {number}: a second '{line.strip()}' line; keep one list each")
                current = key
                parts[key] = []
                line = match.group(1)
                break
        names = [n.strip() for n in line.split(",") if n.strip()]
        if names and current is None:
            raise UserError(
                f"{path}, line {number}: video names before any 'Training videos:' line; "
                f"the file is not a PKU-MMD split file"
            )
        if names:
            parts[current].extend(names)
    for key, title in (("train", "Training videos:"), ("test", "Validation videos:")):
        if key not in parts:
            raise UserError(f"{path}: no '{title}' line; the file is not a PKU-MMD split file, pass the official one")
    overlap = sorted(set(parts["train"]) & set(parts["test"]))
    if overlap:
        raise UserError(f"{path}: video {overlap[0]} is listed for both training and validation; fix the split file")
    return parts["train"], parts["test"]


def segment_rows(start: int, end: int) -> tuple[int, int]:
    """1-based inclusive [start, end] -> 0-based row range [lo, hi), the centre 300 when longer."""
    lo, length = start - 1, end - start + 1
    if length > MAX_FRAMES:
        lo += (length - MAX_FRAMES) // 2
        length = MAX_FRAMES
    return lo, lo + length


@dataclass
class PKUDataset:
    """Everything `hiclr-prep pkummd` stores: sample columns, bodies per sample, splits, counts."""

    samples: dict[str, np.ndarray]
    bodies: list[np.ndarray]
    splits: dict[str, dict[str, np.ndarray]]
    videos: list[str]
    counts: dict = field(default_factory=dict)


def _bodies_of(frames: np.ndarray, method: str) -> np.ndarray:
    """Segment (T, 25, 3, 2) -> selected bodies; `motion` reuses the NTU motion ranking."""
    if method == "file-order":
        return frames
    from data_prep.bodies import select_bodies
    from data_prep.ntu import SkeletonFile

    present = np.abs(frames).sum(axis=(1, 2)) > 0  # (T, 2)
    frame_idx, slot_body = np.nonzero(present)
    counts = present.sum(axis=1)
    first = np.concatenate(([0], np.cumsum(counts)[:-1]))
    skel = SkeletonFile(
        name="segment",
        body_counts=counts.astype(np.int64),
        body_ids=(slot_body + 1).astype(np.uint64),
        frame=frame_idx.astype(np.int64),
        slot=(np.arange(frame_idx.size) - np.repeat(first, counts)).astype(np.int64),
        joints=frames[frame_idx, :, :, slot_body].astype(np.float32),
    )
    return select_bodies(skel, method)


@dataclass
class _Plan:
    """What the checks before reading find: the label files to read, the split lists, first counts."""

    skeletons: Path
    label_files: list[Path]
    protocol_lists: dict[str, tuple[list[str], list[str]]]
    counts: dict

    @property
    def videos(self) -> list[str]:
        return [p.stem for p in self.label_files]


def _plan(phase: int, skeletons, labels, splits) -> _Plan:
    """Check the folders and split files before anything is read; `UserError` names what is wrong."""
    if phase not in PROTOCOL_FILES:
        raise UserError(f"--phase {phase}: PKU-MMD has phases 1 and 2; pass --phase 1 or --phase 2")
    skeletons, labels, splits = Path(skeletons), Path(labels), Path(splits)
    for flag, folder in (("--skeletons", skeletons), ("--labels", labels), ("--splits", splits)):
        if not folder.is_dir():
            raise UserError(f"{flag} {folder}: not a folder; pass the folder of the PKU-MMD files")
    present = {p: name for p, name in PROTOCOL_FILES[phase].items() if (splits / name).is_file()}
    if not present:
        raise UserError(
            f"--splits {splits}: none of the split files of phase {phase} "
            f"({', '.join(PROTOCOL_FILES[phase].values())}) is there; pass the folder that holds them"
        )
    protocol_lists = {p: read_split(splits / name) for p, name in present.items()}
    missing_protocols = {p: name for p, name in PROTOCOL_FILES[phase].items() if p not in present}
    label_files = sorted(labels.glob("*.txt"))
    if not label_files:
        raise UserError(f"--labels {labels}: no label files (*.txt); pass the folder of the PKU-MMD label files")
    skeleton_names = {p.stem for p in skeletons.glob("*.txt")}
    labelled = [p.stem for p in label_files]
    for protocol, (train, test) in protocol_lists.items():
        for video in train + test:
            if video not in skeleton_names:
                raise UserError(
                    f"{splits / PROTOCOL_FILES[phase][protocol]}: lists video {video}, which has no "
                    f"skeleton file in {skeletons}; pass the complete --skeletons folder or the "
                    f"split files of this phase"
                )
    counts = {
        "videos": len(labelled),
        "unlabelled_videos": len(skeleton_names - set(labelled)),
        "segments_clipped": 0,
        "segments_beyond_the_recording": 0,
        "segments_cropped_to_300": 0,
    }
    if missing_protocols:
        counts["protocols_missing"] = {p: f"no {name} in {splits}" for p, name in missing_protocols.items()}
    return _Plan(skeletons=skeletons, label_files=label_files, protocol_lists=protocol_lists, counts=counts)


@dataclass
class VideoSegments:
    """The samples of one video (`video_segments`): per segment its columns, bodies and frame50."""

    names: list[str] = field(default_factory=list)
    columns: list[tuple[int, int, int, int, int]] = field(default_factory=list)  # label, video, view, start, end
    bodies: list[np.ndarray] = field(default_factory=list)  # (T_i, V, C, M) float32
    frame50: list[np.ndarray] = field(default_factory=list)  # (C, 50, V, M) float32
    empty: list[str] = field(default_factory=list)
    counts: dict = field(
        default_factory=lambda: dict.fromkeys(
            ("segments_clipped", "segments_beyond_the_recording", "segments_cropped_to_300"), 0
        )
    )


def video_segments(task: tuple[int, str, str], bodies: str = "file-order") -> VideoSegments:
    """Worker: one video `(index, label file, skeletons folder)` -> its labelled segments.

    A segment starting after the recording is counted and left out, one running past it is clipped,
    one longer than 300 frames keeps its centre 300, an all-zero one is named in `empty`.
    """
    from data_prep.presets import frame50

    vi, label_path, skeletons = task
    label_path, skeletons = Path(label_path), Path(skeletons)
    video = label_path.stem
    skeleton_path = skeletons / f"{video}.txt"
    if not skeleton_path.is_file():
        raise UserError(
            f"{label_path}: no skeleton file {skeleton_path.name} in {skeletons} for this "
            f"label file; pass the matching --skeletons folder or remove the label file"
        )
    frames = read_skeleton(skeleton_path)
    out = VideoSegments()
    for k, (label, start, end, _conf) in enumerate(read_labels(label_path)):
        if start > frames.shape[0]:
            out.counts["segments_beyond_the_recording"] += 1
            continue
        if end > frames.shape[0]:
            out.counts["segments_clipped"] += 1
            end = frames.shape[0]
        lo, hi = segment_rows(int(start), int(end))
        if is_empty(frames[lo:hi]):
            out.empty.append(f"{video}_{k + 1:03d}")
            continue
        out.counts["segments_cropped_to_300"] += int(end - start + 1 > MAX_FRAMES)
        selected = _bodies_of(frames[lo:hi], bodies)
        out.names.append(f"{video}_{k + 1:03d}")
        out.columns.append((int(label) - 1, vi, video_view(video), int(start), int(end)))
        out.bodies.append(selected)
        out.frame50.append(frame50(selected))
    return out


def _segment_videos(plan: _Plan, bodies: str, workers: int) -> Iterator[VideoSegments]:
    """The videos' segments in label-file order; a few videos in flight whatever their number."""
    from data_prep.parallel import ordered_map

    tasks = [(vi, str(path), str(plan.skeletons)) for vi, path in enumerate(plan.label_files)]
    # one video's samples are a few MB: one task per chunk and a few per worker in flight
    return ordered_map(partial(video_segments, bodies=bodies), tasks, workers, in_flight=4 * workers, chunksize=1)


def _columns(names: list[str], columns: list[tuple], counts: dict, empty: list[str], plan: _Plan):
    """The sample table, the protocol splits and the final counts of the collected samples."""
    table = np.array(columns, dtype=np.int64).reshape(-1, 5)
    samples = {
        "name": np.array(names, dtype=object),
        "label": table[:, 0],
        "video": table[:, 1],
        "view": table[:, 2],
        "start": table[:, 3],
        "end": table[:, 4],
    }
    counts.update(empty_counts(empty))
    videos = plan.videos
    sample_video = np.array([videos[v] for v in table[:, 1]], dtype=object)
    split_index = {}
    for protocol, (train, test) in plan.protocol_lists.items():
        split_index[protocol] = {
            "train": np.flatnonzero(np.isin(sample_video, np.array(train, dtype=object))).astype(np.int64),
            "test": np.flatnonzero(np.isin(sample_video, np.array(test, dtype=object))).astype(np.int64),
        }
        counts[f"{protocol}_unassigned"] = int(
            len(names) - split_index[protocol]["train"].size - split_index[protocol]["test"].size
        )
    return samples, split_index, counts


def load_pkummd(
    phase: int,
    skeletons: str | os.PathLike,
    labels: str | os.PathLike,
    splits: str | os.PathLike,
    bodies: str = "file-order",
    progress: bool = False,
) -> PKUDataset:
    """Read a PKU-MMD phase into memory: every labelled segment of every labelled video is a sample.

    For a small set or a look at the data; `prepare_pkummd` streams to the store instead.
    """
    from hiclr.common.progress import progress as progress_bar

    plan = _plan(phase, skeletons, labels, splits)
    names, columns, bodies_out, empty, counts = [], [], [], [], dict(plan.counts)
    with progress_bar(len(plan.label_files), desc="pkummd", unit="video", enabled=progress) as bar:
        for part in _segment_videos(plan, bodies, workers=1):
            names += part.names
            columns += part.columns
            bodies_out += part.bodies
            empty += part.empty
            for key, value in part.counts.items():
                counts[key] += value
            bar.update()
    samples, split_index, counts = _columns(names, columns, counts, empty, plan)
    return PKUDataset(samples=samples, bodies=bodies_out, splits=split_index, videos=plan.videos, counts=counts)


def prepare_pkummd(
    phase: int,
    skeletons,
    labels,
    splits,
    out,
    bodies: str = "file-order",
    progress: bool = False,
    workers: int = 1,
    block: int | None = None,
    class_names_file=None,
) -> dict:
    """Read a PKU-MMD phase and write the HDF5 store `out`; return a summary.

    The samples stream into the store (`StoreWriter`) as the videos are read, `workers` processes
    reading videos in parallel: memory stays bounded by a few videos and one block of `block`
    samples whatever the number of videos. `class_names_file`: one action name per line, line k
    for action id k + 1 (default: `class_names.txt` beside the label folder if present, else the
    bundled names of the ids 1..51, which both phases share). Labels are stored as id - 1, with 51
    classes for either phase; the attribute `action_ids_present` lists the ids that occur.
    """
    from data_prep.classes import CLASS_NAMES_FILE, class_names, read_class_names
    from data_prep.presets import FRAME50_PARAMS
    from data_prep.store import StoreWriter
    from hiclr.common.progress import progress as progress_bar

    if workers < 1:
        raise UserError(f"--workers {workers}: give 1 or more worker processes")
    plan = _plan(phase, skeletons, labels, splits)
    names_file = Path(class_names_file) if class_names_file else Path(labels).parent / CLASS_NAMES_FILE
    given = read_class_names(names_file) if class_names_file or names_file.is_file() else None
    num_classes = NUM_LABELS
    if given is not None and len(given) > num_classes:
        raise UserError(
            f"{names_file}: {len(given)} class names, but PKU-MMD's action ids run from 1 to "
            f"{num_classes}; give one name per line, line k for action id k"
        )
    columns, empty, counts = [], [], dict(plan.counts)
    with StoreWriter(out, raw=True, block=block) as writer:
        with progress_bar(len(plan.label_files), desc="pkummd", unit="video", enabled=progress) as bar:
            for part in _segment_videos(plan, bodies, workers):
                for name, row, selected, view in zip(part.names, part.columns, part.bodies, part.frame50):
                    writer.append(name, selected, view)
                    columns.append(row)
                empty += part.empty
                for key, value in part.counts.items():
                    counts[key] += value
                bar.update()
        if not writer.names:
            raise UserError(
                f"--labels {labels}: the label files hold no segment inside its recording; "
                f"check that --labels and --skeletons belong together"
            )
        samples, split_index, counts = _columns(writer.names, columns, counts, empty, plan)
        present = sorted(int(k) + 1 for k in np.unique(samples["label"]))
        writer.finish(
            dataset=f"pkummd{phase}",
            samples=samples,
            splits=split_index,
            class_names=class_names(f"pkummd{phase}", num_classes, given),
            attrs={
                "num_classes": num_classes,
                "action_ids_present": present,
                "preset": {**FRAME50_PARAMS, "bodies": bodies, "max_frames": MAX_FRAMES},
                "counts": counts,
                "videos": plan.videos,
                "source": {"skeletons": str(skeletons), "labels": str(labels), "splits": str(splits), "phase": phase},
            },
        )
    return {
        "samples": len(columns),
        "videos": len(plan.videos),
        "counts": counts,
        "action_ids_present": present,
        "protocols_missing": counts.get("protocols_missing", {}),
        "splits": {p: {k: int(v.size) for k, v in parts.items()} for p, parts in split_index.items()},
        "files": [str(plan.skeletons / f"{v}.txt") for v in plan.videos],
    }
