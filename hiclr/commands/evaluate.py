"""`hiclr linear | knn | semi | finetune | ensemble`: the evaluation protocols (SPEC_HICLR.md section 6)."""

from __future__ import annotations

import argparse
from pathlib import Path

from data_prep.errors import UserError

EPILOG = {
    "linear": """examples:
  hiclr linear --config configs/ntu60/xsub/linear_joint.yaml --encoder checkpoints/RUN/encoder.pt
  hiclr linear --config configs/tiny/linear.yaml --encoder checkpoints/RUN/encoder.pt --data data/synth.h5
  hiclr linear --config configs/ntu60/xsub/linear_joint.yaml --encoder hiclr_release/joint.pt --through-encoder
  hiclr linear --config configs/transfer/ntu120_to_pku2_linear.yaml --encoder checkpoints/NTU120_RUN/encoder.pt

The frozen encoder runs once and the linear layer trains on cached features (run folder
features/, keyed by the encoder's and the data file's checksums); --through-encoder runs the
encoder on every augmented batch instead. Top-1/top-5 are reported at the last and the best epoch.
""",
    "knn": """examples:
  hiclr knn --config configs/base/knn.yaml --encoder checkpoints/RUN/encoder.pt --data data/ntu60.h5
  hiclr knn --encoder checkpoints/RUN/encoder.pt --data data/ntu60.h5 --protocol xsub --k 20
""",
    "semi": """examples:
  hiclr semi --config configs/ntu60/xsub/semi_joint.yaml --encoder checkpoints/RUN/encoder.pt
  hiclr semi --config configs/ntu60/xsub/semi_joint.yaml --encoder RUN/encoder.pt --fractions 0.01 --seeds 0 1 2

Each subset is saved as <run>/semi_<p>pct_seed<s>.npy (indices into /samples) with a .json record.
""",
    "finetune": """examples:
  hiclr finetune --config configs/ntu60/xsub/finetune_joint.yaml --encoder checkpoints/RUN/encoder.pt
  hiclr finetune --config configs/ntu60/xsub/finetune_joint.yaml --encoder RUN/encoder.pt --resume
""",
    "ensemble": """examples:
  hiclr ensemble checkpoints/ntu60_xsub_linear_joint checkpoints/ntu60_xsub_linear_bone checkpoints/ntu60_xsub_linear_motion
  hiclr ensemble RUN_J RUN_B RUN_M --weights 0.6 0.6 0.4 --out checkpoints/ntu60_xsub_ensemble

Default weights come from each run's stream: joint 0.6, bone 0.6, motion 0.4 (fixed in advance,
never searched on the test set).
""",
}
HELP = {
    "linear": "linear probe on the frozen encoder (cached features by default)",
    "knn": "weighted cosine kNN on frozen features",
    "semi": "fine-tune on class-balanced 1 %% / 10 %% subsets, several seeds",
    "finetune": "fine-tune the whole network with a new linear layer",
    "ensemble": "weighted sum of the streams' test logits",
}


def register(sub: argparse._SubParsersAction) -> None:
    for name in ("linear", "knn", "semi", "finetune"):
        p = sub.add_parser(name, help=HELP[name], description=HELP[name].replace("%%", "%"), epilog=EPILOG[name],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--config", metavar="FILE", help="YAML config (default: the built-in defaults)")
        p.add_argument("--encoder", required=True, metavar="CKPT",
                       help="encoder.pt, last.pt / epoch_XXX.pt, a reference release checkpoint, "
                            "or 'random' (random init from model.*, seeded by run.seed)")
        p.add_argument("--data", metavar="FILE.h5", help="data file (sets data.path; e.g. for transfer)")
        p.add_argument("--protocol", help="split protocol (sets data.protocol), e.g. xsub")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                       help="override a config key, e.g. --set eval.epochs=10 (repeatable)")
        p.add_argument("--out", metavar="DIR", help="run folder (default: run.out/run.name)")
        p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
        if name == "linear":
            p.add_argument("--through-encoder", action="store_true",
                           help="run the frozen encoder on every (augmented) batch instead of caching")
        if name == "knn":
            p.add_argument("--k", type=int, help="neighbours (sets eval.k)")
            p.add_argument("--temperature", type=float, help="voting temperature (sets eval.knn_temperature)")
        if name == "semi":
            p.add_argument("--fractions", type=float, nargs="+", help="labelled fractions (eval.fractions)")
            p.add_argument("--seeds", type=int, nargs="+", help="subset seeds (eval.seeds)")
        if name in ("semi", "finetune"):
            p.add_argument("--resume", action="store_true", help="continue an interrupted run")
        p.set_defaults(func=_run_protocol, protocol_name=name)

    p = sub.add_parser("ensemble", help=HELP["ensemble"], description=HELP["ensemble"],
                       epilog=EPILOG["ensemble"], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders holding logits.npz")
    p.add_argument("--weights", type=float, nargs="+", help="one weight per run (default: by stream)")
    p.add_argument("--out", metavar="DIR", help="report folder (default: <first run>_ensemble)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    p.set_defaults(func=_run_ensemble)


def protocol_config(args: argparse.Namespace) -> dict:
    """The resolved config of a protocol command: file <- --set <- --data/--protocol/--k ..."""
    import hiclr.eval.common  # noqa: F401  (adds the evaluation keys to the schema)
    from hiclr.config import load_config

    overrides = list(args.overrides)
    if args.data:
        overrides.append(f"data.path={args.data}")
    if args.protocol:
        overrides.append(f"data.protocol={args.protocol}")
    if getattr(args, "k", None) is not None:
        overrides.append(f"eval.k={args.k}")
    if getattr(args, "temperature", None) is not None:
        overrides.append(f"eval.knn_temperature={args.temperature}")
    cfg = load_config(args.config, overrides)
    if args.config is None and not any(o.startswith("run.name=") for o in args.overrides):
        source = Path(args.encoder)
        cfg["run"]["name"] = f"{source.parent.name or source.stem}_{args.protocol_name}"
    return cfg


def resolve_encoder(spec: str, cfg: dict):
    """A checkpoint path, or a seeded random-init encoder for `random`."""
    if spec != "random":
        if not Path(spec).is_file():
            raise UserError(f"--encoder {spec} does not exist; pass checkpoints/RUN/encoder.pt, a training "
                            f"checkpoint, a reference release checkpoint or 'random'.")
        return spec
    import torch

    from hiclr.models import build_encoder
    torch.manual_seed(int(cfg["run"].get("seed", 0)))
    return build_encoder(cfg["model"])


def _run_protocol(args: argparse.Namespace) -> int:
    from hiclr.eval import finetune, knn, linear, semi

    cfg = protocol_config(args)
    encoder = resolve_encoder(args.encoder, cfg)
    plots = not args.no_plots
    name = args.protocol_name
    if name == "linear":
        e = linear.run_linear(cfg, encoder, out=args.out, through_encoder=args.through_encoder or None,
                              plots=plots)
        line = (f"linear: top-1 {e['top1_last']:.2f} (last epoch {e['epochs']}), "
                f"{e['top1_best']:.2f} (best epoch {e['best_epoch']})")
    elif name == "knn":
        e = knn.run_knn(cfg, encoder, out=args.out, plots=plots)
        line = f"knn (k={e['k']}): top-1 {e['top1']:.2f}, top-5 {e['top5']:.2f}"
    elif name == "finetune":
        e = finetune.run_finetune(cfg, encoder, out=args.out, resume=args.resume, plots=plots)
        line = (f"finetune: top-1 {e['top1_last']:.2f} (last epoch {e['epochs']}), "
                f"{e['top1_best']:.2f} (best epoch {e['best_epoch']})")
    else:
        e = semi.run_semi(cfg, encoder, out=args.out, fractions=args.fractions, seeds=args.seeds,
                          resume=args.resume, plots=plots)
        line = "semi: " + ", ".join(
            f"{k} top-1 {f['top1_last_mean']:.2f} ± {f['top1_last_std']:.2f} (last epoch, "
            f"{len(f['runs'])} seed{'s' if len(f['runs']) > 1 else ''})" for k, f in e["fractions"].items())
    print(f"{line}; report: {Path(e['run_dir']) / 'report.md'}")
    return 0


def _run_ensemble(args: argparse.Namespace) -> int:
    from hiclr.eval.ensemble import run_ensemble

    e = run_ensemble(args.runs, args.weights, out=args.out, plots=not args.no_plots)
    streams = ", ".join(f"{k} {s['top1']:.2f}" for k, s in e["streams"].items())
    weights = " ".join(f"{w:g}" for w in e["weights"])
    print(f"ensemble (weights {weights}): top-1 {e['top1']:.2f} ({streams}); "
          f"report: {Path(e['run_dir']) / 'report.md'}")
    return 0
