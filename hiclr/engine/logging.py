"""Run metrics: one JSON object per line in `metrics.jsonl`, mirrored to TensorBoard when installed.

Lines are `{"kind": "step", "epoch", "step", "loss", "lr", "samples_per_s", ...}` every
`run.log_every` optimizer steps and `{"kind": "epoch", "epoch", "step", "loss", ..., "time_s"}` at
the end of each epoch (means over the epoch; `epoch` counts completed epochs). On `--resume` the
lines written after the checkpoint's step are dropped, so the file reads as one uninterrupted run,
and so is a torn line (a kill mid-write); a forced resume adds `{"kind": "resume", "forced": true,
"changed": {key: [old, new]}}`.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from hiclr.common.atomic import atomic_write_text


class MetricsLog:
    def __init__(
        self,
        run_dir: Path | None,
        *,
        resume_step: int | None = None,
        tensorboard: str | bool = "auto",
        enabled: bool = True,
    ):
        self.path = None if run_dir is None or not enabled else Path(run_dir) / "metrics.jsonl"
        self.writer = None
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            kept, torn = _records_up_to(self.path, resume_step)
            if torn:
                print(
                    f"note: {self.path}: dropped {torn} torn or unreadable line(s) (a kill mid-write)", file=sys.stderr
                )
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        if tensorboard in (True, "true", "auto"):
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                if tensorboard is True or tensorboard == "true":
                    print("tensorboard is not installed (pip install tensorboard); logging to metrics.jsonl only")
            else:
                self.writer = SummaryWriter(str(Path(run_dir) / "tb"))

    def write(self, record: dict) -> None:
        if self.path is None:
            return
        clean = {k: _plain(v) for k, v in record.items()}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(clean) + "\n")
        if self.writer is not None:
            for key, value in clean.items():
                if key not in ("kind", "epoch", "step") and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{clean['kind']}/{key}", value, clean.get("step", 0))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _records_up_to(path: Path, step: int) -> tuple[list[str], int]:
    """(lines of `path` whose step is <= `step`, number of lines that are not a JSON object)."""
    kept, torn = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            torn += 1
            continue
        if not isinstance(record, dict):
            torn += 1
        elif _as_step(record.get("step", 0)) <= step:
            kept.append(line)
    return kept, torn


def _as_step(value) -> float:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else float("inf")


def _plain(value):
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
