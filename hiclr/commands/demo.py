"""`hiclr demo`: the whole pipeline on the embedded synthetic default, a few minutes on CPU."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  hiclr demo                       # writes demo_out/ and prints where the report is
  hiclr demo --out /tmp/demo --fresh
  hiclr demo --epochs 2            # a quicker smoke run
  hiclr demo --supervised          # plus the supervised upper bound (same architecture, labels)
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="synthetic data -> prep -> pre-train -> linear probe + kNN -> report",
                       description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, the model and the training")
    p.add_argument("--epochs", type=int, default=None, help="pre-training epochs (default: the demo config's)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--fresh", action="store_true", help="delete --out first instead of reusing what is there")
    p.add_argument("--supervised", action="store_true",
                   help="also train the same architecture with labels (the fine-tune protocol from random "
                        "init): the upper bound row of the report")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a pre-training config value, e.g. --set optim.lr=0.05")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from hiclr.demo import run_demo
    report = run_demo(args.out, seed=args.seed, epochs=args.epochs, device=args.device,
                      fresh=args.fresh, extra=args.overrides, supervised=args.supervised)
    print(f"demo finished: the report is {report}")
    return 0
