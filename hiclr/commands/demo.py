"""`hiclr demo`: the whole pipeline on the embedded synthetic default, a few minutes on CPU: pre-training,
then fine-tuning on a fraction of the labels (pre-trained vs from scratch) and frozen-feature probes."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  hiclr demo                       # writes demo_out/ and prints where the report is
  hiclr demo --out /tmp/demo --fresh
  hiclr demo --epochs 2            # a quicker smoke run
  hiclr demo --supervised          # plus the supervised upper bound (same architecture, labels)
  hiclr demo --family field --seed 1 --out field_demo   # the second synthetic family
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="synthetic data -> prep -> pre-train -> fine-tune on 20 %% of the labels, linear probe, kNN -> report",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, the model and the training")
    p.add_argument("--epochs", type=int, default=None, help="pre-training epochs (default: the demo config's)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--fresh", action="store_true", help="delete --out first instead of reusing what is there")
    p.add_argument(
        "--supervised",
        action="store_true",
        help="also train the same architecture with labels (the fine-tune protocol from random "
        "init): the upper bound row of the report",
    )
    p.add_argument(
        "--family",
        default="default",
        help="synthetic family of the data: default or field "
        "(hiclr-prep synth --family); a store already in --out is reused as it is",
    )
    p.add_argument(
        "--fraction",
        type=float,
        default=0.2,
        help="labelled fraction the encoder and the from-scratch baseline are fine-tuned on (default 0.2)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a pre-training config value, e.g. --set optim.lr=0.05",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from hiclr.demo import run_demo

    report = run_demo(
        args.out,
        seed=args.seed,
        epochs=args.epochs,
        device=args.device,
        fresh=args.fresh,
        extra=args.overrides,
        supervised=args.supervised,
        family=args.family,
        fraction=args.fraction,
    )
    print(f"demo finished: the report is {report}")
    return 0
