"""Pictures of clips: a strip of frames over time, an animated GIF, and the views of an augmentation policy.

Clips come from a prepared store (the `frame50` view the encoders see) or from a raw NTU `.skeleton`
file (the first two bodies in file order, through the same preset), drawn from the front; `stream`
draws what an encoder of that stream receives, and `views` one clip through a `GrowingPolicy`, one
column per stage. Every figure is drawn on a bare `matplotlib.figure.Figure` with the Agg canvas and
written atomically. What each picture shows: docs/visualisation.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hiclr.common.errors import UserError

PERSON_COLOURS = ("tab:blue", "tab:orange")
MASKED_COLOUR = "0.55"
DROPPED_COLOUR, ADDED_COLOUR = "tab:red", "tab:green"


@dataclass
class ClipData:
    """One clip: x (C, T, V, M) float32, its sample name and class name (None when unknown)."""

    x: np.ndarray
    name: str
    label: int | None = None
    class_name: str | None = None

    @property
    def title(self) -> str:
        what = self.class_name if self.class_name else (f"class {self.label}" if self.label is not None else "")
        return f"{what} - {self.name}" if what else self.name

    def persons(self) -> list[int]:
        """The body slots that hold someone (a non-zero joint somewhere)."""
        return [m for m in range(self.x.shape[-1]) if np.abs(self.x[..., m]).max() > 0]


# ---------------------------------------------------------------- reading clips


def load_clips(
    path: str | os.PathLike, *, index: int | None = None, name: str | None = None, class_: str | None = None, n: int = 1
) -> list[ClipData]:
    """Clips of a store (`--index`, `--name` or `--class`, `n` of them) or of a raw `.skeleton` file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist; pass a prepared store (.h5, hiclr-prep) or a raw .skeleton file")
    if n < 1:
        raise UserError(f"--n {n}: the number of clips must be at least 1")
    if path.suffix == ".skeleton":
        return [read_skeleton_clip(path)]
    return _store_clips(path, index, name, class_, n)


def read_skeleton_clip(path: Path) -> ClipData:
    """A raw NTU `.skeleton` file through the `frame50` preset (first two bodies in file order)."""
    from data_prep.bodies import select_bodies
    from data_prep.classes import CLASS_NAMES_FILE, read_class_names
    from data_prep.ntu import parse_ntu_name, read_skeleton
    from data_prep.presets import frame50

    x = frame50(select_bodies(read_skeleton(path), "file-order"))
    label = class_name = None
    try:
        label = parse_ntu_name(path.stem)["action"] - 1
    except (UserError, ValueError, KeyError):
        pass
    names_file = path.parent / CLASS_NAMES_FILE
    if label is not None:
        try:
            names = read_class_names(names_file) if names_file.is_file() else _ntu_class_names()
            class_name = names[label] if label < len(names) else None
        except (UserError, OSError):
            class_name = None
    return ClipData(x=x, name=path.stem, label=label, class_name=class_name)


def _ntu_class_names() -> list[str]:
    from data_prep.classes import class_names

    return class_names("ntu120", 120)


def _store_clips(path: Path, index, name, class_, n) -> list[ClipData]:
    from data_prep.store import open_store, stored_class_names

    with open_store(path) as f:
        names = f["samples/name"].asstr()[...]
        labels = np.asarray(f["samples/label"][...], dtype=np.int64)
        classes = stored_class_names(f)
        total = len(names)
        if name is not None:
            hits = np.flatnonzero(names == name)
            if not hits.size:
                raise UserError(f"{path} has no sample named {name!r}; names look like {names[0]!r}")
            picked = list(range(int(hits[0]), min(int(hits[0]) + n, total)))
        elif class_ is not None:
            label = _class_index(class_, classes, path)
            picked = np.flatnonzero(labels == label)[:n].tolist()
            if not picked:
                raise UserError(f"{path} has no sample of class {class_!r}")
        else:
            start = 0 if index is None else int(index)
            if not 0 <= start < total:
                raise UserError(f"--index {start} is outside {path}'s {total} samples (0 to {total - 1})")
            picked = list(range(start, min(start + n, total)))
        if "views/frame50" not in f:
            raise UserError(f"{path} has no frame50 view; re-create it with hiclr-prep")
        data = f["views/frame50"]
        return [
            ClipData(
                x=np.asarray(data[i], dtype=np.float32),
                name=str(names[i]),
                label=int(labels[i]),
                class_name=classes[labels[i]] if labels[i] < len(classes) else None,
            )
            for i in picked
        ]


def _class_index(text: str, classes: list[str], path: Path) -> int:
    """A class by its number (0-based label) or by its name (case-insensitive, unique prefix)."""
    if text.isdigit():
        return int(text)
    low = text.lower()
    exact = [i for i, c in enumerate(classes) if c.lower() == low]
    hits = exact or [i for i, c in enumerate(classes) if c.lower().startswith(low)]
    if len(hits) != 1:
        known = ", ".join(repr(c) for c in classes[:8]) + (" ..." if len(classes) > 8 else "")
        raise UserError(
            f"--class {text!r} names {'no' if not hits else 'more than one'} class of {path}; "
            f"give its number or its name ({known})"
        )
    return hits[0]


# ---------------------------------------------------------------- drawing


def bone_pairs() -> list[tuple[int, int]]:
    from hiclr.models.graph import NTU_EDGES

    return list(NTU_EDGES)


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _limits(x: np.ndarray, margin: float = 0.1) -> tuple[tuple[float, float], tuple[float, float]]:
    """Square x / y limits holding every present joint of `x` (C, T, V, M) (or (C, ...) arrays)."""
    pts = x[:2].reshape(2, -1)
    keep = np.abs(x.reshape(x.shape[0], -1)).sum(axis=0) > 0
    pts = pts[:, keep] if keep.any() else np.zeros((2, 1))
    lo, hi = pts.min(axis=1), pts.max(axis=1)
    centre, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2, 1e-3) * (1 + margin)
    return (centre[0] - half, centre[0] + half), (centre[1] - half, centre[1] + half)


def draw_skeleton(
    ax,
    frame: np.ndarray,
    persons: list[int],
    *,
    mask: np.ndarray | None = None,
    dropped: set | None = None,
    added: list | None = None,
    alpha: float = 1.0,
) -> dict:
    """One frame (C, V, M) on `ax`: bones and joints of each person in `persons`.

    mask: (V,) bool, joints hidden from the encoder (grey crosses, no joint dot, no bone to them);
    dropped: bones (i, j) drawn thick red; added: extra edges (i, j) drawn dotted green.
    Returns what was drawn: {"joints": {person: [joint indices]}, "bones": {person: [(i, j)]},
    "masked": [joint indices]} (what the tests check).
    """
    drawn = {"joints": {}, "bones": {}, "masked": []}
    hidden = np.zeros(frame.shape[1], dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    for m in persons:
        colour = PERSON_COLOURS[m % len(PERSON_COLOURS)]
        xy = frame[:2, :, m]
        bones = []
        for i, j in bone_pairs():
            if hidden[i] or hidden[j]:
                continue
            cut = dropped is not None and ((i, j) in dropped or (j, i) in dropped)
            ax.plot(
                xy[0, [i, j]],
                xy[1, [i, j]],
                color=DROPPED_COLOUR if cut else colour,
                linewidth=3.0 if cut else 1.6,
                alpha=alpha,
                zorder=2.5 if cut else 2,
            )
            bones.append((i, j))
        for i, j in added or []:
            ax.plot(xy[0, [i, j]], xy[1, [i, j]], color=ADDED_COLOUR, linestyle=":", linewidth=1.0, alpha=alpha)
        shown = np.flatnonzero(~hidden)
        ax.scatter(xy[0, shown], xy[1, shown], s=7, color=colour, zorder=3, alpha=alpha)
        if hidden.any():
            ax.scatter(xy[0, hidden], xy[1, hidden], s=22, marker="x", color=MASKED_COLOUR, zorder=3, alpha=alpha)
            drawn["masked"] = np.flatnonzero(hidden).tolist()
        drawn["joints"][m] = shown.tolist()
        drawn["bones"][m] = bones
    return drawn


def draw_stream(ax, x: np.ndarray, t: int, persons: list[int], stream: str, scale: float) -> None:
    """Frame t of clip `x` (C, T, V, M) as the `stream` input: motion arrows on the faint skeleton,
    or the bone vectors from one origin."""
    from hiclr.augment import to_stream

    s = to_stream(torch.from_numpy(x[None]), stream)[0].numpy()  # (C, T, V, M)
    for m in persons:
        colour = PERSON_COLOURS[m % len(PERSON_COLOURS)]
        if stream == "motion":
            draw_skeleton(ax, x[:, t], [m], alpha=0.35)
            ax.quiver(
                x[0, t, :, m],
                x[1, t, :, m],
                s[0, t, :, m] * scale,
                s[1, t, :, m] * scale,
                color=colour,
                angles="xy",
                scale_units="xy",
                scale=1.0,
                width=0.008,
            )
        else:
            ax.quiver(
                np.zeros(s.shape[2]),
                np.zeros(s.shape[2]) + 0.0 * m,
                s[0, t, :, m],
                s[1, t, :, m],
                color=colour,
                angles="xy",
                scale_units="xy",
                scale=1.0,
                width=0.008,
            )


def _stream_scale(x: np.ndarray, stream: str) -> float:
    """Motion arrows scaled so that a large one (the 99th percentile of the clip's, so that a tracking
    glitch does not shrink the rest) is about a third of the body's height."""
    if stream != "motion":
        return 1.0
    from hiclr.augment import to_stream

    s = to_stream(torch.from_numpy(x[None]), "motion")[0].numpy()
    (lo, hi), _ = _limits(x)
    largest = float(np.percentile(np.linalg.norm(s[:2], axis=0), 99))
    return 0.35 * (hi - lo) / largest if largest > 0 else 1.0


def _stream_limits(x: np.ndarray, stream: str, scale: float):
    if stream == "bone":
        from hiclr.augment import to_stream

        s = to_stream(torch.from_numpy(x[None]), "bone")[0].numpy()
        return _limits(np.concatenate([s, np.zeros_like(s[:, :1])], axis=1))
    if stream == "motion":  # the joints and the arrows' tips (but a glitch's)
        from hiclr.augment import to_stream

        s = to_stream(torch.from_numpy(x[None]), "motion")[0].numpy()
        norm = np.linalg.norm(s[:2], axis=0, keepdims=True)
        tips = x + scale * s * (norm <= np.percentile(norm, 99))
        return _limits(np.concatenate([x, tips], axis=1), margin=0.05)
    return _limits(x)


def _style(ax, limits) -> None:
    ax.set_xlim(*limits[0])
    ax.set_ylim(*limits[1])
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def frame_positions(T: int, count: int) -> list[int]:
    """`count` frames spread evenly over T (first and last included)."""
    count = max(1, min(count, T))
    return np.unique(np.linspace(0, T - 1, count).round().astype(int)).tolist()


STREAM_NOTES = {
    "joint": "",
    "motion": " - motion stream (arrows: x[t+1] - x[t], scaled)",
    "bone": " - bone stream (child minus parent, from one origin)",
}


def plot_strip(clip: ClipData, out: str | os.PathLike, frames: int = 8, stream: str = "joint") -> Path:
    """PNG strip: `frames` frames of the clip over time, one panel each."""
    T = clip.x.shape[1]
    picks = frame_positions(T, frames)
    persons = clip.persons()
    scale = _stream_scale(clip.x, stream)
    limits = _stream_limits(clip.x, stream, scale)
    fig = _figure(1.6 * len(picks), 2.3)
    for k, t in enumerate(picks):
        ax = fig.add_subplot(1, len(picks), k + 1)
        if stream == "joint":
            draw_skeleton(ax, clip.x[:, t], persons)
        else:
            draw_stream(ax, clip.x, t, persons, stream, scale)
        _style(ax, limits)
        ax.set_title(f"frame {t + 1}/{T}", fontsize=7)
    who = "" if len(persons) < 2 else " (2 persons: blue, orange)"
    fig.suptitle(f"{clip.title}{who}{STREAM_NOTES[stream]}", fontsize=9)
    fig.tight_layout()
    return _save_png(fig, out)


def write_gif(clip: ClipData, out: str | os.PathLike, fps: int = 10, stream: str = "joint") -> Path:
    """Animated GIF of the clip, one GIF frame per clip frame (matplotlib's Pillow writer)."""
    from matplotlib.animation import PillowWriter

    out = Path(out)
    T = clip.x.shape[1]
    persons = clip.persons()
    scale = _stream_scale(clip.x, stream)
    limits = _stream_limits(clip.x, stream, scale)
    fig = _figure(3.2, 3.6)
    ax = fig.add_subplot()
    tmp = out.with_name(out.stem + ".partial.gif")
    writer = PillowWriter(fps=fps)
    try:
        with writer.saving(fig, str(tmp), dpi=80):
            for t in range(T):
                ax.clear()
                if stream == "joint":
                    draw_skeleton(ax, clip.x[:, t], persons)
                else:
                    draw_stream(ax, clip.x, t, persons, stream, scale)
                _style(ax, limits)
                ax.set_title(f"{clip.title}\nframe {t + 1}/{T}{STREAM_NOTES[stream][:16]}", fontsize=7)
                writer.grab_frame()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _save_png(fig, out: str | os.PathLike) -> Path:
    from hiclr.common.atomic import atomic_write

    return atomic_write(Path(out), lambda f: fig.savefig(f, format="png"))


# ---------------------------------------------------------------- the views of a policy


@dataclass
class PolicyViews:
    """A clip through a growing policy: x (S + 1, C, T, V, M), the clip then one view per stage;
    masks (S + 1, T, V) bool; dropped / added: per column, the bones dropped and the edges added in
    the encoder's first block (empty without a Drop/Add-edges view)."""

    x: np.ndarray
    masks: np.ndarray
    dropped: list[set]
    added: list[list]
    stage_names: list[str]


def policy_views(x: np.ndarray, policy, seed: int = 0, batch: np.ndarray | None = None) -> PolicyViews:
    """Views of clip `x` (C, T, V, M) at every stage of `policy` (view s applies stages 0..s),
    drawn with a generator seeded by `seed`. `batch` (B, C, T, V, M): other clips drawn with it
    (SkeleAdaIN takes its style from another clip of the batch); the clip goes first. A clip drawn
    alone is batched with its time- and joint-reversed copies."""
    clips = np.concatenate([x[None], batch]) if batch is not None and len(batch) else x[None]
    xb = torch.from_numpy(np.ascontiguousarray(clips, dtype=np.float32))
    if len(xb) < 3:  # SkeleAdaIN rolls the batch by 1 .. B - 2: it needs three clips
        xb = torch.cat([xb, xb.flip(2), xb.flip(3)])[: max(3, len(xb))]
    # Each view restarts the generator at `seed`, so view s + 1 repeats the draws of view s and adds
    # its stage's: the columns show what every stage adds to one draw, not independent draws.
    views = [policy.views(xb, torch.Generator().manual_seed(int(seed)), [s])[0] for s in range(policy.num_stages)]
    T, V = x.shape[1], x.shape[2]
    out_x = [x]
    masks = [np.zeros((T, V), dtype=bool)]
    dropped, added = [set()], [[]]
    for view in views:
        out_x.append(view.x[0].numpy())
        m = np.zeros((view.x.shape[2], V), dtype=bool)
        if view.mask is not None:
            m = view.mask[0, 0, :, :, 0].numpy().astype(bool)
        masks.append(m)
        d, a = _edge_changes(view.edges, V)
        dropped.append(d)
        added.append(a)
    names = [" + ".join(type(op).__name__ for op in stage) for stage in policy.stages]
    return PolicyViews(np.stack(out_x), np.stack(masks), dropped, added, names)


def _edge_changes(edges, V: int) -> tuple[set, list]:
    """(bones dropped, edges added) by a view's Drop/Add-edges draw in the ST-GCN's first block,
    on its NTU adjacency: a bone counts as dropped when any non-zero entry of it is zeroed."""
    if edges is None:
        return set(), []
    from hiclr.models.graph import ntu_graph

    A = torch.as_tensor(ntu_graph(), dtype=torch.float32)  # (K, V, V)
    drawn = edges.with_defaults(0.0, 1.0) if edges.add is None else edges
    _, _, kept, grown = drawn.draw_block(0, A)
    nonzero = A != 0
    dropped = set()
    for i, j in bone_pairs():
        entries = nonzero[:, i, j] | nonzero[:, j, i]
        gone = (~kept[:, i, j] & nonzero[:, i, j]) | (~kept[:, j, i] & nonzero[:, j, i])
        if entries.any() and bool(gone.any()):
            dropped.add((i, j))
    added = []
    if drawn.add_ratio > 0:
        new = (grown & ~nonzero).any(dim=0)
        added = [(int(i), int(j)) for i, j in torch.nonzero(torch.triu(new | new.T, 1)).tolist()]
    return dropped, added


def plot_views(
    clip: ClipData, views: PolicyViews, out: str | os.PathLike, frames: int = 4, policy_name: str = "growing policy"
) -> Path:
    """PNG grid: one column per stage (column 0 the clip), one row per shown frame."""
    cols = views.x.shape[0]
    T = views.x.shape[2]
    picks = frame_positions(T, frames)
    persons = clip.persons()
    limits = [_limits(v) for v in views.x]  # per column: a view may change the scale (blur, shear)
    fig = _figure(2.0 * cols, 2.0 * len(picks) + 0.9)
    titles = ["the clip"] + [f"view {s}: stages 0-{s}" if s else "view 0: stage 0" for s in range(cols - 1)]
    for r, t in enumerate(picks):
        for c in range(cols):
            ax = fig.add_subplot(len(picks), cols, r * cols + c + 1)
            draw_skeleton(
                ax, views.x[c, :, t], persons, mask=views.masks[c, t], dropped=views.dropped[c], added=views.added[c]
            )
            _style(ax, limits[c])
            if r == 0:
                ax.set_title(titles[c] + ("" if c == 0 else f"\n{_wrap(views.stage_names[c - 1])}"), fontsize=6)
            if c == 0:
                ax.set_ylabel(f"frame {t + 1}/{T}", fontsize=7)
    legend = (
        "grey x: joint masked (the encoder sees its token)\nthick red: bone with an adjacency entry dropped "
        "in block 1; dotted green: edge added; each column scaled to fit"
    )
    fig.suptitle(f"{clip.title} through {policy_name}, weakest to strongest\n{legend}", fontsize=8)
    fig.tight_layout()
    return _save_png(fig, out)


def _wrap(text: str, width: int = 34) -> str:
    words, lines, line = text.split(" "), [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    return "\n".join(lines + [line])


# ---------------------------------------------------------------- the command's work


def default_policy_path() -> Path:
    from hiclr.demo import CONFIG_ROOT

    return CONFIG_ROOT / "augment" / "hiclr_default.yaml"


def load_policy(path: str | os.PathLike | None):
    from hiclr.augment import GrowingPolicy

    path = Path(path) if path else default_policy_path()
    if not path.is_file():
        raise UserError(f"--policy {path} does not exist; pass a policy file such as configs/augment/strong_all.yaml")
    try:
        return GrowingPolicy.from_yaml(path), path
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"--policy {path}: {err}") from None


def _companions(data, clips: list[ClipData], count: int = 7) -> list[ClipData]:
    """Other clips of the store drawn in the same batch as the shown ones (SkeleAdaIN takes its style
    from another clip of the batch): the store's first ones; none for a raw file."""
    if Path(data).suffix == ".skeleton":
        return []
    names = {c.name for c in clips}
    return [c for c in load_clips(data, index=0, n=count + len(clips)) if c.name not in names][:count]


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def show(
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    index: int | None = None,
    name: str | None = None,
    class_: str | None = None,
    n: int = 1,
    views: bool = False,
    policy: str | None = None,
    stream: str = "joint",
    frames: int = 8,
    seed: int = 0,
    gif: bool = True,
) -> list[Path]:
    """Write the pictures of the chosen clips under `out`; return their paths."""
    from hiclr.augment import STREAMS

    if stream not in STREAMS:
        raise UserError(f"--stream {stream}: choose one of {', '.join(STREAMS)}")
    clips = load_clips(data, index=index, name=name, class_=class_, n=n)
    pol = load_policy(policy) if views else None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "" if stream == "joint" else f"_{stream}"
    written = []
    companions = _companions(data, clips) if views else []
    for clip in clips:
        stem = _safe(clip.name)
        written.append(plot_strip(clip, out / f"{stem}{suffix}_strip.png", frames=frames, stream=stream))
        if gif:
            written.append(write_gif(clip, out / f"{stem}{suffix}.gif", stream=stream))
        if views:
            others = np.stack([c.x for c in clips + companions if c.name != clip.name])
            pv = policy_views(clip.x, pol[0], seed=seed, batch=others)
            written.append(
                plot_views(
                    clip,
                    pv,
                    out / f"{stem}_views_{_safe(pol[1].stem)}.png",
                    frames=min(frames, 4),
                    policy_name=pol[1].name,
                )
            )
    return written
