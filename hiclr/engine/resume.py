"""What `--resume` decides before the loop continues: which checkpoint, and whether it may.

- `find_checkpoint`: the newest good checkpoint of a run (`last.pt` or an `epoch_XXX.pt`, by step);
  a damaged one is skipped with a warning naming it, so a flipped byte in `last.pt` costs the epochs
  since the last snapshot, not the run.
- `config_changes`: the keys whose values differ from the checkpoint's config, except those that
  cannot change what is computed (`RESUMABLE_KEYS`); the loop refuses them unless forced.
- `complete_snapshot`: writes the `epoch_XXX.pt` that a kill between the two saves of an epoch left out.
- `remove_stale_partials`: `.partial` files of the run that an earlier kill left behind.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import torch

from hiclr.common.atomic import atomic_path
from hiclr.common.errors import UserError
from hiclr.engine.checkpoint import load_checkpoint

# Keys that may change on resume: where the run lives and what it prints, never what it computes.
RESUMABLE_KEYS = frozenset(
    {
        "run.name",
        "run.out",
        "run.log_every",
        "run.save_every",
        "run.monitor_every",
        "run.monitor_samples",
        "run.collapse_warning",
        "run.checkpoint_every",
        "data.path",
        "data.verify",
        "engine.device",
        "engine.compile",
        "engine.resident",
        "engine.resident_fraction",
        "engine.tensorboard",
        "engine.progress",
        "engine.cudnn_benchmark",
        "engine.tf32",
    }
)
_SNAPSHOT = re.compile(r"^epoch_(\d+)\.pt$")


def _snapshots(run_dir: Path) -> list[tuple[int, Path]]:
    found = [(int(m.group(1)), p) for p in run_dir.glob("epoch_*.pt") if (m := _SNAPSHOT.match(p.name))]
    return sorted(found, reverse=True)


def find_checkpoint(run_dir: Path, map_location="cpu") -> tuple[dict, Path]:
    """(checkpoint, path): the good checkpoint with the most steps among `last.pt` and `epoch_*.pt`."""
    run_dir = Path(run_dir)
    last = run_dir / "last.pt"
    damaged: list[str] = []
    best: tuple[dict, Path] | None = None
    if last.is_file():
        try:
            best = (load_checkpoint(last, map_location), last)
        except UserError as err:
            damaged.append(str(err))
    for epoch, path in _snapshots(run_dir):
        if best is not None and epoch * best[0]["steps_per_epoch"] <= best[0]["step"]:
            break  # older than what we have: no need to read it
        try:
            ckpt = load_checkpoint(path, map_location)
        except UserError as err:
            damaged.append(str(err))
            continue
        if best is None or ckpt["step"] > best[0]["step"]:
            best = (ckpt, path)
            break
    if best is None:
        if not damaged:
            raise UserError(f"no checkpoint in {run_dir} (last.pt or epoch_XXX.pt); start the run without --resume")
        raise UserError(f"no good checkpoint in {run_dir}: {'; '.join(damaged)}; start the run afresh (--overwrite)")
    for problem in damaged:
        print(
            f"warning: {problem}; resuming from {best[1]} (epoch {best[0]['epoch']}, step {best[0]['step']})",
            file=sys.stderr,
        )
    return best


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value and prefix.count(".") < 1:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_changes(saved: dict, current: dict) -> dict[str, tuple]:
    """{dotted key: (saved value, current value)} for the keys that differ and matter (a key only one
    side has was added to the schema after the checkpoint was written: not a change)."""
    old, new = _flat(saved or {}), _flat(current)
    allowed = set(RESUMABLE_KEYS)
    if new.get("optim.schedule") != "cosine":  # the step and constant schedules do not read epochs
        allowed.add("optim.epochs")
    return {k: (old[k], new[k]) for k in sorted(set(old) & set(new)) if k not in allowed and old[k] != new[k]}


def describe_changes(changes: dict[str, tuple], limit: int = 6) -> str:
    shown = [f"{k} ({a!r} -> {b!r})" for k, (a, b) in list(changes.items())[:limit]]
    return ", ".join(shown) + (f" and {len(changes) - limit} more" if len(changes) > limit else "")


def data_fingerprint(ids: torch.Tensor, labels: torch.Tensor, x: torch.Tensor) -> dict:
    """What identifies the training split cheaply: its size, sample shape and a hash of ids and labels."""
    import hashlib

    digest = hashlib.sha256(ids.cpu().long().numpy().tobytes() + labels.cpu().long().numpy().tobytes())
    return {"samples": int(len(x)), "shape": list(x.shape[1:]), "ids_labels_sha256": digest.hexdigest()}


def complete_snapshot(run_dir: Path, ckpt_path: Path, ckpt: dict, save_every: int) -> Path | None:
    """Write `epoch_XXX.pt` from an end-of-epoch checkpoint when the run should have one and has not."""
    epoch = int(ckpt["epoch"])
    if not save_every or epoch == 0 or epoch % save_every or ckpt["step"] != epoch * ckpt["steps_per_epoch"]:
        return None
    target = Path(run_dir) / f"epoch_{epoch:03d}.pt"
    if target.exists() or target == ckpt_path:
        return None
    with atomic_path(target) as tmp:
        tmp.write_bytes(Path(ckpt_path).read_bytes())
    print(f"note: wrote the missing snapshot {target} from {ckpt_path}", file=sys.stderr)
    return target


def complete_last(run_dir: Path, ckpt_path: Path) -> Path | None:
    """Write `last.pt` from the snapshot a resume starts from (a kill between the snapshot and
    `last.pt`, or a damaged `last.pt`), so that `last.pt` is never behind the run, even when the
    snapshot is its end and no further epoch writes `last.pt`."""
    target = Path(run_dir) / "last.pt"
    if Path(ckpt_path) == target:
        return None
    with atomic_path(target) as tmp:
        tmp.write_bytes(Path(ckpt_path).read_bytes())
    print(f"note: wrote {target} from {ckpt_path}", file=sys.stderr)
    return target


def remove_stale_partials(run_dir: Path) -> int:
    """Delete `*.partial` files in `run_dir` (only ever half-written files of this run); return the count."""
    removed = 0
    for path in Path(run_dir).glob("*.partial"):
        try:
            path.unlink()
            removed += 1
        except OSError:
            pass
    return removed
