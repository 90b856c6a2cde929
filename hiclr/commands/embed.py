"""`hiclr embed`: frozen-encoder features of a split, written to one .npz file."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from hiclr.common.atomic import atomic_write
from hiclr.common.errors import UserError
from hiclr.config import STREAMS

EPILOG = """examples:
  hiclr embed --encoder checkpoints/RUN/encoder.pt --data data/ntu60.h5 --split xsub/test --out feats.npz
  hiclr embed --encoder hiclr_release/joint.pt --data data/ntu60.h5 --split all --out all.npz --device cuda
  hiclr embed --encoder checkpoints/RUN/last.pt --data data/synth.h5 --split xview/train --out f.npz --stream bone

The .npz holds `features` (N, D) float32, `names` (N,) str, `labels` (N,) int64 and `index` (N,)
int64 (rows of /samples). Checkpoints: our encoder.pt and last.pt, or the reference release's.
The stream is the checkpoint's own unless --stream is given (reference checkpoints: joint).
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "embed",
        help="write frozen-encoder features of a split to .npz",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--encoder",
        required=True,
        metavar="CKPT",
        help="encoder.pt, a training checkpoint or a reference release checkpoint",
    )
    parser.add_argument("--data", required=True, metavar="FILE.h5", help="dataset from hiclr-prep")
    parser.add_argument(
        "--split", required=True, metavar="PROTOCOL/PART|all", help="e.g. xsub/train, xview/test, or all (every sample)"
    )
    parser.add_argument("--out", required=True, metavar="FEATS.npz", help="output file")
    parser.add_argument("--view", default="frame50", help="view of the store (default frame50)")
    parser.add_argument(
        "--stream", choices=STREAMS, default=None, help="input stream (default: the checkpoint's, else joint)"
    )
    parser.add_argument("--batch-size", type=int, default=256, help="clips per forward (default 256)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="do not check the stored sha256 of what is read (docs/data_integrity.md)",
    )
    parser.set_defaults(func=run)


def parse_split(text: str) -> tuple[str | None, str]:
    """ "xsub/test" -> ("xsub", "test"); "all" -> (None, "all"); "xsub/all" -> ("xsub", "all")."""
    if text == "all":
        return None, "all"
    protocol, sep, part = text.partition("/")
    if not sep or not protocol or part not in ("train", "test", "all"):
        raise UserError(f"--split {text!r} is not PROTOCOL/PART or all; use e.g. xsub/train, xsub/test or all")
    return protocol, part


def save_npz_atomic(path, **arrays) -> Path:
    """np.savez to `<path>.partial`, fsync, rename: no half-written file under `path`."""
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def run(args: argparse.Namespace) -> int:
    from hiclr.data import load_split
    from hiclr.engine import resolve_device
    from hiclr.features import extract_features
    from hiclr.models import load_encoder

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be a positive integer, got {args.batch_size}")
    if not str(args.out).endswith(".npz"):
        raise UserError(f"--out {args.out} must end in .npz")
    protocol, part = parse_split(args.split)
    device = resolve_device(args.device)
    start = time.perf_counter()
    encoder, cfg, ckpt_stream = load_encoder(args.encoder, device)
    stream = args.stream or ckpt_stream or "joint"
    if stream not in STREAMS:
        raise UserError(f"{args.encoder} names stream {stream!r}; pass --stream {'|'.join(STREAMS)}")
    split = load_split(args.data, protocol, part, view=args.view, verify=not args.no_verify)
    features = extract_features(
        encoder, split.x, batch_size=args.batch_size, device=device, stream=stream, progress=True
    )
    save_npz_atomic(
        args.out,
        features=features.numpy().astype(np.float32),
        names=np.asarray(split.names, dtype=str),
        labels=split.labels.numpy(),
        index=split.index.numpy(),
    )
    print(
        f"embed: {len(split)} clips of {args.split} ({stream} stream) -> {features.shape[1]}-d "
        f"features in {args.out} ({time.perf_counter() - start:.1f} s on {device})"
    )
    return 0
