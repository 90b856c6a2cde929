"""`hiclr linear | knn | semi | finetune | ensemble`: the evaluation protocols (the reference release)."""

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
  hiclr linear --config configs/ntu60/xsub/linear_joint.yaml --encoder random --out checkpoints/RUN_random
  hiclr linear --config configs/ntu60/xsub/linear_joint.yaml --encoder raw --set eval.standardize=true

The frozen encoder runs once and the linear layer trains on cached features (run folder
features/, keyed by the encoder's and the data file's checksums); --through-encoder runs the
encoder on every augmented batch instead. Top-1/top-5 are reported at the last and the best epoch.
Baselines: --encoder random is the config's architecture at random init (model.init, run.seed)
with its BatchNorm statistics re-estimated on the training split; --encoder raw is the probe on
the flattened input coordinates of the stream, no model.
""",
    "knn": """examples:
  hiclr knn --config configs/base/knn.yaml --encoder checkpoints/RUN/encoder.pt --data data/ntu60.h5
  hiclr knn --encoder checkpoints/RUN/encoder.pt --data data/ntu60.h5 --protocol xsub --k 20
  hiclr knn --config configs/base/knn.yaml --encoder random --data data/ntu60.h5 --set run.seed=1
  hiclr knn --config configs/base/knn.yaml --encoder raw --data data/ntu60.h5 --set data.stream=bone

Baselines: random (the config's architecture at random init, BatchNorm statistics re-estimated on
the training split) and raw (cosine kNN on the flattened input coordinates of the stream).
""",
    "semi": """examples:
  hiclr semi --config configs/ntu60/xsub/semi_joint.yaml --encoder checkpoints/RUN/encoder.pt
  hiclr semi --config configs/ntu60/xsub/semi_joint.yaml --encoder RUN/encoder.pt --fractions 0.01 --seeds 0 1 2
  hiclr semi --config configs/ntu60/xsub/semi_joint.yaml --encoder random

Each subset is saved as <run>/semi_<p>pct_seed<s>.npy (indices into /samples) with a .json record.
--encoder random trains the architecture from scratch on each subset (supervised baseline), from
an init seeded by that subset's training seed.
""",
    "finetune": """examples:
  hiclr finetune --config configs/ntu60/xsub/finetune_joint.yaml --encoder checkpoints/RUN/encoder.pt
  hiclr finetune --config configs/ntu60/xsub/finetune_joint.yaml --encoder RUN/encoder.pt --resume
  hiclr finetune --config configs/ntu60/xsub/finetune_joint.yaml --encoder random

--encoder random trains the architecture from scratch (supervised baseline).
""",
    "ensemble": """examples:
  hiclr ensemble checkpoints/ntu60_xsub_linear_joint checkpoints/ntu60_xsub_linear_bone checkpoints/ntu60_xsub_linear_motion
  hiclr ensemble RUN_J RUN_B RUN_M --weights 0.6 0.6 0.4 --out checkpoints/ntu60_xsub_ensemble

Default weights come from each run's stream: joint 0.6, bone 0.6, motion 0.4 (fixed in advance,
never searched on the test set).
""",
}
_CKPT = "encoder.pt, last.pt / epoch_XXX.pt, a reference release checkpoint"
_RANDOM_FROZEN = ("'random' (model.* at random init by model.init, seeded by run.seed, BatchNorm "
                  "statistics re-estimated on the training split)")
_RAW = "'raw' (no model: the flattened input coordinates of the stream)"
_RANDOM_TRAINED = "'random' (model.* at random init by model.init, seeded by run.seed: trained from scratch)"
ENCODER_HELP = {
    "linear": f"{_CKPT}, {_RANDOM_FROZEN} or {_RAW}",
    "knn": f"{_CKPT}, {_RANDOM_FROZEN} or {_RAW}",
    "semi": f"{_CKPT} or {_RANDOM_TRAINED}",
    "finetune": f"{_CKPT} or {_RANDOM_TRAINED}",
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
                       help=ENCODER_HELP[name])
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


def resolve_encoder(spec: str, protocol: str):
    """A checkpoint path, or a `Baseline` for `raw` / `random` (built by the protocol once its data
    is loaded: `hiclr.eval.baselines.build_baseline`); `raw` with semi / finetune is refused."""
    from hiclr.eval.baselines import BASELINES, Baseline, check_protocol

    if spec in BASELINES:
        check_protocol(spec, protocol)
        return Baseline(spec)
    if not Path(spec).is_file():
        raise UserError(f"--encoder {spec} does not exist; pass checkpoints/RUN/encoder.pt, a training "
                        f"checkpoint, a reference release checkpoint, 'random' or 'raw'.")
    return spec


def _run_protocol(args: argparse.Namespace) -> int:
    from hiclr.eval import finetune, knn, linear, semi

    encoder = resolve_encoder(args.encoder, args.protocol_name)
    cfg = protocol_config(args)
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
