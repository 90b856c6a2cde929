"""The evaluation protocols as registered objects: what `hiclr <protocol>` offers and prints.

Each protocol is one small class (after timm's `register_model`): its name, help and examples,
its own arguments, its run and its one-line summary. `hiclr.commands.evaluate` loops over
`PROTOCOLS`; the protocols that evaluate one encoder (`EncoderProtocol`) share the skeleton of
config (file <- --set <- flags), encoder (checkpoint, `random` or `raw`) and run folder, and
their `evaluate` calls the protocol's `run_*` function, which writes the report.

This module imports no torch: the command line is built from it without loading the models.
A new protocol is one class here (plus its `run_*` function in a module of its own).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hiclr.common.errors import UserError
from hiclr.registry import Registry

PROTOCOLS = Registry("protocol")


def register_protocol(cls: type[Protocol]) -> type[Protocol]:
    """Class decorator: add one instance of the protocol to `PROTOCOLS` under `cls.name`."""
    PROTOCOLS.register(cls.name)(cls())
    return cls


class Protocol:
    """A subcommand of `hiclr`: `add_arguments(parser)`, `run(args) -> entry`, `summary(entry)`.

    The entry is the protocol's report entry; it holds `run_dir`, the folder with report.md.
    """

    name = ""
    help = ""
    epilog = ""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        raise NotImplementedError

    def run(self, args: argparse.Namespace) -> dict:
        raise NotImplementedError

    def summary(self, entry: dict) -> str:
        raise NotImplementedError


_CKPT = "encoder.pt, last.pt / epoch_XXX.pt, a reference release checkpoint"
_REPORT_HELP = (
    "standard (the last epoch; the best epoch labelled) | paper: also the figures the release "
    "reports, each chosen on the test set and labelled 'selected on the test set'"
)


def add_report_argument(parser: argparse.ArgumentParser, extra: str = "") -> None:
    """`--report standard | paper` (`hiclr.eval.common.REPORTS`)."""
    parser.add_argument("--report", choices=("standard", "paper"), default="standard", help=_REPORT_HELP + extra)


_RANDOM_FROZEN = (
    "'random' (model.* at random init by model.init, seeded by run.seed, BatchNorm "
    "statistics re-estimated on the training split)"
)
_RAW = "'raw' (no model: the flattened input coordinates of the stream)"
_RANDOM_TRAINED = "'random' (model.* at random init by model.init, seeded by run.seed: trained from scratch)"


class EncoderProtocol(Protocol):
    """A protocol that evaluates one encoder from a config: the arguments and steps they share."""

    encoder_help = f"{_CKPT}, {_RANDOM_FROZEN} or {_RAW}"
    frozen_encoder = True  # the encoder's weights stay as they are (`raw` is a baseline only then)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--config", metavar="FILE", help="YAML config (default: the built-in defaults)")
        parser.add_argument("--encoder", required=True, metavar="CKPT", help=self.encoder_help)
        parser.add_argument("--data", metavar="FILE.h5", help="data file (sets data.path; e.g. for transfer)")
        parser.add_argument("--protocol", help="split protocol (sets data.protocol), e.g. xsub")
        parser.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            dest="overrides",
            help="override a config key, e.g. --set eval.epochs=10 (repeatable)",
        )
        parser.add_argument("--out", metavar="DIR", help="run folder (default: run.out/run.name)")
        parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
        parser.add_argument(
            "--no-verify",
            action="store_true",
            help="do not check the store's stored sha256 before evaluating (data.verify=false)",
        )
        self.add_protocol_arguments(parser)

    def add_protocol_arguments(self, parser: argparse.ArgumentParser) -> None:
        """The protocol's own flags (none by default)."""

    def overrides(self, args: argparse.Namespace) -> list[str]:
        """Config overrides the protocol's own flags stand for (`key=value`)."""
        return []

    def run(self, args: argparse.Namespace) -> dict:
        encoder = self.resolve_encoder(args.encoder)
        return self.evaluate(self.config(args), encoder, args)

    def evaluate(self, cfg: dict, encoder, args: argparse.Namespace) -> dict:
        raise NotImplementedError

    def config(self, args: argparse.Namespace) -> dict:
        """The resolved config: file <- --set <- --data / --protocol <- the protocol's flags."""
        from hiclr.config import load_config

        overrides = list(args.overrides)
        if args.data:
            overrides.append(f"data.path={args.data}")
        if args.protocol:
            overrides.append(f"data.protocol={args.protocol}")
        if getattr(args, "no_verify", False):
            overrides.append("data.verify=false")
        cfg = load_config(args.config, overrides + self.overrides(args))
        if args.config is None and not any(o.startswith("run.name=") for o in args.overrides):
            source = Path(args.encoder)
            cfg["run"]["name"] = f"{source.parent.name or source.stem}_{self.name}"
        return cfg

    def resolve_encoder(self, spec: str):
        """A checkpoint path, or a `Baseline` for `raw` / `random` (built by the protocol once its
        data is loaded: `hiclr.eval.baselines.build_baseline`); refused where it does not apply."""
        from hiclr.eval.baselines import BASELINES, Baseline, check_protocol

        if spec in BASELINES:
            check_protocol(spec, self.name, self.frozen_encoder)
            return Baseline(spec)
        if not Path(spec).is_file():
            raise UserError(
                f"--encoder {spec} does not exist; pass checkpoints/RUN/encoder.pt, a training "
                f"checkpoint, a reference release checkpoint, 'random' or 'raw'."
            )
        return spec


def _last_and_best(name: str, e: dict) -> str:
    return (
        f"{name}: top-1 {e['top1_last']:.2f} (last epoch {e['epochs']}), "
        f"{e['top1_best']:.2f} (best epoch {e['best_epoch']})"
    )


def _paper(name: str, e: dict) -> str:
    best = (e.get("paper") or {}).get("best_epoch")
    if not best:
        return ""
    return f"; as the paper reports it, selected on the test set: {best['top1']:.2f} (epoch {best['epoch']})"


@register_protocol
class LinearProbe(EncoderProtocol):
    name = "linear"
    help = "linear probe on the frozen encoder (cached features by default)"
    epilog = """examples:
  hiclr linear --config configs/ntu60/xsub/linear_joint.yaml --encoder checkpoints/RUN/encoder.pt
  hiclr linear --config configs/tiny/linear.yaml --encoder checkpoints/RUN/encoder.pt --data data/synth.h5
  hiclr linear --config configs/ntu60/xsub/linear_joint.yaml --encoder hiclr_release/joint.pt --through-encoder
  hiclr linear --config configs/transfer/ntu120_to_pku2_linear.yaml --encoder checkpoints/NTU120_RUN/encoder.pt
  hiclr linear --config configs/ntu60/xsub/linear_joint.yaml --encoder random --out checkpoints/RUN_random
  hiclr linear --config configs/ntu60/xsub/linear_joint.yaml --encoder raw --set eval.standardize=true

The frozen encoder runs once and the linear layer trains on cached features (run folder
features/, keyed by the encoder's and the data file's checksums); --through-encoder runs the
encoder on every batch instead (augmented by eval.augment when set: the release's probe never
augments). Top-1/top-5 are reported at the last and the best epoch; --report paper adds the
figures the release reports (its best epoch, its epoch-290 checkpoint), labelled as chosen on the
test set.
Baselines: --encoder random is the config's architecture at random init (model.init, run.seed)
with its BatchNorm statistics re-estimated on the training split; --encoder raw is the probe on
the flattened input coordinates of the stream, no model.
"""

    def add_protocol_arguments(self, parser):
        parser.add_argument(
            "--through-encoder",
            action="store_true",
            help="run the frozen encoder on every batch (augmented by eval.augment when set) instead of caching",
        )
        add_report_argument(parser, " (the best epoch; the pre-training run's epoch_290.pt for joint and motion)")

    def evaluate(self, cfg, encoder, args):
        from hiclr.eval.linear import run_linear

        return run_linear(
            cfg,
            encoder,
            out=args.out,
            through_encoder=args.through_encoder or None,
            plots=not args.no_plots,
            report=args.report,
        )

    def summary(self, entry):
        return _last_and_best("linear", entry) + _paper("linear", entry)


@register_protocol
class KNearestNeighbours(EncoderProtocol):
    name = "knn"
    help = "weighted cosine kNN on frozen features"
    epilog = """examples:
  hiclr knn --config configs/base/knn.yaml --encoder checkpoints/RUN/encoder.pt --data data/ntu60.h5
  hiclr knn --encoder checkpoints/RUN/encoder.pt --data data/ntu60.h5 --protocol xsub --k 20
  hiclr knn --config configs/base/knn.yaml --encoder random --data data/ntu60.h5 --set run.seed=1
  hiclr knn --config configs/base/knn.yaml --encoder raw --data data/ntu60.h5 --set data.stream=bone

Baselines: random (the config's architecture at random init, BatchNorm statistics re-estimated on
the training split) and raw (cosine kNN on the flattened input coordinates of the stream).
"""

    def add_protocol_arguments(self, parser):
        parser.add_argument("--k", type=int, help="neighbours (sets eval.k)")
        parser.add_argument("--temperature", type=float, help="voting temperature (sets eval.knn_temperature)")

    def overrides(self, args):
        return ([f"eval.k={args.k}"] if args.k is not None else []) + (
            [f"eval.knn_temperature={args.temperature}"] if args.temperature is not None else []
        )

    def evaluate(self, cfg, encoder, args):
        from hiclr.eval.knn import run_knn

        return run_knn(cfg, encoder, out=args.out, plots=not args.no_plots)

    def summary(self, entry):
        return f"knn (k={entry['k']}): top-1 {entry['top1']:.2f}, top-5 {entry['top5']:.2f}"


@register_protocol
class SemiSupervised(EncoderProtocol):
    name = "semi"
    help = "fine-tune on class-balanced 1 %% / 10 %% subsets, several seeds"
    epilog = """examples:
  hiclr semi --config configs/ntu60/xsub/semi_joint.yaml --encoder checkpoints/RUN/encoder.pt
  hiclr semi --config configs/ntu60/xsub/semi_joint.yaml --encoder RUN/encoder.pt --fractions 0.01 --seeds 0 1 2
  hiclr semi --config configs/ntu60/xsub/semi_joint.yaml --encoder random
  hiclr semi --config configs/demo/finetune.yaml --encoder demo_out/pretrain/encoder.pt --fractions 0.1 0.3 --baseline random

Each subset is saved as <run>/semi_<p>pct_seed<s>.npy (indices into /samples) with a .json record.
Every epoch is as long as the whole training split, the subset cycled, as in the release
(--set eval.epoch_length=subset: one pass over the subset).
--encoder random trains the architecture from scratch on each subset (supervised baseline), from
an init seeded by that subset's training seed.
"""
    encoder_help = f"{_CKPT} or {_RANDOM_TRAINED}"
    frozen_encoder = False

    def add_protocol_arguments(self, parser):
        parser.add_argument("--fractions", type=float, nargs="+", help="labelled fractions (eval.fractions)")
        parser.add_argument("--seeds", type=int, nargs="+", help="subset seeds (eval.seeds)")
        parser.add_argument("--resume", action="store_true", help="continue an interrupted run")
        add_report_argument(parser)
        parser.add_argument(
            "--baseline",
            choices=("random",),
            help="also train from scratch on the very same "
            "subsets; both runs, their table and a label-efficiency figure in one report",
        )

    def evaluate(self, cfg, encoder, args):
        from hiclr.eval.semi import run_semi

        if args.baseline:
            from hiclr.eval.label_efficiency import run_label_efficiency

            return run_label_efficiency(
                cfg,
                encoder,
                out=args.out,
                fractions=args.fractions,
                seeds=args.seeds,
                resume=args.resume,
                plots=not args.no_plots,
            )
        return run_semi(
            cfg,
            encoder,
            out=args.out,
            fractions=args.fractions,
            seeds=args.seeds,
            resume=args.resume,
            plots=not args.no_plots,
            report=args.report,
        )

    def summary(self, entry):
        if "rows" in entry:
            return "semi, pre-trained vs from scratch: " + ", ".join(
                f"{r['fraction'] * 100:g} % {r['pretrained_mean']:.2f} vs {r['scratch_mean']:.2f} "
                f"({r['difference']:+.2f})"
                for r in entry["rows"]
            )
        return "semi: " + ", ".join(
            f"{k} top-1 {f['top1_last_mean']:.2f} ± {f['top1_last_std']:.2f} (last epoch, "
            f"{len(f['runs'])} seed{'s' if len(f['runs']) > 1 else ''})"
            for k, f in entry["fractions"].items()
        )


@register_protocol
class FineTune(EncoderProtocol):
    name = "finetune"
    help = "fine-tune the whole network with a new linear layer"
    epilog = """examples:
  hiclr finetune --config configs/ntu60/xsub/finetune_joint.yaml --encoder checkpoints/RUN/encoder.pt
  hiclr finetune --config configs/ntu60/xsub/finetune_joint.yaml --encoder RUN/encoder.pt --resume
  hiclr finetune --config configs/ntu60/xsub/finetune_joint.yaml --encoder random

--encoder random trains the architecture from scratch (supervised baseline).
"""
    encoder_help = f"{_CKPT} or {_RANDOM_TRAINED}"
    frozen_encoder = False

    def add_protocol_arguments(self, parser):
        parser.add_argument("--resume", action="store_true", help="continue an interrupted run")
        add_report_argument(parser)

    def evaluate(self, cfg, encoder, args):
        from hiclr.eval.finetune import run_finetune

        return run_finetune(cfg, encoder, out=args.out, resume=args.resume, plots=not args.no_plots, report=args.report)

    def summary(self, entry):
        return _last_and_best("finetune", entry) + _paper("finetune", entry)


@register_protocol
class StreamEnsemble(Protocol):
    name = "ensemble"
    help = "weighted sum of the streams' test logits"
    epilog = """examples:
  hiclr ensemble checkpoints/ntu60_xsub_linear_joint checkpoints/ntu60_xsub_linear_bone checkpoints/ntu60_xsub_linear_motion
  hiclr ensemble RUN_J RUN_B RUN_M --weights 0.6 0.6 0.4 --out checkpoints/ntu60_xsub_ensemble

Default weights come from each run's stream: joint 0.6, bone 0.6, motion 0.4 (fixed in advance,
never searched on the test set). --report paper adds the release's procedure, labelled as chosen
on the test set: the runs' best-epoch logits (written by their own --report paper) under the
better of (0.5, 0.5, 0.5) and (0.6, 0.6, 0.4).
"""

    def add_arguments(self, parser):
        parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders holding logits.npz")
        parser.add_argument("--weights", type=float, nargs="+", help="one weight per run (default: by stream)")
        parser.add_argument("--out", metavar="DIR", help="report folder (default: <first run>_ensemble)")
        parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
        add_report_argument(parser, " (the streams' best-epoch logits, the better of two weight sets)")

    def run(self, args):
        from hiclr.eval.ensemble import run_ensemble

        return run_ensemble(args.runs, args.weights, out=args.out, plots=not args.no_plots, report=args.report)

    def summary(self, entry):
        streams = ", ".join(f"{k} {s['top1']:.2f}" for k, s in entry["streams"].items())
        weights = " ".join(f"{w:g}" for w in entry["weights"])
        paper = entry.get("paper") or {}
        extra = (
            f"; as the paper reports it, selected on the test set: {paper['top1']:.2f} (weights "
            f"{' '.join(f'{w:g}' for w in paper['weights'])})"
            if "top1" in paper
            else ""
        )
        return f"ensemble (weights {weights}): top-1 {entry['top1']:.2f} ({streams})" + extra
