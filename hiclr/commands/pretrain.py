"""`hiclr pretrain`: contrastive pre-training of one encoder (one stream) from a config file."""

from __future__ import annotations

import argparse
import sys
import time

EPILOG = """examples:
  hiclr pretrain --config configs/ntu60/xsub/pretrain_joint.yaml --data data/ntu60.h5
  hiclr pretrain --config configs/tiny/pretrain.yaml --data data/synth.h5 --out /tmp/runs
  hiclr pretrain --config configs/ntu60/xsub/pretrain_bone.yaml --set optim.lr=0.05 --set ssl.fused_views=shared
  hiclr pretrain --config configs/ntu60/xsub/pretrain_joint.yaml --resume
  torchrun --nproc-per-node 4 -m hiclr.cli pretrain --config configs/ntu60/xsub/pretrain_joint.yaml
  torchrun --nproc-per-node 4 --max-restarts 3 -m hiclr.cli pretrain --config ... --auto-resume

Writes OUT/RUN/: config.yaml (resolved), metrics.jsonl, engine.json (the device settings in force),
last.pt (every run.checkpoint_every epochs), epoch_XXX.pt (every run.save_every epochs) and
encoder.pt (the backbone, at the end), each with a checksum, report.json (provenance: the store's
and encoder.pt's sha256, the config, the versions), then pretrain_curve.md: loss, monitor kNN and
embedding spread per epoch, with the objective's own
diagnostics (eq_error, Hough agreements, edge precision) when it logs any, and their figures
(pretrain_curve.png, pretrain_diagnostics.png) when matplotlib is installed.
Ctrl-C or SIGTERM finishes the current step, saves last.pt and exits; --resume continues exactly
from the newest good checkpoint, and refuses a changed config (naming the keys) unless --force.
--auto-resume resumes when the run folder holds a good checkpoint and starts afresh otherwise, so
that one command serves the first start and every restart (torchrun --max-restarts).
optim.batch_size is the global batch: under torchrun each rank takes batch_size / ranks
(see docs/multi_gpu.md).
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "pretrain",
        help="contrastive pre-training of an encoder",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, metavar="FILE.yaml", help="run config (see configs/)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="override a config key, e.g. --set optim.lr=0.05 (repeatable; YAML values)",
    )
    parser.add_argument("--data", metavar="FILE.h5", help="dataset from hiclr-prep (data.path)")
    parser.add_argument("--epochs", type=int, metavar="N", help="number of epochs (optim.epochs)")
    parser.add_argument("--out", metavar="DIR", help="output root; the run goes to DIR/<run.name> (run.out)")
    parser.add_argument("--resume", action="store_true", help="continue the run from its last.pt")
    parser.add_argument(
        "--auto-resume",
        action="store_true",
        help="resume from the newest good checkpoint when the run folder has one, else start "
        "afresh (for torchrun --max-restarts)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="with --resume: continue although config values differ from the checkpoint's "
        "(the changes are recorded in metrics.jsonl)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="start afresh even if the run directory already holds a checkpoint"
    )
    parser.add_argument("--device", metavar="DEV", help="auto, cpu, cuda or cuda:N (engine.device)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (engine.compile)")
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="do not check the store's stored sha256 before training (data.verify=false)",
    )
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> dict:
    """The resolved config: file, then --set, then the dedicated flags."""
    from hiclr.config import load_config, validate_values

    cfg = load_config(args.config, list(args.overrides))
    for flag, section, key in (
        ("data", "data", "path"),
        ("epochs", "optim", "epochs"),
        ("out", "run", "out"),
        ("device", "engine", "device"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            cfg[section][key] = value
    if getattr(args, "compile", False):
        cfg["engine"]["compile"] = True
    if getattr(args, "no_verify", False):
        cfg["data"]["verify"] = False
    validate_values(cfg)
    return cfg


def run(args: argparse.Namespace) -> int:
    from hiclr.engine import Interrupted, is_main_process
    from hiclr.engine.distributed import shutdown_distributed
    from hiclr.pretrain import pretrain, run_dir_of
    from hiclr.report import write_pretrain_curve

    cfg = config_from_args(args)
    resume, overwrite = args.resume, args.overwrite
    if getattr(args, "auto_resume", False):
        resume, overwrite = auto_resume(run_dir_of(cfg), resume, overwrite)
    start = time.perf_counter()
    try:
        result = pretrain(cfg, resume=resume, overwrite=overwrite, force=args.force)
    except Interrupted as stop:
        print(f"hiclr: {stop}", file=sys.stderr)
        shutdown_distributed()  # every rank stops at the same step, so all of them get here
        return stop.exit_code
    minutes = (time.perf_counter() - start) / 60
    encoder = result.outputs.get("encoder", run_dir_of(cfg) / "encoder.pt")
    loss = result.metrics.get("loss")
    shown = f", last epoch loss {loss:.4f}" if isinstance(loss, float) else ""
    print(f"pretrain: {result.epoch} epochs ({result.step} steps) in {minutes:.1f} min{shown}; encoder: {encoder}")
    if is_main_process():
        print(f"curves: {write_pretrain_curve(run_dir_of(cfg))['markdown']}")
    shutdown_distributed()  # under torchrun: all ranks leave the process group together
    return 0


def auto_resume(run_dir, resume: bool, overwrite: bool) -> tuple[bool, bool]:
    """(resume, overwrite) for --auto-resume: resume when `run_dir` holds a good checkpoint; else a
    fresh start, over whatever unreadable checkpoint a crash left there (named on stderr)."""
    from hiclr.common.errors import UserError
    from hiclr.engine.resume import find_checkpoint

    if resume or overwrite:
        raise UserError("--auto-resume decides between --resume and a fresh start itself; pass it alone")
    try:
        find_checkpoint(run_dir)
    except UserError as err:
        if any(run_dir.glob("*.pt")) if run_dir.is_dir() else False:
            print(f"note: --auto-resume: {err}; starting afresh", file=sys.stderr)
        return False, True
    return True, False
