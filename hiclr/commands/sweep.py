"""`hiclr sweep`: an ablation table in one command: every (variant, seed) pre-trained, then linear probe + kNN."""

from __future__ import annotations

import argparse
import sys

EPILOG = """examples:
  hiclr demo --out demo_out        # (once) writes the demo's synthetic store demo_out/synth.h5
  hiclr sweep configs/demo/ablation.yaml --data demo_out/synth.h5 --out ablation_out
  hiclr sweep configs/demo/ablation.yaml --data demo_out/synth.h5 --out /tmp/smoke --seeds 0 --set optim.epochs=1
  hiclr sweep configs/demo/ablation.yaml --data demo_out/synth.h5 --out ablation_out --only hiclr transitive

For every (variant, seed): DIR/<variant>/seed<s>/pretrain (run.seed = s), then the linear probe
and kNN of its encoder.pt into DIR/<variant>/seed<s>/eval; baselines (raw, random) are evaluated
once per seed. A run whose result.json exists is skipped and an interrupted pre-training resumes,
so the same command continues an interrupted sweep. Writes DIR/results.json and DIR/results.md
(one row per variant: kNN and linear top-1 mean ± sample std over seeds, step cost) and prints
the table. The sweep file's format is in hiclr/sweep.py's docstring.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="an ablation table: variants x seeds, pre-train + linear + kNN",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("sweep", metavar="SWEEP.yaml", help="sweep file (e.g. configs/demo/ablation.yaml)")
    p.add_argument("--data", required=True, metavar="STORE.h5", help="prepared store (data.path of every run)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder of the sweep")
    p.add_argument("--seeds", type=int, nargs="+", metavar="S", help="seeds (default: the sweep file's)")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these variants / baselines")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key of every pre-training config, e.g. --set optim.epochs=2 (repeatable)",
    )
    p.add_argument("--device", metavar="DEV", help="auto, cpu, cuda or cuda:N (engine.device of every run)")
    p.add_argument("--plots", action="store_true", help="also draw each evaluation's PNG figures")
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="do not check the store's stored sha256 before the runs (data.verify=false)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from hiclr.engine import Interrupted
    from hiclr.sweep import run_sweep

    try:
        result = run_sweep(
            args.sweep,
            args.data,
            args.out,
            seeds=args.seeds,
            only=args.only,
            overrides=args.overrides + (["data.verify=false"] if args.no_verify else []),
            device=args.device,
            plots=args.plots,
            echo=lambda line: print(line, flush=True),
        )
    except Interrupted as stop:
        print(f"hiclr: {stop}; run the same command again to continue the sweep", file=sys.stderr)
        return stop.exit_code
    print()
    print(result["table"], end="")
    print(f"\nwrote {args.out}/results.md and {args.out}/results.json")
    return 0
